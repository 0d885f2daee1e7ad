// The native block codec: how one block of a disk becomes its stored bytes,
// and back. The only place that compresses, checksums or decodes a block.
//
//   stored   = zstd frame of the raw block at the repository's level, or the
//              raw block itself when zstd does not shrink it (or compression
//              is off): codec kZstd or kRaw
//   checksum = Checksum64(stored)  checked before anything is decompressed
//   content  = HashContent(raw)    checked after decoding
//
//   std::string buf;
//   StoredBlock s = EncodeBlock(7, raw, 65536, HashContent(raw, 65536), {}, &buf);
//   Status st = VerifyStoredBlock(s, path, offset);      // after reading it back
//   if (st.ok()) st = DecodeBlock(s, 65536, out, path);  // out == raw
//
// Thread-safe: zstd contexts are per thread.
#pragma once

#include <cstdint>
#include <string>

#include "chain/base/file.h"
#include "chain/base/hash.h"
#include "chain/base/status.h"
#include "chain/layer/stored_block.h"

namespace chainfs {

// StoredBlock::codec of a native block (docs/FORMAT.md, index entry).
enum class Codec : uint8_t { kRaw = 0, kZstd = 1 };

struct BlockEncoding {
  bool compress = true;  // false: every block stored raw
  int level = 3;         // zstd level
};

// Encodes raw (block_size bytes) as block `block`. content: HashContent(raw),
// which every caller has already computed (to find unchanged blocks). The
// stored bytes go to *buf (reused: no allocation once it is large enough);
// the result's data points into *buf.
StoredBlock EncodeBlock(uint64_t block, const char* raw, uint32_t block_size,
                        const ContentHash& content, const BlockEncoding& enc, std::string* buf);

// Ok if Checksum64(s.data, s.size) is s.checksum; otherwise kCorruption
// "<where>: block B (offset O): checksum mismatch of stored bytes", where
// `where` names the file and `offset` is where the stored bytes lie in it.
Status VerifyStoredBlock(const StoredBlock& s, const std::string& where, uint64_t offset);

// Decodes s into out (block_size bytes) and checks the content hash; a zstd
// failure, short output or hash mismatch is kCorruption naming where and the
// block. s.data may equal out for a kRaw block (read in place). Does not check
// the checksum: VerifyStoredBlock first.
Status DecodeBlock(const StoredBlock& s, uint32_t block_size, char* out, const std::string& where);

// Reads the stored bytes at loc from file, checks them (VerifyStoredBlock)
// and decodes them into out (DecodeBlock): a native delta's read of one
// entry (DeltaReader::ReadBlock), and of an entry a view map located
// (chain/repo). A raw block is read straight into out.
Status ReadStoredBlock(const RandomAccessFile& file, const StoredLocation& loc,
                       uint32_t block_size, char* out);

// Reads the stored bytes at loc into *buf and checks them; the result points
// into *buf.
Result<StoredBlock> ReadStoredBytes(const RandomAccessFile& file, const StoredLocation& loc,
                                    std::string* buf);

}  // namespace chainfs
