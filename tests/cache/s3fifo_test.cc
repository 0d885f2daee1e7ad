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

TEST(S3FifoTest, ScanEntriesAreHeldToTheSmallShareWhileTheCacheHasRoom) {
  S3Fifo<int> s(100, 10);
  std::vector<uint64_t> evicted;
  auto rec = [&](S3Fifo<int>::Entry&& e) { evicted.push_back(e.key.entry); };
  for (uint64_t n = 0; n < 50; ++n) s.Insert(K(n), 0, 1, rec, /*scan=*/true);
  EXPECT_EQ(10u, s.bytes());
  ASSERT_EQ(40u, evicted.size());
  EXPECT_EQ(0u, evicted.front());  // oldest first
  EXPECT_TRUE(s.InGhost(K(0)));
  // Entries not marked as scanned fill the room as before; the scan entries
  // left at the old end of the small FIFO go first.
  for (uint64_t n = 100; n < 150; ++n) s.Insert(K(n), 0, 1, rec);
  EXPECT_EQ(50u, s.bytes());
  EXPECT_EQ(50u, evicted.size());
  for (uint64_t n = 100; n < 150; ++n) EXPECT_NE(nullptr, s.Find(K(n))) << n;
}

TEST(S3FifoTest, ScanEntriesLeaveInTheOrderConsumedAndReusedOnesArePromoted) {
  S3Fifo<int> s(100, 2);
  std::vector<uint64_t> evicted;
  auto rec = [&](S3Fifo<int>::Entry&& e) { evicted.push_back(e.key.entry); };
  for (uint64_t n = 1; n <= 2; ++n) s.Insert(K(n), 0, 1, rec);  // small [1 2]: at its share
  s.Use(s.Find(K(2)));
  s.MarkScan(s.Find(K(2)));  // re-used, then consumed by a scan
  s.Insert(K(3), 0, 1, rec);  // over share: 2 is promoted; 1 (not consumed) stays
  EXPECT_TRUE(evicted.empty());
  EXPECT_EQ((std::vector<uint64_t>{2}), Entries(s.MainKeys()));
  EXPECT_EQ((std::vector<uint64_t>{1, 3}), Entries(s.SmallKeys()));
  s.Insert(K(4), 0, 1, rec);  // small [1 3 4]: over share, but nothing consumed
  EXPECT_TRUE(evicted.empty());
  s.MarkScan(s.Find(K(4)));   // consumed first
  s.MarkScan(s.Find(K(3)));
  EXPECT_EQ((std::vector<uint64_t>{4, 3}), Entries(s.ScanKeys()));
  s.Insert(K(5), 0, 1, rec);  // 4 then 3 (consumed, oldest first) until at share
  EXPECT_EQ((std::vector<uint64_t>{4, 3}), evicted);
  EXPECT_TRUE(s.InGhost(K(4)));
  EXPECT_EQ((std::vector<uint64_t>{1, 5}), Entries(s.SmallKeys()));
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
