#include "chain/base/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

#include "chain/base/failpoint.h"

namespace chainfs {
namespace {

char* AlignedBuffer(size_t n) {
  void* buf = nullptr;
  if (::posix_memalign(&buf, AppendFile::kDirectAlign, n) != 0) throw std::bad_alloc();
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

class PosixRandomAccessFile : public RandomAccessFile {
 public:
  PosixRandomAccessFile(int fd, std::string path, uint64_t size)
      : fd_(fd), path_(std::move(path)), size_(size) {}
  ~PosixRandomAccessFile() override { ::close(fd_); }

  void WillNeed(uint64_t offset, uint64_t n) const override {
    (void)::posix_fadvise(fd_, static_cast<off_t>(offset), static_cast<off_t>(n),
                          POSIX_FADV_WILLNEED);
  }
  Status ReadAt(uint64_t offset, size_t n, void* buf) const override {
    auto* p = static_cast<char*>(buf);
    size_t done = 0;
    while (done < n) {
      ssize_t r = ::pread(fd_, p + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno(errno, path_ + ": read at offset " +
                                            std::to_string(offset + done));
      }
      if (r == 0)
        return Status::Corruption(path_ + ": truncated: wanted " + std::to_string(n) +
                                  " bytes at offset " + std::to_string(offset) +
                                  ", file ends at " + std::to_string(offset + done));
      done += static_cast<size_t>(r);
    }
    return Status::Ok();
  }
  uint64_t Size() const override { return size_; }
  const std::string& Path() const override { return path_; }

 private:
  int fd_;
  std::string path_;
  uint64_t size_;
};

}  // namespace

Result<std::unique_ptr<RandomAccessFile>> OpenRandomAccessFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "opening " + path);
  off_t end = ::lseek(fd, 0, SEEK_END);  // works for block devices too
  if (end < 0) {
    int e = errno;
    ::close(fd);
    return Status::FromErrno(e, "size of " + path);
  }
  return std::unique_ptr<RandomAccessFile>(
      new PosixRandomAccessFile(fd, path, static_cast<uint64_t>(end)));
}

void AppendFile::FreeDeleter::operator()(char* p) const { std::free(p); }

Result<std::unique_ptr<AppendFile>> AppendFile::Create(const std::string& path, WriteMode mode) {
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
  std::unique_ptr<AppendFile> f(new AppendFile(fd, path));
  if (direct) {
    f->buf_.reset(AlignedBuffer(kDirectBuffer));
    f->direct_ = true;
  }
  return f;
}

AppendFile::~AppendFile() {
  if (inflight_.valid()) inflight_.wait();
  if (fd_ >= 0) ::close(fd_);
}

Status AppendFile::Append(const void* data, size_t n) {
  const auto* p = static_cast<const char*>(data);
  Status st = direct_ ? AppendDirect(p, n) : AppendBuffered(p, n);
  if (st.ok()) offset_ += n;
  return st;
}

Status AppendFile::AppendDirect(const char* p, size_t n) {
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

Status AppendFile::WriteDirect(size_t len) {
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

Status AppendFile::WriteDirectBehind() {
  CHAINFS_RETURN_IF_ERROR(WaitInflight());
  if (!spare_) spare_.reset(AlignedBuffer(kDirectBuffer));
  std::swap(buf_, spare_);
  inflight_ = std::async(std::launch::async, PwriteAll, fd_, spare_.get(), kDirectBuffer, flushed_,
                         path_);
  flushed_ += kDirectBuffer;
  buf_len_ = 0;
  return Status::Ok();
}

Status AppendFile::WaitInflight() {
  if (!inflight_.valid()) return Status::Ok();
  return inflight_.get();
}

Status AppendFile::AppendBuffered(const char* p, size_t n) {
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

Status AppendFile::Sync() {
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

Status AppendFile::Close() {
  Status pending = WaitInflight();  // only after a failed Sync or without one
  int fd = fd_;
  fd_ = -1;
  if (fd >= 0 && ::close(fd) != 0) return Status::FromErrno(errno, "closing " + path_);
  return pending;
}

Status SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "opening directory " + dir);
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0) return Status::FromErrno(e, "fsync directory " + dir);
  return Status::Ok();
}

static std::string DirName(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

Status DurableRename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    return Status::FromErrno(errno, "renaming " + from + " to " + to);
  return SyncDir(DirName(to));
}

Status WriteFileAtomic(const std::string& path, const std::string& contents) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  ::unlink(tmp.c_str());
  auto f = AppendFile::Create(tmp);
  if (!f.ok()) return f.status();
  Status st = f.value()->Append(contents.data(), contents.size());
  if (st.ok()) st = f.value()->Sync();
  if (st.ok()) st = f.value()->Close();
  if (st.ok()) st = DurableRename(tmp, path);
  if (!st.ok()) ::unlink(tmp.c_str());
  return st;
}

Result<std::string> ReadWholeFile(const std::string& path, size_t max_bytes) {
  auto f = OpenRandomAccessFile(path);
  if (!f.ok()) return f.status();
  uint64_t size = f.value()->Size();
  if (size > max_bytes)
    return Status::Corruption(path + ": " + std::to_string(size) + " bytes, more than the " +
                              std::to_string(max_bytes) + " allowed");
  std::string s(size, '\0');
  CHAINFS_RETURN_IF_ERROR(f.value()->ReadAt(0, size, s.data()));
  return s;
}

}  // namespace chainfs
