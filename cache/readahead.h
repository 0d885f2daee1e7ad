// Readahead: per open file, detect sequential reads and load the blocks that
// follow into the BlockCache on a small worker pool, ahead of the reader.
//
//   read(off, n) ──► OnRead(stream, off, n) ──► sequential? ──no──► collapse window,
//                      (never blocks on I/O)       │yes              cancel queued
//                                                  ▼
//        reader crossed the middle of the prefetched window?
//                                                  │yes
//                                                  ▼
//        window = min(2 * window, max); queue blocks [ahead, end + window)
//        not already cached or in flight ──► workers: BlockCache::Prefetch
//
// Sequential: the read starts exactly where one of the stream's last four
// reads ended, or ends exactly where one started (FUSE worker threads may
// deliver a sequential reader's requests slightly out of order; the kernel's
// requests are page-aligned and contiguous), or, once a window is open, lies
// inside it. Readahead starts on the third
// sequential read in a row (kStartRun), with the minimum window, and doubles
// the window at each new batch up to the maximum. Random 4 KiB reads in a
// 64 MiB region start it with a probability of about 1 in 4 million per read.
// Disk reads run ahead of decoding: each batch also asks the kernel to fetch
// the stored bytes of the next kDiskAhead windows (View::WillNeed). The ask
// runs on a thread of its own, not in the reader's request: posix_fadvise
// allocates the page cache and submits the I/O for all of it, which took an
// eighth of the daemon's CPU in a disk-cold read, and held up the reply and
// the stream's other requests meanwhile.
// A non-sequential read collapses the window to zero and makes the stream's
// queued blocks stale (workers skip them).
//
// A queued prefetch never holds anything a foreground read waits for: the
// cache learns about a prefetch only when a worker starts loading it, so a
// reader that needs a block still in the queue loads it itself, and the worker
// later finds it resident and skips it. Used and wasted prefetches are counted
// by the cache (readahead_used: a prefetched block later read;
// readahead_wasted: evicted unread).
//
// Memory: queued tasks are bounded by max_queued_blocks (about 48 bytes each);
// beyond it new prefetches are dropped (counted).
//
// Thread-safety: all methods are thread-safe; a Stream may be used by
// concurrent reads of the same open file.
//
//   Readahead ra(&cache, {});
//   auto stream = ra.Open(view);          // at open()
//   ReadOptions ro = ra.OnRead(*stream, off, n);   // in read(), before view->Read
//   view->Read(off, n, buf, ro);
//   stream.reset();                       // at release(): queued work dropped
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "cache/block_cache.h"
#include "chain/layer/view.h"

namespace chainfs {

struct ReadaheadOptions {
  uint64_t min_window = 256ull << 10;
  uint64_t max_window = 16ull << 20;
  unsigned threads = 2;  // 0 disables readahead
  size_t max_queued_blocks = 4096;
  // Blocks stored raw (Layer::RawSpan) are not loaded into the cache, only
  // asked from disk (View::WillNeed): a reader that splices them from the
  // page cache (ReadOptions::file_pieces) would never use the copy. Nor are
  // blocks a layer keeps decoded (Layer::KeepsDecoded): such a reader's scan
  // takes them from there (View::ReadPieces), and View::WillNeed has the
  // layer decode them ahead.
  bool skip_raw = false;
};

struct ReadaheadStats {
  uint64_t batches = 0;    // windows queued
  uint64_t queued = 0;     // blocks queued
  uint64_t dropped = 0;    // blocks not queued: queue full
  uint64_t cancelled = 0;  // queued blocks skipped: stream closed or went random
  uint64_t collapses = 0;  // sequential streams that turned random
};

class Readahead {
 public:
  // Sequential reads in a row (counting the first) before readahead starts.
  static constexpr uint32_t kStartRun = 3;
  // The stored bytes of this many windows beyond the queued ones are
  // requested from disk (posix_fadvise WILLNEED) ahead of decoding.
  static constexpr uint64_t kDiskAhead = 2;

  class Stream;

  // REQUIRES: cache outlives this object.
  Readahead(BlockCache* cache, const ReadaheadOptions& options);
  ~Readahead();  // drops queued work, joins workers
  Readahead(const Readahead&) = delete;
  Readahead& operator=(const Readahead&) = delete;

  // State for one open file of view. Dropping the last reference cancels its
  // queued prefetches.
  std::shared_ptr<Stream> Open(std::shared_ptr<const View> view);
  // Records a read of [offset, offset + n) and queues prefetches if due.
  // Returns how to serve the read: scan is set if the stream is in a
  // sequential run with a window open (ReadOptions::scan).
  ReadOptions OnRead(Stream& stream, uint64_t offset, uint64_t n) {
    return ReadOptions{.scan = Sequential(stream, offset, n)};
  }
  // Waits until no prefetch is queued or running (tests and benchmarks).
  void Drain();

  ReadaheadStats Stats() const;
  const ReadaheadOptions& options() const { return options_; }

 private:
  // OnRead: true if the read is part of a sequential run with a window open.
  bool Sequential(Stream& stream, uint64_t offset, uint64_t n);
  struct Task {
    std::weak_ptr<Stream> stream;
    uint64_t generation;
    std::shared_ptr<const Layer> layer;
    uint64_t entry;
  };
  // Bytes [offset, offset + n) of a stream's view to ask the kernel for. The
  // disk thread never holds the stream itself (only checks it is still open),
  // so closing a file cancels its queued prefetches at once.
  struct DiskHint {
    std::weak_ptr<Stream> stream;
    std::shared_ptr<const View> view;
    uint64_t offset, n;
  };
  static constexpr size_t kMaxQueuedHints = 64;
  void Queue(Stream& stream, uint64_t start, uint64_t stop);
  // A thread's loop: runs the items of `items` (guarded by mu_) until stop_.
  template <typename Item, typename Fn>
  void Serve(std::deque<Item>& items, std::condition_variable& cv, Fn run);
  void Work();      // a prefetch worker
  void HintDisk();  // the disk thread
  // True if the stream is still open and has not gone random since `generation`.
  static bool Live(const std::weak_ptr<Stream>& stream, uint64_t generation);
  bool Idle() const;  // REQUIRES: mu_

  BlockCache* cache_;
  const ReadaheadOptions options_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable idle_cv_;
  std::deque<Task> queue_;
  unsigned busy_ = 0;  // tasks and hints being run
  bool stop_ = false;
  std::vector<std::thread> workers_;
  std::condition_variable hint_cv_;
  std::deque<DiskHint> hints_;
  std::thread disk_thread_;
  std::atomic<uint64_t> batches_{0}, queued_{0}, dropped_{0}, cancelled_{0}, collapses_{0};
};

class Readahead::Stream : public std::enable_shared_from_this<Readahead::Stream> {
 public:
  explicit Stream(std::shared_ptr<const View> view) : view_(std::move(view)) {}
  const View& view() const { return *view_; }
  // Current window in bytes (0: not sequential) and the end of what has been
  // queued so far, for tests.
  uint64_t window() const;
  uint64_t ahead() const;

 private:
  friend class Readahead;
  struct Range {
    uint64_t start = 0, end = 0;  // end == 0: unused slot
  };
  // True if [offset, end) continues or precedes one of recent_. REQUIRES: mu_.
  bool Adjacent(uint64_t offset, uint64_t end) const;

  std::shared_ptr<const View> view_;
  mutable std::mutex mu_;
  std::array<Range, 4> recent_;  // the last reads, a ring
  size_t next_recent_ = 0;
  uint64_t front_ = 0;           // furthest end of the current sequential run
  uint32_t sequential_run_ = 0;  // consecutive sequential reads
  uint64_t window_ = 0;
  uint64_t ahead_ = 0;
  uint64_t disk_ahead_ = 0;  // end of what the kernel was asked to fetch from disk
  std::atomic<uint64_t> generation_{0};
};

}  // namespace chainfs
