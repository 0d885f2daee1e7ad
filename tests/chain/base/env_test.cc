// The POSIX Env: each call, and errors that name the path.
#include "chain/base/env.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/chain/test_util.h"

namespace chainfs {
namespace {

using testing::TempDir;

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
