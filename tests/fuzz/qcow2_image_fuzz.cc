// Fuzz target: a qcow2 image (chain/qcow2/qcow2_layer.h).
//
// The input is a whole image file, given as an in-memory file and opened
// through the format registry (probe by content, then the format's open),
// as a directory of images opens it. An image that opens must keep the
// Layer contract (chain/layer/layer.h): extents in order, disjoint, inside
// the virtual size; every entry reads (or fails as corruption: compressed
// clusters are decoded with bounds, data clusters outside the file refused),
// a View over the layer reads each zero extent as zeros, and `check --deep`'s
// structure pass finishes. The same for the image's first internal
// snapshots (the format's open_part), once the snapshot table parses. The
// work is bounded by the input's size, not by the virtual size it claims
// (L2 tables are counted once).
#include "chain/layer/registry.h"
#include "chain/qcow2/qcow2_header.h"
#include "chain/qcow2/qcow2_layer.h"
#include "tests/fuzz/fuzz_util.h"

namespace chainfs::fuzz {
namespace {

constexpr uint64_t kMaxBytesRead = 16ull << 20;
constexpr size_t kMaxExtents = 1 << 20;
constexpr size_t kMaxSnapshots = 4;

void OpenAndRead(const std::string& bytes) {
  auto file = std::make_unique<MemoryFile>(bytes, "fuzz.qcow2");
  const MemoryFile image(bytes, "fuzz.qcow2");
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
  CheckLayerContract(layer.value(), kMaxBytesRead, kMaxExtents);
  auto header = ReadQcow2Header(image);
  FUZZ_CHECK(header.ok());
  auto snapshots = ReadQcow2Snapshots(image, header.value());
  if (!snapshots.ok()) {
    FUZZ_CHECK(snapshots.status().code() == Status::Code::kCorruption);
    return;
  }
  for (size_t i = 0; i < snapshots->size() && i < kMaxSnapshots; ++i) {
    auto snap = format.value()->open_part(std::make_unique<MemoryFile>(bytes, "fuzz.qcow2"),
                                          Qcow2SnapshotPart((*snapshots)[i]));
    FUZZ_CHECK(snap.ok());  // ReadQcow2Snapshots validated its L1 table
    FUZZ_CHECK(snap.value()->virtual_size() == (*snapshots)[i].disk_size);
    CheckLayerContract(snap.value(), kMaxBytesRead, kMaxExtents);
  }
}

}  // namespace
}  // namespace chainfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  chainfs::fuzz::OpenAndRead(chainfs::fuzz::AsString(data, size));
  return 0;
}
