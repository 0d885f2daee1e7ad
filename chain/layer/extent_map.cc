#include "chain/layer/extent_map.h"

#include <algorithm>
#include <bit>
#include <iterator>
#include <queue>

#include "chain/base/huge_map.h"

namespace chainfs {
namespace {

// The sweep's sources, one per layer (newest first, then a base map's
// runs), each a range of one array: runs of that source's own bytes, sorted
// and disjoint, each a template whose entry_pos is that of its start.
struct Sources {
  explicit Sources(size_t expected_runs) : runs(expected_runs * sizeof(MapRun)) {}
  SlotArray<MapRun> runs;
  std::vector<std::pair<size_t, size_t>> ranges;  // [begin, end) in runs, per source
};

// What a source adds to Sources before anything is known of its extents:
// 2,048 runs (64 KiB). Up to 64 layers then start in heap memory, deeper
// views in huge-page slots (SlotArray::kHeapBytes).
constexpr size_t kRunsPerLayerGuess = 2048;

// Appends layer li's extents, clipped to clip, as the next source. A layer
// that broke Layer::ForEachExtent's promise (increasing, disjoint) is put in
// order; where its extents overlap, the earlier one keeps the bytes.
void Collect(const Layer& layer, uint32_t li, uint64_t clip, Sources& out) {
  const size_t begin = out.runs.size();
  const uint8_t shift = static_cast<uint8_t>(std::countr_zero(layer.block_size()));
  bool in_order = true;
  layer.ForEachExtent([&](const LayerExtent& x) {
    const uint64_t end = std::min(x.end(), clip);
    if (x.offset >= end) return;
    if (out.runs.size() > begin && x.offset < out.runs.back().end) in_order = false;
    MapRun r;
    r.start = x.offset;
    r.end = end;
    if (x.kind == LayerExtent::Kind::kData) {
      r.layer = li;
      r.entry_shift = shift;
      r.entry_pos = x.first_entry << shift;
    }
    out.runs.push_back(r);
  });
  if (!in_order) {
    MapRun* const first = out.runs.begin() + begin;
    std::stable_sort(first, out.runs.end(),
                     [](const MapRun& a, const MapRun& b) { return a.start < b.start; });
    size_t kept = begin;
    for (size_t i = begin; i < out.runs.size(); ++i) {
      MapRun r = out.runs[i];
      const uint64_t from = kept == begin ? 0 : out.runs[kept - 1].end;
      if (r.end <= from) continue;
      if (r.start < from) {
        if (!r.is_zero()) r.entry_pos += from - r.start;
        r.start = from;
      }
      out.runs[kept++] = r;
    }
    out.runs.truncate(kept);
  }
  out.ranges.emplace_back(begin, out.runs.size());
}

// Which sources cover the sweep's position: a bitset with a summary word per
// 64 words, so the newest (lowest index) is found in O(sources / 4096).
class ActiveSet {
 public:
  explicit ActiveSet(size_t n) : words_((n + 63) / 64), summary_((words_.size() + 63) / 64) {}
  void Set(size_t i) {
    words_[i / 64] |= uint64_t{1} << (i % 64);
    summary_[i / 4096] |= uint64_t{1} << (i / 64 % 64);
  }
  void Clear(size_t i) {
    uint64_t& w = words_[i / 64];
    w &= ~(uint64_t{1} << (i % 64));
    if (w == 0) summary_[i / 4096] &= ~(uint64_t{1} << (i / 64 % 64));
  }
  bool Has(size_t i) const { return words_[i / 64] >> (i % 64) & 1; }
  // The lowest index set, or -1.
  int64_t First() const {
    for (size_t s = 0; s < summary_.size(); ++s)
      if (summary_[s] != 0) {
        const size_t w = s * 64 + static_cast<size_t>(std::countr_zero(summary_[s]));
        return static_cast<int64_t>(w * 64 + static_cast<size_t>(std::countr_zero(words_[w])));
      }
    return -1;
  }

 private:
  std::vector<uint64_t> words_, summary_;
};

// Every byte covered by some source goes to the lowest-index source covering
// it. One sweep over all sources' boundaries in order (a heap of each
// source's next one): O(runs log sources). A run is a maximal stretch of one
// source run, as when each layer was laid in turn over the spans the newer
// ones cover, so persisted view maps are unchanged; runs come out sorted.
std::vector<MapRun> Sweep(const Sources& in) {
  const size_t n = in.ranges.size();
  SlotArray<MapRun> runs(std::max<size_t>(in.runs.size(), 1) * sizeof(MapRun));  // usually fewer
  using Boundary = std::pair<uint64_t, uint32_t>;  // position, source
  std::priority_queue<Boundary, std::vector<Boundary>, std::greater<Boundary>> next;
  std::vector<size_t> at(n);  // each source's current run, an index into in.runs
  for (uint32_t i = 0; i < n; ++i) {
    at[i] = in.ranges[i].first;
    if (at[i] < in.ranges[i].second) next.push({in.runs[at[i]].start, i});
  }
  ActiveSet active(n);
  uint64_t pos = 0;
  size_t last = SIZE_MAX;  // the source run runs.back() is a piece of
  while (!next.empty()) {
    const uint64_t p = next.top().first;
    if (const int64_t w = active.First(); w >= 0 && p > pos) {
      const size_t k = at[static_cast<size_t>(w)];
      const MapRun& from = in.runs[k];
      if (last == k && runs.back().end == pos) {
        runs.back().end = p;
      } else {
        MapRun r = from;
        r.start = pos;
        r.end = p;
        if (!r.is_zero()) r.entry_pos = from.entry_pos + (pos - from.start);
        runs.push_back(r);
        last = k;
      }
    }
    while (!next.empty() && next.top().first == p) {
      const uint32_t i = next.top().second;
      next.pop();
      if (!active.Has(i)) {  // a run of source i starts
        active.Set(i);
        next.push({in.runs[at[i]].end, i});
      } else {  // it ends
        active.Clear(i);
        if (++at[i] < in.ranges[i].second) next.push({in.runs[at[i]].start, i});
      }
    }
    pos = p;
  }
  return std::vector<MapRun>(runs.begin(), runs.end());
}

void CollectLayers(const std::vector<const Layer*>& layers,
                   const std::vector<uint64_t>& clip_bytes, Sources& out) {
  for (const Layer* layer : layers) layer->WillNeedExtents();
  for (uint32_t li = 0; li < layers.size(); ++li) Collect(*layers[li], li, clip_bytes[li], out);
}

}  // namespace

ExtentMap ExtentMap::Build(const std::vector<const Layer*>& layers,
                           const std::vector<uint64_t>& clip_bytes) {
  Sources sources(layers.size() * kRunsPerLayerGuess);
  CollectLayers(layers, clip_bytes, sources);
  ExtentMap m;
  m.runs_ = Sweep(sources);
  return m;
}

ExtentMap ExtentMap::Overlay(const std::vector<const Layer*>& layers,
                             const std::vector<uint64_t>& clip_bytes, const ExtentMap& base,
                             uint64_t base_clip) {
  Sources sources(layers.size() * kRunsPerLayerGuess + base.runs_.size());
  CollectLayers(layers, clip_bytes, sources);
  const uint32_t shift = static_cast<uint32_t>(layers.size());
  const size_t begin = sources.runs.size();
  for (const MapRun& b : base.runs_) {
    const uint64_t end = std::min(b.end, base_clip);
    if (b.start >= end) break;  // sorted: the rest lie past the clip too
    MapRun r = b;
    r.end = end;
    if (!b.is_zero()) r.layer = b.layer + shift;
    sources.runs.push_back(r);
  }
  sources.ranges.emplace_back(begin, sources.runs.size());
  ExtentMap m;
  m.runs_ = Sweep(sources);
  return m;
}

ExtentMap ExtentMap::FromRuns(std::vector<MapRun> runs) {
  ExtentMap m;
  m.runs_ = std::move(runs);
  return m;
}

void ExtentMap::RenumberLayers(const std::vector<uint32_t>& to) {
  for (MapRun& r : runs_)
    if (!r.is_zero()) r.layer = to[r.layer];
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
