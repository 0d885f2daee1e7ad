// The files an Env (chain/base/env.h) opens.
//
// RandomAccessFile::ReadAt is thread-safe (pread). Tests wrap it to inject
// EIO, short reads and flipped bits; other backends can implement it later.
// AppendFile writes a new file sequentially and makes it durable with Sync().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "chain/base/status.h"

namespace chainfs {

// Which file an open descriptor is (fstat's st_dev and st_ino): a file
// reopened by path is the same file only if its FileId (and size) match.
// Both zero: unknown (a backend or wrapper that cannot tell).
struct FileId {
  uint64_t dev = 0;
  uint64_t ino = 0;
  bool known() const { return dev != 0 || ino != 0; }
  bool operator==(const FileId&) const = default;
};

class RandomAccessFile {
 public:
  virtual ~RandomAccessFile() = default;
  // Reads exactly n bytes at offset into buf; a short read is kCorruption
  // ("truncated"), an OS failure kIoError.
  virtual Status ReadAt(uint64_t offset, size_t n, void* buf) const = 0;
  virtual uint64_t Size() const = 0;
  virtual const std::string& Path() const = 0;
  // The identity of the open file, taken at open time; {} if unknown.
  // Wrappers forward it.
  virtual FileId Id() const { return {}; }
  // Hints that [offset, offset + n) will be read soon: the kernel starts
  // reading it into the page cache in the background. Never fails.
  virtual void WillNeed(uint64_t offset, uint64_t n) const {
    (void)offset;
    (void)n;
  }
  // Hints that the file will be read at scattered places: the kernel's
  // sequential readahead is turned off for it (POSIX_FADV_RANDOM), so that
  // only what is read or asked for with WillNeed comes from disk. For the
  // life of the object (wrappers that reopen apply it again). Never fails.
  virtual void AdviseRandom() const {}
  // Moves exactly n bytes at offset into the pipe whose write end is
  // pipe_fd (splice(2): the page cache's pages, not a copy of them); the
  // pipe must have room for them. A file that ends first is kCorruption, as
  // ReadAt's short read, and whatever was moved stays in the pipe (the
  // caller discards the pipe). kNotSupported where there is no descriptor
  // to splice from: the caller reads instead.
  virtual Status SpliceTo(uint64_t offset, size_t n, int pipe_fd) const {
    (void)offset;
    (void)n;
    (void)pipe_fd;
    return Status::NotSupported(Path() + ": no splice");
  }
};

// Byte ranges of one file gathered for WillNeed, asked for in file order:
// ranges closer than max_gap bytes to each other become one hint, gap
// included. On a disk each hint is a request of its own (a system call, a
// queue entry, a completion interrupt), so reading a few bytes nobody asked
// for costs less than two requests: a deep chain's layer holds a window's
// live blocks next to each other in its file, with shadowed blocks between.
//
// kWillNeedMaxGap: one 64 KiB block. On a depth-100 qcow2 chain (bench-qcow2's
// d100) a cold read of the top view read 7% more bytes in a third fewer
// disk requests; on a volume capped at 3,000 read IOPS (as cloud volumes
// are) it took 3.1 s instead of 3.5 s (gap 0) and 5.3 s (no merging), and
// as long as before uncapped (docs/ARCHITECTURE.md). Wider gaps gained less
// capped (128 KiB: 2.9 s, 256 KiB: 2.8 s for 13% and 23% more bytes).
inline constexpr uint64_t kWillNeedMaxGap = 64 << 10;
class WillNeedRanges {
 public:
  void Add(uint64_t offset, uint64_t n);
  // Hints every range to f, merged; empties the list.
  void Issue(const RandomAccessFile& f, uint64_t max_gap);

 private:
  std::vector<std::pair<uint64_t, uint64_t>> ranges_;  // [start, end)
};

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

// A new file written front to back (Env::NewAppendFile). Not thread-safe:
// one writer per file.
class AppendFile {
 public:
  virtual ~AppendFile() = default;
  virtual Status Append(const void* data, size_t n) = 0;
  // Everything appended is on disk (kDirect: written out first), then fsync.
  // Appending after Sync() is allowed.
  virtual Status Sync() = 0;
  virtual Status Close() = 0;
  // Bytes appended so far.
  virtual uint64_t Offset() const = 0;
  virtual const std::string& Path() const = 0;
  // kDirect unless the filesystem refused it (then kBuffered).
  virtual WriteMode mode() const = 0;

  static constexpr size_t kDirectBuffer = 32 << 20;
  static constexpr size_t kDirectAlign = 4096;  // covers 512 and 4096 byte sectors
};

// A file written at positions (Env::NewWritableFile: export's output).
// Not thread-safe: one writer per file.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual Status WriteAt(uint64_t offset, const void* data, size_t n) = 0;
  // Sets the size (holes where nothing was written).
  virtual Status Truncate(uint64_t size) = 0;
  virtual Status Sync() = 0;
  virtual Status Close() = 0;
  // The size at open time (a block device's capacity).
  virtual uint64_t Size() const = 0;
  virtual const std::string& Path() const = 0;
};

// Env::Default() shortcuts for files outside a repository (backup sources,
// dirty maps, --config files): repository files go through repo.env().
Result<std::unique_ptr<RandomAccessFile>> OpenRandomAccessFile(const std::string& path);
Result<std::string> ReadWholeFile(const std::string& path, size_t max_bytes = 64 << 20);

}  // namespace chainfs
