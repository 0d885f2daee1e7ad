// ExtentMap: the merged byte map of one view.
//
// Built once per view from its layers, newest first: each byte resolves to
// the newest layer that stores or zeroes it, else it is a hole (zeros). The
// result is a sorted vector of runs [start, end), so a lookup is one binary
// search whatever the chain length. Layers may have different block sizes;
// runs are in bytes and a run may begin or end inside an entry of its layer.
//
//   layers (newest first)    c3 (0): . . D D . . . Z .
//                            c2 (1): D D . D D D D . .
//                            c1 (2): D D D D D D D D D
//   map                              1 1 0 0 1 1 1 Z 2   (digit = layer, Z = zero)
//
// Each layer is clipped to its visible size: bytes at or past clip_bytes[i]
// (the smallest virtual size among layers 0..i) are invisible, so a disk
// shrunk and grown again reads zeros, not stale data.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "chain/layer/layer.h"

namespace chainfs {

// Where a byte of a data run lies in its layer: entry, and offset in it.
struct EntryPos {
  uint64_t entry = 0;
  uint32_t offset = 0;
};

struct MapRun {
  static constexpr uint32_t kZeroLayer = UINT32_MAX;
  uint64_t start = 0;  // bytes of the view, [start, end)
  uint64_t end = 0;
  // Data runs: the layer's entries laid end to end (entry e at bytes
  // [e << entry_shift, (e + 1) << entry_shift)); byte `start` of the view is
  // byte entry_pos of that sequence.
  uint64_t entry_pos = 0;
  uint32_t layer = kZeroLayer;  // index into the view's layers, or kZeroLayer
  uint8_t entry_shift = 0;      // log2 of the layer's block_size()

  bool is_zero() const { return layer == kZeroLayer; }
  uint32_t entry_size() const { return 1u << entry_shift; }
  // The entry and offset in it that hold view byte pos: the one place that
  // maps bytes of a run to entries. REQUIRES: data run, start <= pos < end.
  EntryPos EntryAt(uint64_t pos) const {
    const uint64_t p = entry_pos + (pos - start);
    return {p >> entry_shift, static_cast<uint32_t>(p & (entry_size() - 1))};
  }
  // The entries [first, last] that hold view bytes [from, to) of this run.
  // REQUIRES: data run, start <= from < to <= end.
  std::pair<uint64_t, uint64_t> EntriesOf(uint64_t from, uint64_t to) const {
    return {EntryAt(from).entry, EntryAt(to - 1).entry};
  }
};

class ExtentMap {
 public:
  ExtentMap() = default;
  // REQUIRES: layers.size() == clip_bytes.size(); layers newest first, each
  // with a power-of-two block_size().
  static ExtentMap Build(const std::vector<const Layer*>& layers,
                         const std::vector<uint64_t>& clip_bytes);
  // The map of layers (newest first, clipped as Build's) laid over `base`,
  // the map of the older layers below them: Build(layers + older) without
  // reading the older layers again. base's runs are clipped to base_clip
  // (the smallest virtual size among layers and the older ones, as Build
  // would clip the older layers) and their layer indexes shifted by
  // layers.size(). A persisted view map (chain/repo/view_map.h) and a new
  // checkpoint's view over its base's are composed this way.
  static ExtentMap Overlay(const std::vector<const Layer*>& layers,
                           const std::vector<uint64_t>& clip_bytes, const ExtentMap& base,
                           uint64_t base_clip);
  // A map of runs already composed. REQUIRES: sorted by start, disjoint,
  // start < end (DecodeViewMap checks this of what it reads).
  static ExtentMap FromRuns(std::vector<MapRun> runs);

  // Renames the layers the data runs name: layer i becomes to[i] (a view
  // that holds only the layers its runs name). REQUIRES: to[r.layer] is
  // defined for every data run r, and keeps their order (i < j: to[i] < to[j]).
  void RenumberLayers(const std::vector<uint32_t>& to);

  // The run containing byte pos, or nullptr if pos is in a hole.
  const MapRun* Find(uint64_t pos) const;
  // The first run that ends after pos (nullptr if none): the run at pos, or
  // the next one after a hole.
  const MapRun* FindAtOrAfter(uint64_t pos) const;
  const std::vector<MapRun>& runs() const { return runs_; }
  // One past the last run, for walking on from FindAtOrAfter.
  const MapRun* runs_end() const { return runs_.data() + runs_.size(); }

 private:
  std::vector<MapRun> runs_;
};

}  // namespace chainfs
