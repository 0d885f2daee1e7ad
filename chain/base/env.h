// Env: every storage call the repository makes (after leveldb's Env).
//
// Repository code never calls the file system itself: it asks repo.env().
// Env::Default() is the local POSIX file system (also NFS, CephFS mounts);
// tests wrap an Env to inject faults (tests/chain/test_util.h FaultyEnv), and
// a later object-store backend implements this one interface.
//
//   Env* env = repo.env();
//   CHAINFS_ASSIGN_OR_RETURN(auto f, env->NewAppendFile(dir + "/x.delta"));
//   CHAINFS_RETURN_IF_ERROR(f->Append(data, n));
//   CHAINFS_RETURN_IF_ERROR(f->Sync());
//   CHAINFS_RETURN_IF_ERROR(env->SyncDir(dir));
//   CHAINFS_RETURN_IF_ERROR(env->WriteFileAtomic(dir + "/m.json", text));
//
// A repository's Env is rooted (NewRootedPosixEnv): every path under its root
// is resolved beneath the root's descriptor without following any symbolic
// link, so a link planted in a shared repository cannot make a writer running
// as root read, write or delete anything outside it.
//
// Errors: every failure is a Status whose message names the path (both paths
// for a rename). A missing path is kNotFound, an existing one where a new one
// is required kAlreadyExists, a full file system kNoSpace, the rest kIoError.
// Thread-safety: every method may be called from any thread concurrently.
// The files returned follow their own contracts (chain/base/file.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "chain/base/file.h"
#include "chain/base/status.h"

namespace chainfs {

enum class FileType { kRegular, kDirectory, kBlockDevice, kCharDevice, kFifo, kSymlink, kOther };

// What Env::Stat reports of a path.
struct FileInfo {
  FileType type = FileType::kRegular;  // kSymlink only for a dangling link
  bool is_symlink = false;             // path itself is a symbolic link
  bool is_dir = false;
  bool is_block_device = false;
  uint64_t size = 0;      // bytes (0 for a block device: open it to learn its size)
  int64_t mtime_ns = 0;   // last modification, ns since the epoch
  int64_t ctime_ns = 0;   // last status change, ns since the epoch
  FileId id;              // device and inode (of the link's target)
};

// A directory entry and what is there, the entry itself (a symbolic link
// is kSymlink, never followed): Env::ListDirInfo.
struct DirEntryInfo {
  std::string name;
  FileInfo info;
};

// What Env::StatFs reports of the file system holding a path.
struct FsInfo {
  uint64_t free_bytes = 0;  // available to an unprivileged writer
  uint64_t type = 0;        // statfs(2) f_type magic (0xEF53 ext4, 0x6969 nfs, ...)
};

// A whole small file's bytes, read-only, valid while this lives
// (Env::ReadWholeFileBytes): a copy, or the file mapped.
class FileBytes {
 public:
  virtual ~FileBytes() = default;
  std::string_view bytes() const { return bytes_; }

 protected:
  std::string_view bytes_;
};

// A held writer lock; destroying it releases the lock.
class FileLock {
 public:
  virtual ~FileLock() = default;
};

class Env {
 public:
  virtual ~Env() = default;

  // The local POSIX file system. Never destroyed.
  static Env* Default();

  // Opens path read-only; its size is taken at open time.
  virtual Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(
      const std::string& path) = 0;
  // Creates path exclusively (kAlreadyExists if it exists, a symbolic link
  // included: never followed), mode 0600, for appending.
  virtual Result<std::unique_ptr<AppendFile>> NewAppendFile(
      const std::string& path, WriteMode mode = WriteMode::kBuffered) = 0;
  // Opens path for positioned writes:
  //   kCreate    creates a new regular file exclusively (as NewAppendFile: a
  //              symbolic link is never followed) with exactly `permissions`;
  //   kExisting  opens what exists without truncating;
  //   kDevice    opens an existing block or character device or FIFO (a
  //              symbolic link to one is followed) and refuses anything else,
  //              checked on the opened descriptor. A character device or FIFO
  //              is a stream: WriteAt must go in order, without gaps.
  enum class OpenMode { kCreate, kExisting, kDevice };
  virtual Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path,
                                                                OpenMode mode,
                                                                uint32_t permissions = 0600) = 0;

  // fsyncs a directory so that renames and creations in it are durable.
  virtual Status SyncDir(const std::string& dir) = 0;
  // Durable rename: rename(2) over any existing `to`, then SyncDir of its directory.
  virtual Status RenameFile(const std::string& from, const std::string& to) = 0;
  // rename(2) over any existing `to`, WITHOUT the directory fsync: visible at
  // once, durable only after a later SyncDir of to's directory. For a caller
  // that renames several files into one directory and syncs it once, and
  // whose crash recovery redoes a rename that did not survive (chain/repo/txn.h).
  virtual Status RenameFileNoDirSync(const std::string& from, const std::string& to) = 0;
  // Removes a file; kNotFound if it does not exist.
  virtual Status RemoveFile(const std::string& path) = 0;
  // mkdir -p: creates dir and its missing parents; an existing dir is fine.
  virtual Status CreateDirs(const std::string& dir) = 0;
  // Names in dir (no "." or ".."), in no particular order.
  virtual Result<std::vector<std::string>> ListDir(const std::string& dir) = 0;
  // Takes an exclusive, non-blocking writer lock on path (created mode 0600 if
  // missing; never through a symbolic link; it must be a regular file; flock semantics: released when the holder exits or dies) and records
  // `holder` in it. If another holds it: kBusy, and *held_by (if given) gets
  // the text that holder recorded ("unknown" if none).
  virtual Result<std::unique_ptr<FileLock>> LockFile(const std::string& path,
                                                     const std::string& holder,
                                                     std::string* held_by) = 0;
  // What is at path, symlinks followed (is_symlink tells; a dangling link is
  // type kSymlink, not kNotFound). A rooted Env refuses a link instead.
  virtual Result<FileInfo> Stat(const std::string& path) = 0;
  virtual Result<FsInfo> StatFs(const std::string& path) = 0;

  // Built on the calls above (so a wrapping Env sees their parts):
  // Writes a small file durably: PATH.tmp.<random> (UnpredictableSuffix)
  // created exclusively, appended and synced, renamed over path
  // (RenameFile); the temporary is removed on failure.
  Status WriteFileAtomic(const std::string& path, const std::string& contents);
  // The same with RenameFileNoDirSync: the contents are durable before the
  // rename, the rename only after the caller's SyncDir of path's directory.
  Status WriteFileAtomicNoDirSync(const std::string& path, const std::string& contents);
  // The same with no fsync at all: visible whole or not at all, durable
  // whenever the system writes it back. For caches whose readers verify
  // them (a torn file after a crash fails its checksum).
  Status WriteFileAtomicNoSync(const std::string& path, const std::string& contents);
  // Names in dir with what each entry is (not following links), in no
  // particular order; an entry removed meanwhile is left out, one that
  // cannot be examined is kOther.
  Result<std::vector<DirEntryInfo>> ListDirInfo(const std::string& dir) {
    return ListDirWithInfo(dir);
  }
  // A whole small file; kCorruption if it is larger than max_bytes.
  Result<std::string> ReadWholeFile(const std::string& path, size_t max_bytes = 64 << 20) {
    return ReadSmallFile(path, max_bytes);
  }
  // The same, for a caller that decodes the bytes while it holds them and
  // keeps nothing of them (a view map at a view's open): an Env may map the
  // file instead of copying it into fresh memory. The file must not be
  // truncated in place meanwhile (the repository replaces its files by
  // rename, never in place).
  Result<std::unique_ptr<const FileBytes>> ReadWholeFileBytes(const std::string& path,
                                                              size_t max_bytes = 64 << 20) {
    return ReadSmallFileBytes(path, max_bytes);
  }
  // False only if Stat says path does not exist: any other failure counts
  // as present, so callers that refuse or keep things on "exists" stay careful.
  bool FileExists(const std::string& path);
  // Whether path exists; a failure other than "does not exist" is an error
  // (for callers whose next step or message depends on the answer).
  Result<bool> Exists(const std::string& path);

 private:
  // What WriteFileAtomic* make durable: the file and the rename, the file only,
  // or nothing (a cache that checks itself).
  enum class Durability { kFileAndRename, kFile, kNone };
  // WriteFileAtomic's body.
  Status WriteFileAtomicImpl(const std::string& path, const std::string& contents,
                             Durability durability);

 protected:
  // ReadWholeFile: NewRandomAccessFile, Size and one ReadAt. An Env may do
  // it in fewer system calls, with the same result and the same errors.
  virtual Result<std::string> ReadSmallFile(const std::string& path, size_t max_bytes);
  // ReadWholeFileBytes: ReadSmallFile's copy. An Env may map the file.
  virtual Result<std::unique_ptr<const FileBytes>> ReadSmallFileBytes(const std::string& path,
                                                                      size_t max_bytes);
  // ListDirInfo: ListDir and a Stat of each entry (a link: is_symlink). An
  // Env may do it with one lstat per entry and no path resolution.
  virtual Result<std::vector<DirEntryInfo>> ListDirWithInfo(const std::string& dir);
};

// An Env that forwards every call to another (LevelDB's EnvWrapper): a
// wrapper overrides only what it changes (the descriptor cache its
// NewRandomAccessFile, a test generator its syncs). target must outlive it.
class EnvWrapper : public Env {
 public:
  explicit EnvWrapper(Env* target) : target_(target) {}
  Env* target() const { return target_; }

  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override {
    return target_->NewRandomAccessFile(path);
  }
  Result<std::unique_ptr<AppendFile>> NewAppendFile(const std::string& path,
                                                    WriteMode mode) override {
    return target_->NewAppendFile(path, mode);
  }
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path, OpenMode mode,
                                                        uint32_t permissions) override {
    return target_->NewWritableFile(path, mode, permissions);
  }
  Status SyncDir(const std::string& dir) override { return target_->SyncDir(dir); }
  Status RenameFile(const std::string& from, const std::string& to) override {
    return target_->RenameFile(from, to);
  }
  Status RenameFileNoDirSync(const std::string& from, const std::string& to) override {
    return target_->RenameFileNoDirSync(from, to);
  }
  Status RemoveFile(const std::string& path) override { return target_->RemoveFile(path); }
  Status CreateDirs(const std::string& dir) override { return target_->CreateDirs(dir); }
  Result<std::vector<std::string>> ListDir(const std::string& dir) override {
    return target_->ListDir(dir);
  }
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path, const std::string& holder,
                                             std::string* held_by) override {
    return target_->LockFile(path, holder, held_by);
  }
  Result<FileInfo> Stat(const std::string& path) override { return target_->Stat(path); }
  Result<FsInfo> StatFs(const std::string& path) override { return target_->StatFs(path); }

 protected:
  // The target's own (a wrapper that changes ListDir or Stat overrides this too).
  Result<std::vector<DirEntryInfo>> ListDirWithInfo(const std::string& dir) override {
    return target_->ListDirInfo(dir);
  }

 private:
  Env* target_;
};

// An Env for the repository at root: paths under root (root + "/...") are
// resolved beneath root's descriptor, opened once here (root itself may be a
// symbolic link: the user's choice), and no component of them may be a
// symbolic link (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or a walk of
// openat(O_NOFOLLOW) where the kernel lacks openat2): such a path fails with
// kCorruption "ROOT/groups/vm1/deltas is a symbolic link; the repository layout
// has none: refusing". Under root, files opened for reading and the lock must
// be regular files, RemoveFile removes only regular files, and ".." is
// refused. Other paths (export outputs, backup sources) are Env::Default()'s.
// use_openat2 false forces the openat walk (tests).
Result<std::unique_ptr<Env>> NewRootedPosixEnv(const std::string& root, bool use_openat2 = true);

// 16 hex digits from the OS's random source: names of temporary files that
// another user cannot guess and plant beforehand.
std::string UnpredictableSuffix();

}  // namespace chainfs
