#include "chain/base/worker_pool.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <atomic>
#include <exception>
#include <system_error>

#include <spdlog/spdlog.h>

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
  // At the process's priority (its first thread's), not at that of the
  // thread that made the pool: Linux gives a new thread its maker's nice
  // value, and the mount's background layer loader runs at 19
  // (fusefs/driver/repository_fs.cc), so a pool it happened to make first
  // would have served everyone at its priority.
  errno = 0;
  const int nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::getpid()));
  if (errno == 0) (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), nice);
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

namespace {

// ParallelFor's threads: made on first use and kept, so that a deep view's
// readahead (one ParallelFor per window) does not make and join eight
// threads each time. Sixteen: two callers at once (the mount's readahead
// and its background layer loads) each still get the 7 helpers that a pool
// of their own gave them, keeping as many disk reads in flight. A process
// made by fork() has none of its parent's threads: it makes its own pool
// (the parent's is left alone, never used).
constexpr unsigned kSharedThreads = 16;
WorkerPool& SharedPool(unsigned* usable) {
  static std::mutex mu;
  static WorkerPool* pool = nullptr;
  static pid_t owner = 0;
  std::lock_guard<std::mutex> lock(mu);
  if (pool == nullptr || owner != ::getpid()) {
    pool = new WorkerPool(kSharedThreads);  // never destroyed: threads may outlive main
    owner = ::getpid();
  }
  *usable = pool->size();
  return *pool;
}

// One call's chunks, taken in turn by the caller and by helpers; a helper
// that comes after the last chunk was taken does nothing (the call may have
// returned: it touches only this shared state).
struct ForChunks {
  std::atomic<size_t> next{0};
  size_t chunks = 0, step = 0, n = 0;
  const std::function<void(size_t)>* fn = nullptr;
  std::mutex mu;
  std::condition_variable cv;
  size_t finished = 0;
  std::exception_ptr error;

  void Work() {
    for (size_t c; (c = next.fetch_add(1)) < chunks;) {
      std::exception_ptr e;
      try {
        for (size_t i = c * step, end = std::min(n, i + step); i < end; ++i) (*fn)(i);
      } catch (...) {
        e = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mu);
      if (e && !error) error = e;
      if (++finished == chunks) cv.notify_all();
    }
  }
};

}  // namespace

void ParallelFor(size_t n, size_t min_parallel, unsigned threads,
                 const std::function<void(size_t)>& fn) {
  if (n < std::max<size_t>(min_parallel, 2) || threads < 2) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  unsigned usable = 0;
  WorkerPool& pool = SharedPool(&usable);
  const unsigned helpers = std::min(threads - 1, usable);
  auto work = std::make_shared<ForChunks>();
  work->chunks = std::min<size_t>(n, 4 * static_cast<size_t>(helpers + 1));
  work->step = (n + work->chunks - 1) / work->chunks;
  work->chunks = (n + work->step - 1) / work->step;
  work->n = n;
  work->fn = &fn;
  // The caller works too: a call made from a pool thread (nested), or while
  // the pool is busy, still finishes, on its own thread if need be.
  for (unsigned h = 0; h < helpers && h + 1 < work->chunks; ++h)
    (void)pool.Submit([work] { work->Work(); });
  work->Work();
  std::unique_lock<std::mutex> lock(work->mu);
  work->cv.wait(lock, [&] { return work->finished == work->chunks; });
  if (work->error) std::rethrow_exception(work->error);
}

}  // namespace chainfs
