#include "cache/buffer_pool.h"

#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

namespace chainfs {
namespace {

TEST(BufferPoolTest, AFreedBufferIsHandedOutAgain) {
  BufferPool pool(1 << 20);
  char* a = pool.Take(65536);
  EXPECT_EQ(pool.live_bytes(), 65536u);
  pool.Give(a, 65536);
  EXPECT_EQ(pool.live_bytes(), 0u);
  EXPECT_EQ(pool.free_bytes(), 65536u);
  char* b = pool.Take(65536);
  EXPECT_EQ(b, a);
  EXPECT_EQ(pool.reused(), 1u);
  EXPECT_EQ(pool.free_bytes(), 0u);
  pool.Give(b, 65536);
}

TEST(BufferPoolTest, OnlyABufferOfTheSameSizeIsReused) {
  BufferPool pool(1 << 20);
  pool.Give(pool.Take(4096), 4096);
  char* other = pool.Take(65536);
  EXPECT_EQ(pool.reused(), 0u);
  EXPECT_EQ(pool.free_bytes(), 4096u);
  pool.Give(other, 65536);
  EXPECT_EQ(pool.free_bytes(), 4096u + 65536u);
}

TEST(BufferPoolTest, SmallBuffersShareTwoMiBSlabsAndDoNotOverlap) {
  BufferPool pool(0);
  std::vector<char*> held;
  for (int i = 0; i < 40; ++i) {  // 40 * 64 KiB = 2.5 MiB: two slabs
    held.push_back(pool.Take(65536));
    std::memset(held.back(), i, 65536);
  }
  EXPECT_EQ(pool.slab_bytes(), 2 * BufferPool::kSlabBytes);
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(held[i][0], static_cast<char>(i));
    EXPECT_EQ(held[i][65535], static_cast<char>(i));
  }
  for (char* b : held) pool.Give(b, 65536);
  // All kept (slab memory is reused, not freed), and no new slab for reuse.
  EXPECT_EQ(pool.free_bytes(), 40u * 65536);
  for (int i = 0; i < 40; ++i) held[i] = pool.Take(65536);
  EXPECT_EQ(pool.slab_bytes(), 2 * BufferPool::kSlabBytes);
  EXPECT_EQ(pool.reused(), 40u);
  for (char* b : held) pool.Give(b, 65536);
}

TEST(BufferPoolTest, KeepsNoMoreLargeBuffersThanItsBound) {
  constexpr uint32_t kLarge = 1 << 20;
  BufferPool pool(3 * uint64_t{kLarge});
  std::vector<char*> held;
  for (int i = 0; i < 10; ++i) held.push_back(pool.Take(kLarge));
  EXPECT_EQ(pool.live_bytes(), 10u * kLarge);
  EXPECT_EQ(pool.slab_bytes(), 0u);  // too large for a slab
  for (char* b : held) pool.Give(b, kLarge);
  EXPECT_EQ(pool.free_bytes(), 3u * kLarge);
  EXPECT_EQ(pool.live_bytes(), 0u);
}

TEST(BufferPoolTest, ConcurrentTakeAndGiveKeepTheCounts) {
  BufferPool pool(0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&pool, t] {
      for (int i = 0; i < 2000; ++i) {
        char* b = pool.Take(65536);
        std::memset(b, t, 65536);  // the buffer is this thread's alone
        for (int k = 0; k < 65536; k += 4096) ASSERT_EQ(b[k], static_cast<char>(t));
        pool.Give(b, 65536);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(pool.live_bytes(), 0u);
  EXPECT_LE(pool.free_bytes(), 8u * 65536);
  EXPECT_EQ(pool.slab_bytes(), BufferPool::kSlabBytes);
}

}  // namespace
}  // namespace chainfs
