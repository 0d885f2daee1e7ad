// The POSIX Env: each call, and errors that name the path.
#include "chain/base/env.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/chain/test_util.h"

namespace chainfs {
namespace {

using testing::DrainPipe;
using testing::RandomBytes;
using testing::TempDir;
using testing::WriteFile;

Env* env() { return Env::Default(); }

// The status failed with code c and its message names `path`.
void ExpectFailure(const Status& st, Status::Code c, const std::string& path) {
  EXPECT_EQ(st.code(), c) << st.ToString();
  EXPECT_NE(st.message().find(path), std::string::npos) << st.ToString();
}

TEST(PosixEnv, AppendFileThenRandomAccessReadsTheBytes) {
  TempDir dir;
  const std::string path = dir / "f";
  auto f = env()->NewAppendFile(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_TRUE(f.value()->Append("hello ", 6).ok());
  ASSERT_TRUE(f.value()->Append("world", 5).ok());
  EXPECT_EQ(f.value()->Offset(), 11u);
  ASSERT_TRUE(f.value()->Sync().ok());
  ASSERT_TRUE(f.value()->Close().ok());
  auto r = env()->NewRandomAccessFile(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r.value()->Size(), 11u);
  char buf[5];
  ASSERT_TRUE(r.value()->ReadAt(6, 5, buf).ok());
  EXPECT_EQ(std::string(buf, 5), "world");
  ExpectFailure(r.value()->ReadAt(8, 5, buf), Status::Code::kCorruption, path);
  ExpectFailure(env()->NewAppendFile(path).status(), Status::Code::kAlreadyExists, path);
  ExpectFailure(env()->NewRandomAccessFile(dir / "missing").status(), Status::Code::kNotFound,
                dir / "missing");
}

// SpliceTo moves exactly the bytes asked for into a pipe; a file that ends
// first is kCorruption naming it, as ReadAt's short read.
TEST(PosixEnv, SpliceToMovesTheBytesIntoAPipe) {
  TempDir dir;
  const std::string path = dir / "f", data = RandomBytes(300000, 5);
  WriteFile(path, data);
  auto f = env()->NewRandomAccessFile(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  ASSERT_GT(::fcntl(p[1], F_SETPIPE_SZ, 1 << 20), 0);
  ASSERT_TRUE(f.value()->SpliceTo(12345, 200000, p[1]).ok());
  ASSERT_TRUE(f.value()->SpliceTo(7, 3, p[1]).ok());
  EXPECT_TRUE(DrainPipe(p[0], 1 << 20) == data.substr(12345, 200000) + data.substr(7, 3));
  ExpectFailure(f.value()->SpliceTo(299990, 20, p[1]), Status::Code::kCorruption, path);
  EXPECT_EQ(DrainPipe(p[0], 100), data.substr(299990)) << "what the file had is in the pipe";
  ::close(p[0]);
  ::close(p[1]);
}

// POSIX_FADV_WILLNEED reads at most the kernel's readahead size per call
// (8 MiB on these machines) and drops the rest of the range: WillNeed of a
// long range must still bring all of it in.
TEST(PosixEnv, WillNeedFetchesAllOfALongRange) {
  TempDir dir;
  const std::string path = dir / "f";
  constexpr uint64_t kSize = 48ull << 20;
  {
    auto f = env()->NewAppendFile(path);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    std::string chunk(1 << 20, 'x');
    for (uint64_t done = 0; done < kSize; done += chunk.size())
      ASSERT_TRUE(f.value()->Append(chunk.data(), chunk.size()).ok());
    ASSERT_TRUE(f.value()->Sync().ok());
    ASSERT_TRUE(f.value()->Close().ok());
  }
  ASSERT_TRUE(testing::EvictFromPageCache(path)) << "the page cache of " << path << " cannot be dropped";
  auto r = env()->NewRandomAccessFile(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  r.value()->AdviseRandom();  // no readahead of the kernel's own either
  r.value()->WillNeed(0, kSize);
  // The reads run in the background: wait for them (they take well under a
  // second; 20 s for a loaded machine).
  uint64_t resident = 0;
  for (int i = 0; i < 200 && (resident = testing::ResidentBytes(path)) < kSize; ++i)
    ::usleep(100 * 1000);
  // Readahead is best effort: on a loaded machine (CI runs this beside the
  // sanitizer builds) the kernel may skip or reclaim a few pages of it. A
  // single call is capped at the readahead size, so a WillNeed that did not
  // split the range would leave at most 8 MiB of the 48 resident.
  EXPECT_GE(resident, kSize * 3 / 4) << "only " << resident << " of " << kSize << " bytes were brought in";
}

TEST(PosixEnv, WritableFileWritesAtPositionsAndTruncates) {
  TempDir dir;
  const std::string path = dir / "out";
  auto w = env()->NewWritableFile(path, Env::OpenMode::kCreate);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_TRUE(w.value()->WriteAt(3, "abc", 3).ok());
  ASSERT_TRUE(w.value()->Truncate(10).ok());
  ASSERT_TRUE(w.value()->Sync().ok());
  ASSERT_TRUE(w.value()->Close().ok());
  EXPECT_EQ(testing::ReadFile(path), std::string("\0\0\0abc\0\0\0\0", 10));
  auto again = env()->NewWritableFile(path, Env::OpenMode::kExisting);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again.value()->Size(), 10u) << "kExisting keeps the content";
  ExpectFailure(env()->NewWritableFile(dir / "nope", Env::OpenMode::kExisting).status(),
                Status::Code::kNotFound, dir / "nope");
}

TEST(PosixEnv, WriteFileAtomicReplacesAndLeavesNoTemporary) {
  TempDir dir;
  const std::string path = dir / "m.json";
  ASSERT_TRUE(env()->WriteFileAtomic(path, "one").ok());
  ASSERT_TRUE(env()->WriteFileAtomic(path, "two!").ok());
  auto text = env()->ReadWholeFile(path);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(text.value(), "two!");
  EXPECT_EQ(env()->ListDir(dir.path()).value(), std::vector<std::string>{"m.json"});
  ExpectFailure(env()->ReadWholeFile(path, 3).status(), Status::Code::kCorruption, path);
  ExpectFailure(env()->WriteFileAtomic(dir / "no/such/dir", "x"), Status::Code::kNotFound,
                dir / "no/such/dir");
}

TEST(PosixEnv, RenameRemoveAndSyncDir) {
  TempDir dir;
  testing::WriteFile(dir / "a", "A");
  ASSERT_TRUE(env()->RenameFile(dir / "a", dir / "b").ok());
  EXPECT_FALSE(env()->FileExists(dir / "a"));
  EXPECT_EQ(testing::ReadFile(dir / "b"), "A");
  Status st = env()->RenameFile(dir / "a", dir / "c");
  ExpectFailure(st, Status::Code::kNotFound, dir / "a");
  EXPECT_NE(st.message().find(dir / "c"), std::string::npos) << "both names: " << st.ToString();
  ASSERT_TRUE(env()->RemoveFile(dir / "b").ok());
  ExpectFailure(env()->RemoveFile(dir / "b"), Status::Code::kNotFound, dir / "b");
  EXPECT_TRUE(env()->SyncDir(dir.path()).ok());
  ExpectFailure(env()->SyncDir(dir / "gone"), Status::Code::kNotFound, dir / "gone");
}

TEST(PosixEnv, CreateDirsAndListDir) {
  TempDir dir;
  ASSERT_TRUE(env()->CreateDirs(dir / "x/y/z").ok());
  ASSERT_TRUE(env()->CreateDirs(dir / "x/y/z").ok()) << "an existing directory is fine";
  ASSERT_TRUE(env()->CreateDirs(dir / "x/y/").ok());
  testing::WriteFile(dir / "x/f", "");
  auto names = env()->ListDir(dir / "x");
  ASSERT_TRUE(names.ok()) << names.status().ToString();
  std::sort(names.value().begin(), names.value().end());
  EXPECT_EQ(names.value(), (std::vector<std::string>{"f", "y"}));
  ExpectFailure(env()->CreateDirs(dir / "x/f/g"), Status::Code::kIoError, dir / "x/f");
  ExpectFailure(env()->CreateDirs(dir / "x/f"), Status::Code::kIoError, dir / "x/f");
  ExpectFailure(env()->ListDir(dir / "none").status(), Status::Code::kNotFound, dir / "none");
}

TEST(PosixEnv, LockFileIsExclusiveAndTellsTheHolder) {
  TempDir dir;
  const std::string path = dir / "lock";
  std::string held_by;
  auto first = env()->LockFile(path, "pid 1: backup\n", &held_by);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto second = env()->LockFile(path, "pid 2: prune\n", &held_by);
  ExpectFailure(second.status(), Status::Code::kBusy, path);
  EXPECT_EQ(held_by, "pid 1: backup");
  first.value().reset();
  auto third = env()->LockFile(path, "pid 3\n", nullptr);
  EXPECT_TRUE(third.ok()) << "released with its handle: " << third.status().ToString();
  ExpectFailure(env()->LockFile(dir / "no/lock", "", nullptr).status(), Status::Code::kNotFound,
                dir / "no/lock");
}

TEST(PosixEnv, StatAndStatFs) {
  TempDir dir;
  testing::WriteFile(dir / "f", "12345");
  auto f = env()->Stat(dir / "f");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_FALSE(f.value().is_dir);
  EXPECT_FALSE(f.value().is_block_device);
  EXPECT_EQ(f.value().size, 5u);
  EXPECT_GT(f.value().mtime_ns, 1600000000LL * 1000000000LL);
  EXPECT_GT(f.value().ctime_ns, 1600000000LL * 1000000000LL);
  auto d = env()->Stat(dir.path());
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d.value().is_dir);
  ExpectFailure(env()->Stat(dir / "none").status(), Status::Code::kNotFound, dir / "none");
  EXPECT_TRUE(env()->FileExists(dir / "f"));
  EXPECT_FALSE(env()->FileExists(dir / "none"));
  auto fs = env()->StatFs(dir.path());
  ASSERT_TRUE(fs.ok()) << fs.status().ToString();
  EXPECT_GT(fs.value().free_bytes, 0u);
  EXPECT_NE(fs.value().type, 0u);
  auto proc = env()->StatFs("/proc");
  ASSERT_TRUE(proc.ok());
  EXPECT_EQ(proc.value().type, 0x9fa0u) << "procfs magic";
  ExpectFailure(env()->StatFs(dir / "none").status(), Status::Code::kNotFound, dir / "none");
}

// Issue 13: files are created exclusively, never through a link, with
// exactly the permissions asked (whatever the umask).
TEST(PosixEnv, Issue13CreateNeverFollowsALinkAndSetsExactPermissions) {
  TempDir dir;
  testing::WriteFile(dir / "victim", "precious");
  ASSERT_EQ(::symlink((dir / "victim").c_str(), (dir / "out").c_str()), 0);
  ExpectFailure(env()->NewWritableFile(dir / "out", Env::OpenMode::kCreate).status(),
                Status::Code::kAlreadyExists, dir / "out");
  ExpectFailure(env()->NewAppendFile(dir / "out").status(), Status::Code::kAlreadyExists,
                dir / "out");
  EXPECT_EQ(testing::ReadFile(dir / "victim"), "precious");
  const mode_t old_umask = ::umask(077);
  auto w = env()->NewWritableFile(dir / "new", Env::OpenMode::kCreate, 0640);
  ::umask(old_umask);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  struct stat st;
  ASSERT_EQ(::stat((dir / "new").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  ASSERT_TRUE(env()->NewWritableFile(dir / "default", Env::OpenMode::kCreate).ok());
  ASSERT_EQ(::stat((dir / "default").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

// Issue 13: the lock is never taken through a link (a dangling one created
// its target) and must be a regular file.
TEST(PosixEnv, Issue13LockFileRefusesLinksAndNonRegularFiles) {
  TempDir dir;
  ASSERT_EQ(::symlink((dir / "created").c_str(), (dir / "lock").c_str()), 0);
  EXPECT_FALSE(env()->LockFile(dir / "lock", "pid 1\n", nullptr).ok());
  EXPECT_FALSE(env()->FileExists(dir / "created")) << "created through a dangling link";
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0600), 0);
  ExpectFailure(env()->LockFile(dir / "fifo", "pid 1\n", nullptr).status(),
                Status::Code::kCorruption, dir / "fifo");
  ASSERT_TRUE(env()->LockFile(dir / "real", "pid 1\n", nullptr).ok());
  struct stat st;
  ASSERT_EQ(::stat((dir / "real").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

// Issue 13: WriteFileAtomic's temporary name is not guessable (PATH.tmp.PID).
TEST(PosixEnv, Issue13WriteFileAtomicTemporaryIsUnpredictable) {
  TempDir dir;
  testing::FaultyEnv faulty;
  faulty.FailNth(testing::FaultyEnv::Op::kCreateAppend, 1, EEXIST,
                 "m.json.tmp." + std::to_string(::getpid()));
  Status st = faulty.WriteFileAtomic(dir / "m.json", "x");
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_NE(UnpredictableSuffix(), UnpredictableSuffix());
}

// Issue 13: kDevice writes a character device or FIFO in place as a stream
// and refuses a regular file; Stat tells a link and what it points to.
TEST(PosixEnv, Issue13DeviceModeStreamsAndStatTellsLinks) {
  TempDir dir;
  auto null = env()->NewWritableFile("/dev/null", Env::OpenMode::kDevice);
  ASSERT_TRUE(null.ok()) << null.status().ToString();
  EXPECT_TRUE(null.value()->WriteAt(0, "abc", 3).ok());
  EXPECT_TRUE(null.value()->WriteAt(3, "de", 2).ok());
  EXPECT_FALSE(null.value()->WriteAt(10, "x", 1).ok()) << "a stream is written in order";
  EXPECT_TRUE(null.value()->Sync().ok());
  testing::WriteFile(dir / "file", "keep");
  ExpectFailure(env()->NewWritableFile(dir / "file", Env::OpenMode::kDevice).status(),
                Status::Code::kInvalidArgument, dir / "file");
  EXPECT_EQ(testing::ReadFile(dir / "file"), "keep");

  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0600), 0);
  std::string got;
  std::thread reader([&] { got = testing::ReadFileStream(dir / "fifo"); });
  auto fifo = env()->NewWritableFile(dir / "fifo", Env::OpenMode::kDevice);
  ASSERT_TRUE(fifo.ok()) << fifo.status().ToString();
  EXPECT_TRUE(fifo.value()->WriteAt(0, "hello ", 6).ok());
  EXPECT_TRUE(fifo.value()->WriteAt(6, "pipe", 4).ok());
  EXPECT_TRUE(fifo.value()->Close().ok());
  reader.join();
  EXPECT_EQ(got, "hello pipe");

  ASSERT_EQ(::symlink("/dev/null", (dir / "to-null").c_str()), 0);
  ASSERT_EQ(::symlink((dir / "gone").c_str(), (dir / "dangling").c_str()), 0);
  auto link = env()->Stat(dir / "to-null");
  ASSERT_TRUE(link.ok()) << link.status().ToString();
  EXPECT_TRUE(link->is_symlink);
  EXPECT_EQ(link->type, FileType::kCharDevice);
  auto dangling = env()->Stat(dir / "dangling");
  ASSERT_TRUE(dangling.ok()) << dangling.status().ToString();
  EXPECT_TRUE(dangling->is_symlink);
  EXPECT_EQ(dangling->type, FileType::kSymlink);
  EXPECT_EQ(env()->Stat(dir / "file")->type, FileType::kRegular);
  EXPECT_FALSE(env()->Stat(dir / "file")->is_symlink);
}

// A rooted Env (issue 13), with openat2 and with the openat walk.
class RootedEnvTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    ASSERT_EQ(::mkdir(root_.c_str(), 0700), 0);
    ASSERT_EQ(::mkdir(outside_.c_str(), 0700), 0);
    for (const char* f : {"a", "b", "c"}) testing::WriteFile(outside_ + "/" + f, f);
    auto env = NewRootedPosixEnv(root_, GetParam());
    ASSERT_TRUE(env.ok()) << env.status().ToString();
    env_ = std::move(env).value();
    ASSERT_TRUE(env_->CreateDirs(root_ + "/groups/vm1/checkpoints").ok());
  }
  // The outside directory still holds exactly a, b, c with their bytes.
  void ExpectOutsideIntact() {
    auto names = Env::Default()->ListDir(outside_);
    ASSERT_TRUE(names.ok());
    std::sort(names.value().begin(), names.value().end());
    EXPECT_EQ(names.value(), (std::vector<std::string>{"a", "b", "c"}));
    for (const char* f : {"a", "b", "c"}) EXPECT_EQ(testing::ReadFile(outside_ + "/" + f), f);
  }
  void Link(const std::string& target, const std::string& at) {
    ASSERT_EQ(::symlink(target.c_str(), at.c_str()), 0) << at;
  }

  TempDir dir_;
  const std::string root_ = dir_ / "repo";
  const std::string outside_ = dir_ / "outside";
  std::unique_ptr<Env> env_;
};

// The refusal names the link and says why.
void ExpectLinkRefused(const Status& st, const std::string& link) {
  EXPECT_EQ(st.code(), Status::Code::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find(link + " is a symbolic link; the repository layout has none"),
            std::string::npos)
      << st.ToString();
}

TEST_P(RootedEnvTest, WorksBeneathTheRootAndLeavesOtherPathsPlain) {
  const std::string cps = root_ + "/groups/vm1/checkpoints";
  ASSERT_TRUE(env_->WriteFileAtomic(cps + "/c1.json", "{}").ok());
  EXPECT_EQ(env_->ReadWholeFile(cps + "/c1.json").value(), "{}");
  EXPECT_EQ(env_->ListDir(cps).value(), std::vector<std::string>{"c1.json"});
  ASSERT_TRUE(env_->RenameFile(cps + "/c1.json", cps + "/c2.json").ok());
  EXPECT_EQ(env_->Stat(cps + "/c2.json")->size, 2u);
  EXPECT_TRUE(env_->Stat(root_)->is_dir);
  EXPECT_TRUE(env_->SyncDir(root_).ok());
  EXPECT_TRUE(env_->StatFs(cps).ok());
  ASSERT_TRUE(env_->LockFile(root_ + "/lock", "pid 1\n", nullptr).ok());
  ASSERT_TRUE(env_->RemoveFile(cps + "/c2.json").ok());
  ExpectFailure(env_->RemoveFile(cps + "/c2.json"), Status::Code::kNotFound, cps + "/c2.json");
  ExpectFailure(env_->ListDir(root_ + "/groups/none").status(), Status::Code::kNotFound,
                root_ + "/groups/none");
  ExpectFailure(env_->Stat(root_ + "/groups/../../outside/a").status(),
                Status::Code::kInvalidArgument, "..");
  // Outside the root: the plain Env (an export's output).
  ASSERT_TRUE(env_->WriteFileAtomic(dir_ / "out", "x").ok());
  EXPECT_EQ(testing::ReadFile(dir_ / "out"), "x");
  // The root itself may be a link: the user's choice.
  Link(root_, dir_ / "via-link");
  auto via = NewRootedPosixEnv(dir_ / "via-link", GetParam());
  ASSERT_TRUE(via.ok()) << via.status().ToString();
  EXPECT_TRUE(via.value()->Stat(dir_ / "via-link/groups/vm1")->is_dir);
}

TEST_P(RootedEnvTest, RefusesALinkedDirectoryAndTouchesNothingBehindIt) {
  const std::string deltas = root_ + "/groups/vm1/deltas";
  Link(outside_, deltas);
  ExpectLinkRefused(env_->ListDir(deltas).status(), deltas);
  ExpectLinkRefused(env_->NewAppendFile(deltas + "/c1.vda.1.delta").status(), deltas);
  ExpectLinkRefused(env_->WriteFileAtomic(deltas + "/x.json", "x"), deltas);
  ExpectLinkRefused(env_->NewWritableFile(deltas + "/w", Env::OpenMode::kCreate).status(), deltas);
  ExpectLinkRefused(env_->RemoveFile(deltas + "/a"), deltas);
  ExpectLinkRefused(env_->NewRandomAccessFile(deltas + "/a").status(), deltas);
  ExpectLinkRefused(env_->Stat(deltas + "/a").status(), deltas);
  ExpectLinkRefused(env_->Stat(deltas).status(), deltas);
  ExpectLinkRefused(env_->SyncDir(deltas), deltas);
  ExpectLinkRefused(env_->CreateDirs(deltas), deltas);
  ExpectLinkRefused(env_->CreateDirs(deltas + "/sub"), deltas);
  ExpectLinkRefused(env_->LockFile(deltas + "/lock", "x", nullptr).status(), deltas);
  testing::WriteFile(root_ + "/groups/vm1/checkpoints/c1.json", "{}");
  ExpectLinkRefused(env_->RenameFile(root_ + "/groups/vm1/checkpoints/c1.json", deltas + "/a"),
                    deltas);
  // A link higher up is named as itself.
  Link(root_ + "/groups/vm1", root_ + "/groups/vm2");
  ExpectLinkRefused(env_->ListDir(root_ + "/groups/vm2/checkpoints").status(),
                    root_ + "/groups/vm2");
  ExpectOutsideIntact();
}

TEST_P(RootedEnvTest, RefusesALinkAsTheLastComponent) {
  const std::string f = root_ + "/groups/vm1/checkpoints/c1.json";
  Link(outside_ + "/a", f);
  ExpectLinkRefused(env_->NewRandomAccessFile(f).status(), f);
  ExpectLinkRefused(env_->RemoveFile(f), f);
  ExpectLinkRefused(env_->Stat(f).status(), f);
  ExpectLinkRefused(env_->LockFile(f, "pid 1: backup\n", nullptr).status(), f);
  EXPECT_EQ(env_->NewAppendFile(f).status().code(), Status::Code::kAlreadyExists);
  EXPECT_TRUE(env_->FileExists(f)) << "a refused path counts as present";
  struct stat st;
  EXPECT_EQ(::lstat(f.c_str(), &st), 0) << "the link itself stays";
  ExpectOutsideIntact();
}

TEST_P(RootedEnvTest, DanglingLockLinkCreatesNothingOutside) {
  Link(outside_ + "/new", root_ + "/lock");
  ExpectLinkRefused(env_->LockFile(root_ + "/lock", "pid 1: prune\n", nullptr).status(),
                    root_ + "/lock");
  ExpectOutsideIntact();
}

TEST_P(RootedEnvTest, ReadsAndRemovesOnlyRegularFiles) {
  const std::string fifo = root_ + "/groups/vm1/checkpoints/c1.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ExpectFailure(env_->NewRandomAccessFile(fifo).status(), Status::Code::kCorruption, fifo);
  ExpectFailure(env_->RemoveFile(fifo), Status::Code::kCorruption, fifo);
  ExpectFailure(env_->RemoveFile(root_ + "/groups/vm1"), Status::Code::kCorruption,
                root_ + "/groups/vm1");
}

// ReadWholeFile beneath the root (one openat2 of the whole path when the
// kernel has it): the bytes, and on every failure the error an open gives.
TEST_P(RootedEnvTest, ReadWholeFileReadsWhatAnOpenReadsAndFailsAsAnOpenFails) {
  const std::string cps = root_ + "/groups/vm1/checkpoints";
  const std::string big = testing::RandomBytes(3 << 20, 5);
  testing::WriteFile(cps + "/big.json", big);
  testing::WriteFile(cps + "/empty.json", "");
  EXPECT_EQ(env_->ReadWholeFile(cps + "/big.json").value(), big);
  EXPECT_EQ(env_->ReadWholeFile(cps + "/empty.json").value(), "");
  ExpectFailure(env_->ReadWholeFile(cps + "/big.json", (3 << 20) - 1).status(),
                Status::Code::kCorruption, "more than the");
  ExpectFailure(env_->ReadWholeFile(cps + "/none.json").status(), Status::Code::kNotFound,
                cps + "/none.json");
  ExpectFailure(env_->ReadWholeFile(root_ + "/groups/../../outside/a").status(),
                Status::Code::kInvalidArgument, "..");
  const std::string fifo = cps + "/fifo.json";  // refused at once, not a hang
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ExpectFailure(env_->ReadWholeFile(fifo).status(), Status::Code::kCorruption, fifo);
  Link(outside_ + "/a", cps + "/link.json");
  ExpectLinkRefused(env_->ReadWholeFile(cps + "/link.json").status(), cps + "/link.json");
  Link(outside_, root_ + "/groups/vm1/deltas");
  ExpectLinkRefused(env_->ReadWholeFile(root_ + "/groups/vm1/deltas/a").status(),
                    root_ + "/groups/vm1/deltas");
  ExpectFailure(env_->ReadWholeFile(cps).status(), Status::Code::kCorruption, cps);
  ExpectOutsideIntact();
}

// NewRandomAccessFile beneath the root (one openat2 of the whole path when
// the kernel has it): the size, identity and bytes an open and fstat give,
// also for an empty file and after the file grew.
TEST_P(RootedEnvTest, NewRandomAccessFileTellsSizeAndIdAsFstatDoes) {
  const std::string deltas = root_ + "/groups/vm1/deltas";
  ASSERT_TRUE(env_->CreateDirs(deltas).ok());
  const std::string bytes = testing::RandomBytes(100000, 3);
  testing::WriteFile(deltas + "/c1.vda.1.delta", bytes);
  testing::WriteFile(deltas + "/empty.delta", "");
  for (const char* name : {"c1.vda.1.delta", "empty.delta"}) {
    const std::string path = deltas + "/" + name;
    auto f = env_->NewRandomAccessFile(path);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    struct stat st;
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(f.value()->Size(), static_cast<uint64_t>(st.st_size)) << name;
    EXPECT_EQ(f.value()->Id().dev, static_cast<uint64_t>(st.st_dev)) << name;
    EXPECT_EQ(f.value()->Id().ino, static_cast<uint64_t>(st.st_ino)) << name;
    std::string got(static_cast<size_t>(st.st_size), '\0');
    ASSERT_TRUE(f.value()->ReadAt(0, got.size(), got.data()).ok());
    EXPECT_EQ(got, std::string(name) == "empty.delta" ? "" : bytes);
    EXPECT_FALSE(f.value()->ReadAt(static_cast<uint64_t>(st.st_size), 1, got.data()).ok())
        << "a read past the end is an error, not a short read";
  }
  ExpectFailure(env_->NewRandomAccessFile(deltas + "/none.delta").status(),
                Status::Code::kNotFound, deltas + "/none.delta");
  ExpectFailure(env_->NewRandomAccessFile(deltas).status(), Status::Code::kCorruption, deltas);
}

// ListDirInfo: each entry as lstat sees it (a link is not followed), through
// the rooted Env's one-lstat-per-entry way (in parallel past 1,024 entries)
// and Env's own (ListDir and Stat, here through a FaultyEnv) alike; a link
// in the path is refused as by ListDir.
TEST_P(RootedEnvTest, ListDirInfoTellsEachEntryAsLstatDoes) {
  const std::string cps = root_ + "/groups/vm1/checkpoints";
  for (int i = 0; i < 1500; ++i)
    testing::WriteFile(cps + "/c" + std::to_string(i) + ".json", std::string(i % 97, 'x'));
  ASSERT_EQ(::mkdir((cps + "/sub").c_str(), 0700), 0);
  Link(outside_ + "/a", cps + "/link.json");
  testing::FaultyEnv plain(env_.get());
  for (Env* env : {env_.get(), static_cast<Env*>(&plain)}) {
    auto got = env->ListDirInfo(cps);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_EQ(got->size(), 1502u);
    std::set<std::string> names;
    for (const DirEntryInfo& e : got.value()) {
      names.insert(e.name);
      struct stat st;
      ASSERT_EQ(::lstat((cps + "/" + e.name).c_str(), &st), 0) << e.name;
      if (e.name == "link.json") {
        // Env's Stat of a rooted path refuses the link: kOther, never the target.
        EXPECT_TRUE(e.info.is_symlink || e.info.type == FileType::kOther) << e.name;
        EXPECT_NE(e.info.type, FileType::kRegular);
        continue;
      }
      EXPECT_EQ(e.info.is_dir, e.name == "sub") << e.name;
      EXPECT_EQ(e.info.id.ino, st.st_ino) << e.name;
      EXPECT_EQ(e.info.size, static_cast<uint64_t>(st.st_size)) << e.name;
      EXPECT_EQ(e.info.ctime_ns, st.st_ctim.tv_sec * 1'000'000'000LL + st.st_ctim.tv_nsec);
      EXPECT_EQ(e.info.mtime_ns, st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec);
    }
    EXPECT_EQ(names.size(), 1502u);
    EXPECT_EQ(names.count("c1499.json"), 1u);
  }
  Link(outside_, root_ + "/groups/vm1/deltas");
  ExpectLinkRefused(env_->ListDirInfo(root_ + "/groups/vm1/deltas").status(),
                    root_ + "/groups/vm1/deltas");
  ExpectOutsideIntact();
}

// Whether path is mapped into this process (/proc/self/maps names it).
bool Mapped(const std::string& path) {
  std::ifstream maps("/proc/self/maps");  // a size of 0: read as a stream
  std::stringstream text;
  text << maps.rdbuf();
  return text.str().find(path) != std::string::npos;
}

// ReadWholeFileBytes: ReadWholeFile's bytes and errors; with openat2 the
// file is mapped while the bytes are held (no copy into fresh memory), and
// unmapped once they are dropped.
TEST_P(RootedEnvTest, ReadWholeFileBytesReadsAndFailsAsReadWholeFileAndMapsTheFile) {
  const std::string cps = root_ + "/groups/vm1/checkpoints";
  const std::string big = testing::RandomBytes(3 << 20, 6);
  testing::WriteFile(cps + "/big.map", big);
  testing::WriteFile(cps + "/empty.map", "");
  {
    auto bytes = env_->ReadWholeFileBytes(cps + "/big.map");
    ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
    EXPECT_EQ(bytes.value()->bytes(), big);
    EXPECT_EQ(Mapped(cps + "/big.map"), GetParam());
  }
  EXPECT_FALSE(Mapped(cps + "/big.map"));
  auto empty = env_->ReadWholeFileBytes(cps + "/empty.map");
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_EQ(empty.value()->bytes(), "");
  ExpectFailure(env_->ReadWholeFileBytes(cps + "/big.map", (3 << 20) - 1).status(),
                Status::Code::kCorruption, "more than the");
  ExpectFailure(env_->ReadWholeFileBytes(cps + "/none.map").status(), Status::Code::kNotFound,
                cps + "/none.map");
  ExpectFailure(env_->ReadWholeFileBytes(root_ + "/groups/../../outside/a").status(),
                Status::Code::kInvalidArgument, "..");
  const std::string fifo = cps + "/fifo.map";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ExpectFailure(env_->ReadWholeFileBytes(fifo).status(), Status::Code::kCorruption, fifo);
  Link(outside_ + "/a", cps + "/link.map");
  ExpectLinkRefused(env_->ReadWholeFileBytes(cps + "/link.map").status(), cps + "/link.map");
  ExpectFailure(env_->ReadWholeFileBytes(cps).status(), Status::Code::kCorruption, cps);
  ExpectOutsideIntact();
}

INSTANTIATE_TEST_SUITE_P(Resolution, RootedEnvTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "Openat2" : "OpenatWalk";
                         });

TEST(FaultyEnv, FailsTheNthMatchingCallOnly) {
  TempDir dir;
  testing::FaultyEnv faulty;
  faulty.FailNth(testing::FaultyEnv::Op::kAppend, 2, ENOSPC, dir / "b");
  auto a = faulty.NewAppendFile(dir / "a", WriteMode::kBuffered);
  auto b = faulty.NewAppendFile(dir / "b", WriteMode::kBuffered);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(a.value()->Append("x", 1).ok());
  EXPECT_TRUE(a.value()->Append("x", 1).ok()) << "another path";
  EXPECT_TRUE(b.value()->Append("y", 1).ok()) << "the first matching call";
  ExpectFailure(b.value()->Append("y", 1), Status::Code::kNoSpace, dir / "b");
  EXPECT_TRUE(b.value()->Append("y", 1).ok()) << "only the nth";
  EXPECT_EQ(faulty.calls(testing::FaultyEnv::Op::kAppend), 5);
}

}  // namespace
}  // namespace chainfs
