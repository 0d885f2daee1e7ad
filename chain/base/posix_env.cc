// Env::Default(): the local POSIX file system.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <future>
#include <new>

#include "chain/base/env.h"
#include "chain/base/failpoint.h"

namespace chainfs {
namespace {

constexpr size_t kDirectBuffer = AppendFile::kDirectBuffer;
constexpr size_t kDirectAlign = AppendFile::kDirectAlign;

char* AlignedBuffer(size_t n) {
  void* buf = nullptr;
  if (::posix_memalign(&buf, kDirectAlign, n) != 0) throw std::bad_alloc();
  return static_cast<char*>(buf);
}

// pwrite of all of [p, p + len) at `at`; EINTR retried.
Status PwriteAll(int fd, const char* p, size_t len, uint64_t at, const std::string& path) {
  size_t done = 0;
  while (done < len) {
    ssize_t w = ::pwrite(fd, p + done, len - done, static_cast<off_t>(at + done));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return Status::FromErrno(errno, "writing " + path);
    done += static_cast<size_t>(w);
  }
  return Status::Ok();
}

// An open descriptor with its path and its size at open time; closed when destroyed.
struct OpenFd {
  OpenFd(int fd, std::string path, uint64_t size) : fd(fd), path(std::move(path)), size(size) {}
  ~OpenFd() {
    if (fd >= 0) ::close(fd);
  }
  int fd;
  std::string path;
  uint64_t size;
};

// Opens path with flags and wraps the descriptor and its size (the end: a
// block device's capacity too) in a T(fd, path, size).
template <typename T, typename Base>
Result<std::unique_ptr<Base>> OpenSized(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno(errno, "opening " + path);
  off_t end = ::lseek(fd, 0, SEEK_END);
  if (end < 0) {
    int e = errno;
    ::close(fd);
    return Status::FromErrno(e, "size of " + path);
  }
  return std::unique_ptr<Base>(new T(fd, path, static_cast<uint64_t>(end)));
}

class PosixRandomAccessFile : public RandomAccessFile {
 public:
  PosixRandomAccessFile(int fd, std::string path, uint64_t size) : f_(fd, std::move(path), size) {}

  void WillNeed(uint64_t offset, uint64_t n) const override {
    (void)::posix_fadvise(f_.fd, static_cast<off_t>(offset), static_cast<off_t>(n),
                          POSIX_FADV_WILLNEED);
  }
  Status ReadAt(uint64_t offset, size_t n, void* buf) const override {
    auto* p = static_cast<char*>(buf);
    size_t done = 0;
    while (done < n) {
      ssize_t r = ::pread(f_.fd, p + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno(errno, f_.path + ": read at offset " +
                                            std::to_string(offset + done));
      }
      if (r == 0)
        return Status::Corruption(f_.path + ": truncated: wanted " + std::to_string(n) +
                                  " bytes at offset " + std::to_string(offset) +
                                  ", file ends at " + std::to_string(offset + done));
      done += static_cast<size_t>(r);
    }
    return Status::Ok();
  }
  uint64_t Size() const override { return f_.size; }
  const std::string& Path() const override { return f_.path; }

 private:
  OpenFd f_;
};

class PosixAppendFile : public AppendFile {
 public:
  PosixAppendFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixAppendFile() override;
  // O_EXCL create; mode kDirect falls back to kBuffered where refused.
  static Result<std::unique_ptr<AppendFile>> Create(const std::string& path, WriteMode mode);
  Status Append(const void* data, size_t n) override;
  Status Sync() override;
  Status Close() override;
  uint64_t Offset() const override { return offset_; }
  const std::string& Path() const override { return path_; }
  WriteMode mode() const override { return direct_ ? WriteMode::kDirect : WriteMode::kBuffered; }

 private:
  struct FreeDeleter {
    void operator()(char* p) const { std::free(p); }
  };
  Status AppendBuffered(const char* p, size_t n);
  Status AppendDirect(const char* p, size_t n);
  // kDirect: writes buf_[0, len) at flushed_ (len a multiple of kDirectAlign),
  // falling back to kBuffered if the very first write is refused.
  Status WriteDirect(size_t len);
  // kDirect: hands the full buf_ to a helper thread and continues in spare_.
  Status WriteDirectBehind();
  Status WaitInflight();
  int fd_;
  std::string path_;
  uint64_t offset_ = 0;
  uint64_t writeback_started_ = 0;  // kBuffered: bytes before this have writeback started
  bool direct_ = false;
  std::unique_ptr<char, FreeDeleter> buf_;  // kDirect: bytes from flushed_ on
  std::unique_ptr<char, FreeDeleter> spare_;  // kDirect: being written, or free
  std::future<Status> inflight_;              // the write of spare_, if any
  size_t buf_len_ = 0;
  uint64_t flushed_ = 0;  // kDirect: file offset of buf_[0], a multiple of kDirectAlign
};

Result<std::unique_ptr<AppendFile>> PosixAppendFile::Create(const std::string& path,
                                                         WriteMode mode) {
  const int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
  int fd = -1;
  bool direct = false;
  if (mode == WriteMode::kDirect) {
    fd = ::open(path.c_str(), flags | O_DIRECT, 0600);
    direct = fd >= 0;
    if (fd < 0 && errno != EINVAL) return Status::FromErrno(errno, "creating " + path);
  }
  if (fd < 0) fd = ::open(path.c_str(), flags, 0600);
  if (fd < 0) return Status::FromErrno(errno, "creating " + path);
  auto f = std::make_unique<PosixAppendFile>(fd, path);
  if (direct) {
    f->buf_.reset(AlignedBuffer(kDirectBuffer));
    f->direct_ = true;
  }
  return std::unique_ptr<AppendFile>(std::move(f));
}

PosixAppendFile::~PosixAppendFile() {
  if (inflight_.valid()) inflight_.wait();
  if (fd_ >= 0) ::close(fd_);
}

Status PosixAppendFile::Append(const void* data, size_t n) {
  const auto* p = static_cast<const char*>(data);
  Status st = direct_ ? AppendDirect(p, n) : AppendBuffered(p, n);
  if (st.ok()) offset_ += n;
  return st;
}

Status PosixAppendFile::AppendDirect(const char* p, size_t n) {
  while (n > 0) {
    const size_t take = std::min(n, kDirectBuffer - buf_len_);
    std::memcpy(buf_.get() + buf_len_, p, take);
    buf_len_ += take;
    p += take;
    n -= take;
    if (buf_len_ == kDirectBuffer) {
      if (flushed_ == 0) {  // the first write tells whether O_DIRECT works here
        CHAINFS_RETURN_IF_ERROR(WriteDirect(kDirectBuffer));
        if (!direct_) return AppendBuffered(p, n);  // fell back: the rest goes buffered
        flushed_ += kDirectBuffer;
        buf_len_ = 0;
      } else {
        CHAINFS_RETURN_IF_ERROR(WriteDirectBehind());
      }
    }
  }
  return Status::Ok();
}

Status PosixAppendFile::WriteDirect(size_t len) {
  Status st = PwriteAll(fd_, buf_.get(), len, flushed_, path_);
  if (st.ok() || flushed_ != 0 || st.sys_errno() != EINVAL) return st;
  // The filesystem takes O_DIRECT at open but not these writes: go on
  // buffered with what is in the buffer.
  if (::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_DIRECT) != 0)
    return Status::FromErrno(errno, "writing " + path_);
  direct_ = false;
  const size_t pending = buf_len_;
  buf_len_ = 0;
  st = AppendBuffered(buf_.get(), pending);
  buf_.reset();
  return st;
}

Status PosixAppendFile::WriteDirectBehind() {
  CHAINFS_RETURN_IF_ERROR(WaitInflight());
  if (!spare_) spare_.reset(AlignedBuffer(kDirectBuffer));
  std::swap(buf_, spare_);
  inflight_ = std::async(std::launch::async, PwriteAll, fd_, spare_.get(), kDirectBuffer, flushed_,
                         path_);
  flushed_ += kDirectBuffer;
  buf_len_ = 0;
  return Status::Ok();
}

Status PosixAppendFile::WaitInflight() {
  if (!inflight_.valid()) return Status::Ok();
  return inflight_.get();
}

Status PosixAppendFile::AppendBuffered(const char* p, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = ::write(fd_, p + done, n - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "writing " + path_);
    }
    done += static_cast<size_t>(w);
  }
  // Start writeback of every full 32 MiB behind us, so that the final fsync
  // has little left to do and disk writes overlap compression.
  constexpr uint64_t kWritebackChunk = 32 << 20;
  const uint64_t end = offset_ + n;
  if (end - writeback_started_ >= kWritebackChunk) {
    ::sync_file_range(fd_, static_cast<off_t>(writeback_started_),
                      static_cast<off_t>(end - writeback_started_), SYNC_FILE_RANGE_WRITE);
    writeback_started_ = end;
  }
  return Status::Ok();
}

Status PosixAppendFile::Sync() {
  CHAINFS_RETURN_IF_ERROR(WaitInflight());
  if (direct_ && buf_len_ > 0) {
    // The tail, padded to the alignment (the buffer keeps it: a later Append
    // rewrites this block), then the file cut back to its real size.
    const size_t padded = (buf_len_ + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
    std::memset(buf_.get() + buf_len_, 0, padded - buf_len_);
    CHAINFS_RETURN_IF_ERROR(WriteDirect(padded));
    if (direct_ && ::ftruncate(fd_, static_cast<off_t>(offset_)) != 0)
      return Status::FromErrno(errno, "truncating " + path_);
  }
  Failpoint("file.before-fsync");
  if (::fsync(fd_) != 0) return Status::FromErrno(errno, "fsync " + path_);
  return Status::Ok();
}

Status PosixAppendFile::Close() {
  Status pending = WaitInflight();  // only after a failed Sync or without one
  int fd = fd_;
  fd_ = -1;
  if (fd >= 0 && ::close(fd) != 0) return Status::FromErrno(errno, "closing " + path_);
  return pending;
}

class PosixWritableFile : public WritableFile {
 public:
  PosixWritableFile(int fd, std::string path, uint64_t size) : f_(fd, std::move(path), size) {}
  Status WriteAt(uint64_t offset, const void* data, size_t n) override {
    return PwriteAll(f_.fd, static_cast<const char*>(data), n, offset, f_.path);
  }
  Status Truncate(uint64_t size) override {
    if (::ftruncate(f_.fd, static_cast<off_t>(size)) != 0)
      return Status::FromErrno(errno, "setting the size of " + f_.path);
    return Status::Ok();
  }
  Status Sync() override {
    if (::fsync(f_.fd) != 0) return Status::FromErrno(errno, "fsync " + f_.path);
    return Status::Ok();
  }
  Status Close() override {
    const int fd = f_.fd;
    f_.fd = -1;
    if (fd >= 0 && ::close(fd) != 0) return Status::FromErrno(errno, "closing " + f_.path);
    return Status::Ok();
  }
  uint64_t Size() const override { return f_.size; }
  const std::string& Path() const override { return f_.path; }

 private:
  OpenFd f_;
};

class PosixFileLock : public FileLock {
 public:
  explicit PosixFileLock(int fd) : fd_(fd) {}
  ~PosixFileLock() override {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }

 private:
  int fd_;
};

std::string DirName(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

int64_t Nanos(const struct timespec& t) {
  return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

class PosixEnv : public Env {
 public:
  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(
      const std::string& path) override {
    return OpenSized<PosixRandomAccessFile, RandomAccessFile>(path, O_RDONLY);
  }
  Result<std::unique_ptr<AppendFile>> NewAppendFile(const std::string& path,
                                                    WriteMode mode) override {
    return PosixAppendFile::Create(path, mode);
  }
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path,
                                                        OpenMode mode) override {
    return OpenSized<PosixWritableFile, WritableFile>(
        path, mode == OpenMode::kCreate ? O_WRONLY | O_CREAT | O_TRUNC : O_WRONLY);
  }
  Status SyncDir(const std::string& dir) override {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno(errno, "opening directory " + dir);
    int rc = ::fsync(fd);
    int e = errno;
    ::close(fd);
    if (rc != 0) return Status::FromErrno(e, "fsync directory " + dir);
    return Status::Ok();
  }
  Status RenameFile(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0)
      return Status::FromErrno(errno, "renaming " + from + " to " + to);
    return SyncDir(DirName(to));
  }
  Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return Status::FromErrno(errno, "removing " + path);
    return Status::Ok();
  }
  Status CreateDirs(const std::string& dir) override {
    // Each prefix ending before a '/', then dir itself; EEXIST of a directory is fine.
    for (size_t pos = dir.find('/', 1);; pos = dir.find('/', pos + 1)) {
      const std::string part = pos == std::string::npos ? dir : dir.substr(0, pos);
      if (!part.empty() && ::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST)
        return Status::FromErrno(errno, "creating directory " + part);
      if (pos == std::string::npos) break;
    }
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) return Status::FromErrno(errno, "creating directory " + dir);
    if (!S_ISDIR(st.st_mode))
      return Status::FromErrno(ENOTDIR, "creating directory " + dir);
    return Status::Ok();
  }
  Result<std::vector<std::string>> ListDir(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return Status::FromErrno(errno, "listing " + dir);
    std::vector<std::string> names;
    while (true) {
      errno = 0;
      const struct dirent* e = ::readdir(d);
      if (e == nullptr) break;
      const std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    const int err = errno;
    ::closedir(d);
    if (err != 0) return Status::FromErrno(err, "listing " + dir);
    return names;
  }
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path, const std::string& holder,
                                             std::string* held_by) override {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return Status::FromErrno(errno, "opening lock " + path);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int e = errno;
      char buf[512] = {0};
      ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
      ::close(fd);
      if (e != EWOULDBLOCK) return Status::FromErrno(e, "locking " + path);
      std::string text = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "unknown";
      while (!text.empty() && text.back() == '\n') text.pop_back();
      if (held_by) *held_by = text;
      return Status::Busy(path + " is locked by " + text);
    }
    auto lock = std::make_unique<PosixFileLock>(fd);
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, holder.data(), holder.size(), 0) < 0)
      return Status::FromErrno(errno, "writing lock " + path);
    return std::unique_ptr<FileLock>(std::move(lock));
  }
  Result<FileInfo> Stat(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return Status::FromErrno(errno, "stat " + path);
    FileInfo info;
    info.is_dir = S_ISDIR(st.st_mode);
    info.is_block_device = S_ISBLK(st.st_mode);
    info.size = static_cast<uint64_t>(st.st_size);
    info.mtime_ns = Nanos(st.st_mtim);
    info.ctime_ns = Nanos(st.st_ctim);
    return info;
  }
  Result<FsInfo> StatFs(const std::string& path) override {
    struct statvfs vfs;
    struct statfs fs;
    if (::statvfs(path.c_str(), &vfs) != 0 || ::statfs(path.c_str(), &fs) != 0)
      return Status::FromErrno(errno, "statfs " + path);
    FsInfo info;
    info.free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    info.type = static_cast<uint64_t>(fs.f_type);
    return info;
  }
};

}  // namespace

Env* Env::Default() {
  static Env* env = new PosixEnv;
  return env;
}

}  // namespace chainfs
