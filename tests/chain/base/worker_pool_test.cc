#include "chain/base/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace chainfs {
namespace {

// Issue 13: --threads 100000 aborted with an uncaught std::system_error.
TEST(WorkerPool, Issue13ThreadCountIsBoundedAndTasksRun) {
  WorkerPool pool(100000);
  EXPECT_LE(pool.size(), WorkerPool::kMaxThreads);
  EXPECT_GE(pool.size(), 1u);
  std::atomic<int> ran{0};
  std::vector<std::future<void>> futs;
  for (int i = 0; i < 1000; ++i) futs.push_back(pool.Submit([&ran] { ++ran; }));
  for (auto& f : futs) f.get();
  EXPECT_EQ(ran.load(), 1000);
}

TEST(WorkerPool, ZeroMeansOnePerCore) {
  WorkerPool pool(0);
  EXPECT_GE(pool.size(), 1u);
  EXPECT_EQ(pool.Submit([] { return 7; }).get(), 7);
}

// ParallelFor: every index once; below min_parallel on the caller's thread,
// above it on several threads (the calls wait on a barrier that only two
// threads at once can pass).
TEST(ParallelFor, EveryIndexOnceInlineBelowTheThresholdOnSeveralThreadsAbove) {
  std::vector<std::atomic<int>> seen(1000);
  std::mutex mu;
  std::set<std::thread::id> threads;
  ParallelFor(seen.size(), 2000, 8, [&](size_t i) {
    ++seen[i];
    std::lock_guard<std::mutex> l(mu);
    threads.insert(std::this_thread::get_id());
  });
  for (auto& s : seen) EXPECT_EQ(s.load(), 1);
  EXPECT_EQ(threads, std::set<std::thread::id>{std::this_thread::get_id()});

  threads.clear();
  std::atomic<int> waiting{0};
  ParallelFor(seen.size(), 16, 8, [&](size_t i) {
    ++seen[i];
    {
      std::lock_guard<std::mutex> l(mu);
      threads.insert(std::this_thread::get_id());
    }
    if (i == 0 || i == seen.size() - 1) {  // first and last chunk meet
      ++waiting;
      while (waiting.load() < 2) std::this_thread::yield();
    }
  });
  for (auto& s : seen) EXPECT_EQ(s.load(), 2);
  EXPECT_GT(threads.size(), 1u);
  EXPECT_EQ(threads.count(std::this_thread::get_id()), 0u);
}

}  // namespace
}  // namespace chainfs
