#include "cache/readahead.h"

#include <algorithm>

namespace chainfs {
namespace {

ReadaheadOptions Normalized(ReadaheadOptions o) {
  o.min_window = std::max<uint64_t>(o.min_window, 4096);
  o.max_window = std::max(o.max_window, o.min_window);
  return o;
}

}  // namespace

uint64_t Readahead::Stream::window() const {
  std::lock_guard<std::mutex> lock(mu_);
  return window_;
}

uint64_t Readahead::Stream::ahead() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ahead_;
}

Readahead::Readahead(BlockCache* cache, const ReadaheadOptions& options)
    : cache_(cache), options_(Normalized(options)) {
  for (unsigned i = 0; i < options_.threads; ++i) workers_.emplace_back([this] { Work(); });
  if (!workers_.empty()) disk_thread_ = std::thread([this] { HintDisk(); });
}

Readahead::~Readahead() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    queue_.clear();
    hints_.clear();
  }
  work_cv_.notify_all();
  hint_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  if (disk_thread_.joinable()) disk_thread_.join();
}

std::shared_ptr<Readahead::Stream> Readahead::Open(std::shared_ptr<const View> view) {
  return std::make_shared<Stream>(std::move(view));
}

bool Readahead::Stream::Adjacent(uint64_t offset, uint64_t end) const {
  for (const Range& r : recent_)
    if (r.end != 0 && (offset == r.end || end == r.start)) return true;
  return false;
}

bool Readahead::Sequential(Stream& s, uint64_t offset, uint64_t n) {
  if (workers_.empty() || n == 0) return false;
  std::lock_guard<std::mutex> lock(s.mu_);
  const uint64_t end = offset + n;
  // Once a window is open, a read inside it (one request overtaking another)
  // keeps the stream sequential.
  const bool in_window = s.window_ != 0 && offset + s.window_ >= s.front_ && offset < s.ahead_;
  const bool sequential = in_window || s.Adjacent(offset, end);
  s.recent_[s.next_recent_++ % s.recent_.size()] = {offset, end};
  if (!sequential) {
    if (s.window_ != 0) {
      collapses_.fetch_add(1, std::memory_order_relaxed);
      s.generation_.fetch_add(1, std::memory_order_relaxed);  // queued work is stale
    }
    s.window_ = 0;
    s.ahead_ = 0;
    s.disk_ahead_ = 0;
    s.sequential_run_ = 1;
    s.front_ = end;
    return false;
  }
  s.sequential_run_ = std::min<uint32_t>(s.sequential_run_ + 1, 1u << 30);
  s.front_ = std::max(s.front_, end);
  if (s.sequential_run_ < kStartRun) return false;
  // Due when the reader has consumed half of what is queued ahead of it.
  const uint64_t front = s.front_;
  const uint64_t ahead_of_reader = s.ahead_ > front ? s.ahead_ - front : 0;
  if (s.window_ != 0 && ahead_of_reader >= s.window_ / 2) return true;
  // The first window holds at least two of the reader's requests: the
  // kernel asks a FUSE file for up to 1 MiB at a time, and a 256 KiB
  // window, hinted three windows ahead, left a deep chain's first ~30 MiB
  // to be read block by block, each from its own file, as requested.
  s.window_ = s.window_ == 0 ? std::min(std::max(options_.min_window, 2 * n), options_.max_window)
                             : std::min(s.window_ * 2, options_.max_window);
  const uint64_t start = std::max(s.ahead_, front);
  const uint64_t stop = std::min(front + s.window_, s.view_->size());
  s.ahead_ = std::max(s.ahead_, stop);
  if (start < stop) Queue(s, start, stop);
  // Disk reads start for the whole window at once (the workers decode a few
  // blocks at a time; a deep chain scatters a window over many files, where
  // the kernel's own readahead does not help) and run kDiskAhead windows
  // further, so that a cold repository streams from disk while the workers
  // decode what has arrived. Each byte is asked for once per run.
  const uint64_t disk_stop = std::min(stop + kDiskAhead * s.window_, s.view_->size());
  const uint64_t from = std::max(start, s.disk_ahead_);
  if (from < disk_stop) {
    s.disk_ahead_ = disk_stop;
    std::lock_guard<std::mutex> lock(mu_);
    if (hints_.size() < kMaxQueuedHints) {
      hints_.push_back({s.weak_from_this(), s.view_, from, disk_stop - from});
      hint_cv_.notify_one();
    }
  }
  return true;
}

// Queues the data blocks of [start, stop) (bytes of the stream's view) that
// are neither resident nor being loaded. REQUIRES: s.mu_ held.
void Readahead::Queue(Stream& s, uint64_t start, uint64_t stop) {
  const View& view = *s.view_;
  const ExtentMap& map = view.map();
  const uint64_t generation = s.generation_.load(std::memory_order_relaxed);
  std::vector<Task> tasks;
  for (const MapRun* r = map.FindAtOrAfter(start); r != nullptr && r != map.runs_end(); ++r) {
    if (r->start >= stop) break;
    if (r->is_zero()) continue;
    const auto& layer = view.layers()[r->layer].layer;
    const auto [first, last] = r->EntriesOf(std::max(start, r->start), std::min(stop, r->end));
    for (uint64_t entry = first; entry <= last; ++entry) {
      // Runs of one layer split by a newer one may share an entry.
      const bool queued = !tasks.empty() && tasks.back().layer == layer &&
                          tasks.back().entry == entry;
      if (options_.skip_raw &&
          (layer->RawSpan(entry, 0, layer->block_size()) || layer->KeepsDecoded(entry)))
        continue;
      if (!queued && !cache_->Contains(layer->id(), entry))
        tasks.push_back(Task{s.weak_from_this(), generation, layer, entry});
    }
  }
  batches_.fetch_add(1, std::memory_order_relaxed);
  size_t accepted = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (Task& t : tasks) {
      if (queue_.size() >= options_.max_queued_blocks) break;
      queue_.push_back(std::move(t));
      ++accepted;
    }
  }
  queued_.fetch_add(accepted, std::memory_order_relaxed);
  dropped_.fetch_add(tasks.size() - accepted, std::memory_order_relaxed);
  if (accepted == 1)
    work_cv_.notify_one();
  else if (accepted > 1)
    work_cv_.notify_all();
}

bool Readahead::Live(const std::weak_ptr<Stream>& stream, uint64_t generation) {
  std::shared_ptr<Stream> s = stream.lock();
  return s && s->generation_.load(std::memory_order_relaxed) == generation;
}

bool Readahead::Idle() const { return busy_ == 0 && queue_.empty() && hints_.empty(); }

template <typename Item, typename Fn>
void Readahead::Serve(std::deque<Item>& items, std::condition_variable& cv, Fn run) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv.wait(lock, [&] { return stop_ || !items.empty(); });
    if (stop_) return;
    Item item = std::move(items.front());
    items.pop_front();
    ++busy_;
    lock.unlock();
    run(item);
    item = Item{};  // release what it holds (a layer, a stream) outside the lock
    lock.lock();
    --busy_;
    if (Idle()) idle_cv_.notify_all();
  }
}

void Readahead::HintDisk() {
  Serve(hints_, hint_cv_, [](const DiskHint& h) {
    if (!h.stream.expired()) h.view->WillNeed(h.offset, h.n);
  });
}

void Readahead::Work() {
  Serve(queue_, work_cv_, [this](const Task& task) {
    if (Live(task.stream, task.generation))
      cache_->Prefetch(*task.layer, task.entry);  // a failure is the reader's to see
    else
      cancelled_.fetch_add(1, std::memory_order_relaxed);
  });
}

void Readahead::Drain() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [this] { return stop_ || Idle(); });
}

ReadaheadStats Readahead::Stats() const {
  ReadaheadStats s;
  s.batches = batches_.load(std::memory_order_relaxed);
  s.queued = queued_.load(std::memory_order_relaxed);
  s.dropped = dropped_.load(std::memory_order_relaxed);
  s.cancelled = cancelled_.load(std::memory_order_relaxed);
  s.collapses = collapses_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace chainfs
