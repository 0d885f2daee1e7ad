#include "chain/base/worker_pool.h"

#include <atomic>
#include <future>
#include <vector>

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace chainfs
