#include "cache/s3fifo.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace chainfs {
namespace {

CacheKey K(uint64_t n) { return {7, n}; }

// Records evicted keys in order.
struct Recorder {
  std::vector<uint64_t> evicted;
  void Insert(S3Fifo<int>& s, uint64_t n) {
    s.Insert(K(n), 0, 1, [this](S3Fifo<int>::Entry&& e) { evicted.push_back(e.key.entry); });
  }
};

std::vector<uint64_t> Entries(const std::deque<CacheKey>& keys) {
  std::vector<uint64_t> out;
  for (const CacheKey& k : keys) out.push_back(k.entry);
  return out;
}

TEST(S3FifoTest, OneHitWondersLeaveTheSmallQueueInFifoOrder) {
  S3Fifo<int> s(3, 1);
  Recorder r;
  for (uint64_t n = 1; n <= 6; ++n) r.Insert(s, n);
  EXPECT_EQ((std::vector<uint64_t>{1, 2, 3}), r.evicted);
  EXPECT_TRUE(s.InGhost(K(1)));
  EXPECT_TRUE(s.MainKeys().empty());
}

TEST(S3FifoTest, ReusedEntrySurvivesAScan) {
  S3Fifo<int> s(4, 1);
  Recorder r;
  r.Insert(s, 0);
  s.Use(s.Find(K(0)));
  for (uint64_t n = 100; n < 1000; ++n) r.Insert(s, n);
  EXPECT_NE(nullptr, s.Find(K(0)));
  EXPECT_EQ((std::vector<uint64_t>{0}), Entries(s.MainKeys()));
  EXPECT_EQ(4u, s.bytes());
}

TEST(S3FifoTest, GhostHitGoesToMainAndMainIsClock) {
  S3Fifo<int> s(3, 1);
  Recorder r;
  for (uint64_t n : {1, 2, 3, 4}) r.Insert(s, n);  // 1 -> ghost
  r.Insert(s, 1);                                  // ghost hit: main [1]; 2 -> ghost
  r.Insert(s, 2);                                  // main [1 2]; 3 -> ghost
  r.Insert(s, 3);  // main [1 2 3]; small [4] within share: main evicts 1
  EXPECT_EQ((std::vector<uint64_t>{1, 2, 3, 1}), r.evicted);
  EXPECT_EQ((std::vector<uint64_t>{2, 3}), Entries(s.MainKeys()));
  s.Use(s.Find(K(2)));
  r.Insert(s, 1);  // not a ghost any more: small [4 1]; 4 -> ghost
  r.Insert(s, 4);  // ghost hit: main [2 3 4]; 2 used: reinserted, 3 evicted
  EXPECT_EQ((std::vector<uint64_t>{1, 2, 3, 1, 4, 3}), r.evicted);
  EXPECT_EQ((std::vector<uint64_t>{4, 2}), Entries(s.MainKeys()));
  EXPECT_EQ((std::vector<uint64_t>{1}), Entries(s.SmallKeys()));
}

TEST(S3FifoTest, OversizedEntryIsNotKept) {
  S3Fifo<int> s(3, 1);
  Recorder r;
  EXPECT_EQ(nullptr, s.Insert(K(1), 0, 5,
                              [&](S3Fifo<int>::Entry&& e) { r.evicted.push_back(e.key.entry); }));
  EXPECT_EQ(0u, s.bytes());
}

}  // namespace
}  // namespace chainfs
