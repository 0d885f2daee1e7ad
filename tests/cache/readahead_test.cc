#include "cache/readahead.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "tests/cache/fake_layer.h"

namespace chainfs {
namespace {

using testing::FakeLayer;

constexpr uint32_t kBs = 65536;
constexpr uint64_t kKiB = 1024;

struct Fixture {
  explicit Fixture(uint64_t blocks, uint64_t cache_blocks = 1024, ReadaheadOptions ra = Small())
      : layer(std::make_shared<FakeLayer>(blocks)),
        cache(CacheOptions(cache_blocks)),
        readahead(&cache, ra) {
    auto v = View::Create({{layer, "c1"}}, "vm/c1/vda", &cache);
    EXPECT_TRUE(v.ok());
    view = v.value();
  }
  static ReadaheadOptions Small() {
    ReadaheadOptions o;
    o.min_window = 256 * kKiB;
    o.max_window = 1024 * kKiB;
    o.threads = 2;
    return o;
  }
  static BlockCacheOptions CacheOptions(uint64_t blocks) {
    BlockCacheOptions o;
    o.capacity_bytes = blocks * (kBs + BlockCache::kEntryOverhead);
    o.shards = 1;
    return o;
  }
  // What a FUSE read handler does.
  void Read(Readahead::Stream& s, uint64_t off, uint64_t n) {
    readahead.OnRead(s, off, n);
    std::vector<char> buf(n);
    ASSERT_TRUE(view->Read(off, n, buf.data()).ok());
  }
  std::shared_ptr<FakeLayer> layer;
  BlockCache cache;
  Readahead readahead;
  std::shared_ptr<const View> view;
};

TEST(ReadaheadTest, WindowGrowsWhileSequentialUpToMax) {
  Fixture f(256);
  auto s = f.readahead.Open(f.view);
  std::vector<uint64_t> windows;
  for (uint64_t off = 0; off < 8 * 1024 * kKiB; off += 128 * kKiB) {
    f.Read(*s, off, 128 * kKiB);
    if (windows.empty() || windows.back() != s->window()) windows.push_back(s->window());
  }
  std::vector<uint64_t> want = {0, 256 * kKiB, 512 * kKiB, 1024 * kKiB};
  EXPECT_EQ(want, windows);
  EXPECT_GT(s->ahead(), 8 * 1024 * kKiB) << "readahead stays ahead of the reader";
}

// Disk reads are requested beyond what is queued for decoding: after the
// window opens, the stored bytes of the next kDiskAhead windows are asked for
// (WillNeed), and nothing is asked for on random reads.
TEST(ReadaheadTest, DiskReadsAreRequestedAheadOfDecoding) {
  Fixture f(256);
  auto s = f.readahead.Open(f.view);
  for (uint64_t off = 0; off < 3 * 128 * kKiB; off += 128 * kKiB) f.Read(*s, off, 128 * kKiB);
  ASSERT_EQ(s->window(), 256 * kKiB);
  f.readahead.Drain();  // the disk thread has asked
  const uint64_t queued_end = s->ahead() / kBs;
  const uint64_t disk_end = queued_end + Readahead::kDiskAhead * s->window() / kBs;
  std::set<uint64_t> asked = f.layer->will_need();
  for (uint64_t e = queued_end; e < disk_end; ++e)
    EXPECT_TRUE(asked.count(e)) << "entry " << e << " beyond the window was not requested";
  EXPECT_FALSE(asked.count(disk_end)) << "requested further than kDiskAhead windows";

  Fixture g(4096);
  auto r = g.readahead.Open(g.view);
  for (uint64_t b : {3000u, 17u, 900u, 2500u, 40u, 1800u}) g.Read(*r, b * kBs, 4096);
  g.readahead.Drain();
  EXPECT_TRUE(g.layer->will_need().empty());
}

// A layer that says every block is stored raw in a file (Layer::RawSpan).
class RawLayer : public FakeLayer {
 public:
  using FakeLayer::FakeLayer;
  std::optional<FileSpan> RawSpan(uint64_t entry, uint32_t offset, uint32_t) const override {
    return FileSpan{nullptr, entry * block_size() + offset};
  }
};
// A layer that keeps every block decoded in memory of its own
// (Layer::KeepsDecoded: a virtnbdbackup lz4 frame).
class DecodedLayer : public FakeLayer {
 public:
  using FakeLayer::FakeLayer;
  bool KeepsDecoded(uint64_t) const override { return true; }
};

// With skip_raw (a mount that splices raw blocks to the reader, and answers
// its scans of blocks a layer keeps decoded from there), such blocks are
// asked from disk but not loaded into the cache; without it they are
// prefetched as any other.
template <typename L>
void ExpectOnlyAskedFromDiskWhenSpliced(const char* kind) {
  for (bool skip : {false, true}) {
    SCOPED_TRACE(std::string(kind) + ", skip_raw " + (skip ? "on" : "off"));
    auto layer = std::make_shared<L>(256);
    BlockCache cache(Fixture::CacheOptions(1024));
    ReadaheadOptions o = Fixture::Small();
    o.skip_raw = skip;
    Readahead readahead(&cache, o);
    auto v = View::Create({{layer, "c1"}}, "vm/c1/vda", &cache);
    ASSERT_TRUE(v.ok());
    auto s = readahead.Open(v.value());
    std::vector<char> buf(128 * kKiB);
    for (uint64_t off = 0; off < 16 * 128 * kKiB; off += 128 * kKiB) {
      readahead.OnRead(*s, off, buf.size());
      ASSERT_TRUE(v.value()->Read(off, buf.size(), buf.data()).ok());
    }
    readahead.Drain();
    EXPECT_FALSE(layer->will_need().empty()) << "no disk hint";
    if (skip) {
      EXPECT_EQ(readahead.Stats().queued, 0u) << "blocks loaded into the cache";
      EXPECT_EQ(layer->total_reads(), 16u * 128 * kKiB / kBs) << "only what was read";
    } else {
      EXPECT_GT(readahead.Stats().queued, 0u);
      EXPECT_GT(layer->total_reads(), 16u * 128 * kKiB / kBs) << "nothing read ahead";
    }
  }
}

TEST(ReadaheadTest, RawBlocksAreOnlyAskedFromDiskWhenSpliced) {
  ExpectOnlyAskedFromDiskWhenSpliced<RawLayer>("raw");
}

TEST(ReadaheadTest, BlocksKeptDecodedAreOnlyAskedFromDiskWhenSpliced) {
  ExpectOnlyAskedFromDiskWhenSpliced<DecodedLayer>("kept decoded");
}

// A layer whose data covers only some blocks (entries numbered in block order).
class SparseLayer : public FakeLayer {
 public:
  SparseLayer(uint64_t blocks, std::vector<LayerExtent> extents)
      : FakeLayer(blocks), extents_(std::move(extents)) {}
  void ForEachExtent(const std::function<void(const LayerExtent&)>& fn) const override {
    for (const LayerExtent& e : extents_) fn(e);
  }

 private:
  std::vector<LayerExtent> extents_;
};

// The disk hints of a window never ask for entries of an older layer that a
// newer one shadows (in a deep chain most of them are), and ask for every
// entry the view reads. Each layer gets all its runs of the window in one
// WillNeedRuns call, so that it can merge them in its file, and the layer
// whose first run comes first in the window is asked first (here the older
// one: the window starts with its blocks).
TEST(ReadaheadTest, DiskHintsSkipShadowedEntries) {
  auto older = std::make_shared<FakeLayer>(64);
  auto newer = std::make_shared<SparseLayer>(
      64, std::vector<LayerExtent>{{10 * kBs, 10 * kBs, LayerExtent::Kind::kData, 0},
                                   {30 * kBs, 2 * kBs, LayerExtent::Kind::kData, 10}});
  auto v = View::Create({{newer, "c2"}, {older, "c1"}}, "vm/c2/vda");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  v.value()->WillNeed(0, 64 * kBs);
  std::set<uint64_t> want_old, want_new;
  for (uint64_t b = 0; b < 64; ++b)
    if (!(b >= 10 && b < 20) && b != 30 && b != 31) want_old.insert(b);
  for (uint64_t e = 0; e < 12; ++e) want_new.insert(e);
  EXPECT_EQ(want_old, older->will_need());
  EXPECT_EQ(want_new, newer->will_need());
  EXPECT_EQ(1, older->will_need_runs_calls()) << "the older layer's three runs, asked apart";
  EXPECT_EQ(1, newer->will_need_runs_calls());
  EXPECT_LT(older->will_need_runs_last(), newer->will_need_runs_last())
      << "the window's first blocks (the older layer's) were asked for after the newer layer's";
}

// A window over many layers (a deep chain, where each block of it may lie in
// a file of its own): every layer gets exactly its own unshadowed entries,
// in one WillNeedRuns call, and a layer shadowed whole gets none.
TEST(ReadaheadTest, DiskHintsOverManyLayersAskEachLayerOnceForItsOwnEntries) {
  constexpr uint64_t kBlocks = 300;
  auto oldest = std::make_shared<FakeLayer>(kBlocks);
  std::vector<std::shared_ptr<SparseLayer>> newer;
  std::vector<View::LayerRef> refs;
  for (uint64_t b = 0; b < kBlocks; ++b) {  // block b is the newest layer's but b's
    newer.push_back(std::make_shared<SparseLayer>(
        kBlocks, std::vector<LayerExtent>{{b * kBs, kBs, LayerExtent::Kind::kData, 0}}));
    refs.push_back({newer.back(), "c" + std::to_string(kBlocks + 1 - b)});
  }
  refs.push_back({oldest, "c1"});
  auto v = View::Create(refs, "vm/deep/vda");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  v.value()->WillNeed(0, kBlocks * kBs);
  for (uint64_t b = 0; b < kBlocks; ++b) {
    EXPECT_EQ(std::set<uint64_t>{0}, newer[b]->will_need()) << "layer of block " << b;
    EXPECT_EQ(1, newer[b]->will_need_runs_calls()) << "layer of block " << b;
  }
  EXPECT_TRUE(oldest->will_need().empty()) << "the shadowed layer was asked for "
                                           << oldest->will_need().size() << " entries";
  EXPECT_EQ(0, oldest->will_need_runs_calls());
}

TEST(ReadaheadTest, SlightlyReorderedRequestsAreSequential) {
  Fixture f(256);
  auto s = f.readahead.Open(f.view);
  // Requests of a sequential reader served by several FUSE threads.
  for (uint64_t i : {0, 2, 1, 3, 5, 4, 6, 7, 9, 8}) f.Read(*s, i * 128 * kKiB, 128 * kKiB);
  EXPECT_GT(s->window(), 0u);
  EXPECT_EQ(0u, f.readahead.Stats().collapses);
}

TEST(ReadaheadTest, RandomReadCollapsesWindow) {
  Fixture f(256);
  auto s = f.readahead.Open(f.view);
  for (uint64_t off = 0; off < 2048 * kKiB; off += 128 * kKiB) f.Read(*s, off, 128 * kKiB);
  ASSERT_GT(s->window(), 0u);
  f.Read(*s, 10 * 1024 * kKiB, 4096);
  EXPECT_EQ(0u, s->window());
  EXPECT_EQ(1u, f.readahead.Stats().collapses);
  // Sequential again from there: starts over at the minimum window.
  f.Read(*s, 10 * 1024 * kKiB + 4096, 4096);
  EXPECT_EQ(0u, s->window());
  f.Read(*s, 10 * 1024 * kKiB + 8192, 4096);
  EXPECT_EQ(256 * kKiB, s->window());
}

// The reader waits for readahead after each read (Drain), so the count does
// not depend on how the threads are scheduled: everything but the blocks
// read before readahead starts (kStartRun reads of two blocks) is prefetched.
TEST(ReadaheadTest, SequentialReadUsesEveryPrefetchedBlock) {
  Fixture f(256);
  auto s = f.readahead.Open(f.view);
  for (uint64_t off = 0; off < f.view->size(); off += 128 * kKiB) {
    f.Read(*s, off, 128 * kKiB);
    f.readahead.Drain();
  }
  BlockCacheStats st = f.cache.Stats();
  EXPECT_EQ(256u - 2 * Readahead::kStartRun, st.readahead_issued);
  EXPECT_EQ(st.readahead_issued, st.readahead_used);
  EXPECT_EQ(0u, st.readahead_wasted);
  EXPECT_EQ(256u, f.layer->total_reads()) << "every block loaded once";
  EXPECT_EQ(256u, st.misses + st.readahead_issued);
}

TEST(ReadaheadTest, RandomReadsIssueNothing) {
  Fixture f(4096);
  auto s = f.readahead.Open(f.view);
  uint64_t x = 12345;
  for (int i = 0; i < 500; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t block = (x >> 33) % 4096;
    f.Read(*s, block * kBs + 4096 * ((x >> 20) % 16), 4096);
  }
  f.readahead.Drain();
  EXPECT_EQ(0u, f.cache.Stats().readahead_issued);
  EXPECT_EQ(0u, f.readahead.Stats().batches);
}

TEST(ReadaheadTest, UnreadPrefetchesCountAsWasted) {
  Fixture f(1024, /*cache_blocks=*/16);
  auto s = f.readahead.Open(f.view);
  f.Read(*s, 0, 64 * kKiB);
  f.Read(*s, 64 * kKiB, 64 * kKiB);
  f.Read(*s, 128 * kKiB, 64 * kKiB);  // third sequential read: window of 4 blocks
  f.readahead.Drain();
  ASSERT_EQ(4u, f.cache.Stats().readahead_issued);
  // The reader goes elsewhere; one-time reads push the prefetches out.
  auto other = f.readahead.Open(f.view);
  for (uint64_t b = 500; b < 600; b += 3) f.Read(*other, b * kBs, 4096);
  f.readahead.Drain();
  BlockCacheStats st = f.cache.Stats();
  EXPECT_EQ(0u, st.readahead_used);
  EXPECT_EQ(4u, st.readahead_wasted);
}

// Holds the loads of one entry in ReadBlock until Release(): with one worker,
// the prefetches queued behind it stay queued meanwhile.
class StuckLoad {
 public:
  StuckLoad(FakeLayer& layer, uint64_t entry) : layer_(layer) {
    layer.on_read = [this, entry](uint64_t e) {
      if (e != entry) return;
      std::unique_lock<std::mutex> lock(mu_);
      entered_ = true;
      cv_.notify_all();
      cv_.wait(lock, [&] { return released_; });
    };
  }
  ~StuckLoad() { layer_.on_read = nullptr; }  // REQUIRES: no load running
  void WaitEntered() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return entered_; });
  }
  void Release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      released_ = true;
    }
    cv_.notify_all();
  }

 private:
  FakeLayer& layer_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false, released_ = false;
};

// Three sequential reads of a stream over blocks 0..3: blocks 4..7 are
// queued, the one worker stuck in the load of block 4.
std::shared_ptr<Readahead::Stream> QueueBehindStuckLoad(Fixture& f, StuckLoad& stuck) {
  auto s = f.readahead.Open(f.view);
  f.Read(*s, 0, 64 * kKiB);
  f.Read(*s, 64 * kKiB, 64 * kKiB);
  f.Read(*s, 128 * kKiB, 128 * kKiB);
  stuck.WaitEntered();
  return s;
}

TEST(ReadaheadTest, ForegroundReadDoesNotWaitForQueuedPrefetch) {
  ReadaheadOptions ra = Fixture::Small();
  ra.threads = 1;
  Fixture f(64, 1024, ra);
  StuckLoad stuck(*f.layer, 4);
  auto s = QueueBehindStuckLoad(f, stuck);
  // Blocks 5..7 sit in the queue behind the stuck load: a reader of block 6
  // loads it itself instead of waiting.
  auto other = f.readahead.Open(f.view);
  f.Read(*other, 6 * kBs, 4096);
  EXPECT_EQ(1u, f.layer->reads(6));
  stuck.Release();
  f.readahead.Drain();
  EXPECT_EQ(1u, f.layer->reads(6)) << "the queued prefetch of a resident block is skipped";
}

TEST(ReadaheadTest, ClosedStreamCancelsQueuedWork) {
  ReadaheadOptions ra = Fixture::Small();
  ra.threads = 1;
  Fixture f(64, 1024, ra);
  StuckLoad stuck(*f.layer, 4);
  auto s = QueueBehindStuckLoad(f, stuck);
  s.reset();  // release(): blocks 5..7 are still queued
  stuck.Release();
  f.readahead.Drain();
  EXPECT_EQ(3u, f.readahead.Stats().cancelled);
  EXPECT_EQ(0u, f.layer->reads(5));
}

}  // namespace
}  // namespace chainfs
