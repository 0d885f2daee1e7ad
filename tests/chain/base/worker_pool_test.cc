#include "chain/base/worker_pool.h"

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <thread>
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

// A pool made by a thread of low priority (the mount's background layer
// loader runs at nice 19) serves at the process's priority, not its maker's
// (a new Linux thread inherits its maker's nice value).
TEST(WorkerPool, WorkersRunAtTheProcessPriorityNotTheirMakers) {
  const int process = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::getpid()));
  ASSERT_LT(process, 19);
  int maker = 0, worker = 0;
  std::thread t([&] {
    ASSERT_EQ(::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 19), 0);
    maker = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()));
    WorkerPool pool(1);
    worker = pool.Submit([] { return ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid())); })
                 .get();
  });
  t.join();
  EXPECT_EQ(maker, 19);
  EXPECT_EQ(worker, process) << "the worker kept its maker's nice value";
}

}  // namespace
}  // namespace chainfs
