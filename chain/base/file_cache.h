// FileCache: open files with a limit on descriptors (after leveldb's
// TableCache and max_open_files).
//
// A layer reads its delta file for as long as a view uses it, and a view
// uses every layer of its chain: one descriptor per layer for life would cap
// a chain's depth at the open-file limit. A file opened through a FileCache
// keeps its path, size and identity, and holds a descriptor only while the
// cache keeps one for it:
//
//   FileCache cache(DefaultFileCacheCapacity());
//   std::unique_ptr<Env> env = NewCachingEnv(repo_env, &cache);
//   auto f = env->NewRandomAccessFile(path);   // opened once: size and FileId kept
//   f->ReadAt(off, n, buf);   // cached descriptor, or reopened by path (LRU evicts another)
//
//   FileCache ── lru: [f7 fd] [f3 fd] [f1 fd] ... (at most capacity)
//      ▲                        ▲
//   CachedFile f1 (path, size, FileId, shared_ptr<descriptor> or none)
//
// A read takes a shared reference to the descriptor under the cache's mutex
// (one lock, no allocation when cached) and reads without the lock, so
// eviction never closes a descriptor under a read in flight: an evicted
// descriptor closes when its last read ends. Descriptors open at once are at
// most capacity + reads in flight on evicted ones.
//
// Reopen safety: a reopened file must be the file first opened, with the same
// FileId (st_dev, st_ino) and size. A different file at the path is
// kCorruption ("... was replaced since it was opened"); no file is an I/O
// error (EIO) saying it was removed while in use (a consolidation or prune
// deletes old deltas last): never bytes of another file. While the
// descriptor stays cached, the file keeps reading its bytes after removal.
//
// Thread-safety: every method of FileCache and of the files is thread-safe.
// A file may outlive its FileCache (the state is shared); the Env it was
// opened through must outlive the file (it reopens through it).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "chain/base/env.h"

namespace chainfs {

class FileCache {
 public:
  // REQUIRES: capacity >= 1.
  explicit FileCache(size_t capacity);
  FileCache(const FileCache&) = delete;
  FileCache& operator=(const FileCache&) = delete;
  ~FileCache();

  // Opens path through env (its size and FileId are learnt now) and returns
  // a file whose descriptor this cache holds while it keeps it. Errors are
  // env's.
  Result<std::unique_ptr<RandomAccessFile>> Open(Env* env, const std::string& path);

  size_t capacity() const;
  // Changes the limit, closing least recently used descriptors beyond it.
  void SetCapacity(size_t capacity);
  // Descriptors the cache holds now (never more than capacity()).
  size_t open_count() const;

  struct State;  // shared with the files

 private:
  std::shared_ptr<State> state_;
};

// An Env that forwards every call to base, except NewRandomAccessFile, which
// opens through cache. REQUIRES: base and cache outlive it.
std::unique_ptr<Env> NewCachingEnv(Env* base, FileCache* cache);

// Capacity for a process whose soft RLIMIT_NOFILE is soft_limit: half of it
// (room for FUSE, sources, outputs, sockets), at least 16, at most 65536.
size_t FileCacheCapacityFor(uint64_t soft_limit);
// FileCacheCapacityFor(the current soft RLIMIT_NOFILE); 512 if unknown.
size_t DefaultFileCacheCapacity();

// Raises the soft RLIMIT_NOFILE to the hard limit (an unlimited hard limit:
// the kernel's fs.nr_open) and returns the new soft limit. The CLI calls it
// first thing; a failure is not fatal (the cache is sized from what holds).
Result<uint64_t> RaiseOpenFileLimit();

// Grows this process's descriptor table now to hold n descriptors (capped
// at the soft RLIMIT_NOFILE) and returns its new size. The kernel grows the
// table by doubling as descriptors are opened, and in a process of several
// threads every growth waits for an RCU grace period (expand_fdtable's
// synchronize_rcu), about 5 ms on these machines: an export of a depth-10,000
// view, which opens ~3,300 delta files, waited six times, 35 of its 70 ms.
// In a process of one thread a growth costs microseconds. So the CLI calls
// this first thing and the mount daemon after it has forked (a fork's child
// gets a table sized to the descriptors open then), each before starting a
// thread. Leaves no descriptor open.
Result<size_t> ReserveDescriptorTable(size_t n);
// What they reserve: room for the file cache plus kDescriptorMargin, at most
// kMaxReservedDescriptors (128 KiB of kernel memory; a deeper view's opens
// pay for the few doublings beyond).
inline constexpr size_t kDescriptorMargin = 256;
inline constexpr size_t kMaxReservedDescriptors = 16384;
size_t DescriptorsToReserve();

}  // namespace chainfs
