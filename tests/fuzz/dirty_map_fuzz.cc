// Fuzz target: a dirty map (nbdinfo --json --map, chain/ingest/dirty_map.h).
//
// The ranges of a map that parses are non-empty and do not overflow, and
// turning them into blocks (what a backup does next) stays inside them.
#include "chain/ingest/dirty_map.h"
#include "chain/ingest/source.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chainfs;
  Result<std::vector<ByteRange>> ranges = ParseDirtyMap(fuzz::AsString(data, size), "fuzz.map");
  if (!ranges.ok()) return 0;
  for (const ByteRange& r : ranges.value()) {
    FUZZ_CHECK(r.length > 0);
    FUZZ_CHECK(r.length <= UINT64_MAX - r.offset);
  }
  // A small disk: blocks past its end are dropped, so the count is bounded.
  constexpr uint64_t kDiskSize = 1ull << 30;
  constexpr uint32_t kBlockSize = 65536;
  uint64_t end = 0;
  for (const BlockRange& b : BlocksTouched(ranges.value(), kBlockSize, kDiskSize)) {
    FUZZ_CHECK(b.block_count > 0 && b.first_block >= end);
    end = b.first_block + b.block_count;
    FUZZ_CHECK(end <= kDiskSize / kBlockSize);
  }
  return 0;
}
