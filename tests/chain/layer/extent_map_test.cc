#include "chain/layer/extent_map.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>

namespace chainfs {
namespace {

constexpr uint64_t kSector = 512;

// A layer described by a string, one character per unit of `unit` bytes:
// 'D' data, 'Z' zero run, '.' nothing. Entries are of block_size bytes and
// start at each data extent's offset; the next extent's entries follow on
// after a gap of one entry. The last extent may end at virtual_size, which
// can cut the last unit.
class FakeLayer : public Layer {
 public:
  FakeLayer(std::string units, uint64_t unit = 4096, uint32_t block_size = 4096,
            uint64_t virtual_size = UINT64_MAX)
      : units_(std::move(units)),
        unit_(unit),
        block_size_(block_size),
        size_(std::min(virtual_size, units_.size() * unit)),
        id_(NextLayerId()) {
    uint64_t entry = 3;
    for (size_t i = 0; i < units_.size();) {
      size_t j = i;
      while (j < units_.size() && units_[j] == units_[i]) ++j;
      const uint64_t off = i * unit_, end = std::min(j * unit_, size_);
      if (off < end && units_[i] != '.') {
        const bool data = units_[i] == 'D';
        extents_.push_back(
            {off, end - off,
             data ? LayerExtent::Kind::kData : LayerExtent::Kind::kZero,
             data ? entry : 0});
        if (data) entry += (end - off + block_size_ - 1) / block_size_ + 1;
      }
      i = j;
    }
  }
  uint64_t id() const override { return id_; }
  uint32_t block_size() const override { return block_size_; }
  uint64_t virtual_size() const override { return size_; }
  const std::string& location() const override { return units_; }
  void ForEachExtent(const std::function<void(const LayerExtent&)>& fn) const override {
    for (const LayerExtent& x : extents_) fn(x);
  }
  Status ReadBlock(uint64_t, char*) const override { return Status::Ok(); }
  std::optional<ContentHash> BlockHash(uint64_t) const override { return std::nullopt; }
  uint64_t StoredLength(uint64_t) const override { return 0; }
  const std::vector<LayerExtent>& extents() const { return extents_; }

 private:
  std::string units_;
  uint64_t unit_;
  uint32_t block_size_;
  uint64_t size_;
  uint64_t id_;
  std::vector<LayerExtent> extents_;
};

// Renders the map as one character per unit (sampled at the unit's first
// byte): layer digit, 'Z', or '.'.
std::string Render(const ExtentMap& m, size_t n, uint64_t unit = 4096) {
  std::string s(n, '.');
  for (size_t i = 0; i < n; ++i) {
    const MapRun* r = m.Find(i * unit);
    if (r) s[i] = r->is_zero() ? 'Z' : static_cast<char>('0' + r->layer);
  }
  return s;
}

std::vector<std::unique_ptr<FakeLayer>>& Keep() {
  static std::vector<std::unique_ptr<FakeLayer>> keep;
  return keep;
}

ExtentMap BuildFrom(const std::vector<const FakeLayer*>& layers, std::vector<uint64_t> clips) {
  std::vector<const Layer*> raw(layers.begin(), layers.end());
  if (clips.empty()) clips.assign(layers.size(), UINT64_MAX);
  return ExtentMap::Build(raw, clips);
}

ExtentMap Build(const std::vector<std::string>& layers, std::vector<uint64_t> clips = {}) {
  std::vector<const FakeLayer*> raw;
  for (const auto& l : layers) {
    Keep().push_back(std::make_unique<FakeLayer>(l));
    raw.push_back(Keep().back().get());
  }
  for (uint64_t& c : clips) c *= 4096;
  return BuildFrom(raw, clips);
}

TEST(ExtentMap, NewestLayerWins) {
  // The picture from the header comment.
  ExtentMap m = Build({"..DD...Z.", "DD.DDDD..", "DDDDDDDDD"});
  EXPECT_EQ(Render(m, 9), "1100111Z2");
}

TEST(ExtentMap, EntriesFollowTheLayerIndex) {
  ExtentMap m = Build({".D.", "DDD"});
  const MapRun* r = m.Find(2 * 4096 + 100);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->layer, 1u);
  EXPECT_EQ(r->EntryAt(2 * 4096 + 100).entry, 3u + 2);
  EXPECT_EQ(r->EntryAt(2 * 4096 + 100).offset, 100u);
  r = m.Find(4096);
  EXPECT_EQ(r->layer, 0u);
  EXPECT_EQ(r->EntryAt(4096).entry, 3u);
  EXPECT_EQ(r->EntryAt(4096).offset, 0u);
}

TEST(ExtentMap, HolesAreNotRuns) {
  ExtentMap m = Build({"D...D"});
  EXPECT_EQ(m.Find(2 * 4096), nullptr);
  const MapRun* next = m.FindAtOrAfter(2 * 4096);
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(next->start, 4u * 4096);
  EXPECT_EQ(m.FindAtOrAfter(5 * 4096), nullptr);
}

TEST(ExtentMap, ClipHidesOlderBlocksPastAShrink) {
  // Layer 1 was shrunk to 2 blocks; layer 2 (older, 6 blocks) must not show
  // through past block 2 even though layer 0 grew back to 6 blocks.
  ExtentMap m = Build({"D.....", "..", "DDDDDD"}, {6, 2, 2});
  EXPECT_EQ(Render(m, 6), "02....");
}

TEST(ExtentMap, ClipCutsInsideAnEntry) {
  // A 64 KiB-entry layer clipped at 5 sectors: bytes of its first entry past
  // the clip are a hole, and a newer 512-byte layer sits inside the entry.
  FakeLayer newer(".D", kSector, 512);
  FakeLayer older("D", 65536, 65536);
  ExtentMap m = BuildFrom({&newer, &older}, {UINT64_MAX, 5 * kSector});
  ASSERT_EQ(m.runs().size(), 3u);
  EXPECT_EQ(m.runs()[0].start, 0u);
  EXPECT_EQ(m.runs()[0].end, kSector);
  EXPECT_EQ(m.runs()[1].layer, 0u);
  EXPECT_EQ(m.runs()[2].start, 2 * kSector);
  EXPECT_EQ(m.runs()[2].end, 5 * kSector);
  EXPECT_EQ(m.runs()[2].EntryAt(4 * kSector + 7).entry, 3u);
  EXPECT_EQ(m.runs()[2].EntryAt(4 * kSector + 7).offset, 4 * kSector + 7);
  EXPECT_EQ(m.Find(5 * kSector), nullptr);
}

// Brute force in sectors: layers of different units (extent granularity),
// block sizes and virtual sizes; every sector resolves to the newest layer
// holding it below its clip, with the entry and offset that layer gives it.
TEST(ExtentMap, RandomMixedGranularityAgainstBruteForce) {
  std::mt19937 rng(5);
  const uint64_t units[] = {512, 4096, 65536};
  const uint32_t block_sizes[] = {512, 4096, 65536, 2u << 20};
  for (int iter = 0; iter < 300; ++iter) {
    const int depth = 1 + static_cast<int>(rng() % 6);
    std::vector<const FakeLayer*> layers;
    std::vector<uint64_t> clips;
    uint64_t clip = UINT64_MAX;
    for (int l = 0; l < depth; ++l) {
      const uint64_t unit = units[rng() % 3];
      const uint64_t n = 1 + rng() % (unit == 65536 ? 6 : 40);
      std::string s(n, '.');
      for (auto& c : s) c = "DDZ..."[rng() % 6];
      const uint64_t size = rng() % 3 == 0
                                ? n * unit - kSector * (rng() % 3) - rng() % 2
                                : n * unit;
      Keep().push_back(
          std::make_unique<FakeLayer>(s, unit, block_sizes[rng() % 4], size));
      layers.push_back(Keep().back().get());
      clip = std::min(clip, layers.back()->virtual_size());
      clips.push_back(clip);
    }
    const ExtentMap m = BuildFrom(layers, clips);
    const uint64_t sectors = 6 * 65536 / kSector + 1;
    for (uint64_t s = 0; s < sectors; ++s) {
      // Probe the first and the last byte of each sector.
      for (uint64_t pos : {s * kSector, s * kSector + kSector - 1}) {
        const LayerExtent* want = nullptr;
        uint32_t want_layer = MapRun::kZeroLayer;
        for (int l = 0; l < depth && !want && pos < clips[l]; ++l)
          for (const LayerExtent& x : layers[l]->extents())
            if (x.offset <= pos && pos < x.end()) {
              want = &x;
              want_layer = static_cast<uint32_t>(l);
            }
        const MapRun* r = m.Find(pos);
        const std::string where = "iteration " + std::to_string(iter) +
                                  " byte " + std::to_string(pos);
        if (!want) {
          EXPECT_EQ(r, nullptr) << where;
          continue;
        }
        ASSERT_NE(r, nullptr) << where;
        if (want->kind == LayerExtent::Kind::kZero) {
          EXPECT_TRUE(r->is_zero()) << where;
          continue;
        }
        ASSERT_EQ(r->layer, want_layer) << where;
        const uint32_t bs = layers[want_layer]->block_size();
        EXPECT_EQ(r->EntryAt(pos).entry, want->first_entry + (pos - want->offset) / bs) << where;
        EXPECT_EQ(r->EntryAt(pos).offset, (pos - want->offset) % bs) << where;
      }
    }
    // Runs are sorted, disjoint and non-empty.
    for (size_t i = 0; i < m.runs().size(); ++i) {
      EXPECT_LT(m.runs()[i].start, m.runs()[i].end);
      if (i > 0) {
        EXPECT_LE(m.runs()[i - 1].end, m.runs()[i].start);
      }
    }
  }
}

// Issue 14: a view composed over a stored map of its older layers
// (ExtentMap::Overlay, what a view map's reader does) is the view composed
// from all of its layers, run for run, at every split point of random chains
// of mixed block sizes and virtual sizes (grown and shrunk disks).
TEST(ExtentMap, Issue14OverlayOnAnOlderMapIsTheWholeBuild) {
  std::mt19937 rng(14);
  const uint64_t units[] = {512, 4096, 65536};
  const uint32_t block_sizes[] = {512, 4096, 65536};
  for (int iter = 0; iter < 300; ++iter) {
    const int depth = 2 + static_cast<int>(rng() % 8);
    std::vector<const FakeLayer*> layers;
    for (int l = 0; l < depth; ++l) {
      const uint64_t unit = units[rng() % 3];
      const uint64_t n = 1 + rng() % (unit == 65536 ? 6 : 40);
      std::string s(n, '.');
      for (auto& c : s) c = "DDZ..."[rng() % 6];
      const uint64_t size = rng() % 3 == 0 ? n * unit - kSector * (rng() % 3) - rng() % 2
                                           : n * unit;
      Keep().push_back(std::make_unique<FakeLayer>(s, unit, block_sizes[rng() % 3], size));
      layers.push_back(Keep().back().get());
    }
    auto clips_of = [&](size_t from, size_t to) {
      std::vector<uint64_t> c;
      uint64_t clip = UINT64_MAX;
      for (size_t l = from; l < to; ++l) c.push_back(clip = std::min(clip, layers[l]->virtual_size()));
      return c;
    };
    auto raw = [&](size_t from, size_t to) {
      return std::vector<const Layer*>(layers.begin() + from, layers.begin() + to);
    };
    const size_t n = layers.size();
    const ExtentMap whole = ExtentMap::Build(raw(0, n), clips_of(0, n));
    for (size_t k = 1; k < n; ++k) {
      const ExtentMap older = ExtentMap::Build(raw(k, n), clips_of(k, n));
      const std::vector<uint64_t> above = clips_of(0, k);
      const ExtentMap over = ExtentMap::Overlay(raw(0, k), above, older, above.back());
      const std::string where = "iteration " + std::to_string(iter) + " split " + std::to_string(k);
      ASSERT_EQ(over.runs().size(), whole.runs().size()) << where;
      for (size_t i = 0; i < whole.runs().size(); ++i) {
        const MapRun &a = over.runs()[i], &b = whole.runs()[i];
        EXPECT_EQ(a.start, b.start) << where << " run " << i;
        EXPECT_EQ(a.end, b.end) << where << " run " << i;
        EXPECT_EQ(a.layer, b.layer) << where << " run " << i;
        EXPECT_EQ(a.entry_pos, b.entry_pos) << where << " run " << i;
        EXPECT_EQ(a.entry_shift, b.entry_shift) << where << " run " << i;
      }
    }
  }
}

TEST(ExtentMap, EntriesOfARange) {
  FakeLayer l("D", 65536, 4096);
  ExtentMap m = BuildFrom({&l}, {});
  const MapRun& r = m.runs()[0];
  EXPECT_EQ(r.EntriesOf(100, 4096), std::make_pair(uint64_t{3}, uint64_t{3}));
  EXPECT_EQ(r.EntriesOf(4095, 4097), std::make_pair(uint64_t{3}, uint64_t{4}));
  EXPECT_EQ(r.EntriesOf(0, 65536), std::make_pair(uint64_t{3}, uint64_t{18}));
}

// Thousands of layers (the sweep's set of covering layers spans several
// summary words past 4,096), each holding a few random units of a small
// disk over a full base: every unit resolves to the newest layer holding it.
TEST(ExtentMap, ThousandsOfLayersAgainstBruteForce) {
  std::mt19937 rng(4242);
  constexpr size_t kLayers = 5000, kUnits = 96;
  std::vector<std::string> units(kLayers, std::string(kUnits, '.'));
  for (size_t l = 0; l + 1 < kLayers; ++l)
    for (char& c : units[l])
      if (rng() % 3000 == 0) c = rng() % 4 == 0 ? 'Z' : 'D';
  units.back().assign(kUnits, 'D');
  std::vector<const FakeLayer*> layers;
  for (const std::string& u : units) {
    Keep().push_back(std::make_unique<FakeLayer>(u));
    layers.push_back(Keep().back().get());
  }
  const ExtentMap m = BuildFrom(layers, {});
  size_t deep = 0;
  for (size_t u = 0; u < kUnits; ++u) {
    size_t l = 0;
    while (units[l][u] == '.') ++l;
    deep += l > 4096;
    const MapRun* r = m.Find(u * 4096 + 100);
    ASSERT_NE(r, nullptr) << "unit " << u;
    if (units[l][u] == 'Z') {
      EXPECT_TRUE(r->is_zero()) << "unit " << u;
      continue;
    }
    ASSERT_EQ(r->layer, l) << "unit " << u;
    const LayerExtent* want = nullptr;
    for (const LayerExtent& x : layers[l]->extents())
      if (x.offset <= u * 4096 && u * 4096 < x.end()) want = &x;
    ASSERT_NE(want, nullptr);
    EXPECT_EQ(r->EntryAt(u * 4096 + 100).entry, want->first_entry + (u * 4096 - want->offset) / 4096);
  }
  EXPECT_GT(deep, 0u) << "no unit resolved past layer 4096: the test lost its point";
  for (size_t i = 1; i < m.runs().size(); ++i) EXPECT_LE(m.runs()[i - 1].end, m.runs()[i].start);
}

// A layer whose extents come out of order (Layer::ForEachExtent promises
// increasing, disjoint ones) still gives the map of its extents in order.
class ReversedLayer : public FakeLayer {
 public:
  using FakeLayer::FakeLayer;
  void ForEachExtent(const std::function<void(const LayerExtent&)>& fn) const override {
    for (auto it = extents().rbegin(); it != extents().rend(); ++it) fn(*it);
  }
};

TEST(ExtentMap, ExtentsOutOfOrderAreSortedFirst) {
  FakeLayer top("..DD.Z..D.");
  FakeLayer base("DDDDZZDD.DDD");
  ReversedLayer reversed_top("..DD.Z..D.");
  const ExtentMap want = BuildFrom({&top, &base}, {});
  const ExtentMap got = BuildFrom({&reversed_top, &base}, {});
  EXPECT_EQ(Render(got, 12), "1100ZZ110111");
  ASSERT_EQ(got.runs().size(), want.runs().size());
  for (size_t i = 0; i < want.runs().size(); ++i) {
    EXPECT_EQ(got.runs()[i].start, want.runs()[i].start);
    EXPECT_EQ(got.runs()[i].end, want.runs()[i].end);
    EXPECT_EQ(got.runs()[i].layer, want.runs()[i].layer);
    EXPECT_EQ(got.runs()[i].entry_pos, want.runs()[i].entry_pos);
  }
}

}  // namespace
}  // namespace chainfs
