// Fuzz target: a virtnbdbackup sparse stream (chain/vnb/sparse_stream.h).
//
// The input is a whole .data file, given as an in-memory file and opened
// through the format registry (probe by content, then the format's open),
// as a virtnbdbackup directory's views open it. A stream that opens must
// keep the Layer contract (chain/layer/layer.h): extents in order, disjoint,
// inside the virtual size; every entry reads (or fails as corruption, never
// crashes: lz4 frames are decoded with their checksums) and a View over the
// layer reads each zero extent as zeros. Claimed sizes never make it
// allocate beyond what the input's bytes can decode to.
//
// The same input is also decoded as one lz4 frame, by chainfs
// (DecodeLz4Frame: its own block checksum walk, then liblz4 without
// checksums) and by liblz4 with its checksums: chainfs never accepts a frame
// liblz4 refuses, nor decodes one to other bytes, and accepts every frame
// with block checksums that liblz4 accepts.
#include <lz4frame.h>

#include <cstring>

#include "chain/base/coding.h"
#include "chain/layer/registry.h"
#include "chain/vnb/lz4_check.h"
#include "chain/vnb/sparse_stream.h"
#include "tests/fuzz/fuzz_util.h"

namespace chainfs::fuzz {
namespace {

constexpr uint64_t kMaxBytesRead = 32ull << 20;

void OpenAndRead(std::string bytes) {
  auto file = std::make_unique<MemoryFile>(std::move(bytes), "fuzz.data");
  auto format = ProbeLayerFormat(*file);
  if (!format.ok() || std::string(format.value()->name) != "virtnbdbackup") return;
  auto layer = format.value()->open(std::move(file), {});
  if (!layer.ok()) {
    FUZZ_CHECK(layer.status().code() == Status::Code::kCorruption ||
               layer.status().code() == Status::Code::kNotSupported);
    return;
  }
  CheckLayerContract(layer.value(), kMaxBytesRead);
}

void DecodeAsLz4Frame(const std::string& in) {
  constexpr size_t kCap = 256 << 10;
  std::string ref(kCap, '\0'), got(kCap, '\0');
  LZ4F_dctx* d = nullptr;
  if (LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION))) return;
  size_t in_n = in.size(), out_n = kCap;
  const size_t r = LZ4F_decompress(d, ref.data(), &out_n, in.data(), &in_n, nullptr);
  LZ4F_freeDecompressionContext(d);
  const bool ref_ok = !LZ4F_isError(r) && r == 0 && in_n == in.size();
  if (out_n == kCap) return;  // may not fit: nothing to compare
  Status st = DecodeLz4Frame(in.data(), in.size(), got.data(), out_n, "fuzz.lz4");
  FUZZ_CHECK(st.ok() || st.code() == Status::Code::kCorruption);
  if (st.ok()) {
    FUZZ_CHECK(ref_ok);
    FUZZ_CHECK(std::memcmp(got.data(), ref.data(), out_n) == 0);
  }
  const bool block_sums = in.size() > 4 && DecodeFixed32(in.data()) == kLz4Magic &&  // not skippable
                          (static_cast<uint8_t>(in[4]) & kLz4FlagBlockChecksum) != 0;
  if (ref_ok && block_sums) FUZZ_CHECK(st.ok());
}

}  // namespace
}  // namespace chainfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  chainfs::fuzz::OpenAndRead(chainfs::fuzz::AsString(data, size));
  chainfs::fuzz::DecodeAsLz4Frame(chainfs::fuzz::AsString(data, size));
  return 0;
}
