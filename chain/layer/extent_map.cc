#include "chain/layer/extent_map.h"

#include <algorithm>
#include <iterator>
#include <map>

namespace chainfs {
namespace {

// Disjoint, merged intervals [start, end) of blocks already resolved by a
// newer layer.
class CoveredSet {
 public:
  // Calls gap(s, e) for every part of [start, end) not yet covered, then
  // marks all of [start, end) covered.
  template <typename Fn>
  void CoverGaps(uint64_t start, uint64_t end, Fn gap) {
    auto it = spans_.upper_bound(start);
    if (it != spans_.begin() && std::prev(it)->second > start) --it;
    uint64_t pos = start;
    uint64_t merged_start = start, merged_end = end;
    while (it != spans_.end() && it->first <= end) {
      if (it->first > pos) gap(pos, it->first);
      pos = std::max(pos, it->second);
      merged_start = std::min(merged_start, it->first);
      merged_end = std::max(merged_end, it->second);
      it = spans_.erase(it);
    }
    if (pos < end) gap(pos, end);
    spans_[merged_start] = merged_end;
  }

 private:
  std::map<uint64_t, uint64_t> spans_;
};

}  // namespace

ExtentMap ExtentMap::Build(const std::vector<const Layer*>& layers,
                           const std::vector<uint64_t>& clip_blocks) {
  ExtentMap m;
  CoveredSet covered;
  for (uint32_t li = 0; li < layers.size(); ++li) {
    const uint64_t clip = clip_blocks[li];
    layers[li]->ForEachExtent([&](const LayerExtent& x) {
      uint64_t start = x.first_block;
      uint64_t end = std::min(x.first_block + x.block_count, clip);
      if (start >= end) return;
      covered.CoverGaps(start, end, [&](uint64_t s, uint64_t e) {
        MapRun r;
        r.first_block = s;
        r.block_count = e - s;
        if (x.kind == LayerExtent::Kind::kData) {
          r.layer = li;
          r.first_entry = x.first_entry + (s - x.first_block);
        }
        m.runs_.push_back(r);
      });
    });
  }
  std::sort(m.runs_.begin(), m.runs_.end(),
            [](const MapRun& a, const MapRun& b) { return a.first_block < b.first_block; });
  return m;
}

const MapRun* ExtentMap::FindAtOrAfter(uint64_t block) const {
  // First run whose end is > block.
  auto it = std::upper_bound(runs_.begin(), runs_.end(), block,
                             [](uint64_t b, const MapRun& r) { return b < r.end(); });
  return it == runs_.end() ? nullptr : &*it;
}

const MapRun* ExtentMap::Find(uint64_t block) const {
  const MapRun* r = FindAtOrAfter(block);
  return (r && r->first_block <= block) ? r : nullptr;
}

}  // namespace chainfs
