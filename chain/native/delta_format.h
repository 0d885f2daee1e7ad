// The native delta file: one disk's changes at one checkpoint.
//
//   +-----------------+ offset 0
//   | DeltaHeader 64B | magic, version, block size, virtual size
//   | identity record | version 2: group, checkpoint, disk, kind, base, id
//   +-----------------+ header_size (64 in version 1)
//   | stored block    | zstd frame, or the raw block when zstd does not shrink it
//   | stored block    |
//   | ...             |
//   +-----------------+ index_offset
//   | IndexEntry 48B  | one per stored block, block numbers strictly increasing
//   | ...             |
//   | ZeroRun 16B     | ranges that read as zeros in this checkpoint
//   | ...             |
//   +-----------------+
//   | DeltaFooter 64B | where the index is, its checksum, magic last
//   +-----------------+ end of file
//
// Data first, index and footer last: a file without a valid footer was never
// finished and is refused. Byte-level detail in docs/FORMAT.md.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chain/base/env.h"
#include "chain/base/file.h"
#include "chain/base/hash.h"
#include "chain/base/status.h"
#include "chain/layer/layer.h"
#include "chain/layer/layer_identity.h"
#include "chain/native/block_codec.h"

namespace chainfs {

// "chainfsD" / "chainfsF": ASCII so that `head -c8` tells what a file is.
inline constexpr char kDeltaMagic[8] = {'c', 'h', 'a', 'i', 'n', 'f', 's', 'D'};
inline constexpr char kFooterMagic[8] = {'c', 'h', 'a', 'i', 'n', 'f', 's', 'F'};
// Version 1: the 64-byte header only. Version 2 (written since): the header
// is followed by an identity record (what the delta is; LayerIdentity).
// Both are read.
inline constexpr uint32_t kDeltaVersion = 2;
inline constexpr uint32_t kDeltaVersionUnbound = 1;
// The fixed part of every header (all of a version 1 header).
inline constexpr size_t kDeltaHeaderSize = 64;
// The identity record: 24 bytes of fixed fields, the names, zero padding to
// a multiple of 8, an 8-byte checksum. With names of at most 128 bytes the
// whole header is at most 64 + 24 + 4 * 128 + 8 = 608 bytes.
inline constexpr size_t kIdentityFixedSize = 24;
inline constexpr size_t kMaxDeltaHeaderSize = 608;
inline constexpr size_t kDeltaFooterSize = 64;
inline constexpr size_t kIndexEntrySize = 48;
inline constexpr size_t kZeroRunSize = 16;
inline constexpr uint32_t kMinBlockSize = 4096;
inline constexpr uint32_t kMaxBlockSize = 4u << 20;

bool IsValidBlockSize(uint64_t block_size);

struct DeltaHeader {
  uint32_t version = kDeltaVersion;  // set by DecodeFrom; EncodeTo writes 2 with an identity, else 1
  uint32_t header_size = kDeltaHeaderSize;  // where the stored blocks begin
  uint32_t block_size = 0;
  uint64_t virtual_size = 0;
  // Version 2: what the delta is (its index_digest is not in the header: 0
  // here, filled in from the footer by DeltaReader). Version 1: none.
  std::optional<LayerIdentity> identity;

  // Appends the header: version 2 with the identity record when identity is
  // set, else version 1. REQUIRES: identity names of 1..128 bytes (base:
  // empty exactly for a full delta).
  void EncodeTo(std::string* dst) const;
  // p: the file's first n bytes (n >= header_size, or the whole file when
  // shorter). Checks magic, version, checksums, block size, virtual size
  // (<= kMaxVirtualSize) and every identity field.
  static Result<DeltaHeader> DecodeFrom(const char* p, size_t n);
};

struct IndexEntry {
  uint64_t block = 0;       // block number in the disk (offset / block_size)
  uint64_t offset = 0;      // file offset of the stored bytes
  uint32_t stored_len = 0;  // length of the stored bytes
  Codec codec = Codec::kRaw;
  uint64_t checksum = 0;    // Checksum64 of the stored bytes
  ContentHash content;      // HashContent of the decompressed block

  void EncodeTo(std::string* dst) const;
  static IndexEntry DecodeFrom(const char* p);
  // Where the entry's stored bytes lie, and what checks them.
  StoredLocation Location() const { return {offset, Stored(nullptr)}; }
  // The entry as a StoredBlock whose bytes are at data.
  StoredBlock Stored(const char* data) const {
    return {block, static_cast<uint8_t>(codec), checksum, content, data, stored_len};
  }
  // The entry of a stored block (offset filled in by DeltaWriter::AddBlock).
  static IndexEntry Of(const StoredBlock& s) {
    return {s.block, 0, s.size, static_cast<Codec>(s.codec), s.checksum, s.content};
  }
};

struct ZeroRun {
  uint64_t first_block = 0;
  uint64_t block_count = 0;
  void EncodeTo(std::string* dst) const;
  static ZeroRun DecodeFrom(const char* p);
};

struct DeltaFooter {
  uint64_t index_offset = 0;
  uint64_t entry_count = 0;
  uint64_t zero_run_count = 0;
  uint64_t index_checksum = 0;  // Checksum64 of entries + zero runs
  uint64_t stored_bytes = 0;    // sum of stored_len
  uint64_t virtual_size = 0;    // equals the header's

  void EncodeTo(std::string* dst) const;
  static Result<DeltaFooter> DecodeFrom(const char* p, size_t n);
};

// Writes a delta file front to back. Not thread-safe: one writer per file.
//   auto w = DeltaWriter::Create(repo.env(), path, 65536, size, mode, identity);
//   w->AddBlock(entry_without_offset, stored_bytes); w->AddZeroRun(9, 3);
//   w->Finish();   // index, footer, fsync
class DeltaWriter {
 public:
  // Creates path through env; mode: how the file reaches the disk
  // (chain/base/file.h). With an identity the file is version 2 and records
  // it; without, version 1 (as chainfs wrote before identities: for tests of
  // compatibility). A virtual size above kMaxVirtualSize or an identity name
  // that is not a valid name is kInvalidArgument, before anything is created.
  static Result<std::unique_ptr<DeltaWriter>> Create(
      Env* env, const std::string& path, uint32_t block_size, uint64_t virtual_size,
      WriteMode mode = WriteMode::kBuffered,
      const std::optional<LayerIdentity>& identity = std::nullopt);
  // REQUIRES: blocks strictly increasing across AddBlock calls. entry.offset
  // is filled in here; stored holds entry.stored_len bytes.
  Status AddBlock(IndexEntry entry, const void* stored);
  // REQUIRES: runs increasing and disjoint; adjacent runs are merged.
  void AddZeroRun(uint64_t first_block, uint64_t block_count);
  Status Finish();
  uint64_t stored_bytes() const { return footer_.stored_bytes; }
  // The index checksum Finish wrote (the digest a manifest records).
  uint64_t index_checksum() const { return footer_.index_checksum; }
  const std::string& path() const { return file_->Path(); }

 private:
  explicit DeltaWriter(std::unique_ptr<AppendFile> f) : file_(std::move(f)) {}
  std::unique_ptr<AppendFile> file_;
  std::vector<IndexEntry> entries_;
  std::vector<ZeroRun> zero_runs_;
  DeltaFooter footer_;
  uint32_t block_size_ = 0;
};

// A finished delta file, validated and with its index in memory.
// Thread-safe after Open (all methods const).
class DeltaReader {
 public:
  // Checks header (and identity record), footer, index checksum and every
  // entry's bounds; any failure is kCorruption (kNotSupported for a newer
  // version) naming the file and the field. The header's identity gets the
  // footer's index checksum as its index_digest.
  static Result<std::unique_ptr<DeltaReader>> Open(std::unique_ptr<RandomAccessFile> file);

  const DeltaHeader& header() const { return header_; }
  const DeltaFooter& footer() const { return footer_; }
  const std::vector<IndexEntry>& entries() const { return entries_; }
  const std::vector<ZeroRun>& zero_runs() const { return zero_runs_; }
  const std::string& path() const { return file_->Path(); }

  // Reads entry i's stored bytes and checks their checksum.
  Status ReadStored(size_t i, std::string* stored) const;
  // Reads the stored bytes of entries [first, first + count) as is, in bulk
  // (entries whose bytes lie back to back are read together, up to
  // kReadStoredChunk at a time, into *scratch), checks each block's checksum
  // and calls fn for it in order. REQUIRES: first + count <= entries().size().
  Status ReadStoredRange(size_t first, size_t count, std::string* scratch,
                         const StoredBlockFn& fn) const;
  static constexpr uint64_t kReadStoredChunk = 8 << 20;
  // Reads, checks and decompresses entry i into out (block_size bytes), then
  // checks the content hash.
  Status ReadBlock(size_t i, char* out) const;
  // Adds the stretch of the file holding the stored bytes of entries
  // [first, first + count) to *ranges (entries between that are not needed
  // come along), for WillNeed(ranges): the kernel reads them in the
  // background (posix_fadvise WILLNEED), neighbouring stretches as one.
  void AddStoredRange(size_t first, size_t count, WillNeedRanges* ranges) const;
  void WillNeed(WillNeedRanges* ranges) const { ranges->Issue(*file_, kWillNeedMaxGap); }

 private:
  DeltaReader() = default;
  Status Load();
  std::unique_ptr<RandomAccessFile> file_;
  DeltaHeader header_;
  DeltaFooter footer_;
  std::vector<IndexEntry> entries_;
  std::vector<ZeroRun> zero_runs_;
};

}  // namespace chainfs
