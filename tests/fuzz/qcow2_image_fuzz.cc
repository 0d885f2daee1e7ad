// Fuzz target: a qcow2 image (chain/qcow2/qcow2_layer.h).
//
// The input is a whole image file, given as an in-memory file and opened
// through the format registry (probe by content, then the format's open),
// as a directory of images opens it. An image that opens must keep the
// Layer contract (chain/layer/layer.h): extents in order, disjoint, inside
// the virtual size; every entry reads (or fails as corruption: compressed
// clusters are decoded with bounds, data clusters outside the file refused),
// a View over the layer reads each zero extent as zeros, and `check --deep`'s
// structure pass finishes. The work is bounded by the input's size, not by
// the virtual size it claims (L2 tables are counted once).
#include <algorithm>
#include <cstring>
#include <vector>

#include "chain/layer/registry.h"
#include "chain/layer/view.h"
#include "chain/qcow2/qcow2_layer.h"
#include "tests/fuzz/fuzz_util.h"

namespace chainfs::fuzz {
namespace {

constexpr uint64_t kMaxBytesRead = 16ull << 20;
constexpr size_t kMaxExtents = 1 << 20;

void OpenAndRead(std::string bytes) {
  auto file = std::make_unique<MemoryFile>(bytes, "fuzz.qcow2");
  auto format = ProbeLayerFormat(*file);
  if (!format.ok() || std::string(format.value()->name) != "qcow2") return;
  auto check = CheckQcow2Structure(*file);
  auto layer = format.value()->open(std::move(file), {});
  if (!layer.ok()) {
    FUZZ_CHECK(layer.status().code() == Status::Code::kCorruption ||
               layer.status().code() == Status::Code::kNotSupported);
    FUZZ_CHECK(!check.ok());
    return;
  }
  FUZZ_CHECK(check.ok());
  const Layer& l = *layer.value();
  const uint32_t bs = l.block_size();
  FUZZ_CHECK(bs >= 16 && (bs & (bs - 1)) == 0);
  std::vector<LayerExtent> extents;
  l.ForEachExtent([&](const LayerExtent& e) {
    if (extents.size() < kMaxExtents) extents.push_back(e);
  });
  uint64_t prev = 0;
  for (const LayerExtent& e : extents) {
    FUZZ_CHECK(e.length > 0 && e.offset >= prev && e.end() <= l.virtual_size());
    prev = e.end();
  }
  std::vector<char> buf(bs);
  uint64_t read = 0;
  for (const LayerExtent& e : extents) {
    if (e.kind != LayerExtent::Kind::kData) continue;
    const uint64_t entries = (e.length + bs - 1) / bs;
    for (uint64_t i = 0; i < entries && read < kMaxBytesRead; ++i, read += bs) {
      Status st = l.ReadBlock(e.first_entry + i, buf.data());
      FUZZ_CHECK(st.ok() || st.code() == Status::Code::kCorruption);
    }
  }
  auto view = View::Create({{layer.value(), "fuzz"}}, "fuzz");
  FUZZ_CHECK(view.ok());
  for (const LayerExtent& e : extents) {
    if (e.kind != LayerExtent::Kind::kZero || read >= kMaxBytesRead) continue;
    const uint64_t n = std::min<uint64_t>(e.length, 1 << 16);
    std::string z(n, 'x');
    FUZZ_CHECK(view.value()->Read(e.offset, n, z.data()).ok());
    FUZZ_CHECK(z.find_first_not_of('\0') == std::string::npos);
    read += n;
  }
}

}  // namespace
}  // namespace chainfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  chainfs::fuzz::OpenAndRead(chainfs::fuzz::AsString(data, size));
  return 0;
}
