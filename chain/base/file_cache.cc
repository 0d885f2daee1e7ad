#include "chain/base/file_cache.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <list>
#include <mutex>
#include <utility>
#include <vector>

namespace chainfs {
namespace {
class CachedFile;
}  // namespace

struct FileCache::State {
  explicit State(size_t c) : capacity(c) {}
  // Unlinks the least recently used entry other than `keep`, preferring one
  // no read holds, and returns its descriptor (the caller drops it after
  // unlocking mu). REQUIRES: mu held, lru has an entry other than keep.
  std::shared_ptr<RandomAccessFile> EvictOne(const CachedFile* keep);

  std::mutex mu;
  size_t capacity;                     // guarded by mu
  std::list<const CachedFile*> lru;    // guarded by mu; front: most recent; each has a descriptor
};

namespace {

// A file of a FileCache: path, size and identity for life; a descriptor
// while the cache keeps one (open_, at pos_ in the cache's lru).
class CachedFile final : public RandomAccessFile {
 public:
  CachedFile(std::shared_ptr<FileCache::State> state, Env* env, std::string path, uint64_t size,
             FileId id)
      : state_(std::move(state)), env_(env), path_(std::move(path)), size_(size), id_(id) {}
  ~CachedFile() override {
    std::shared_ptr<RandomAccessFile> closed;  // closed after the lock is released
    std::lock_guard<std::mutex> lock(state_->mu);
    if (open_ != nullptr) Unlink(&closed);
  }

  Status ReadAt(uint64_t offset, size_t n, void* buf) const override {
    std::shared_ptr<RandomAccessFile> f;
    CHAINFS_RETURN_IF_ERROR(Acquire(&f));
    return f->ReadAt(offset, n, buf);
  }
  Status SpliceTo(uint64_t offset, size_t n, int pipe_fd) const override {
    std::shared_ptr<RandomAccessFile> f;  // held: not closed while splicing
    CHAINFS_RETURN_IF_ERROR(Acquire(&f));
    return f->SpliceTo(offset, n, pipe_fd);
  }
  void WillNeed(uint64_t offset, uint64_t n) const override {
    std::shared_ptr<RandomAccessFile> f;
    if (Acquire(&f).ok()) f->WillNeed(offset, n);
  }
  void AdviseRandom() const override {
    random_.store(true, std::memory_order_relaxed);  // for descriptors opened later
    std::shared_ptr<RandomAccessFile> f;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      f = open_;
    }
    if (f != nullptr) f->AdviseRandom();
  }
  uint64_t Size() const override { return size_; }
  const std::string& Path() const override { return path_; }
  FileId Id() const override { return id_; }

  // Makes f this file's descriptor, most recently used; evicts another
  // beyond capacity into *closed. REQUIRES: state_->mu held, none kept now.
  void Insert(std::shared_ptr<RandomAccessFile> f, std::shared_ptr<RandomAccessFile>* closed) const {
    open_ = std::move(f);
    state_->lru.push_front(this);
    pos_ = state_->lru.begin();
    if (state_->lru.size() > state_->capacity) *closed = state_->EvictOne(this);
  }
  // Drops this file's descriptor from the cache into *closed.
  // REQUIRES: state_->mu held, a descriptor kept.
  void Unlink(std::shared_ptr<RandomAccessFile>* closed) const {
    state_->lru.erase(pos_);
    *closed = std::move(open_);
  }
  bool InUse() const { return open_.use_count() > 1; }  // REQUIRES: state_->mu held

 private:
  // The descriptor to read with: the cached one, or the file reopened.
  Status Acquire(std::shared_ptr<RandomAccessFile>* out) const {
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (open_ != nullptr) {
        state_->lru.splice(state_->lru.begin(), state_->lru, pos_);
        *out = open_;
        return Status::Ok();
      }
    }
    std::shared_ptr<RandomAccessFile> fresh;  // both dropped after the lock is released
    std::shared_ptr<RandomAccessFile> closed;
    CHAINFS_RETURN_IF_ERROR(Reopen(&fresh));
    if (random_.load(std::memory_order_relaxed)) fresh->AdviseRandom();
    std::lock_guard<std::mutex> lock(state_->mu);
    if (open_ != nullptr) {  // another reader reopened it meanwhile
      state_->lru.splice(state_->lru.begin(), state_->lru, pos_);
    } else {
      Insert(std::move(fresh), &closed);
    }
    *out = open_;
    return Status::Ok();
  }

  // Opens path_ again; it must still be the file first opened.
  Status Reopen(std::shared_ptr<RandomAccessFile>* out) const {
    auto f = env_->NewRandomAccessFile(path_);
    if (!f.ok()) {
      if (f.status().code() != Status::Code::kNotFound) return f.status();
      return Status::FromErrno(EIO, path_ + " was removed while in use (a consolidation or "
                                            "prune deleted it after it was opened)");
    }
    const FileId now = f.value()->Id();
    if ((id_.known() && now != id_) || f.value()->Size() != size_)
      return Status::Corruption(
          path_ + " was replaced since it was opened (device:inode " + std::to_string(id_.dev) +
          ":" + std::to_string(id_.ino) + ", " + std::to_string(size_) + " bytes then; " +
          std::to_string(now.dev) + ":" + std::to_string(now.ino) + ", " +
          std::to_string(f.value()->Size()) + " bytes now): refusing to read it");
    *out = std::move(f).value();
    return Status::Ok();
  }

  const std::shared_ptr<FileCache::State> state_;
  Env* const env_;
  const std::string path_;
  const uint64_t size_;
  mutable std::atomic<bool> random_{false};  // AdviseRandom was called
  const FileId id_;
  mutable std::shared_ptr<RandomAccessFile> open_;         // guarded by state_->mu
  mutable std::list<const CachedFile*>::iterator pos_;     // guarded by state_->mu; valid if open_
};

// Forwards everything to its target but NewRandomAccessFile. A whole small
// file (a manifest, a view map) is read once and closed: it is not cached,
// so reading a deep group's 1,000 manifests evicts no layer's descriptor.
class CachingEnv : public EnvWrapper {
 public:
  CachingEnv(Env* base, FileCache* cache) : EnvWrapper(base), cache_(cache) {}
  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override {
    return cache_->Open(target(), path);
  }

 protected:
  Result<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) override {
    return target()->ReadWholeFile(path, max_bytes);
  }

 private:
  FileCache* const cache_;
};

}  // namespace

std::shared_ptr<RandomAccessFile> FileCache::State::EvictOne(const CachedFile* keep) {
  auto victim = lru.end();
  for (auto it = lru.end(); it != lru.begin();) {
    --it;
    if (*it == keep) continue;
    if (victim == lru.end()) victim = it;  // the least recent, if all are in use
    if (!(*it)->InUse()) {
      victim = it;
      break;
    }
  }
  std::shared_ptr<RandomAccessFile> closed;
  (*victim)->Unlink(&closed);
  return closed;
}

FileCache::FileCache(size_t capacity)
    : state_(std::make_shared<State>(std::max<size_t>(capacity, 1))) {}

FileCache::~FileCache() = default;

Result<std::unique_ptr<RandomAccessFile>> FileCache::Open(Env* env, const std::string& path) {
  CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> f, env->NewRandomAccessFile(path));
  auto file = std::make_unique<CachedFile>(state_, env, path, f->Size(), f->Id());
  std::shared_ptr<RandomAccessFile> closed;  // closed after the lock is released
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    file->Insert(std::move(f), &closed);
  }
  return std::unique_ptr<RandomAccessFile>(std::move(file));
}

size_t FileCache::capacity() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->capacity;
}

void FileCache::SetCapacity(size_t capacity) {
  std::vector<std::shared_ptr<RandomAccessFile>> closed;  // closed after the lock is released
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->capacity = std::max<size_t>(capacity, 1);
  while (state_->lru.size() > state_->capacity) closed.push_back(state_->EvictOne(nullptr));
}

size_t FileCache::open_count() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->lru.size();
}

std::unique_ptr<Env> NewCachingEnv(Env* base, FileCache* cache) {
  return std::make_unique<CachingEnv>(base, cache);
}

size_t FileCacheCapacityFor(uint64_t soft_limit) {
  return static_cast<size_t>(std::clamp<uint64_t>(soft_limit / 2, 16, 65536));
}

size_t DefaultFileCacheCapacity() {
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 512;
  return FileCacheCapacityFor(rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : rl.rlim_cur);
}

Result<uint64_t> RaiseOpenFileLimit() {
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return Status::FromErrno(errno, "getrlimit NOFILE");
  if (rl.rlim_cur == rl.rlim_max) return static_cast<uint64_t>(rl.rlim_cur);
  rlim_t want = rl.rlim_max;
  if (want == RLIM_INFINITY) {  // the kernel caps descriptors at fs.nr_open
    auto text = Env::Default()->ReadWholeFile("/proc/sys/fs/nr_open", 64);
    want = text.ok() ? static_cast<rlim_t>(std::strtoull(text.value().c_str(), nullptr, 10))
                     : 1048576;
    if (want <= rl.rlim_cur) return static_cast<uint64_t>(rl.rlim_cur);
  }
  rl.rlim_cur = want;
  if (::setrlimit(RLIMIT_NOFILE, &rl) != 0)
    return Status::FromErrno(errno, "raising the open-file limit to " + std::to_string(want));
  return static_cast<uint64_t>(want);
}

Result<size_t> ReserveDescriptorTable(size_t n) {
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return Status::FromErrno(errno, "getrlimit NOFILE");
  if (rl.rlim_cur != RLIM_INFINITY) n = std::min<uint64_t>(n, rl.rlim_cur);
  if (n == 0) return size_t{0};
  n = std::min<size_t>(n, static_cast<size_t>(INT32_MAX));
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "opening /dev/null to grow the descriptor table");
  // The lowest free descriptor at or above n - 1: the table grows to hold it.
  const int high = ::fcntl(fd, F_DUPFD_CLOEXEC, static_cast<int>(n - 1));
  const int err = errno;
  ::close(fd);
  if (high < 0)
    return Status::FromErrno(err, "growing the descriptor table to " + std::to_string(n));
  ::close(high);
  return static_cast<size_t>(high) + 1;
}

size_t DescriptorsToReserve() {
  return std::min(DefaultFileCacheCapacity() + kDescriptorMargin, kMaxReservedDescriptors);
}

}  // namespace chainfs
