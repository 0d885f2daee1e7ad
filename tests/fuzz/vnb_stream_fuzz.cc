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
#include "chain/layer/registry.h"
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

}  // namespace
}  // namespace chainfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  chainfs::fuzz::OpenAndRead(chainfs::fuzz::AsString(data, size));
  return 0;
}
