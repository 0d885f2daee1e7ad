#include "chain/base/worker_pool.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <system_error>

namespace chainfs {

WorkerPool::WorkerPool(unsigned threads) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = std::min(threads, kMaxThreads);
  for (unsigned i = 0; i < threads; ++i) {
    try {
      threads_.emplace_back([this] { Run(); });
    } catch (const std::system_error& e) {
      spdlog::warn("started {} of {} worker threads ({}); going on with those", i, threads,
                   e.what());
      break;
    }
  }
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::Run() {
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

void ParallelFor(size_t n, size_t min_parallel, unsigned threads,
                 const std::function<void(size_t)>& fn) {
  if (n < std::max<size_t>(min_parallel, 2) || threads < 2) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  WorkerPool pool(threads);
  const size_t chunks = std::min<size_t>(n, 4 * static_cast<size_t>(pool.size() + 1));
  const size_t step = (n + chunks - 1) / chunks;
  std::vector<std::future<void>> done;
  for (size_t from = 0; from < n; from += step)
    done.push_back(pool.Submit([&fn, from, to = std::min(n, from + step)] {
      for (size_t i = from; i < to; ++i) fn(i);
    }));
  for (auto& f : done) f.get();
}

}  // namespace chainfs
