#include "chain/layer/extent_map.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>

namespace chainfs {
namespace {

// A layer described by a string, one character per block:
// 'D' data, 'Z' zero run, '.' nothing.
class FakeLayer : public Layer {
 public:
  explicit FakeLayer(std::string blocks) : blocks_(std::move(blocks)), id_(NextLayerId()) {}
  uint64_t id() const override { return id_; }
  uint32_t block_size() const override { return 4096; }
  uint64_t virtual_size() const override { return blocks_.size() * 4096; }
  const std::string& location() const override { return blocks_; }
  void ForEachExtent(const std::function<void(const LayerExtent&)>& fn) const override {
    uint64_t entry = 0;
    for (size_t i = 0; i < blocks_.size();) {
      size_t j = i;
      while (j < blocks_.size() && blocks_[j] == blocks_[i]) ++j;
      if (blocks_[i] == 'D') {
        fn({i, j - i, LayerExtent::Kind::kData, entry});
        entry += j - i;
      } else if (blocks_[i] == 'Z') {
        fn({i, j - i, LayerExtent::Kind::kZero, 0});
      }
      i = j;
    }
  }
  Status ReadBlock(uint64_t, char*) const override { return Status::Ok(); }
  ContentHash BlockHash(uint64_t) const override { return {}; }
  uint64_t StoredLength(uint64_t) const override { return 0; }

 private:
  std::string blocks_;
  uint64_t id_;
};

// Renders the map as one character per block: layer digit, 'Z', or '.'.
std::string Render(const ExtentMap& m, size_t n) {
  std::string s(n, '.');
  for (const MapRun& r : m.runs())
    for (uint64_t b = r.first_block; b < r.end() && b < n; ++b)
      s[b] = r.is_zero() ? 'Z' : static_cast<char>('0' + r.layer);
  return s;
}

ExtentMap Build(const std::vector<std::string>& layers, std::vector<uint64_t> clips = {}) {
  static std::vector<std::unique_ptr<FakeLayer>> keep;
  std::vector<const Layer*> raw;
  for (const auto& l : layers) {
    keep.push_back(std::make_unique<FakeLayer>(l));
    raw.push_back(keep.back().get());
  }
  if (clips.empty()) clips.assign(layers.size(), UINT64_MAX);
  return ExtentMap::Build(raw, clips);
}

TEST(ExtentMap, NewestLayerWins) {
  // The picture from the header comment.
  ExtentMap m = Build({"..DD...Z.", "DD.DDDD..", "DDDDDDDDD"});
  EXPECT_EQ(Render(m, 9), "1100111Z2");
}

TEST(ExtentMap, EntriesFollowTheLayerIndex) {
  ExtentMap m = Build({".D.", "DDD"});
  const MapRun* r = m.Find(2);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->layer, 1u);
  EXPECT_EQ(r->first_entry + (2 - r->first_block), 2u);
  r = m.Find(1);
  EXPECT_EQ(r->layer, 0u);
  EXPECT_EQ(r->first_entry, 0u);
}

TEST(ExtentMap, HolesAreNotRuns) {
  ExtentMap m = Build({"D...D"});
  EXPECT_EQ(m.Find(2), nullptr);
  const MapRun* next = m.FindAtOrAfter(2);
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(next->first_block, 4u);
  EXPECT_EQ(m.FindAtOrAfter(5), nullptr);
}

TEST(ExtentMap, ClipHidesOlderBlocksPastAShrink) {
  // Layer 1 was shrunk to 2 blocks; layer 2 (older, 6 blocks) must not show
  // through past block 2 even though layer 0 grew back to 6 blocks.
  ExtentMap m = Build({"D.....", "..", "DDDDDD"}, {6, 2, 2});
  EXPECT_EQ(Render(m, 6), "02....");
}

TEST(ExtentMap, RandomAgainstBruteForce) {
  std::mt19937 rng(5);
  for (int iter = 0; iter < 200; ++iter) {
    size_t n = 1 + rng() % 40;
    int depth = 1 + static_cast<int>(rng() % 6);
    std::vector<std::string> layers;
    for (int l = 0; l < depth; ++l) {
      std::string s(n, '.');
      for (auto& c : s) c = "DDZ..."[rng() % 6];
      layers.push_back(s);
    }
    std::string want(n, '.');
    for (size_t b = 0; b < n; ++b)
      for (int l = 0; l < depth; ++l)
        if (layers[l][b] != '.') {
          want[b] = layers[l][b] == 'Z' ? 'Z' : static_cast<char>('0' + l);
          break;
        }
    EXPECT_EQ(Render(Build(layers), n), want) << "iteration " << iter;
  }
}

}  // namespace
}  // namespace chainfs
