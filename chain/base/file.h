// The one seam for file access (after leveldb's Env).
//
// RandomAccessFile::ReadAt is thread-safe (pread). Tests wrap it to inject
// EIO, short reads and flipped bits; other backends can implement it later.
// AppendFile writes a new file sequentially and makes it durable with Sync().
#pragma once

#include <cstdint>
#include <future>
#include <memory>
#include <string>

#include "chain/base/status.h"

namespace chainfs {

class RandomAccessFile {
 public:
  virtual ~RandomAccessFile() = default;
  // Reads exactly n bytes at offset into buf; a short read is kCorruption
  // ("truncated"), an OS failure kIoError.
  virtual Status ReadAt(uint64_t offset, size_t n, void* buf) const = 0;
  virtual uint64_t Size() const = 0;
  virtual const std::string& Path() const = 0;
  // Hints that [offset, offset + n) will be read soon: the kernel starts
  // reading it into the page cache in the background. Never fails.
  virtual void WillNeed(uint64_t offset, uint64_t n) const {
    (void)offset;
    (void)n;
  }
};

// Opens path read-only. Size is taken at open time.
Result<std::unique_ptr<RandomAccessFile>> OpenRandomAccessFile(const std::string& path);

// How an AppendFile reaches the disk.
//   kBuffered  write(2) through the page cache, writeback started every 32 MiB
//              behind the writer (sync_file_range), so Sync() has little left.
//   kDirect    O_DIRECT from two reused 32 MiB aligned buffers (one filled while
//              the other is written by a helper thread): no page cache
//              pages are allocated, filled and later reclaimed for a file
//              nobody reads soon (consolidation output: gigabytes that would
//              push the user's cache out), and the copy into fresh page-cache
//              memory, the larger part of the CPU time of a --full-at, goes
//              away. The last partial 4 KiB is written padded and the file
//              truncated back to its size at Sync(). Where the filesystem
//              refuses O_DIRECT (open or first write: EINVAL), kBuffered.
enum class WriteMode { kBuffered, kDirect };

class AppendFile {
 public:
  // Creates path exclusively (O_EXCL); fails if it exists.
  static Result<std::unique_ptr<AppendFile>> Create(const std::string& path,
                                                    WriteMode mode = WriteMode::kBuffered);
  ~AppendFile();
  Status Append(const void* data, size_t n);
  // Everything appended is on disk (kDirect: written out first), then fsync.
  // Appending after Sync() is allowed.
  Status Sync();
  Status Close();
  uint64_t Offset() const { return offset_; }
  const std::string& Path() const { return path_; }
  // kDirect unless the filesystem refused it (then kBuffered).
  WriteMode mode() const { return direct_ ? WriteMode::kDirect : WriteMode::kBuffered; }

  static constexpr size_t kDirectBuffer = 32 << 20;
  static constexpr size_t kDirectAlign = 4096;  // covers 512 and 4096 byte sectors

 private:
  struct FreeDeleter {
    void operator()(char* p) const;
  };
  AppendFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
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

// fsyncs a directory so that renames and creations in it are durable.
Status SyncDir(const std::string& dir);
// rename(2) then SyncDir of the target's directory.
Status DurableRename(const std::string& from, const std::string& to);
// Writes a whole small file durably: tmp file, fsync, rename, fsync dir.
Status WriteFileAtomic(const std::string& path, const std::string& contents);
Result<std::string> ReadWholeFile(const std::string& path, size_t max_bytes = 64 << 20);

}  // namespace chainfs
