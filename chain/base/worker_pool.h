// WorkerPool: a fixed set of threads running submitted tasks, for CPU work
// (compression, decompression) that keeps both cores busy. Results come back
// as futures, so a caller can keep a window of tasks in flight and consume
// them in submission order:
//
//   WorkerPool pool(2);
//   std::deque<std::future<Batch>> window;
//   window.push_back(pool.Submit([..] { return Compress(batch); }));
//   Write(window.front().get()); window.pop_front();
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace chainfs {

class WorkerPool {
 public:
  static constexpr unsigned kMaxThreads = 256;

  // threads == 0: one per core; at most kMaxThreads. Never throws: if the
  // system refuses to create a thread, the pool runs with those it got, and
  // with none Submit runs each task on the caller's thread.
  explicit WorkerPool(unsigned threads = 0);
  ~WorkerPool();  // finishes queued tasks, then joins
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  unsigned size() const { return static_cast<unsigned>(threads_.size()); }

  template <typename Fn>
  auto Submit(Fn fn) -> std::future<decltype(fn())> {
    auto task = std::make_shared<std::packaged_task<decltype(fn())()>>(std::move(fn));
    auto fut = task->get_future();
    if (threads_.empty()) {
      (*task)();
      return fut;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.emplace_back([task] { (*task)(); });
    }
    cv_.notify_one();
    return fut;
  }

 private:
  void Run();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// Calls fn(i) for every i in [0, n): on the calling thread when n is below
// min_parallel, else in chunks on the calling thread and up to threads - 1
// threads of a pool the process keeps for these calls (16; a forked
// child makes its own). For work that waits on the disk (opening hundreds of
// layers or reading hundreds of manifests), where one thread leaves the
// device idle between its requests. fn must be safe to call from several
// threads; calls may nest. The first exception fn throws is rethrown once
// every chunk is done.
void ParallelFor(size_t n, size_t min_parallel, unsigned threads,
                 const std::function<void(size_t)>& fn);

}  // namespace chainfs

