// Helpers for chainfs unit tests: temporary directories, files, a
// RandomAccessFile wrapper and an Env wrapper that inject faults.
#pragma once

#include <gtest/gtest.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <boost/filesystem.hpp>
#include <fstream>
#include <map>
#include <random>
#include <mutex>
#include <string>
#include <vector>

#include "chain/base/env.h"
#include "chain/base/file.h"

namespace chainfs::testing {

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("CHAINFS_TEST_TMP");
    std::string root = base ? base : "/tmp";
    boost::filesystem::create_directories(root);
    std::string templ = root + "/chainfs-test-XXXXXX";
    char* p = ::mkdtemp(templ.data());
    EXPECT_NE(p, nullptr);
    path_ = templ;
  }
  ~TempDir() { boost::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(f.good()) << path;
}

// n pseudo-random bytes, the same for the same seed.
inline std::string RandomBytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// Up to n bytes waiting in a pipe (or any descriptor), read without
// blocking: what a splice put there.
inline std::string DrainPipe(int fd, size_t n) {
  std::string out(n, '\0');
  size_t got = 0;
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  while (got < n) {
    const ssize_t r = ::read(fd, out.data() + got, n - got);
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  ::fcntl(fd, F_SETFL, flags);
  out.resize(got);
  return out;
}

inline std::string ReadFile(const std::string& path) {
  auto r = Env::Default()->ReadWholeFile(path, 1u << 30);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r.value() : std::string();
}

// Everything a reader of path (a FIFO too) gets until end of file.
inline std::string ReadFileStream(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Wraps a RandomAccessFile; can fail reads in a byte range with EIO, cut the
// file short, or flip one bit of what is read.
class FaultyFile : public RandomAccessFile {
 public:
  explicit FaultyFile(std::unique_ptr<RandomAccessFile> base) : base_(std::move(base)) {}
  uint64_t eio_from = UINT64_MAX, eio_to = 0;  // fail reads touching [from, to)
  uint64_t flip_at = UINT64_MAX;               // flip the low bit of this byte
  uint64_t truncate_at = UINT64_MAX;           // pretend the file ends here

  Status ReadAt(uint64_t off, size_t n, void* buf) const override {
    if (off < eio_to && off + n > eio_from) return Status::FromErrno(EIO, "injected");
    if (off + n > truncate_at) return Status::Corruption(Path() + ": truncated (injected)");
    CHAINFS_RETURN_IF_ERROR(base_->ReadAt(off, n, buf));
    if (flip_at >= off && flip_at < off + n) static_cast<char*>(buf)[flip_at - off] ^= 1;
    return Status::Ok();
  }
  uint64_t Size() const override { return std::min(base_->Size(), truncate_at); }
  const std::string& Path() const override { return base_->Path(); }
  FileId Id() const override { return base_->Id(); }

 private:
  std::unique_ptr<RandomAccessFile> base_;
};

// Wraps an Env; fails the nth call of an operation with an errno, as the
// file system would (ENOSPC on append, EIO on rename, EACCES on unlink).
// The error names the path, with "(injected)". Thread-safe. ConfineTo makes
// it wrap a rooted Env, as a Repository opened without an Env has.
//   FaultyEnv env;
//   ASSERT_TRUE(env.ConfineTo(path).ok());
//   auto repo = Repository::Open(path, &env);
//   env.FailNth(FaultyEnv::Op::kRename, 1, EIO, ".json");  // the next manifest rename
class FaultyEnv : public Env {
 public:
  enum class Op {
    kOpenRead, kCreateAppend, kAppend, kSync, kOpenWrite, kSyncDir, kRename,
    kRemove, kCreateDirs, kList, kLock, kStat, kStatFs,
    kRead, kWriteAt, kTruncate, kClose, kCount
  };
  static const char* OpName(Op op) {
    static const char* const kNames[] = {
        "open-read", "create",  "append", "fsync",   "open-write", "fsync-dir",
        "rename",    "remove",  "mkdir",  "list",    "lock",       "stat",
        "statfs",    "read",    "write-at", "truncate", "close"};
    return kNames[static_cast<int>(op)];
  }
  // How the swept call fails: with errno err; kShortWrite (appends and
  // positioned writes only) first writes half the bytes, then fails;
  // kAfterEffect (renames, removals, mkdir) does the call, then fails, as a
  // rename whose directory fsync fails does.
  enum class Fault { kError, kShortWrite, kAfterEffect };
  explicit FaultyEnv(Env* base = Env::Default()) : base_(base) {}

  // From now on wraps NewRootedPosixEnv(root) (which it owns) instead.
  Status ConfineTo(const std::string& root) {
    CHAINFS_ASSIGN_OR_RETURN(owned_, NewRootedPosixEnv(root));
    base_ = owned_.get();
    return Status::Ok();
  }

  // The nth call of op from now on (1: the next) whose path contains
  // path_part fails with err; earlier and later calls pass. One rule per op.
  void FailNth(Op op, int n, int err, const std::string& path_part = "") {
    std::lock_guard<std::mutex> lock(mu_);
    rules_[static_cast<int>(op)] = {n, err, path_part};
  }
  // Calls of op so far (failed ones included).
  int calls(Op op) const {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_[static_cast<int>(op)];
  }
  // Calls of op so far on exactly this path (a rename counts under its target).
  int calls(Op op, const std::string& path) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = path_calls_.find({static_cast<int>(op), path});
    return it == path_calls_.end() ? 0 : it->second;
  }
  // Sweep mode: the nth storage call from now on, of any op (file reads and
  // writes included), fails once with err (and fault).
  void FailCall(int n, int err, Fault fault = Fault::kError) {
    std::lock_guard<std::mutex> lock(mu_);
    sweep_ = {n, err, ""};
    sweep_fault_ = fault;
    swept_ = false;
    total_ = 0;
    ops_.clear();
  }
  // Storage calls since the last FailCall (or construction), and their ops in order.
  int total_calls() const {
    std::lock_guard<std::mutex> lock(mu_);
    return total_;
  }
  std::vector<Op> ops() const {
    std::lock_guard<std::mutex> lock(mu_);
    return ops_;
  }
  // Whether the swept call has been made (and failed).
  bool swept() const {
    std::lock_guard<std::mutex> lock(mu_);
    return swept_;
  }
  // The injected error if this call of op on path is the chosen one.
  Status Check(Op op, const std::string& path, const std::string& what,
               bool* short_write = nullptr, bool* after_effect = nullptr) {
    std::lock_guard<std::mutex> lock(mu_);
    ++calls_[static_cast<int>(op)];
    ++path_calls_[{static_cast<int>(op), path}];
    ++total_;
    ops_.push_back(op);
    if (sweep_.countdown > 0 && --sweep_.countdown == 0) {
      swept_ = true;
      if (short_write) *short_write = sweep_fault_ == Fault::kShortWrite;
      if (after_effect) *after_effect = sweep_fault_ == Fault::kAfterEffect;
      return Status::FromErrno(sweep_.err, what + " (injected: call " + std::to_string(total_) +
                                               ", " + OpName(op) + ")");
    }
    Rule& r = rules_[static_cast<int>(op)];
    if (r.countdown <= 0 || path.find(r.path_part) == std::string::npos) return Status::Ok();
    if (--r.countdown > 0) return Status::Ok();
    return Status::FromErrno(r.err, what + " (injected)");
  }

  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(
      const std::string& path) override {
    CHAINFS_RETURN_IF_ERROR(Check(Op::kOpenRead, path, "opening " + path));
    CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> f, base_->NewRandomAccessFile(path));
    return std::unique_ptr<RandomAccessFile>(new FaultyReadFile(std::move(f), this));
  }
  Result<std::unique_ptr<AppendFile>> NewAppendFile(const std::string& path,
                                                    WriteMode mode) override {
    CHAINFS_RETURN_IF_ERROR(Check(Op::kCreateAppend, path, "creating " + path));
    CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<AppendFile> f, base_->NewAppendFile(path, mode));
    return std::unique_ptr<AppendFile>(new File(std::move(f), this));
  }
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path, OpenMode mode,
                                                        uint32_t permissions) override {
    CHAINFS_RETURN_IF_ERROR(Check(Op::kOpenWrite, path, "opening " + path));
    CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f,
                             base_->NewWritableFile(path, mode, permissions));
    return std::unique_ptr<WritableFile>(new FaultyWritableFile(std::move(f), this));
  }
  Status SyncDir(const std::string& dir) override {
    CHAINFS_RETURN_IF_ERROR(Check(Op::kSyncDir, dir, "fsync directory " + dir));
    return base_->SyncDir(dir);
  }
  Status RenameFile(const std::string& from, const std::string& to) override {
    return CheckThen(Op::kRename, to, "renaming " + from + " to " + to, [&] { return base_->RenameFile(from, to); });
  }
  // A rename too (kRename): rules, sweeps and counts see it as one.
  Status RenameFileNoDirSync(const std::string& from, const std::string& to) override {
    return CheckThen(Op::kRename, to, "renaming " + from + " to " + to,
                     [&] { return base_->RenameFileNoDirSync(from, to); });
  }
  Status RemoveFile(const std::string& path) override {
    return CheckThen(Op::kRemove, path, "removing " + path, [&] { return base_->RemoveFile(path); });
  }
  Status CreateDirs(const std::string& dir) override {
    return CheckThen(Op::kCreateDirs, dir, "creating directory " + dir, [&] { return base_->CreateDirs(dir); });
  }
  Result<std::vector<std::string>> ListDir(const std::string& dir) override {
    CHAINFS_RETURN_IF_ERROR(Check(Op::kList, dir, "listing " + dir));
    return base_->ListDir(dir);
  }
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path, const std::string& holder,
                                             std::string* held_by) override {
    CHAINFS_RETURN_IF_ERROR(Check(Op::kLock, path, "locking " + path));
    return base_->LockFile(path, holder, held_by);
  }
  Result<FileInfo> Stat(const std::string& path) override {
    CHAINFS_RETURN_IF_ERROR(Check(Op::kStat, path, "stat " + path));
    return base_->Stat(path);
  }
  Result<FsInfo> StatFs(const std::string& path) override {
    CHAINFS_RETURN_IF_ERROR(Check(Op::kStatFs, path, "statfs " + path));
    return base_->StatFs(path);
  }

 private:
  // The call, after consulting the rules; a kAfterEffect fault makes the
  // call and then fails.
  template <typename Call>
  Status CheckThen(Op op, const std::string& path, const std::string& what, Call call) {
    bool after = false;
    Status st = Check(op, path, what, nullptr, &after);
    if (after) (void)call();
    CHAINFS_RETURN_IF_ERROR(st);
    return call();
  }
  // Sync and Close of a wrapped writable file, after consulting the rules.
  template <typename F>
  Status SyncChecked(F& f) {
    CHAINFS_RETURN_IF_ERROR(Check(Op::kSync, f.Path(), "fsync " + f.Path()));
    return f.Sync();
  }
  template <typename F>
  Status CloseChecked(F& f) {
    Status st = Check(Op::kClose, f.Path(), "closing " + f.Path());
    Status closed = f.Close();  // closed even when the call "fails"
    return st.ok() ? closed : st;
  }
  // An AppendFile whose Append and Sync consult the env's rules.
  class File : public AppendFile {
   public:
    File(std::unique_ptr<AppendFile> base, FaultyEnv* env) : base_(std::move(base)), env_(env) {}
    Status Append(const void* data, size_t n) override {
      bool short_write = false;
      Status st = env_->Check(Op::kAppend, Path(), "writing " + Path(), &short_write);
      if (short_write) (void)base_->Append(data, n / 2);
      CHAINFS_RETURN_IF_ERROR(st);
      return base_->Append(data, n);
    }
    Status Sync() override { return env_->SyncChecked(*base_); }
    Status Close() override { return env_->CloseChecked(*base_); }
    uint64_t Offset() const override { return base_->Offset(); }
    const std::string& Path() const override { return base_->Path(); }
    WriteMode mode() const override { return base_->mode(); }

   private:
    std::unique_ptr<AppendFile> base_;
    FaultyEnv* env_;
  };
  // A RandomAccessFile whose reads consult the env's rules.
  class FaultyReadFile : public RandomAccessFile {
   public:
    FaultyReadFile(std::unique_ptr<RandomAccessFile> base, FaultyEnv* env)
        : base_(std::move(base)), env_(env) {}
    Status ReadAt(uint64_t off, size_t n, void* buf) const override {
      CHAINFS_RETURN_IF_ERROR(
          env_->Check(Op::kRead, Path(), Path() + ": read at offset " + std::to_string(off)));
      return base_->ReadAt(off, n, buf);
    }
    uint64_t Size() const override { return base_->Size(); }
    const std::string& Path() const override { return base_->Path(); }
    FileId Id() const override { return base_->Id(); }

   private:
    std::unique_ptr<RandomAccessFile> base_;
    FaultyEnv* env_;
  };
  // A WritableFile whose calls consult the env's rules.
  class FaultyWritableFile : public WritableFile {
   public:
    FaultyWritableFile(std::unique_ptr<WritableFile> base, FaultyEnv* env)
        : base_(std::move(base)), env_(env) {}
    Status WriteAt(uint64_t offset, const void* data, size_t n) override {
      bool short_write = false;
      Status st = env_->Check(Op::kWriteAt, Path(), "writing " + Path(), &short_write);
      if (short_write) (void)base_->WriteAt(offset, data, n / 2);
      CHAINFS_RETURN_IF_ERROR(st);
      return base_->WriteAt(offset, data, n);
    }
    Status Truncate(uint64_t size) override {
      CHAINFS_RETURN_IF_ERROR(env_->Check(Op::kTruncate, Path(), "setting the size of " + Path()));
      return base_->Truncate(size);
    }
    Status Sync() override { return env_->SyncChecked(*base_); }
    Status Close() override { return env_->CloseChecked(*base_); }
    uint64_t Size() const override { return base_->Size(); }
    const std::string& Path() const override { return base_->Path(); }

   private:
    std::unique_ptr<WritableFile> base_;
    FaultyEnv* env_;
  };
  struct Rule {
    int countdown = 0;  // 0: no fault pending
    int err = 0;
    std::string path_part;
  };
  std::unique_ptr<Env> owned_;  // base_, after ConfineTo
  Env* base_;
  mutable std::mutex mu_;
  Rule rules_[static_cast<int>(Op::kCount)];
  int calls_[static_cast<int>(Op::kCount)] = {};
  std::map<std::pair<int, std::string>, int> path_calls_;
  Rule sweep_;
  Fault sweep_fault_ = Fault::kError;
  bool swept_ = false;  // reset by FailCall
  int total_ = 0;
  std::vector<Op> ops_;
};

// The page cache of one file, for tests of what a read fetches from disk.
// Pages of path resident in the page cache now (mincore), one flag each.
inline std::vector<bool> ResidentPages(const std::string& path) {
  std::vector<bool> pages;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return pages;
  const off_t size = ::lseek(fd, 0, SEEK_END);
  if (size > 0) {
    void* m = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_SHARED, fd, 0);
    if (m != MAP_FAILED) {
      const long page = ::sysconf(_SC_PAGESIZE);
      std::vector<unsigned char> in((static_cast<size_t>(size) + page - 1) / page);
      if (::mincore(m, static_cast<size_t>(size), in.data()) == 0)
        for (unsigned char c : in) pages.push_back((c & 1) != 0);
      ::munmap(m, static_cast<size_t>(size));
    }
  }
  ::close(fd);
  return pages;
}
// Bytes of path in [offset, offset + length) resident now, counted by whole
// pages that start in the range.
inline uint64_t ResidentBytes(const std::string& path, uint64_t offset = 0,
                              uint64_t length = UINT64_MAX) {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::vector<bool> pages = ResidentPages(path);
  const uint64_t end = length > UINT64_MAX - offset ? UINT64_MAX : offset + length;
  uint64_t resident = 0;
  for (uint64_t i = (offset + page - 1) / page; i < pages.size() && i * page < end; ++i)
    resident += pages[i] ? page : 0;
  return resident;
}
// Drops the file's clean pages (POSIX_FADV_DONTNEED after fdatasync); true if
// none is left resident (false on a filesystem that keeps them, e.g. tmpfs).
inline bool EvictFromPageCache(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  return ResidentBytes(path) == 0;
}

// Sets the soft RLIMIT_NOFILE for its lifetime (at most the hard limit).
class SoftFileLimit {
 public:
  explicit SoftFileLimit(rlim_t soft) {
    EXPECT_EQ(::getrlimit(RLIMIT_NOFILE, &old_), 0);
    struct rlimit rl = old_;
    rl.rlim_cur = std::min(soft, old_.rlim_max);
    EXPECT_EQ(::setrlimit(RLIMIT_NOFILE, &rl), 0);
  }
  ~SoftFileLimit() { ::setrlimit(RLIMIT_NOFILE, &old_); }
  SoftFileLimit(const SoftFileLimit&) = delete;
  SoftFileLimit& operator=(const SoftFileLimit&) = delete;

 private:
  struct rlimit old_ {};
};

}  // namespace chainfs::testing
