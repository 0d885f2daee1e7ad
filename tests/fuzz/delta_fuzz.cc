// Fuzz target: a native delta file (header, index, zero runs, footer).
//
// The input is a whole delta file, given as an in-memory file and opened
// through the format registry (probe by content, then the format's open),
// as Repository::OpenLayer does. A file that opens must keep the Layer
// contract (chain/layer/layer.h): extents in order, disjoint, inside the
// virtual size, data extents numbering their entries; every entry reads and
// verifies (or fails as corruption, never crashes), its stored bytes
// round-trip through ReadStored, and a View over the layer reads each
// extent as the entries say (data) or as zeros. A version 2 file tells its
// identity (names inside the repository, the footer's index digest).
//
// Each input runs twice: as is, and with its checksums repaired (header,
// version 2's identity record, footer, index, each stored block's;
// docs/FORMAT.md offsets), so that mutations reach the checks behind the
// checksums (counts, bounds, order, codecs, names, decompression) instead of
// stopping at the first checksum.
#include <algorithm>
#include <cstring>
#include <vector>

#include "chain/base/coding.h"
#include "chain/base/hash.h"
#include "chain/base/names.h"
#include "chain/layer/registry.h"
#include "chain/native/delta_format.h"
#include "chain/layer/view.h"
#include "tests/fuzz/fuzz_util.h"

namespace chainfs::fuzz {
namespace {

// Bounds the work per input: a valid file may claim 4 MiB blocks and
// terabytes of extents.
constexpr uint64_t kMaxBytesRead = 32ull << 20;

// Recomputes the checksums a valid writer would have written, where the
// fields they cover lie inside the file: the identity record's (version 2),
// each index entry's stored-block checksum, the footer's stored byte sum and
// index checksum, then the header's and footer's own checksums.
void RepairChecksums(std::string* f) {
  if (f->size() < kDeltaHeaderSize + kDeltaFooterSize) return;
  char* p = f->data();
  const uint64_t footer = f->size() - kDeltaFooterSize;
  // Version 2: the identity record spans [64, header_size) (header_size at
  // offset 12); its last 8 bytes are its checksum.
  const uint32_t header_size = DecodeFixed32(p + 12);
  if (DecodeFixed32(p + 8) == kDeltaVersion && header_size % 8 == 0 &&
      header_size >= kDeltaHeaderSize + kIdentityFixedSize + 8 &&
      header_size <= std::min<uint64_t>(kMaxDeltaHeaderSize, footer))
    EncodeFixed64(p + header_size - 8,
                  Checksum64(p + kDeltaHeaderSize, header_size - kDeltaHeaderSize - 8));
  EncodeFixed64(p + 56, Checksum64(p, 56));
  const uint64_t index = DecodeFixed64(p + footer);
  if (index >= kDeltaHeaderSize && index <= footer) {
    const uint64_t entries = std::min<uint64_t>(DecodeFixed64(p + footer + 8),
                                                (footer - index) / kIndexEntrySize);
    uint64_t stored = 0;
    for (uint64_t i = 0; i < entries; ++i) {
      char* e = p + index + i * kIndexEntrySize;
      const uint64_t off = DecodeFixed64(e + 8);
      const uint32_t len = DecodeFixed32(e + 16);
      stored += len;
      if (off <= f->size() && len <= f->size() - off) EncodeFixed64(e + 24, Checksum64(p + off, len));
    }
    EncodeFixed64(p + footer + 32, stored);
    EncodeFixed64(p + footer + 24, Checksum64(p + index, footer - index));
  }
  EncodeFixed64(p + footer + 48, Checksum64(p + footer, 48));
}

void CheckExtents(const Layer& layer, std::vector<LayerExtent>* data) {
  uint64_t end = 0;
  uint64_t next_entry = 0;
  layer.ForEachExtent([&](const LayerExtent& e) {
    FUZZ_CHECK(e.length > 0);
    FUZZ_CHECK(e.offset >= end);
    FUZZ_CHECK(e.length <= layer.virtual_size() && e.offset <= layer.virtual_size() - e.length);
    FUZZ_CHECK(e.offset % 512 == 0);
    FUZZ_CHECK(e.end() % 512 == 0 || e.end() == layer.virtual_size());
    end = e.end();
    if (e.kind == LayerExtent::Kind::kData) {
      FUZZ_CHECK(e.first_entry >= next_entry);
      next_entry = e.first_entry + (e.length + layer.block_size() - 1) / layer.block_size();
      data->push_back(e);
    }
  });
}

// Reads every entry of the data extents (within the budget); returns the
// entries that read cleanly, each with its bytes.
void ReadEntries(const Layer& layer, const std::vector<LayerExtent>& data, uint64_t* budget) {
  const uint32_t bs = layer.block_size();
  std::vector<char> block(bs);
  std::string scratch;
  for (const LayerExtent& e : data) {
    const uint64_t entries = (e.length + bs - 1) / bs;
    for (uint64_t k = 0; k < entries && *budget >= bs; ++k, *budget -= bs) {
      const uint64_t entry = e.first_entry + k;
      Status st = layer.ReadBlock(entry, block.data());
      if (!st.ok()) {
        FUZZ_CHECK(st.code() == Status::Code::kCorruption || st.code() == Status::Code::kIoError);
        continue;
      }
      if (std::optional<ContentHash> h = layer.BlockHash(entry))
        FUZZ_CHECK(*h == HashContent(block.data(), bs));
      int calls = 0;
      st = layer.ReadStored(entry, 1, &scratch, [&](const StoredBlock& s) {
        ++calls;
        FUZZ_CHECK(s.size == layer.StoredLength(entry));
        return Status::Ok();
      });
      FUZZ_CHECK(st.ok() ? calls == 1 : calls == 0);
    }
  }
}

// The view of this one layer reads each data extent as its entries and
// each zero extent as zeros.
void ReadView(std::shared_ptr<const Layer> layer, uint64_t* budget) {
  auto view = View::Create({{layer, "c1"}}, "fuzz/c1/vda");
  if (!view.ok()) return;
  const View& v = *view.value();
  FUZZ_CHECK(v.size() == layer->virtual_size());
  const uint32_t bs = layer->block_size();
  std::vector<char> got, want(bs);
  layer->ForEachExtent([&](const LayerExtent& e) {
    const uint64_t n = std::min<uint64_t>(e.length, *budget);
    if (n == 0) return;
    *budget -= n;
    got.resize(n);
    Status st = v.Read(e.offset, n, got.data());
    if (!st.ok()) return;  // a damaged block fails the whole read
    for (uint64_t pos = 0; pos < n; pos += bs) {
      const size_t len = std::min<uint64_t>(bs, n - pos);
      if (e.kind == LayerExtent::Kind::kZero) {
        std::memset(want.data(), 0, len);
      } else {
        FUZZ_CHECK(layer->ReadBlock(e.first_entry + pos / bs, want.data()).ok());
      }
      FUZZ_CHECK(std::memcmp(got.data() + pos, want.data(), len) == 0);
    }
  });
}

// A layer that opened says what it is exactly when the file is version 2,
// in names that stay inside the repository, with the footer's index
// checksum as its index digest.
void CheckIdentity(const Layer& layer, bool version2, uint64_t index_checksum) {
  const LayerIdentity* id = layer.identity();
  FUZZ_CHECK((id != nullptr) == version2);
  if (id == nullptr) return;
  FUZZ_CHECK(ValidateName("group", id->group).ok());
  FUZZ_CHECK(ValidateName("checkpoint", id->checkpoint).ok());
  FUZZ_CHECK(ValidateName("disk", id->disk).ok());
  FUZZ_CHECK((id->kind == DeltaKind::kFull) == id->base.empty());
  FUZZ_CHECK(id->base.empty() || ValidateName("base", id->base).ok());
  FUZZ_CHECK(DeltaId::FromHex(id->id.Hex()) == id->id);
  FUZZ_CHECK(id->index_digest == index_checksum);
}

void OpenAndRead(std::string bytes) {
  // What the header and footer say (a file shorter than both does not open).
  const bool whole = bytes.size() >= kDeltaHeaderSize + kDeltaFooterSize;
  const bool version2 = whole && DecodeFixed32(bytes.data() + 8) == kDeltaVersion;
  const uint64_t index_checksum =
      whole ? DecodeFixed64(bytes.data() + bytes.size() - kDeltaFooterSize + 24) : 0;
  auto file = std::make_unique<MemoryFile>(std::move(bytes), "fuzz.delta");
  Result<const LayerFormat*> format = ProbeLayerFormat(*file);
  if (!format.ok()) return;
  Result<std::shared_ptr<const Layer>> layer = format.value()->open(std::move(file), {});
  if (!layer.ok()) {
    const Status::Code c = layer.status().code();
    FUZZ_CHECK(c == Status::Code::kCorruption || c == Status::Code::kNotSupported);
    return;
  }
  const Layer& l = *layer.value();
  FUZZ_CHECK(l.block_size() >= 512 && (l.block_size() & (l.block_size() - 1)) == 0);
  CheckIdentity(l, version2, index_checksum);
  std::vector<LayerExtent> extents;
  CheckExtents(l, &extents);
  uint64_t budget = kMaxBytesRead;
  ReadEntries(l, extents, &budget);
  budget = kMaxBytesRead;
  ReadView(layer.value(), &budget);
}

}  // namespace
}  // namespace chainfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chainfs::fuzz;
  std::string bytes = AsString(data, size);
  OpenAndRead(bytes);
  RepairChecksums(&bytes);
  OpenAndRead(std::move(bytes));
  return 0;
}
