#include "chain/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "chain/failpoint.h"

namespace chainfs {
namespace {

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

Result<std::unique_ptr<AppendFile>> AppendFile::Create(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno(errno, "creating " + path);
  return std::unique_ptr<AppendFile>(new AppendFile(fd, path));
}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

Status AppendFile::Append(const void* data, size_t n) {
  const auto* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < n) {
    ssize_t w = ::write(fd_, p + done, n - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "writing " + path_);
    }
    done += static_cast<size_t>(w);
  }
  offset_ += n;
  // Start writeback of every full 32 MiB behind us, so that the final fsync
  // has little left to do and disk writes overlap compression.
  constexpr uint64_t kWritebackChunk = 32 << 20;
  if (offset_ - writeback_started_ >= kWritebackChunk) {
    ::sync_file_range(fd_, static_cast<off_t>(writeback_started_),
                      static_cast<off_t>(offset_ - writeback_started_), SYNC_FILE_RANGE_WRITE);
    writeback_started_ = offset_;
  }
  return Status::Ok();
}

Status AppendFile::Sync() {
  Failpoint("file.before-fsync");
  if (::fsync(fd_) != 0) return Status::FromErrno(errno, "fsync " + path_);
  return Status::Ok();
}

Status AppendFile::Close() {
  int fd = fd_;
  fd_ = -1;
  if (fd >= 0 && ::close(fd) != 0) return Status::FromErrno(errno, "closing " + path_);
  return Status::Ok();
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
