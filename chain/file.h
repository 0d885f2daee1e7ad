// The one seam for file access (after leveldb's Env).
//
// RandomAccessFile::ReadAt is thread-safe (pread). Tests wrap it to inject
// EIO, short reads and flipped bits; other backends can implement it later.
// AppendFile writes a new file sequentially and makes it durable with Sync().
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "chain/status.h"

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

class AppendFile {
 public:
  // Creates path exclusively (O_EXCL); fails if it exists.
  static Result<std::unique_ptr<AppendFile>> Create(const std::string& path);
  ~AppendFile();
  Status Append(const void* data, size_t n);
  Status Sync();  // fdatasync + fsync of the file
  Status Close();
  uint64_t Offset() const { return offset_; }
  const std::string& Path() const { return path_; }

 private:
  AppendFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
  uint64_t offset_ = 0;
  uint64_t writeback_started_ = 0;  // bytes before this have writeback started
};

// fsyncs a directory so that renames and creations in it are durable.
Status SyncDir(const std::string& dir);
// rename(2) then SyncDir of the target's directory.
Status DurableRename(const std::string& from, const std::string& to);
// Writes a whole small file durably: tmp file, fsync, rename, fsync dir.
Status WriteFileAtomic(const std::string& path, const std::string& contents);
Result<std::string> ReadWholeFile(const std::string& path, size_t max_bytes = 64 << 20);

}  // namespace chainfs
