#include "cache/block_cache.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "chain/layer/view.h"
#include "tests/cache/fake_layer.h"

namespace chainfs {
namespace {

using testing::FakeLayer;

constexpr uint32_t kBs = 65536;
constexpr uint64_t kCharge = kBs + BlockCache::kEntryOverhead;

BlockCacheOptions Options(uint64_t blocks, unsigned shards = 1) {
  BlockCacheOptions o;
  o.capacity_bytes = blocks * kCharge;
  o.shards = shards;
  return o;
}

// Reads block `entry` in full and checks its bytes.
void ExpectBlock(BlockCache& cache, const FakeLayer& layer, uint64_t entry,
                 const ReadOptions& options = {}) {
  std::vector<char> got(kBs), want(kBs);
  ASSERT_TRUE(cache.ReadBlockRange(layer, entry, 0, kBs, got.data(), options).ok());
  layer.Fill(entry, want.data());
  ASSERT_EQ(got, want) << "block " << entry;
}

// Waits (bounded) until pred() holds; false on timeout. Used to order threads
// deterministically, never to measure time.
template <typename Pred>
bool WaitFor(Pred pred) {
  for (int i = 0; i < 20000 && !pred(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return pred();
}

TEST(BlockCacheTest, SecondReadIsAHit) {
  FakeLayer layer(4);
  BlockCache cache(Options(4));
  ExpectBlock(cache, layer, 2);
  std::vector<char> part(100), want(kBs);
  ASSERT_TRUE(cache.ReadBlockRange(layer, 2, 1000, 100, part.data(), {}).ok());
  layer.Fill(2, want.data());
  EXPECT_EQ(0, std::memcmp(part.data(), want.data() + 1000, 100));
  BlockCacheStats s = cache.Stats();
  EXPECT_EQ(1u, s.misses);
  EXPECT_EQ(1u, s.hits);
  EXPECT_EQ(1u, layer.reads(2));
  EXPECT_EQ(kCharge, s.bytes_held);
  EXPECT_EQ(uint64_t{kBs / 2}, s.stored_bytes_read);
}

TEST(BlockCacheTest, SameEntryOfTwoLayersIsTwoBlocks) {
  FakeLayer a(2), b(2);
  BlockCache cache(Options(4));
  ExpectBlock(cache, a, 0);
  ExpectBlock(cache, b, 0);
  EXPECT_EQ(2u, cache.Stats().misses);
}

TEST(BlockCacheTest, CapacityNeverExceededBeyondOneEntryInFlight) {
  constexpr int kThreads = 8;
  FakeLayer layer(200);
  BlockCache cache(Options(10, 2));
  std::atomic<bool> done{false};
  std::atomic<uint64_t> max_held{0}, max_memory{0};
  auto observe = [&] {
    BlockCacheStats s = cache.Stats();
    uint64_t h = max_held.load();
    while (s.bytes_held > h && !max_held.compare_exchange_weak(h, s.bytes_held)) {
    }
    uint64_t m = max_memory.load();
    while (s.block_memory_bytes > m && !max_memory.compare_exchange_weak(m, s.block_memory_bytes)) {
    }
  };
  std::thread monitor([&] {
    while (!done) observe();
  });
  std::vector<std::thread> readers;
  for (int t = 0; t < kThreads; ++t) {
    readers.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::vector<char> buf(4096);
      for (int i = 0; i < 2000; ++i) {
        uint64_t entry = rng() % 200 < 150 ? rng() % 12 : rng() % 200;  // hot set + scan
        ASSERT_TRUE(cache.ReadBlockRange(layer, entry, 4096 * (rng() % 16), 4096, buf.data(), {}).ok());
        observe();
      }
    });
  }
  for (auto& t : readers) t.join();
  done = true;
  monitor.join();
  EXPECT_LE(max_held.load(), cache.capacity_bytes());
  // Resident blocks plus at most one buffer per loading or copying thread.
  EXPECT_LE(max_memory.load(), cache.capacity_bytes() + kThreads * uint64_t{kBs});
  EXPECT_GT(cache.Stats().evictions, 0u);
  EXPECT_EQ(cache.Stats().block_memory_bytes, cache.Stats().blocks_held * kBs);
}

TEST(BlockCacheTest, ScanDoesNotEvictReusedWorkingSet) {
  FakeLayer layer(2000);
  BlockCache cache(Options(64));
  for (int round = 0; round < 3; ++round)
    for (uint64_t e = 0; e < 16; ++e) ExpectBlock(cache, layer, e);
  // One pass over 1000 other blocks, each read in 4 KiB pieces like a
  // sequential reader: one use per block, not sixteen.
  std::vector<char> buf(4096);
  for (uint64_t e = 100; e < 1100; ++e)
    for (uint32_t off = 0; off < kBs; off += 4096)
      ASSERT_TRUE(cache.ReadBlockRange(layer, e, off, 4096, buf.data(), {}).ok());
  for (uint64_t e = 0; e < 16; ++e) {
    ExpectBlock(cache, layer, e);
    EXPECT_EQ(1u, layer.reads(e)) << "working-set block " << e << " was evicted by the scan";
  }
}

TEST(BlockCacheTest, ReadsOfASequentialScanAreNotReuse) {
  FakeLayer layer(2000);
  BlockCache cache(Options(64));
  const ReadOptions scan{.scan = true};
  for (int round = 0; round < 3; ++round)
    for (uint64_t e = 0; e < 16; ++e) ExpectBlock(cache, layer, e, scan);
  for (uint64_t e = 100; e < 1100; ++e) ExpectBlock(cache, layer, e);
  for (uint64_t e = 0; e < 16; ++e) {
    ExpectBlock(cache, layer, e);
    EXPECT_EQ(2u, layer.reads(e)) << "block " << e << " read in a scan was kept as hot";
  }
}

TEST(BlockCacheTest, SequentialScanRecyclesTheSmallShareInsteadOfFillingTheCache) {
  FakeLayer layer(2000);
  BlockCache cache(Options(100));  // small FIFO: 10 blocks
  const ReadOptions scan{.scan = true};
  std::vector<char> buf(16384);
  for (uint64_t e = 0; e < 500; ++e) {
    if (e + 4 < 500) cache.Prefetch(layer, e + 4);  // readahead ahead of the reader
    for (uint32_t off = 0; off < kBs; off += buf.size())
      ASSERT_TRUE(cache.ReadBlockRange(layer, e, off, buf.size(), buf.data(), scan).ok());
  }
  BlockCacheStats s = cache.Stats();
  EXPECT_LE(s.blocks_held, 10u + 1u) << "a one-pass scan filled the cache";
  EXPECT_LE(s.block_memory_bytes + s.pool_free_bytes, (10u + 2u) * uint64_t{kBs});
  EXPECT_EQ(0u, s.readahead_wasted) << "a prefetched block left before it was read";
  for (uint64_t e = 0; e < 500; ++e) ASSERT_EQ(1u, layer.reads(e)) << "block " << e;
  // Blocks read outside a scan still fill the room.
  for (uint64_t e = 1000; e < 1050; ++e) ExpectBlock(cache, layer, e);
  EXPECT_GE(cache.Stats().blocks_held, 50u);
}

// A deep view reads most old blocks in pieces around what newer layers
// shadow, and a newer layer's small extent fills only the front of its
// block: such blocks are never read to their end. The view tells the cache
// which read is the last of a block (ReadOptions::last_of_block), so a scan
// still recycles the small share; before, every such block was kept and a
// one-pass read of a deep view filled the whole cache with cold memory.
TEST(BlockCacheTest, AScanOfAViewWithShadowedPiecesRecyclesTheSmallShare) {
  constexpr uint64_t kBlocks = 500;
  auto base = std::make_shared<testing::ExtentLayer>(kBs, kBlocks * kBs);
  base->AddData(0, kBlocks * kBs);
  auto top = std::make_shared<testing::ExtentLayer>(kBs, kBlocks * kBs);
  for (uint64_t b = 0; b < kBlocks; ++b) top->AddData(b * kBs + 24 * 1024, 16 * 1024);
  BlockCache cache(Options(100));  // small FIFO: 10 blocks
  auto view = View::Create({{top, "top"}, {base, "base"}}, "t", &cache);
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  const ReadOptions scan{.scan = true};
  std::vector<char> got(128 * 1024), want(kBs), top_block(kBs);
  for (uint64_t off = 0; off < kBlocks * kBs; off += got.size()) {
    ASSERT_TRUE(view.value()->Read(off, got.size(), got.data(), scan).ok());
    for (uint64_t b = off / kBs; b < (off + got.size()) / kBs; ++b) {
      base->Fill(b, want.data());
      top->Fill(b, top_block.data());  // the top's entry b holds its 16 KiB first
      std::memcpy(want.data() + 24 * 1024, top_block.data(), 16 * 1024);
      ASSERT_EQ(0, std::memcmp(got.data() + (b * kBs - off), want.data(), kBs)) << "block " << b;
    }
  }
  BlockCacheStats s = cache.Stats();
  EXPECT_LE(s.blocks_held, 10u + 2u) << "a one-pass scan of the view filled the cache";
  for (uint64_t e : base->read()) ASSERT_LT(e, kBlocks);
  EXPECT_EQ(base->read().size(), kBlocks);
  EXPECT_EQ(top->read().size(), kBlocks);
}

TEST(BlockCacheTest, ConcurrentMissesLoadOnce) {
  constexpr int kThreads = 16;
  FakeLayer layer(4);
  BlockCache cache(Options(4, 4));
  // The loader holds its load until every other thread waits for it.
  layer.on_read = [&](uint64_t) {
    ASSERT_TRUE(WaitFor([&] { return cache.Stats().loads_merged == kThreads - 1; }));
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back([&] { ExpectBlock(cache, layer, 3); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(1u, layer.reads(3));
  BlockCacheStats s = cache.Stats();
  EXPECT_EQ(1u, s.misses);
  EXPECT_EQ(uint64_t{kThreads - 1}, s.loads_merged);
}

TEST(BlockCacheTest, FailedLoadReachesEveryWaiterAndIsNotCached) {
  constexpr int kThreads = 8;
  FakeLayer layer(4);
  layer.corrupt = {1};
  BlockCache cache(Options(4));
  layer.on_read = [&](uint64_t) {
    ASSERT_TRUE(WaitFor([&] { return cache.Stats().loads_merged == kThreads - 1; }));
  };
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      std::vector<char> buf(kBs);
      Status st = cache.ReadBlockRange(layer, 1, 0, kBs, buf.data(), {});
      if (st.code() == Status::Code::kCorruption) ++failed;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(kThreads, failed.load());
  EXPECT_EQ(1u, layer.reads(1));
  layer.on_read = nullptr;
  std::vector<char> buf(kBs);
  EXPECT_EQ(Status::Code::kCorruption, cache.ReadBlockRange(layer, 1, 0, kBs, buf.data(), {}).code());
  EXPECT_EQ(2u, layer.reads(1)) << "a failed load must not be cached";
  BlockCacheStats s = cache.Stats();
  EXPECT_EQ(2u, s.checksum_failures);
  EXPECT_EQ(0u, s.bytes_held);
  EXPECT_EQ(0u, s.block_memory_bytes);
}

TEST(BlockCacheTest, PrefetchCountsUsedAndWasted) {
  FakeLayer layer(100);
  BlockCache cache(Options(8));
  EXPECT_TRUE(cache.Prefetch(layer, 0));
  EXPECT_FALSE(cache.Prefetch(layer, 0)) << "resident: skipped";
  EXPECT_TRUE(cache.Contains(layer.id(), 0));
  ExpectBlock(cache, layer, 0);
  EXPECT_TRUE(cache.Prefetch(layer, 1));
  EXPECT_TRUE(cache.Prefetch(layer, 2));
  // Push the unread prefetches out with one-time reads.
  for (uint64_t e = 10; e < 40; ++e) ExpectBlock(cache, layer, e);
  BlockCacheStats s = cache.Stats();
  EXPECT_EQ(3u, s.readahead_issued);
  EXPECT_EQ(1u, s.readahead_used);
  EXPECT_EQ(2u, s.readahead_wasted);
  EXPECT_EQ(1u, s.readahead_skipped);
  EXPECT_EQ(1u, layer.reads(0));
}

TEST(BlockCacheTest, ZeroCapacityCachesNothing) {
  FakeLayer layer(4);
  BlockCacheOptions o;
  o.capacity_bytes = 0;
  BlockCache cache(o);
  ExpectBlock(cache, layer, 0);
  ExpectBlock(cache, layer, 0);
  EXPECT_EQ(2u, layer.reads(0));
  EXPECT_EQ(0u, cache.Stats().bytes_held);
  EXPECT_EQ(0u, cache.Stats().block_memory_bytes);
}

TEST(BlockCacheTest, HandleOutlivesEviction) {
  FakeLayer layer(10);
  BlockCache cache(Options(1));
  auto h = cache.Get(layer, 0);
  ASSERT_TRUE(h.ok());
  for (uint64_t e = 1; e < 10; ++e) ExpectBlock(cache, layer, e);
  EXPECT_FALSE(cache.Contains(layer.id(), 0));
  std::vector<char> want(kBs);
  layer.Fill(0, want.data());
  EXPECT_EQ(0, std::memcmp(h.value()->data(), want.data(), kBs));
  EXPECT_EQ(2 * uint64_t{kBs}, cache.Stats().block_memory_bytes);
}

}  // namespace
}  // namespace chainfs

namespace chainfs {
namespace {

// A scan through more blocks than the cache holds recycles the buffers of
// evicted blocks (no fresh allocation per load), keeps the bytes right, and
// never holds more buffers than the capacity plus the pool's bound.
TEST(BlockCacheTest, EvictedBuffersAreRecycledWithTheRightBytes) {
  FakeLayer layer(200);
  BlockCache cache(Options(4));
  for (uint64_t e = 0; e < 200; ++e) ExpectBlock(cache, layer, e);
  BlockCacheStats s = cache.Stats();
  EXPECT_EQ(200u, s.misses);
  EXPECT_GE(s.buffers_reused, 190u);
  EXPECT_LE(s.block_memory_bytes, 4u * kBs);
  EXPECT_LE(s.pool_free_bytes, BlockCache::kPoolBytes);
  // Pinned blocks stay intact while their buffers could be recycled.
  auto pinned = cache.PinBlock(layer, 7, 0, kBs, {});
  ASSERT_TRUE(pinned.ok());
  for (uint64_t e = 100; e < 150; ++e) ExpectBlock(cache, layer, e);
  std::vector<char> want(kBs);
  layer.Fill(7, want.data());
  EXPECT_EQ(0, std::memcmp(pinned.value().get(), want.data(), kBs));
}

}  // namespace
}  // namespace chainfs
