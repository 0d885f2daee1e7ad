// Env::Default(): the local POSIX file system; NewRootedPosixEnv: the same,
// confined beneath a repository's directory.
//
// Every call resolves its path to a Place (a directory descriptor and a name
// in it) and acts with an *at() call. The plain Env's Place is (AT_FDCWD,
// path); a rooted Env's, for a path under its root, is the parent directory
// opened beneath the root without following links, and the name is then used
// with O_NOFOLLOW / AT_SYMLINK_NOFOLLOW.
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <new>
#include <utility>
#include <vector>

#include "chain/base/env.h"
#include "chain/base/failpoint.h"
#include "chain/base/worker_pool.h"

namespace chainfs {
namespace {

[[maybe_unused]] constexpr size_t kDirectBuffer = AppendFile::kDirectBuffer;  // clang counts no constant use
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

// Owns a descriptor (or none: -1); closes it when destroyed.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// Where a path's last component is: `name` in directory `dir` (AT_FDCWD: the
// whole path, outside any root). `confined`: beneath a root, where no
// symbolic link is followed.
struct Place {
  int dir = AT_FDCWD;
  std::string name;
  bool confined = false;
  UniqueFd owned;  // dir, when this Place opened it
};

Status SymlinkRefused(const std::string& path) {
  return Status::Corruption(path + " is a symbolic link; the repository layout has none: refusing");
}

FileType TypeOf(mode_t m) {
  return S_ISREG(m)   ? FileType::kRegular
         : S_ISDIR(m) ? FileType::kDirectory
         : S_ISBLK(m) ? FileType::kBlockDevice
         : S_ISCHR(m) ? FileType::kCharDevice
         : S_ISFIFO(m) ? FileType::kFifo
         : S_ISLNK(m)  ? FileType::kSymlink
                       : FileType::kOther;
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

// Wraps fd and its size (the end: a block device's capacity too; 0 for a
// stream that cannot seek, a FIFO) in a T(fd, path, size).
template <typename T, typename Base>
Result<std::unique_ptr<Base>> WrapSized(UniqueFd fd, const std::string& path,
                                        bool stream = false) {
  off_t end = ::lseek(fd.get(), 0, SEEK_END);
  if (end < 0 && !(stream && errno == ESPIPE))
    return Status::FromErrno(errno, "size of " + path);
  return std::unique_ptr<Base>(new T(fd.release(), path, end < 0 ? 0 : static_cast<uint64_t>(end)));
}

// The plain POSIX Env; RootedPosixEnv overrides Resolve and CreateDirs.
class PosixEnv : public Env {
 public:
  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override;
  Result<std::unique_ptr<AppendFile>> NewAppendFile(const std::string& path,
                                                    WriteMode mode) override;
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path, OpenMode mode,
                                                        uint32_t permissions) override;
  Status SyncDir(const std::string& dir) override;
  Status RenameFile(const std::string& from, const std::string& to) override;
  Status RenameFileNoDirSync(const std::string& from, const std::string& to) override;
  Status RemoveFile(const std::string& path) override;
  Status CreateDirs(const std::string& dir) override;
  Result<std::vector<std::string>> ListDir(const std::string& dir) override;
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path, const std::string& holder,
                                             std::string* held_by) override;
  Result<FileInfo> Stat(const std::string& path) override;
  Result<FsInfo> StatFs(const std::string& path) override;

 protected:
  // One fstatat(AT_SYMLINK_NOFOLLOW) per entry, relative to the listed
  // directory's descriptor: no path is resolved again.
  Result<std::vector<DirEntryInfo>> ListDirWithInfo(const std::string& dir) override;

 public:
  // Opens path with flags (+O_CLOEXEC; +O_NOFOLLOW where confined). `what`
  // begins the error message ("opening"). regular_if_confined: beneath a
  // root, anything but a regular file is refused.
  Result<UniqueFd> OpenAt(const std::string& path, int flags, mode_t mode, const char* what,
                          bool regular_if_confined = false);

 protected:
  // Resolves path for an *at() call; `what` begins an error message.
  virtual Result<Place> Resolve(const std::string& path, const char* what);
};

class PosixRandomAccessFile : public RandomAccessFile {
 public:
  PosixRandomAccessFile(int fd, std::string path, uint64_t size) : f_(fd, std::move(path), size) {}
  void SetId(FileId id) { id_ = id; }
  FileId Id() const override { return id_; }

  // The kernel reads at most its readahead size (max of the device's
  // read_ahead_kb and its largest request: 8 MiB on these machines) per
  // POSIX_FADV_WILLNEED and drops the rest: a longer range is asked for in
  // pieces.
  void WillNeed(uint64_t offset, uint64_t n) const override {
    constexpr uint64_t kPiece = 2 << 20;
    for (uint64_t done = 0; done < n; done += kPiece)
      (void)::posix_fadvise(f_.fd, static_cast<off_t>(offset + done),
                            static_cast<off_t>(std::min(kPiece, n - done)), POSIX_FADV_WILLNEED);
  }
  void AdviseRandom() const override { (void)::posix_fadvise(f_.fd, 0, 0, POSIX_FADV_RANDOM); }
  Status ReadAt(uint64_t offset, size_t n, void* buf) const override {
    auto* p = static_cast<char*>(buf);
    return Exactly(offset, n, "read", [&](size_t done) {
      return ::pread(f_.fd, p + done, n - done, static_cast<off_t>(offset + done));
    });
  }
  Status SpliceTo(uint64_t offset, size_t n, int pipe_fd) const override {
    return Exactly(offset, n, "splice", [&](size_t done) {
      loff_t at = static_cast<loff_t>(offset + done);
      return ::splice(f_.fd, &at, pipe_fd, nullptr, n - done, SPLICE_F_MOVE);
    });
  }
  uint64_t Size() const override { return f_.size; }
  const std::string& Path() const override { return f_.path; }

 private:
  // Calls op(done), a system call moving up to n - done bytes at offset +
  // done, until all n bytes are moved. A file that ends first is
  // kCorruption ("truncated"), a failure kIoError naming what failed.
  template <typename Op>
  Status Exactly(uint64_t offset, size_t n, const char* what, Op op) const {
    size_t done = 0;
    while (done < n) {
      const ssize_t r = op(done);
      if (r < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno(errno, f_.path + ": " + what + " at offset " +
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

  OpenFd f_;
  FileId id_;
};

class PosixAppendFile : public AppendFile {
 public:
  PosixAppendFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixAppendFile() override;
  // O_EXCL create through env; mode kDirect falls back to kBuffered where refused.
  static Result<std::unique_ptr<AppendFile>> Create(PosixEnv* env, const std::string& path,
                                                    WriteMode mode);
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
  // A character device or FIFO: written in order with write(2).
  void SetStream() { stream_ = true; }
  Status WriteAt(uint64_t offset, const void* data, size_t n) override {
    const auto* p = static_cast<const char*>(data);
    if (!stream_) return PwriteAll(f_.fd, p, n, offset, f_.path);
    if (offset != written_)
      return Status::InvalidArgument(f_.path + ": a stream is written in order: write at " +
                                     std::to_string(offset) + " after " +
                                     std::to_string(written_) + " bytes");
    for (size_t done = 0; done < n;) {
      ssize_t w = ::write(f_.fd, p + done, n - done);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return Status::FromErrno(errno, "writing " + f_.path);
      done += static_cast<size_t>(w);
    }
    written_ += n;
    return Status::Ok();
  }
  Status Truncate(uint64_t size) override {
    if (::ftruncate(f_.fd, static_cast<off_t>(size)) != 0)
      return Status::FromErrno(errno, "setting the size of " + f_.path);
    return Status::Ok();
  }
  Status Sync() override {
    // A pipe or a character device may have nothing to sync (EINVAL).
    if (::fsync(f_.fd) != 0 && !(stream_ && (errno == EINVAL || errno == EROFS)))
      return Status::FromErrno(errno, "fsync " + f_.path);
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
  bool stream_ = false;
  uint64_t written_ = 0;  // a stream's bytes so far
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


Result<std::unique_ptr<AppendFile>> PosixAppendFile::Create(PosixEnv* env, const std::string& path,
                                                            WriteMode mode) {
  const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;
  Result<UniqueFd> fd = Status::FromErrno(EINVAL, "creating " + path);
  bool direct = false;
  if (mode == WriteMode::kDirect) {
    fd = env->OpenAt(path, flags | O_DIRECT, 0600, "creating");
    direct = fd.ok();
    if (!fd.ok() && fd.status().sys_errno() != EINVAL) return fd.status();
  }
  if (!fd.ok()) fd = env->OpenAt(path, flags, 0600, "creating");
  if (!fd.ok()) return fd.status();
  auto f = std::make_unique<PosixAppendFile>(fd.value().release(), path);
  if (direct) {
    f->buf_.reset(AlignedBuffer(kDirectBuffer));
    f->direct_ = true;
  }
  return std::unique_ptr<AppendFile>(std::move(f));
}

std::string DirName(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

int64_t Nanos(const struct timespec& t) {
  return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

FileInfo InfoOf(const struct stat& st) {
  FileInfo info;
  info.type = TypeOf(st.st_mode);
  info.is_dir = S_ISDIR(st.st_mode);
  info.is_block_device = S_ISBLK(st.st_mode);
  info.size = static_cast<uint64_t>(st.st_size);
  info.mtime_ns = Nanos(st.st_mtim);
  info.ctime_ns = Nanos(st.st_ctim);
  info.id = {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
  return info;
}

Result<Place> PosixEnv::Resolve(const std::string& path, const char*) {
  Place p;
  p.name = path;
  return p;
}

Result<UniqueFd> PosixEnv::OpenAt(const std::string& path, int flags, mode_t mode,
                                  const char* what, bool regular_if_confined) {
  CHAINFS_ASSIGN_OR_RETURN(Place p, Resolve(path, what));
  if (p.confined) flags |= O_NOFOLLOW;
  UniqueFd fd(::openat(p.dir, p.name.c_str(), flags | O_CLOEXEC, mode));
  struct stat st;
  if (fd.get() < 0) {
    const int err = errno;  // a link: ELOOP, or ENOTDIR with O_DIRECTORY
    if (p.confined && (err == ELOOP || err == ENOTDIR) &&
        ::fstatat(p.dir, p.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
      return SymlinkRefused(path);
    return Status::FromErrno(err, std::string(what) + " " + path);
  }
  if (regular_if_confined && p.confined &&
      (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)))
    return Status::Corruption(path + " is not a regular file; the repository layout has only "
                              "regular files there: refusing");
  return fd;
}

Result<std::unique_ptr<RandomAccessFile>> PosixEnv::NewRandomAccessFile(const std::string& path) {
  // O_NONBLOCK: a FIFO planted in a repository must not hang the open; it
  // changes nothing for regular files and block devices.
  CHAINFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenAt(path, O_RDONLY | O_NONBLOCK, 0, "opening",
                                               /*regular_if_confined=*/true));
  if (::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK) != 0)
    return Status::FromErrno(errno, "opening " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "stat " + path);
  const FileId id{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
  CHAINFS_ASSIGN_OR_RETURN(auto f, (WrapSized<PosixRandomAccessFile, RandomAccessFile>(
                                       std::move(fd), path)));
  static_cast<PosixRandomAccessFile*>(f.get())->SetId(id);
  return f;
}

Result<std::unique_ptr<AppendFile>> PosixEnv::NewAppendFile(const std::string& path,
                                                            WriteMode mode) {
  return PosixAppendFile::Create(this, path, mode);
}

Result<std::unique_ptr<WritableFile>> PosixEnv::NewWritableFile(const std::string& path,
                                                                OpenMode mode,
                                                                uint32_t permissions) {
  const mode_t perms = static_cast<mode_t>(permissions & 07777);
  if (mode == OpenMode::kCreate) {
    CHAINFS_ASSIGN_OR_RETURN(
        UniqueFd fd, OpenAt(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, perms, "creating"));
    if (::fchmod(fd.get(), perms) != 0)  // exactly these bits, whatever the umask
      return Status::FromErrno(errno, "setting the mode of " + path);
    return WrapSized<PosixWritableFile, WritableFile>(std::move(fd), path);
  }
  CHAINFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenAt(path, O_WRONLY, 0, "opening"));
  if (mode == OpenMode::kExisting)
    return WrapSized<PosixWritableFile, WritableFile>(std::move(fd), path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "stat " + path);
  if (!S_ISBLK(st.st_mode) && !S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode))
    return Status::InvalidArgument(path + " is no longer a device or FIFO: refusing to write "
                                   "into it in place");
  const bool stream = !S_ISBLK(st.st_mode);
  CHAINFS_ASSIGN_OR_RETURN(auto f, (WrapSized<PosixWritableFile, WritableFile>(std::move(fd),
                                                                               path, stream)));
  if (stream) static_cast<PosixWritableFile*>(f.get())->SetStream();
  return f;
}

Status PosixEnv::SyncDir(const std::string& dir) {
  CHAINFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenAt(dir, O_RDONLY | O_DIRECTORY, 0,
                                               "opening directory"));
  if (::fsync(fd.get()) != 0) return Status::FromErrno(errno, "fsync directory " + dir);
  return Status::Ok();
}

Status PosixEnv::RenameFile(const std::string& from, const std::string& to) {
  CHAINFS_RETURN_IF_ERROR(RenameFileNoDirSync(from, to));
  return SyncDir(DirName(to));
}

Status PosixEnv::RenameFileNoDirSync(const std::string& from, const std::string& to) {
  const std::string what = "renaming " + from + " to " + to;
  CHAINFS_ASSIGN_OR_RETURN(Place f, Resolve(from, "renaming"));
  CHAINFS_ASSIGN_OR_RETURN(Place t, Resolve(to, what.c_str()));
  if (::renameat(f.dir, f.name.c_str(), t.dir, t.name.c_str()) != 0)
    return Status::FromErrno(errno, what);
  return Status::Ok();
}

Status PosixEnv::RemoveFile(const std::string& path) {
  CHAINFS_ASSIGN_OR_RETURN(Place p, Resolve(path, "removing"));
  struct stat st;
  if (p.confined) {  // only regular files; a link is refused, not followed
    if (::fstatat(p.dir, p.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
      return Status::FromErrno(errno, "removing " + path);
    if (S_ISLNK(st.st_mode)) return SymlinkRefused(path);
    if (!S_ISREG(st.st_mode))
      return Status::Corruption(path + " is not a regular file: refusing to remove it");
  }
  if (::unlinkat(p.dir, p.name.c_str(), 0) != 0)
    return Status::FromErrno(errno, "removing " + path);
  return Status::Ok();
}

Status PosixEnv::CreateDirs(const std::string& dir) {
  // Each prefix ending before a '/', then dir itself; EEXIST of a directory is fine.
  for (size_t pos = dir.find('/', 1);; pos = dir.find('/', pos + 1)) {
    const std::string part = pos == std::string::npos ? dir : dir.substr(0, pos);
    if (!part.empty() && ::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST)
      return Status::FromErrno(errno, "creating directory " + part);
    if (pos == std::string::npos) break;
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return Status::FromErrno(errno, "creating directory " + dir);
  if (!S_ISDIR(st.st_mode)) return Status::FromErrno(ENOTDIR, "creating directory " + dir);
  return Status::Ok();
}

namespace {
// Calls each(entry) for every entry of the open directory fd but "." and
// "..", and closes it.
Status ForEachEntry(UniqueFd fd, const std::string& dir,
                    const std::function<void(const struct dirent&)>& each) {
  DIR* d = ::fdopendir(fd.get());
  if (d == nullptr) return Status::FromErrno(errno, "listing " + dir);
  fd.release();  // closedir closes it
  while (true) {
    errno = 0;
    const struct dirent* e = ::readdir(d);
    if (e == nullptr) break;
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) each(*e);
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) return Status::FromErrno(err, "listing " + dir);
  return Status::Ok();
}
}  // namespace

Result<std::vector<std::string>> PosixEnv::ListDir(const std::string& dir) {
  CHAINFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenAt(dir, O_RDONLY | O_DIRECTORY, 0, "listing"));
  std::vector<std::string> names;
  CHAINFS_RETURN_IF_ERROR(
      ForEachEntry(std::move(fd), dir, [&](const struct dirent& e) { names.push_back(e.d_name); }));
  return names;
}

Result<std::vector<DirEntryInfo>> PosixEnv::ListDirWithInfo(const std::string& dir) {
  CHAINFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenAt(dir, O_RDONLY | O_DIRECTORY, 0, "listing"));
  // Kept open for the lstats (ForEachEntry closes the one it is given).
  UniqueFd at(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
  if (at.get() < 0) return Status::FromErrno(errno, "listing " + dir);
  std::vector<DirEntryInfo> out;
  std::vector<std::pair<ino_t, uint32_t>> by_inode;  // (inode, index in out)
  CHAINFS_RETURN_IF_ERROR(ForEachEntry(std::move(fd), dir, [&](const struct dirent& e) {
    by_inode.push_back({e.d_ino, static_cast<uint32_t>(out.size())});
    out.push_back({e.d_name, {}});
  }));
  // A stat costs microseconds here (10,000 manifests: ~40 ms on one thread).
  // In inode order, not the directory's (hash) order: each thread's share
  // then lies together in the inode table, which a disk-cold listing reads
  // (depth 10,000, 4 threads, page cache dropped: 38-40 -> 34-35 ms).
  std::sort(by_inode.begin(), by_inode.end());
  std::vector<char> gone(out.size(), 0);
  ParallelFor(out.size(), 1024, 4, [&](size_t k) {
    const size_t i = by_inode[k].second;
    struct stat st;
    FileInfo& info = out[i].info;
    if (::fstatat(at.get(), out[i].name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) gone[i] = 1;  // removed meanwhile
      else info.type = FileType::kOther;
      return;
    }
    info = InfoOf(st);
    info.is_symlink = S_ISLNK(st.st_mode);
  });
  size_t kept = 0;
  for (size_t i = 0; i < out.size(); ++i)
    if (!gone[i]) {
      if (kept != i) out[kept] = std::move(out[i]);
      ++kept;
    }
  out.resize(kept);
  return out;
}

Result<std::unique_ptr<FileLock>> PosixEnv::LockFile(const std::string& path,
                                                     const std::string& holder,
                                                     std::string* held_by) {
  // Never through a link (a dangling one would create its target), and
  // only a regular file: its text is truncated and rewritten.
  CHAINFS_ASSIGN_OR_RETURN(UniqueFd owned, OpenAt(path, O_RDWR | O_CREAT | O_NOFOLLOW, 0600,
                                                  "opening lock"));
  struct stat st;
  if (::fstat(owned.get(), &st) != 0) return Status::FromErrno(errno, "opening lock " + path);
  if (!S_ISREG(st.st_mode))
    return Status::Corruption("lock " + path + " is not a regular file: refusing");
  const int fd = owned.get();
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    char buf[512] = {0};
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    if (e != EWOULDBLOCK) return Status::FromErrno(e, "locking " + path);
    std::string text = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "unknown";
    while (!text.empty() && text.back() == '\n') text.pop_back();
    if (held_by) *held_by = text;
    return Status::Busy(path + " is locked by " + text);
  }
  auto lock = std::make_unique<PosixFileLock>(owned.release());
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, holder.data(), holder.size(), 0) < 0)
    return Status::FromErrno(errno, "writing lock " + path);
  return std::unique_ptr<FileLock>(std::move(lock));
}

Result<FileInfo> PosixEnv::Stat(const std::string& path) {
  CHAINFS_ASSIGN_OR_RETURN(Place p, Resolve(path, "stat"));
  struct stat st;
  if (::fstatat(p.dir, p.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
    return Status::FromErrno(errno, "stat " + path);
  if (!S_ISLNK(st.st_mode)) return InfoOf(st);
  if (p.confined) return SymlinkRefused(path);
  struct stat target;
  if (::fstatat(p.dir, p.name.c_str(), &target, 0) != 0) {
    if (errno != ENOENT) return Status::FromErrno(errno, "stat " + path);
    target = st;  // dangling: the link itself
  }
  FileInfo info = InfoOf(target);
  info.is_symlink = true;
  return info;
}

Result<FsInfo> PosixEnv::StatFs(const std::string& path) {
  CHAINFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenAt(path, O_PATH, 0, "statfs"));
  struct statvfs vfs;
  struct statfs fs;
  if (::fstatvfs(fd.get(), &vfs) != 0 || ::fstatfs(fd.get(), &fs) != 0)
    return Status::FromErrno(errno, "statfs " + path);
  FsInfo info;
  info.free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  info.type = static_cast<uint64_t>(fs.f_type);
  return info;
}

// A PosixEnv confined beneath root for paths under it (env.h).
class RootedPosixEnv : public PosixEnv {
 public:
  RootedPosixEnv(std::string root, UniqueFd root_fd, bool use_openat2)
      : root_(std::move(root)), root_fd_(std::move(root_fd)), openat2_(use_openat2) {}
  Status CreateDirs(const std::string& dir) override;
  // As ReadSmallFile below, for a file opened to be read: openat2, fstat and
  // one fcntl instead of eight calls (a deep view opens thousands of delta
  // files).
  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override;

 protected:
  Result<Place> Resolve(const std::string& path, const char* what) override;
  // One openat2 of the whole path, fstat, pread and close: a manifest in 4
  // system calls instead of 10 (a deep group has thousands). Anything but a
  // plain success (no openat2, an error, a link, not a regular file, too
  // large, a short read) takes Env's way, which gives the error.
  Result<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) override;
  // openat2, fstat and one mmap (prefaulted): no fresh memory zeroed and
  // copied into (a deep view's 400 KB map was half of its open). An empty
  // file, or anything ReadSmallFile would not do at once, takes Env's way.
  Result<std::unique_ptr<const FileBytes>> ReadSmallFileBytes(const std::string& path,
                                                              size_t max_bytes) override;

 private:
  // One openat2 of path beneath root_ (O_RDONLY | O_NONBLOCK, no link
  // followed anywhere); an invalid descriptor for anything but a plain
  // success, or when path is not beneath root_ or openat2 is not there.
  UniqueFd OpenBeneath(const std::string& path) const;
  // path's components beneath root_ ("." and empty ones dropped); false if
  // path is not under root_. ".." is an error.
  Result<bool> Split(const std::string& path, std::vector<std::string>* parts) const;
  // root_ + the first n parts, for messages.
  std::string Join(const std::vector<std::string>& parts, size_t n) const;
  // The first n parts joined by '/': a path relative to root_ (openat2).
  static std::string Relative(const std::vector<std::string>& parts, size_t n);
  // Opens the directory of the first n parts beneath root_, following no link.
  Result<UniqueFd> OpenDir(const std::vector<std::string>& parts, size_t n,
                           const std::string& path, const char* what);
  // openat(O_NOFOLLOW) of each part in turn.
  Result<UniqueFd> WalkDir(const std::vector<std::string>& parts, size_t n,
                           const std::string& path, const char* what);
  // The error for a failed resolution (err): the first link on the way, if any.
  Status ResolveError(const std::vector<std::string>& parts, size_t n, const std::string& path,
                      const char* what, int err) const;

  const std::string root_;
  const UniqueFd root_fd_;
  std::atomic<bool> openat2_;  // false once the kernel said ENOSYS
};

Result<bool> RootedPosixEnv::Split(const std::string& path, std::vector<std::string>* parts) const {
  if (path.compare(0, root_.size(), root_) != 0) return false;
  if (path.size() > root_.size() && path[root_.size()] != '/' && root_.back() != '/') return false;
  for (size_t pos = root_.size(); pos < path.size();) {
    size_t end = path.find('/', pos);
    if (end == std::string::npos) end = path.size();
    std::string part = path.substr(pos, end - pos);
    if (part == "..")
      return Status::InvalidArgument(path + ": '..' would leave the repository " + root_);
    if (!part.empty() && part != ".") parts->push_back(std::move(part));
    pos = end + 1;
  }
  return true;
}

std::string RootedPosixEnv::Join(const std::vector<std::string>& parts, size_t n) const {
  std::string s = root_;
  for (size_t i = 0; i < n; ++i) s += "/" + parts[i];
  return s;
}

std::string RootedPosixEnv::Relative(const std::vector<std::string>& parts, size_t n) {
  std::string rel = parts[0];
  for (size_t i = 1; i < n; ++i) rel += "/" + parts[i];
  return rel;
}

Result<Place> RootedPosixEnv::Resolve(const std::string& path, const char* what) {
  std::vector<std::string> parts;
  CHAINFS_ASSIGN_OR_RETURN(bool beneath, Split(path, &parts));
  if (!beneath) return PosixEnv::Resolve(path, what);
  Place p;
  p.confined = true;
  p.dir = root_fd_.get();
  p.name = parts.empty() ? "." : parts.back();
  if (parts.size() > 1) {
    CHAINFS_ASSIGN_OR_RETURN(p.owned, OpenDir(parts, parts.size() - 1, path, what));
    p.dir = p.owned.get();
  }
  return p;
}

UniqueFd RootedPosixEnv::OpenBeneath(const std::string& path) const {
  std::vector<std::string> parts;
  auto beneath = Split(path, &parts);
  if (!beneath.ok() || !beneath.value() || parts.empty() ||
      !openat2_.load(std::memory_order_relaxed))
    return UniqueFd();
  const std::string rel = Relative(parts, parts.size());
  struct open_how how = {};
  how.flags = O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC;  // O_NONBLOCK: a FIFO must not hang
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return UniqueFd(static_cast<int>(::syscall(SYS_openat2, root_fd_.get(), rel.c_str(), &how, sizeof how)));
}

Result<std::unique_ptr<RandomAccessFile>> RootedPosixEnv::NewRandomAccessFile(
    const std::string& path) {
  UniqueFd fd = OpenBeneath(path);
  struct stat st;
  // F_SETFL 0 clears O_NONBLOCK, the only status flag the open set.
  if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
      ::fcntl(fd.get(), F_SETFL, 0) != 0)
    return PosixEnv::NewRandomAccessFile(path);
  auto f = std::make_unique<PosixRandomAccessFile>(fd.release(), path,
                                                   static_cast<uint64_t>(st.st_size));
  f->SetId(FileId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)});
  return std::unique_ptr<RandomAccessFile>(std::move(f));
}

Result<std::string> RootedPosixEnv::ReadSmallFile(const std::string& path, size_t max_bytes) {
  UniqueFd fd = OpenBeneath(path);
  struct stat st;
  if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<uint64_t>(st.st_size) > max_bytes)
    return PosixEnv::ReadSmallFile(path, max_bytes);
  std::string s(static_cast<size_t>(st.st_size), '\0');
  for (size_t done = 0; done < s.size();) {
    const ssize_t n = ::pread(fd.get(), s.data() + done, s.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return PosixEnv::ReadSmallFile(path, max_bytes);  // an error, or shrunk meanwhile
    done += static_cast<size_t>(n);
  }
  return s;
}

namespace {
class MappedBytes : public FileBytes {
 public:
  MappedBytes(void* base, size_t size) : base_(base), size_(size) {
    bytes_ = std::string_view(static_cast<const char*>(base), size);
  }
  ~MappedBytes() override { ::munmap(base_, size_); }
  MappedBytes(const MappedBytes&) = delete;
  MappedBytes& operator=(const MappedBytes&) = delete;

 private:
  void* const base_;
  const size_t size_;
};
}  // namespace

Result<std::unique_ptr<const FileBytes>> RootedPosixEnv::ReadSmallFileBytes(const std::string& path,
                                                                            size_t max_bytes) {
  UniqueFd fd = OpenBeneath(path);
  struct stat st;
  if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
      static_cast<uint64_t>(st.st_size) > max_bytes)
    return Env::ReadSmallFileBytes(path, max_bytes);
  const size_t size = static_cast<size_t>(st.st_size);
  void* base = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd.get(), 0);
  if (base == MAP_FAILED) return Env::ReadSmallFileBytes(path, max_bytes);
  return std::unique_ptr<const FileBytes>(std::make_unique<MappedBytes>(base, size));
}

Result<UniqueFd> RootedPosixEnv::OpenDir(const std::vector<std::string>& parts, size_t n,
                                         const std::string& path, const char* what) {
  if (!openat2_.load(std::memory_order_relaxed)) return WalkDir(parts, n, path, what);
  const std::string rel = Relative(parts, n);
  struct open_how how = {};
  how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  for (int attempt = 0;; ++attempt) {
    const long fd = ::syscall(SYS_openat2, root_fd_.get(), rel.c_str(), &how, sizeof how);
    if (fd >= 0) return UniqueFd(static_cast<int>(fd));
    if (errno == EAGAIN && attempt < 8) continue;  // a concurrent rename: retry
    if (errno != ENOSYS) return ResolveError(parts, n, path, what, errno);
    openat2_.store(false, std::memory_order_relaxed);
    return WalkDir(parts, n, path, what);
  }
}

Result<UniqueFd> RootedPosixEnv::WalkDir(const std::vector<std::string>& parts, size_t n,
                                         const std::string& path, const char* what) {
  UniqueFd cur;
  for (size_t i = 0; i < n; ++i) {
    const int at = i == 0 ? root_fd_.get() : cur.get();
    UniqueFd next(::openat(at, parts[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (next.get() < 0) return ResolveError(parts, i + 1, path, what, errno);
    cur = std::move(next);
  }
  return cur;
}

Status RootedPosixEnv::ResolveError(const std::vector<std::string>& parts, size_t n,
                                    const std::string& path, const char* what, int err) const {
  if (err == ELOOP || err == ENOTDIR || err == EXDEV) {
    // Find the component that is a link. Components before it are not
    // links, so this lstat-walk resolves exactly what the open did.
    std::string rel;
    for (size_t i = 0; i < n; ++i) {
      rel += (i ? "/" : "") + parts[i];
      struct stat st;
      if (::fstatat(root_fd_.get(), rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) break;
      if (S_ISLNK(st.st_mode)) return SymlinkRefused(Join(parts, i + 1));
      if (!S_ISDIR(st.st_mode)) break;
    }
  }
  return Status::FromErrno(err, std::string(what) + " " + path);
}

Status RootedPosixEnv::CreateDirs(const std::string& dir) {
  std::vector<std::string> parts;
  CHAINFS_ASSIGN_OR_RETURN(bool beneath, Split(dir, &parts));
  if (!beneath) return PosixEnv::CreateDirs(dir);
  UniqueFd cur;
  for (size_t i = 0; i < parts.size(); ++i) {
    const int at = i == 0 ? root_fd_.get() : cur.get();
    if (::mkdirat(at, parts[i].c_str(), 0755) != 0 && errno != EEXIST)
      return Status::FromErrno(errno, "creating directory " + Join(parts, i + 1));
    UniqueFd next(::openat(at, parts[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (next.get() < 0) return ResolveError(parts, i + 1, Join(parts, i + 1),
                                            "creating directory", errno);
    cur = std::move(next);
  }
  return Status::Ok();
}

}  // namespace

Env* Env::Default() {
  static Env* env = new PosixEnv;
  return env;
}

Result<std::unique_ptr<Env>> NewRootedPosixEnv(const std::string& root, bool use_openat2) {
  if (root.empty()) return Status::InvalidArgument("a repository path is empty");
  UniqueFd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return Status::FromErrno(errno, "opening repository directory " + root);
  return std::unique_ptr<Env>(new RootedPosixEnv(root, std::move(fd), use_openat2));
}

}  // namespace chainfs
