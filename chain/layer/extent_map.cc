#include "chain/layer/extent_map.h"

#include <algorithm>
#include <bit>
#include <iterator>
#include <map>

namespace chainfs {
namespace {

// Disjoint, merged intervals [start, end) of bytes already resolved by a
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

// Appends the runs of layers (newest first) not covered yet to runs.
void AddLayers(const std::vector<const Layer*>& layers, const std::vector<uint64_t>& clip_bytes,
               CoveredSet& covered, std::vector<MapRun>& runs) {
  for (const Layer* layer : layers) layer->WillNeedExtents();
  for (uint32_t li = 0; li < layers.size(); ++li) {
    const uint64_t clip = clip_bytes[li];
    const uint8_t shift = static_cast<uint8_t>(std::countr_zero(layers[li]->block_size()));
    layers[li]->ForEachExtent([&](const LayerExtent& x) {
      const uint64_t end = std::min(x.end(), clip);
      if (x.offset >= end) return;
      covered.CoverGaps(x.offset, end, [&](uint64_t s, uint64_t e) {
        MapRun r;
        r.start = s;
        r.end = e;
        if (x.kind == LayerExtent::Kind::kData) {
          r.layer = li;
          r.entry_shift = shift;
          r.entry_pos = (x.first_entry << shift) + (s - x.offset);
        }
        runs.push_back(r);
      });
    });
  }
}

void SortRuns(std::vector<MapRun>& runs) {
  std::sort(runs.begin(), runs.end(),
            [](const MapRun& a, const MapRun& b) { return a.start < b.start; });
}

}  // namespace

ExtentMap ExtentMap::Build(const std::vector<const Layer*>& layers,
                           const std::vector<uint64_t>& clip_bytes) {
  ExtentMap m;
  CoveredSet covered;
  AddLayers(layers, clip_bytes, covered, m.runs_);
  SortRuns(m.runs_);
  return m;
}

ExtentMap ExtentMap::Overlay(const std::vector<const Layer*>& layers,
                             const std::vector<uint64_t>& clip_bytes, const ExtentMap& base,
                             uint64_t base_clip) {
  ExtentMap m;
  CoveredSet covered;
  AddLayers(layers, clip_bytes, covered, m.runs_);
  const uint32_t shift = static_cast<uint32_t>(layers.size());
  for (const MapRun& b : base.runs_) {
    const uint64_t end = std::min(b.end, base_clip);
    if (b.start >= end) break;  // sorted: the rest lie past the clip too
    covered.CoverGaps(b.start, end, [&](uint64_t s, uint64_t e) {
      MapRun r = b;
      r.start = s;
      r.end = e;
      if (!b.is_zero()) {
        r.layer = b.layer + shift;
        r.entry_pos = b.entry_pos + (s - b.start);
      }
      m.runs_.push_back(r);
    });
  }
  SortRuns(m.runs_);
  return m;
}

ExtentMap ExtentMap::FromRuns(std::vector<MapRun> runs) {
  ExtentMap m;
  m.runs_ = std::move(runs);
  return m;
}

const MapRun* ExtentMap::FindAtOrAfter(uint64_t pos) const {
  // First run whose end is > pos.
  auto it = std::upper_bound(runs_.begin(), runs_.end(), pos,
                             [](uint64_t p, const MapRun& r) { return p < r.end; });
  return it == runs_.end() ? nullptr : &*it;
}

const MapRun* ExtentMap::Find(uint64_t pos) const {
  const MapRun* r = FindAtOrAfter(pos);
  return (r && r->start <= pos) ? r : nullptr;
}

}  // namespace chainfs
