// Property test: views over layers of different block sizes and extent
// granularities (the way foreign formats look) against a byte-array model.
//
// A story writes, zeroes, shrinks and grows a disk (a plain byte array); each
// checkpoint becomes an ExtentLayer of a random block size (512 B, 4 KiB,
// 64 KiB, 2 MiB) whose extents, 512-byte aligned and often not aligned to its
// block size, are exactly what changed. Every view (checkpoint k over k-1 ..
// 0) must read the model's bytes of that time, through DirectBlockReader and
// through the BlockCache; SeekData/SeekHole must follow the data extents;
// KnownBlockHash and WholeEntryOf must give only what reading gives.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cache/block_cache.h"
#include "chain/layer/view.h"
#include "tests/cache/fake_layer.h"

namespace chainfs {
namespace {

using testing::ExtentLayer;

constexpr uint64_t kSector = 512;
constexpr uint32_t kBlockSizes[] = {512, 4096, 65536, 2u << 20};

struct Checkpoint {
  std::shared_ptr<ExtentLayer> layer;
  std::string bytes;  // the disk at this checkpoint
  std::string kind;   // per byte: 'd' data extent, 'z' zero extent, 'h' hole
};

class Story {
 public:
  explicit Story(uint64_t seed) : rng_(seed) {}

  const std::vector<Checkpoint>& checkpoints() const { return cps_; }

  void Step() {
    const uint32_t bs = kBlockSizes[Uniform(0, 3)];
    const uint64_t size = cps_.empty() || Uniform(0, 2) == 0 ? RandomSize() : bytes_.size();
    // A shrunk range that grows back reads zeros (a hole: no layer shows it).
    bytes_.resize(size, '\0');
    kind_.resize(size, 'h');
    auto layer = std::make_shared<ExtentLayer>(bs, size, Uniform(0, 3) != 0);
    uint64_t pos = 0;
    const int extents = cps_.empty() ? 6 : Uniform(1, 5);
    for (int i = 0; i < extents; ++i) {
      uint64_t off = pos + kSector * Uniform(0, static_cast<int>(size / kSector / 4));
      if (Uniform(0, 1) == 0) off = (off + bs - 1) / bs * bs;  // aligned to its entries
      if (off >= size) break;
      uint64_t len = RandomLength(bs);
      len = std::min(len, size - off);
      if (Uniform(0, 2) == 0) {
        layer->AddZero(off, len);
        std::fill_n(bytes_.begin() + static_cast<long>(off), len, '\0');
        std::fill_n(kind_.begin() + static_cast<long>(off), len, 'z');
      } else {
        const uint64_t first = layer->AddData(off, len, Uniform(0, 2));
        std::string entry(bs, '\0');
        for (uint64_t done = 0; done < len; done += bs) {
          layer->Fill(first + done / bs, entry.data());
          std::copy_n(entry.begin(), std::min<uint64_t>(bs, len - done),
                      bytes_.begin() + static_cast<long>(off + done));
        }
        std::fill_n(kind_.begin() + static_cast<long>(off), len, 'd');
      }
      pos = (off + len + kSector - 1) / kSector * kSector;
    }
    cps_.push_back({layer, bytes_, kind_});
  }

  // The view of checkpoint k: layers k, k-1, ..., 0.
  std::shared_ptr<const View> ViewOf(size_t k, BlockReader* reader) const {
    std::vector<View::LayerRef> refs;
    for (size_t i = k + 1; i-- > 0;) refs.push_back({cps_[i].layer, "c" + std::to_string(i)});
    auto v = View::Create(std::move(refs), "vm/c" + std::to_string(k) + "/vda", reader);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v.ok() ? v.value() : nullptr;
  }

  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

 private:
  uint64_t RandomSize() {
    uint64_t size = kSector * Uniform(1, 8192);  // up to 4 MiB
    if (Uniform(0, 3) == 0) size += Uniform(1, 511);  // not a whole sector
    return size;
  }
  uint64_t RandomLength(uint32_t bs) {
    switch (Uniform(0, 2)) {
      case 0: return kSector * Uniform(1, 16);
      case 1: return static_cast<uint64_t>(bs) * Uniform(1, 3);
      default: return kSector * Uniform(1, 2048);
    }
  }

  std::mt19937_64 rng_;
  std::string bytes_, kind_;
  std::vector<Checkpoint> cps_;
};

// What the model reads at [off, off + n): past the end, zeros.
std::string ModelRead(const std::string& bytes, uint64_t off, uint64_t n) {
  std::string out(n, '\0');
  if (off < bytes.size())
    std::copy_n(bytes.begin() + static_cast<long>(off), std::min<uint64_t>(n, bytes.size() - off),
                out.begin());
  return out;
}

struct Tally {
  uint64_t data_hashes = 0, zero_hashes = 0, whole_entries = 0;
};

void CheckReads(const View& v, const Checkpoint& cp, Story& story, const std::string& where) {
  const uint64_t size = cp.bytes.size();
  ASSERT_EQ(v.size(), size) << where;
  std::string got(size + 777, 'x');
  ASSERT_TRUE(v.Read(0, got.size(), got.data()).ok()) << where;
  ASSERT_TRUE(got == ModelRead(cp.bytes, 0, got.size())) << where << ": whole view";
  std::vector<ReadPiece> pieces;
  ASSERT_TRUE(v.ReadPieces(0, size, &pieces).ok()) << where;
  std::string joined;
  for (const ReadPiece& p : pieces)
    joined += p.data ? std::string(p.data, p.size) : std::string(p.size, '\0');
  ASSERT_TRUE(joined == cp.bytes) << where << ": ReadPieces of the whole view";
  for (int i = 0; i < 40; ++i) {
    const uint64_t off = static_cast<uint64_t>(story.Uniform(0, static_cast<int>(size + 600)));
    const uint64_t n = static_cast<uint64_t>(story.Uniform(1, 600000));
    std::string part(n, 'x');
    ASSERT_TRUE(v.Read(off, n, part.data()).ok()) << where;
    ASSERT_TRUE(part == ModelRead(cp.bytes, off, n))
        << where << ": read of " << n << " bytes at " << off;
    pieces.clear();
    ASSERT_TRUE(v.ReadPieces(off, n, &pieces).ok()) << where;
    uint64_t at = off;
    for (const ReadPiece& p : pieces) {
      const std::string want = ModelRead(cp.bytes, at, p.size);
      ASSERT_TRUE(p.data ? std::string(p.data, p.size) == want
                         : want == std::string(p.size, '\0'))
          << where << ": piece at " << at;
      at += p.size;
    }
    ASSERT_EQ(at, off + n) << where;
  }
}

void CheckSeeks(const View& v, const Checkpoint& cp, Story& story, const std::string& where) {
  const uint64_t size = cp.bytes.size();
  std::vector<uint64_t> probes;
  for (int i = 0; i < 20; ++i) probes.push_back(story.Uniform(0, static_cast<int>(size + 10)));
  for (uint64_t k = 1; k < size; ++k)
    if (cp.kind[k] != cp.kind[k - 1]) probes.insert(probes.end(), {k - 1, k, k + 1});
  for (uint64_t off : probes) {
    const uint64_t data = off >= size ? size : std::min<uint64_t>(cp.kind.find('d', off), size);
    const uint64_t hole =
        off >= size ? size : std::min<uint64_t>(cp.kind.find_first_not_of('d', off), size);
    EXPECT_EQ(v.SeekData(off), data) << where << ": SeekData(" << off << ")";
    EXPECT_EQ(v.SeekHole(off), hole) << where << ": SeekHole(" << off << ")";
  }
}

void CheckBlockHashes(const View& v, const Checkpoint& cp, Tally* tally, const std::string& where) {
  const uint32_t bs = v.block_size();
  const uint64_t blocks = (cp.bytes.size() + bs - 1) / bs;
  for (uint64_t b = 0; b < blocks; ++b) {
    const std::string want = ModelRead(cp.bytes, b * bs, bs);
    if (const std::optional<ContentHash> h = v.KnownBlockHash(b)) {
      EXPECT_TRUE(*h == HashContent(want.data(), bs)) << where << ": hash of block " << b;
      ++(want == std::string(bs, '\0') ? tally->zero_hashes : tally->data_hashes);
    }
    if (const std::optional<View::WholeEntry> w = v.WholeEntryOf(b)) {
      std::string entry(bs, 'x');
      static_cast<const ExtentLayer&>(*v.layers()[w->layer].layer).Fill(w->entry, entry.data());
      EXPECT_TRUE(entry == want) << where << ": whole entry of block " << b;
      ++tally->whole_entries;
    }
  }
}

// WillNeed hints at least the entries a read then loads, and StoredBytes is
// the stored length of exactly the entries a whole read loads.
void CheckHintsAndStoredBytes(const Story& story, size_t k, Story& rng, const std::string& where) {
  auto v = story.ViewOf(k, nullptr);
  ASSERT_NE(v, nullptr);
  const auto& cps = story.checkpoints();
  const uint64_t size = cps[k].bytes.size();
  for (int i = 0; i < 10; ++i) {
    for (size_t j = 0; j <= k; ++j) cps[j].layer->ClearRecords();
    const uint64_t off = static_cast<uint64_t>(rng.Uniform(0, static_cast<int>(size)));
    const uint64_t n = static_cast<uint64_t>(rng.Uniform(1, 300000));
    v->WillNeed(off, n);
    std::string buf(n, '\0');
    ASSERT_TRUE(v->Read(off, n, buf.data()).ok());
    for (size_t j = 0; j <= k; ++j) {
      const std::set<uint64_t> hinted = cps[j].layer->will_need();
      for (uint64_t e : cps[j].layer->read())
        EXPECT_TRUE(hinted.count(e)) << where << ": entry " << e << " of layer " << j
                                     << " read but not hinted at " << off << "+" << n;
    }
  }
  for (size_t j = 0; j <= k; ++j) cps[j].layer->ClearRecords();
  std::string all(size, '\0');
  ASSERT_TRUE(v->Read(0, size, all.data()).ok());
  uint64_t stored = 0;
  for (size_t j = 0; j <= k; ++j)
    for (uint64_t e : cps[j].layer->read()) stored += e + 1;  // ExtentLayer::StoredLength
  EXPECT_EQ(v->StoredBytes(), stored) << where;
}

void RunStories(BlockReader* reader, int stories) {
  Tally tally;
  for (int seed = 0; seed < stories; ++seed) {
    Story story(seed);
    const int steps = story.Uniform(1, 5);
    for (int s = 0; s < steps; ++s) story.Step();
    for (size_t k = 0; k < story.checkpoints().size(); ++k) {
      const std::string where =
          "story " + std::to_string(seed) + " checkpoint " + std::to_string(k);
      auto v = story.ViewOf(k, reader);
      ASSERT_NE(v, nullptr);
      const Checkpoint& cp = story.checkpoints()[k];
      CheckReads(*v, cp, story, where);
      CheckSeeks(*v, cp, story, where);
      CheckBlockHashes(*v, cp, &tally, where);
      if (reader == nullptr) CheckHintsAndStoredBytes(story, k, story, where);
    }
  }
  // The hashes are not vacuous: the map knows some data and zero blocks.
  EXPECT_GT(tally.data_hashes, 0u);
  EXPECT_GT(tally.zero_hashes, 0u);
  EXPECT_GT(tally.whole_entries, tally.data_hashes);  // some layers keep no hash
}

TEST(ViewMixedGranularity, DirectReadsMatchTheModel) { RunStories(nullptr, 30); }

TEST(ViewMixedGranularity, CachedReadsMatchTheModel) {
  BlockCacheOptions o;
  o.capacity_bytes = 12ull << 20;  // a few 2 MiB blocks: evictions happen
  o.shards = 1;
  BlockCache cache(o);
  RunStories(&cache, 25);
  EXPECT_GT(cache.Stats().hits, 0u);
  EXPECT_GT(cache.Stats().evictions, 0u);
}

// One 64 KiB view block over a 4 KiB layer: no single entry gives it, so
// its hash is unknown even when every entry knows its own.
TEST(ViewMixedGranularity, NoHashFromSmallerEntries) {
  auto older = std::make_shared<ExtentLayer>(4096, 1 << 20);
  older->AddData(0, 1 << 20);
  auto newer = std::make_shared<ExtentLayer>(65536, 1 << 20);
  newer->AddData(65536, 65536);
  auto v = View::Create({{newer, "c2"}, {older, "c1"}}, "vm/c2/vda");
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v.value()->KnownBlockHash(0).has_value());
  EXPECT_TRUE(v.value()->KnownBlockHash(1).has_value());
  EXPECT_TRUE(v.value()->KnownBlockHash(5 << 20).has_value());  // past the end: zeros
}

// A 64 KiB entry whose extent starts one sector past the block start does
// not line up with the view's blocks: no hash, but reads are right.
TEST(ViewMixedGranularity, UnalignedEntriesGiveNoHash) {
  auto layer = std::make_shared<ExtentLayer>(65536, 1 << 20);
  layer->AddData(512, 65536);
  auto v = View::Create({{layer, "c1"}}, "vm/c1/vda");
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v.value()->KnownBlockHash(0).has_value());
  EXPECT_FALSE(v.value()->KnownBlockHash(1).has_value());
  EXPECT_FALSE(v.value()->WholeEntryOf(0).has_value());
}

// A disk grown past an old end inside a block: the old layer's last entry
// ends at its virtual size, but a newer layer stores the bytes after it, so
// the entry alone does not give the block.
TEST(ViewMixedGranularity, GrownBlockWithNewerDataAfterTheOldEnd) {
  auto older = std::make_shared<ExtentLayer>(65536, 65536 + 4096);
  older->AddData(0, 65536 + 4096);
  auto newer = std::make_shared<ExtentLayer>(65536, 4 * 65536);
  newer->AddData(65536 + 4096, 4096);
  auto v = View::Create({{newer, "c2"}, {older, "c1"}}, "vm/c2/vda");
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v.value()->WholeEntryOf(1).has_value());
  EXPECT_FALSE(v.value()->KnownBlockHash(1).has_value());
  // Alone, the old layer's last entry gives its (partial) block.
  auto old_view = View::Create({{older, "c1"}}, "vm/c1/vda");
  ASSERT_TRUE(old_view.ok());
  std::string block(65536, '\0');
  ASSERT_TRUE(old_view.value()->Read(65536, block.size(), block.data()).ok());
  const std::optional<ContentHash> h = old_view.value()->KnownBlockHash(1);
  ASSERT_TRUE(h.has_value());
  EXPECT_TRUE(*h == HashContent(block.data(), block.size()));
}

TEST(ViewMixedGranularity, RefusesABlockSizeNotAPowerOfTwo) {
  auto layer = std::make_shared<ExtentLayer>(3 * 512, 1 << 20);
  auto v = View::Create({{layer, "c1"}}, "vm/c1/vda");
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().ToString().find("power of two"), std::string::npos);
}

}  // namespace
}  // namespace chainfs
