// ExtentMap: the merged block map of one view.
//
// Built once per view from its layers, newest first: each block resolves to
// the newest layer that stores or zeroes it, else it is a hole (zeros). The
// result is a sorted vector of runs, so a lookup is one binary search whatever
// the chain length.
//
//   layers (newest first)    c3 (0): . . D D . . . Z .
//                            c2 (1): D D . D D D D . .
//                            c1 (2): D D D D D D D D D
//   map                              1 1 0 0 1 1 1 Z 2   (digit = layer, Z = zero)
//
// Each layer is clipped to its visible size: blocks at or past clip_blocks[i]
// (the smallest virtual size among layers 0..i, rounded up to blocks) are
// invisible, so a disk shrunk and grown again reads zeros, not stale data.
#pragma once

#include <cstdint>
#include <vector>

#include "chain/layer/layer.h"

namespace chainfs {

struct MapRun {
  static constexpr uint32_t kZeroLayer = UINT32_MAX;
  uint64_t first_block = 0;
  uint64_t block_count = 0;
  uint32_t layer = kZeroLayer;  // index into the view's layers, or kZeroLayer
  uint64_t first_entry = 0;     // entry of first_block in that layer
  uint64_t end() const { return first_block + block_count; }
  bool is_zero() const { return layer == kZeroLayer; }
};

class ExtentMap {
 public:
  ExtentMap() = default;
  // REQUIRES: layers.size() == clip_blocks.size(); layers newest first.
  static ExtentMap Build(const std::vector<const Layer*>& layers,
                         const std::vector<uint64_t>& clip_blocks);

  // The run containing block, or nullptr if block is in a hole.
  const MapRun* Find(uint64_t block) const;
  // The first run that ends after block (nullptr if none): the run at block,
  // or the next one after a hole.
  const MapRun* FindAtOrAfter(uint64_t block) const;
  const std::vector<MapRun>& runs() const { return runs_; }

 private:
  std::vector<MapRun> runs_;
};

}  // namespace chainfs
