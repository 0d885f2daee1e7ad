#include "chain/native/delta_format.h"

#include <algorithm>
#include <array>

#include <zstd.h>

#include <cstring>

#include "chain/base/coding.h"
#include "chain/base/names.h"

namespace chainfs {

bool IsValidBlockSize(uint64_t bs) {
  return bs >= kMinBlockSize && bs <= kMaxBlockSize && (bs & (bs - 1)) == 0;
}

namespace {

// The bytes DeltaReader::Load reads at a file's end: the footer and, in a
// small delta, the whole index before it (one page).
constexpr uint64_t kTailRead = 4096;

// The identity record's names, in their on-disk order.
template <typename Identity>  // LayerIdentity, const or not
auto IdentityNames(Identity& id) {
  return std::array{&id.group, &id.checkpoint, &id.disk, &id.base};
}

// Bytes of a header with this identity record: fixed part, record fields,
// names, padding to a multiple of 8, record checksum.
size_t HeaderSize(const LayerIdentity& id) {
  size_t names = 0;
  for (const std::string* n : IdentityNames(id)) names += n->size();
  return kDeltaHeaderSize + kIdentityFixedSize + (names + 7) / 8 * 8 + 8;
}

// The names are valid names (chain/base/names.h); base empty exactly when
// full. kInvalidArgument naming the field.
Status ValidateIdentity(const LayerIdentity& id) {
  const char* fields[] = {"group", "checkpoint", "disk", "base"};
  auto names = IdentityNames(id);
  for (size_t i = 0; i < names.size(); ++i) {
    if (i == 3 && id.kind == DeltaKind::kFull && names[i]->empty()) continue;
    CHAINFS_RETURN_IF_ERROR(ValidateName(fields[i], *names[i]));
  }
  if (id.kind == DeltaKind::kFull && !id.base.empty())
    return Status::InvalidArgument("a full delta with base " + id.base);
  return Status::Ok();
}

void EncodeIdentity(const LayerIdentity& id, std::string* dst) {
  const size_t start = dst->size();
  PutBytes(dst, id.id.bytes.data(), id.id.bytes.size());
  PutFixed8(dst, static_cast<uint8_t>(id.kind));
  for (const std::string* n : IdentityNames(id)) PutFixed8(dst, static_cast<uint8_t>(n->size()));
  dst->append(3, '\0');  // reserved
  for (const std::string* n : IdentityNames(id)) dst->append(*n);
  dst->append((8 - (dst->size() - start) % 8) % 8, '\0');
  PutFixed64(dst, Checksum64(dst->data() + start, dst->size() - start));
}

// Decodes the identity record rec (n bytes: header_size - 64).
Result<LayerIdentity> DecodeIdentity(const char* rec, size_t n) {
  auto bad = [](const std::string& why) { return Status::Corruption("identity record: " + why); };
  if (n < kIdentityFixedSize + 8 || n % 8 != 0) return bad("size " + std::to_string(n) + " invalid");
  if (DecodeFixed64(rec + n - 8) != Checksum64(rec, n - 8)) return bad("checksum mismatch");
  LayerIdentity id;
  std::memcpy(id.id.bytes.data(), rec, 16);
  const uint8_t kind = static_cast<uint8_t>(rec[16]);
  if (kind > static_cast<uint8_t>(DeltaKind::kDifferential))
    return bad("unknown kind " + std::to_string(kind));
  id.kind = static_cast<DeltaKind>(kind);
  size_t pos = kIdentityFixedSize;
  const char* fields[] = {"group", "checkpoint", "disk", "base"};
  auto names = IdentityNames(id);
  for (size_t i = 0; i < names.size(); ++i) {
    const size_t len = static_cast<uint8_t>(rec[17 + i]);
    if (len > n - 8 - pos) return bad(std::string(fields[i]) + " name runs past the record");
    names[i]->assign(rec + pos, len);
    pos += len;
  }
  if (Status st = ValidateIdentity(id); !st.ok()) return bad(st.message());
  if (rec[21] != 0 || rec[22] != 0 || rec[23] != 0) return bad("reserved bytes not zero");
  if ((pos + 7) / 8 * 8 + 8 != n) return bad("size does not match its names");
  for (; pos < n - 8; ++pos)
    if (rec[pos] != 0) return bad("padding not zero");
  return id;
}

}  // namespace

void DeltaHeader::EncodeTo(std::string* dst) const {
  size_t start = dst->size();
  PutBytes(dst, kDeltaMagic, 8);
  PutFixed32(dst, identity ? kDeltaVersion : kDeltaVersionUnbound);
  PutFixed32(dst, static_cast<uint32_t>(identity ? HeaderSize(*identity) : kDeltaHeaderSize));
  PutFixed32(dst, block_size);
  PutFixed32(dst, 0);  // flags
  PutFixed64(dst, virtual_size);
  dst->append(24, '\0');  // reserved
  PutFixed64(dst, Checksum64(dst->data() + start, 56));
  if (identity) EncodeIdentity(*identity, dst);
}

Result<DeltaHeader> DeltaHeader::DecodeFrom(const char* p, size_t n) {
  if (n < kDeltaHeaderSize) return Status::Corruption("header: file shorter than a header");
  if (std::memcmp(p, kDeltaMagic, 8) != 0)
    return Status::Corruption("header: bad magic (not a chainfs delta file)");
  Decoder d(p + 8, kDeltaHeaderSize - 8);
  DeltaHeader h;
  h.version = d.Get32();
  h.header_size = d.Get32();
  h.block_size = d.Get32();
  uint32_t flags = d.Get32();
  h.virtual_size = d.Get64();
  d.Skip(24);
  uint64_t checksum = d.Get64();
  if (h.version > kDeltaVersion)
    return Status::NotSupported("header: format version " + std::to_string(h.version) +
                                " is newer than this chainfs reads (" +
                                std::to_string(kDeltaVersion) + "); upgrade chainfs");
  if (h.version == 0) return Status::Corruption("header: format version 0");
  if (checksum != Checksum64(p, 56)) return Status::Corruption("header: checksum mismatch");
  const bool bound = h.version >= kDeltaVersion;
  if (flags != 0 || (!bound && h.header_size != kDeltaHeaderSize) ||
      (bound && (h.header_size <= kDeltaHeaderSize || h.header_size > kMaxDeltaHeaderSize)))
    return Status::Corruption("header: unknown header size " + std::to_string(h.header_size) +
                              " or flags " + std::to_string(flags));
  if (!IsValidBlockSize(h.block_size))
    return Status::Corruption("header: invalid block size " + std::to_string(h.block_size));
  if (h.virtual_size > kMaxVirtualSize)
    return Status::Corruption("header: virtual size " + std::to_string(h.virtual_size) +
                              " is above the largest chainfs accepts (2^56 bytes, 64 PiB)");
  if (bound) {
    if (n < h.header_size)
      return Status::Corruption("header: file shorter than its header size " +
                                std::to_string(h.header_size));
    CHAINFS_ASSIGN_OR_RETURN(h.identity, DecodeIdentity(p + kDeltaHeaderSize,
                                                        h.header_size - kDeltaHeaderSize));
  }
  return h;
}

void IndexEntry::EncodeTo(std::string* dst) const {
  PutFixed64(dst, block);
  PutFixed64(dst, offset);
  PutFixed32(dst, stored_len);
  PutFixed8(dst, static_cast<uint8_t>(codec));
  dst->append(3, '\0');
  PutFixed64(dst, checksum);
  PutFixed64(dst, content.lo);
  PutFixed64(dst, content.hi);
}

IndexEntry IndexEntry::DecodeFrom(const char* p) {
  Decoder d(p, kIndexEntrySize);
  IndexEntry e;
  e.block = d.Get64();
  e.offset = d.Get64();
  e.stored_len = d.Get32();
  e.codec = static_cast<Codec>(d.Get8());
  d.Skip(3);
  e.checksum = d.Get64();
  e.content.lo = d.Get64();
  e.content.hi = d.Get64();
  return e;
}

void ZeroRun::EncodeTo(std::string* dst) const {
  PutFixed64(dst, first_block);
  PutFixed64(dst, block_count);
}

ZeroRun ZeroRun::DecodeFrom(const char* p) {
  return ZeroRun{DecodeFixed64(p), DecodeFixed64(p + 8)};
}

void DeltaFooter::EncodeTo(std::string* dst) const {
  size_t start = dst->size();
  PutFixed64(dst, index_offset);
  PutFixed64(dst, entry_count);
  PutFixed64(dst, zero_run_count);
  PutFixed64(dst, index_checksum);
  PutFixed64(dst, stored_bytes);
  PutFixed64(dst, virtual_size);
  PutFixed64(dst, Checksum64(dst->data() + start, 48));
  PutBytes(dst, kFooterMagic, 8);
}

Result<DeltaFooter> DeltaFooter::DecodeFrom(const char* p, size_t n) {
  if (n < kDeltaFooterSize || std::memcmp(p + 56, kFooterMagic, 8) != 0)
    return Status::Corruption("footer: missing (file incomplete or truncated)");
  Decoder d(p, kDeltaFooterSize);
  DeltaFooter f;
  f.index_offset = d.Get64();
  f.entry_count = d.Get64();
  f.zero_run_count = d.Get64();
  f.index_checksum = d.Get64();
  f.stored_bytes = d.Get64();
  f.virtual_size = d.Get64();
  if (d.Get64() != Checksum64(p, 48)) return Status::Corruption("footer: checksum mismatch");
  return f;
}

// ---- writer ----

Result<std::unique_ptr<DeltaWriter>> DeltaWriter::Create(
    Env* env, const std::string& path, uint32_t block_size, uint64_t virtual_size,
    WriteMode mode, const std::optional<LayerIdentity>& identity) {
  if (virtual_size > kMaxVirtualSize)
    return Status::InvalidArgument(path + ": virtual size " + std::to_string(virtual_size) +
                                   " is above the largest chainfs accepts (2^56 bytes, 64 PiB)");
  if (identity) {
    if (Status st = ValidateIdentity(*identity); !st.ok())
      return st.Context("identity of new delta " + path);
  }
  auto f = env->NewAppendFile(path, mode);
  if (!f.ok()) return f.status();
  std::unique_ptr<DeltaWriter> w(new DeltaWriter(std::move(f).value()));
  w->block_size_ = block_size;
  w->footer_.virtual_size = virtual_size;
  DeltaHeader h;
  h.block_size = block_size;
  h.virtual_size = virtual_size;
  h.identity = identity;
  std::string buf;
  h.EncodeTo(&buf);
  CHAINFS_RETURN_IF_ERROR(w->file_->Append(buf.data(), buf.size()));
  return w;
}

Status DeltaWriter::AddBlock(IndexEntry e, const void* stored) {
  e.offset = file_->Offset();
  CHAINFS_RETURN_IF_ERROR(file_->Append(stored, e.stored_len));
  footer_.stored_bytes += e.stored_len;
  entries_.push_back(e);
  return Status::Ok();
}

void DeltaWriter::AddZeroRun(uint64_t first_block, uint64_t block_count) {
  if (block_count == 0) return;
  if (!zero_runs_.empty()) {
    ZeroRun& last = zero_runs_.back();
    if (last.first_block + last.block_count == first_block) {
      last.block_count += block_count;
      return;
    }
  }
  zero_runs_.push_back({first_block, block_count});
}

Status DeltaWriter::Finish() {
  std::string index;
  index.reserve(entries_.size() * kIndexEntrySize + zero_runs_.size() * kZeroRunSize);
  for (const auto& e : entries_) e.EncodeTo(&index);
  for (const auto& z : zero_runs_) z.EncodeTo(&index);
  footer_.index_offset = file_->Offset();
  footer_.entry_count = entries_.size();
  footer_.zero_run_count = zero_runs_.size();
  footer_.index_checksum = Checksum64(index.data(), index.size());
  footer_.EncodeTo(&index);
  CHAINFS_RETURN_IF_ERROR(file_->Append(index.data(), index.size()));
  CHAINFS_RETURN_IF_ERROR(file_->Sync());
  return file_->Close();
}

// ---- reader ----

Result<std::unique_ptr<DeltaReader>> DeltaReader::Open(std::unique_ptr<RandomAccessFile> file) {
  std::unique_ptr<DeltaReader> r(new DeltaReader());
  r->file_ = std::move(file);
  Status st = r->Load();
  if (!st.ok()) return st.Context("delta " + r->file_->Path());
  return r;
}

Status DeltaReader::Load() {
  uint64_t size = file_->Size();
  if (size < kDeltaHeaderSize + kDeltaFooterSize)
    return Status::Corruption("truncated: " + std::to_string(size) +
                              " bytes is shorter than header plus footer");
  // One read covers any header (the identity record is small) and the
  // file's first bytes otherwise.
  char hbuf[kMaxDeltaHeaderSize];
  const size_t hlen = std::min<uint64_t>(sizeof hbuf, size - kDeltaFooterSize);
  CHAINFS_RETURN_IF_ERROR(file_->ReadAt(0, hlen, hbuf));
  CHAINFS_ASSIGN_OR_RETURN(header_, DeltaHeader::DecodeFrom(hbuf, hlen));
  // The footer with what precedes it: a small delta's whole index comes in
  // the same read (a deep view opens thousands of such deltas).
  const uint64_t tail_len = std::min<uint64_t>(size, kTailRead);
  std::string tail(tail_len, '\0');
  CHAINFS_RETURN_IF_ERROR(file_->ReadAt(size - tail_len, tail_len, tail.data()));
  CHAINFS_ASSIGN_OR_RETURN(footer_, DeltaFooter::DecodeFrom(tail.data() + tail_len - kDeltaFooterSize,
                                                            kDeltaFooterSize));
  if (footer_.virtual_size != header_.virtual_size)
    return Status::Corruption("footer: virtual size disagrees with header");
  const uint64_t index_end = size - kDeltaFooterSize;
  // Bound counts before multiplying so that nothing overflows.
  if (header_.identity) header_.identity->index_digest = footer_.index_checksum;
  if (footer_.index_offset < header_.header_size || footer_.index_offset > index_end ||
      footer_.entry_count > (index_end - footer_.index_offset) / kIndexEntrySize ||
      footer_.zero_run_count > (index_end - footer_.index_offset) / kZeroRunSize ||
      footer_.index_offset + footer_.entry_count * kIndexEntrySize +
              footer_.zero_run_count * kZeroRunSize != index_end)
    return Status::Corruption("footer: index offset " + std::to_string(footer_.index_offset) +
                              " and counts do not fit the file (truncated index?)");
  std::string index;
  if (index_end - footer_.index_offset <= tail_len - kDeltaFooterSize) {
    index = tail.substr(tail_len - kDeltaFooterSize - (index_end - footer_.index_offset),
                        index_end - footer_.index_offset);
  } else {
    index.resize(index_end - footer_.index_offset);
    CHAINFS_RETURN_IF_ERROR(file_->ReadAt(footer_.index_offset, index.size(), index.data()));
  }
  if (Checksum64(index.data(), index.size()) != footer_.index_checksum)
    return Status::Corruption("index: checksum mismatch");

  const uint32_t bs = header_.block_size;
  const uint64_t nblocks = (header_.virtual_size + bs - 1) / bs;
  const size_t max_stored = ZSTD_compressBound(bs);
  entries_.reserve(footer_.entry_count);
  uint64_t stored_sum = 0;
  for (uint64_t i = 0; i < footer_.entry_count; ++i) {
    IndexEntry e = IndexEntry::DecodeFrom(index.data() + i * kIndexEntrySize);
    auto where = [&] {  // only for a message: a full delta has thousands of entries
      return "index entry " + std::to_string(i) + " (block " + std::to_string(e.block) + ")";
    };
    if (e.block >= nblocks)
      return Status::Corruption(where() + ": block beyond the virtual size");
    if (!entries_.empty() && e.block <= entries_.back().block)
      return Status::Corruption(where() + ": blocks out of order");
    if (e.codec != Codec::kRaw && e.codec != Codec::kZstd)
      return Status::Corruption(where() + ": unknown codec " +
                                std::to_string(static_cast<int>(e.codec)));
    if ((e.codec == Codec::kRaw && e.stored_len != bs) ||
        (e.codec == Codec::kZstd && (e.stored_len == 0 || e.stored_len > max_stored)))
      return Status::Corruption(where() + ": stored length " + std::to_string(e.stored_len) +
                                " out of range");
    if (e.offset < header_.header_size || e.offset > footer_.index_offset ||
        e.stored_len > footer_.index_offset - e.offset)
      return Status::Corruption(where() + ": offset " + std::to_string(e.offset) +
                                " out of the data region");
    stored_sum += e.stored_len;
    entries_.push_back(e);
  }
  if (stored_sum != footer_.stored_bytes)
    return Status::Corruption("footer: stored byte count disagrees with the index");
  const char* zr = index.data() + footer_.entry_count * kIndexEntrySize;
  uint64_t prev_end = 0;
  for (uint64_t i = 0; i < footer_.zero_run_count; ++i) {
    ZeroRun z = ZeroRun::DecodeFrom(zr + i * kZeroRunSize);
    auto where = [&] {
      return "zero run " + std::to_string(i) + " (blocks " + std::to_string(z.first_block) + "+" +
             std::to_string(z.block_count) + ")";
    };
    if (z.first_block >= nblocks || z.block_count > nblocks - z.first_block)
      return Status::Corruption(where() + ": beyond the virtual size " +
                                std::to_string(header_.virtual_size));
    if (z.block_count == 0 || z.first_block < prev_end)
      return Status::Corruption(where() + ": empty, or out of order");
    prev_end = z.first_block + z.block_count;
    zero_runs_.push_back(z);
  }
  // A block is either stored or zeroed, never both.
  size_t zi = 0;
  for (const IndexEntry& e : entries_) {
    while (zi < zero_runs_.size() &&
           zero_runs_[zi].first_block + zero_runs_[zi].block_count <= e.block)
      ++zi;
    if (zi < zero_runs_.size() && zero_runs_[zi].first_block <= e.block)
      return Status::Corruption("block " + std::to_string(e.block) +
                                " is both stored and in a zero run");
  }
  return Status::Ok();
}

Status DeltaReader::ReadStored(size_t i, std::string* stored) const {
  return ReadStoredBytes(*file_, entries_.at(i).Location(), stored).status();
}

Status DeltaReader::ReadStoredRange(size_t first, size_t count, std::string* scratch,
                                    const StoredBlockFn& fn) const {
  const std::vector<IndexEntry>& es = entries_;
  for (size_t i = first, end = first + count; i < end;) {
    // Stored bytes of consecutive entries usually lie back to back: one read.
    size_t j = i + 1;
    uint64_t len = es[i].stored_len;
    while (j < end && es[j].offset == es[j - 1].offset + es[j - 1].stored_len &&
           len + es[j].stored_len <= kReadStoredChunk)
      len += es[j++].stored_len;
    scratch->resize(len);
    CHAINFS_RETURN_IF_ERROR(file_->ReadAt(es[i].offset, len, scratch->data()));
    for (size_t k = i, pos = 0; k < j; pos += es[k++].stored_len) {
      const StoredBlock s = es[k].Stored(scratch->data() + pos);
      CHAINFS_RETURN_IF_ERROR(VerifyStoredBlock(s, path(), es[k].offset));
      CHAINFS_RETURN_IF_ERROR(fn(s));
    }
    i = j;
  }
  return Status::Ok();
}

Status DeltaReader::ReadBlock(size_t i, char* out) const {
  if (i >= entries_.size())  // a view map naming an entry the index lacks
    return Status::Corruption(path() + ": no stored block number " + std::to_string(i) +
                              " (the file has " + std::to_string(entries_.size()) + ")");
  return ReadStoredBlock(*file_, entries_[i].Location(), header_.block_size, out);
}

void DeltaReader::AddStoredRange(size_t first, size_t count, WillNeedRanges* ranges) const {
  const size_t stop = std::min(entries_.size(), first + count);
  if (first >= stop) return;
  uint64_t begin = UINT64_MAX, end = 0;
  for (size_t i = first; i < stop; ++i) {
    begin = std::min(begin, entries_[i].offset);
    end = std::max(end, entries_[i].offset + entries_[i].stored_len);
  }
  ranges->Add(begin, end - begin);
}

}  // namespace chainfs
