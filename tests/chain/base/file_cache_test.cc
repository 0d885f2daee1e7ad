// FileCache: a bounded number of descriptors, LRU eviction, reopen safety.
#include "chain/base/file_cache.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "tests/chain/test_util.h"

namespace chainfs {
namespace {

using testing::RandomBytes;
using testing::TempDir;
using testing::WriteFile;
using testing::DrainPipe;
using testing::SoftFileLimit;

// Entries of /proc/self/fd: the descriptors this process has open.
int OpenDescriptors() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  while (const dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n - 1;  // the one opendir holds
}

std::string Read(const RandomAccessFile& f, uint64_t off, size_t n, Status* st) {
  std::string out(n, '\0');
  *st = f.ReadAt(off, n, out.data());
  return out;
}

std::string ReadAll(const RandomAccessFile& f) {
  Status st;
  std::string s = Read(f, 0, f.Size(), &st);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return s;
}

class FileCacheTest : public ::testing::Test {
 protected:
  // Writes files f0..f(n-1) of distinct contents and opens each through cache.
  void OpenFiles(FileCache* cache, int n) {
    for (int i = 0; i < n; ++i) {
      names_.push_back(dir_ / ("f" + std::to_string(i)));
      contents_.push_back(RandomBytes(1000 + 37 * i, 100 + i));
      WriteFile(names_.back(), contents_.back());
      auto f = cache->Open(Env::Default(), names_.back());
      ASSERT_TRUE(f.ok()) << f.status().ToString();
      files_.push_back(std::move(f).value());
    }
  }
  TempDir dir_;
  std::vector<std::string> names_, contents_;
  std::vector<std::unique_ptr<RandomAccessFile>> files_;
};

TEST_F(FileCacheTest, NeverMoreThanCapacityDescriptorsOpen) {
  const int before = OpenDescriptors();
  FileCache cache(4);
  OpenFiles(&cache, 40);
  EXPECT_LE(OpenDescriptors(), before + 4);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 40; ++i) {
      ASSERT_EQ(ReadAll(*files_[i]), contents_[i]) << names_[i];
      EXPECT_LE(OpenDescriptors(), before + 4);
    }
  }
  EXPECT_EQ(cache.open_count(), 4u);
  files_.clear();
  EXPECT_EQ(cache.open_count(), 0u);
  EXPECT_EQ(OpenDescriptors(), before);
}

TEST_F(FileCacheTest, SizePathAndIdAreKeptWithoutADescriptor) {
  FileCache cache(1);
  OpenFiles(&cache, 2);  // f0 evicted
  EXPECT_EQ(files_[0]->Size(), contents_[0].size());
  EXPECT_EQ(files_[0]->Path(), names_[0]);
  EXPECT_TRUE(files_[0]->Id().known());
  EXPECT_NE(files_[0]->Id(), files_[1]->Id());
  files_[0]->WillNeed(0, 100);  // reopens for the hint
  EXPECT_EQ(ReadAll(*files_[1]), contents_[1]);
}

// The least recently used descriptor goes first: after the files are
// removed, only those still cached can be read.
TEST(FileCache, EvictsTheLeastRecentlyUsedAndCachedFilesOutliveRemoval) {
  TempDir dir;
  FileCache cache(2);
  std::vector<std::unique_ptr<RandomAccessFile>> f;
  for (const char* n : {"a", "b", "c"}) WriteFile(dir / n, std::string(100, *n));
  for (const char* n : {"a", "b"}) f.push_back(std::move(cache.Open(Env::Default(), dir / n)).value());
  ASSERT_EQ(ReadAll(*f[0]), std::string(100, 'a'));  // a more recent than b
  f.push_back(std::move(cache.Open(Env::Default(), dir / "c")).value());  // evicts b
  for (const char* n : {"a", "b", "c"}) ASSERT_EQ(::unlink((dir / n).c_str()), 0);
  EXPECT_EQ(ReadAll(*f[0]), std::string(100, 'a'));  // cached: reads its bytes
  EXPECT_EQ(ReadAll(*f[2]), std::string(100, 'c'));
  Status st;
  Read(*f[1], 0, 10, &st);
  EXPECT_EQ(st.code(), Status::Code::kIoError) << st.ToString();
  EXPECT_EQ(st.ToErrno(), EIO);
  EXPECT_NE(st.message().find(dir / "b"), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("was removed while in use"), std::string::npos) << st.ToString();
}

TEST_F(FileCacheTest, ReadsAreCorrectAfterEvictionAndReopen) {
  FileCache cache(1);
  OpenFiles(&cache, 8);
  for (int round = 0; round < 4; ++round)
    for (int i = 7; i >= 0; --i) {
      Status st;
      const std::string part = Read(*files_[i], 100 + i, 200, &st);
      ASSERT_TRUE(st.ok()) << st.ToString();
      EXPECT_EQ(part, contents_[i].substr(100 + i, 200)) << names_[i];
    }
  Status st;
  Read(*files_[3], files_[3]->Size() - 10, 20, &st);  // past the end, reopened
  EXPECT_EQ(st.code(), Status::Code::kCorruption) << st.ToString();
}

TEST_F(FileCacheTest, AFileReplacedAtItsPathIsCorruption) {
  FileCache cache(1);
  OpenFiles(&cache, 2);  // f0 evicted
  // The same size, another inode: what a rename over it leaves.
  WriteFile(dir_ / "new", RandomBytes(contents_[0].size(), 9));
  ASSERT_EQ(std::rename((dir_ / "new").c_str(), names_[0].c_str()), 0);
  Status st;
  Read(*files_[0], 0, 10, &st);
  EXPECT_EQ(st.code(), Status::Code::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find(names_[0] + " was replaced since it was opened"),
            std::string::npos)
      << st.ToString();
}

TEST_F(FileCacheTest, AFileGrownInPlaceIsCorruption) {
  FileCache cache(1);
  OpenFiles(&cache, 2);
  {
    std::FILE* f = std::fopen(names_[0].c_str(), "ab");
    ASSERT_NE(f, nullptr);
    std::fputs("more", f);
    std::fclose(f);
  }
  Status st;
  Read(*files_[0], 0, 10, &st);
  EXPECT_EQ(st.code(), Status::Code::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find("was replaced since it was opened"), std::string::npos);
}

TEST_F(FileCacheTest, SetCapacityClosesDescriptorsBeyondIt) {
  const int before = OpenDescriptors();
  FileCache cache(8);
  OpenFiles(&cache, 8);
  EXPECT_EQ(OpenDescriptors(), before + 8);
  cache.SetCapacity(3);
  EXPECT_EQ(cache.capacity(), 3u);
  EXPECT_EQ(cache.open_count(), 3u);
  EXPECT_EQ(OpenDescriptors(), before + 3);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(ReadAll(*files_[i]), contents_[i]);
}

// An Env whose first read of path `slow` waits until released; counts the
// files alive (each holds a descriptor).
class GateEnv : public testing::FaultyEnv {
 public:
  std::atomic<int> alive{0};
  std::atomic<bool> gated{false};
  std::string slow;
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();

  class File : public testing::FaultyFile {
   public:
    File(std::unique_ptr<RandomAccessFile> base, GateEnv* env)
        : FaultyFile(std::move(base)), env_(env) {
      ++env_->alive;
    }
    ~File() override { --env_->alive; }
    Status ReadAt(uint64_t off, size_t n, void* buf) const override {
      if (Path() == env_->slow && !env_->gated.exchange(true)) {  // the first read only
        env_->entered.set_value();
        env_->released.wait();
      }
      return FaultyFile::ReadAt(off, n, buf);
    }

   private:
    GateEnv* env_;
  };
  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& p) override {
    CHAINFS_ASSIGN_OR_RETURN(auto f, FaultyEnv::NewRandomAccessFile(p));
    return std::unique_ptr<RandomAccessFile>(new File(std::move(f), this));
  }
};

// Eviction during a read does not close its descriptor: the read gets its
// bytes, and the descriptor closes when the read ends.
TEST(FileCache, AReadInFlightKeepsItsDescriptorThroughEviction) {
  TempDir dir;
  GateEnv env;
  env.slow = dir / "a";
  WriteFile(dir / "a", std::string(100, 'a'));
  WriteFile(dir / "b", std::string(100, 'b'));
  FileCache cache(1);
  auto a = std::move(cache.Open(&env, dir / "a")).value();
  auto reading = std::async(std::launch::async, [&] {
    std::string out(100, '\0');
    Status st = a->ReadAt(0, 100, out.data());
    return st.ok() ? out : st.ToString();
  });
  env.entered.get_future().wait();
  auto b = std::move(cache.Open(&env, dir / "b")).value();  // evicts a, in use
  EXPECT_EQ(cache.open_count(), 1u);
  EXPECT_EQ(env.alive.load(), 2);  // a's descriptor still open for its read
  env.release.set_value();
  EXPECT_EQ(reading.get(), std::string(100, 'a'));
  EXPECT_EQ(env.alive.load(), 1);  // closed when the read ended
  EXPECT_EQ(ReadAll(*b), std::string(100, 'b'));
}

// Eviction prefers a descriptor no read holds.
TEST(FileCache, EvictionSkipsADescriptorInUse) {
  TempDir dir;
  GateEnv env;
  env.slow = dir / "a";
  for (const char* n : {"a", "b", "c"}) WriteFile(dir / n, std::string(100, *n));
  FileCache cache(2);
  auto b = std::move(cache.Open(&env, dir / "b")).value();
  auto a = std::move(cache.Open(&env, dir / "a")).value();
  ASSERT_EQ(ReadAll(*b), std::string(100, 'b'));  // lru: b, a
  auto reading = std::async(std::launch::async, [&] { return ReadAll(*a); });
  env.entered.get_future().wait();  // lru: a (in use), b
  ASSERT_EQ(ReadAll(*b), std::string(100, 'b'));  // lru: b, a (in use)
  auto c = std::move(cache.Open(&env, dir / "c")).value();  // evicts b, not a
  env.release.set_value();
  EXPECT_EQ(reading.get(), std::string(100, 'a'));
  EXPECT_EQ(env.alive.load(), 2);  // a and c
  ASSERT_EQ(::unlink((dir / "a").c_str()), 0);
  EXPECT_EQ(ReadAll(*a), std::string(100, 'a'));  // still cached
}

TEST(FileCache, CachingEnvOpensThroughTheCacheAndForwardsTheRest) {
  TempDir dir;
  FileCache cache(2);
  auto env = NewCachingEnv(Env::Default(), &cache);
  ASSERT_TRUE(env->WriteFileAtomic(dir / "x", "hello").ok());
  auto f = env->NewRandomAccessFile(dir / "x");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(cache.open_count(), 1u);
  EXPECT_EQ(ReadAll(*f.value()), "hello");
  EXPECT_TRUE(env->FileExists(dir / "x"));
  EXPECT_EQ(env->NewRandomAccessFile(dir / "none").status().code(), Status::Code::kNotFound);
}

// A cached file splices through its descriptor, reopened after eviction.
TEST(FileCache, SpliceToReopensAnEvictedFile) {
  TempDir dir;
  FileCache cache(1);
  WriteFile(dir / "a", std::string(5000, 'a'));
  WriteFile(dir / "b", std::string(5000, 'b'));
  auto a = cache.Open(Env::Default(), dir / "a");
  auto b = cache.Open(Env::Default(), dir / "b");  // evicts a's descriptor
  ASSERT_TRUE(a.ok() && b.ok());
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  ASSERT_TRUE(a.value()->SpliceTo(10, 4000, p[1]).ok());
  ASSERT_TRUE(b.value()->SpliceTo(0, 100, p[1]).ok());
  EXPECT_EQ(DrainPipe(p[0], 8192), std::string(4000, 'a') + std::string(100, 'b'));
  ::close(p[0]);
  ::close(p[1]);
}

// A whole small file (a manifest) is read and closed past the cache: reading
// a deep group's manifests must not evict the layers' descriptors.
TEST(FileCache, CachingEnvReadsWholeFilesWithoutEvictingADescriptor) {
  TempDir dir;
  FileCache cache(1);
  auto env = NewCachingEnv(Env::Default(), &cache);
  testing::WriteFile(dir / "layer", std::string(100, 'l'));
  for (const char* n : {"m1.json", "m2.json"}) testing::WriteFile(dir / n, n);
  auto layer = env->NewRandomAccessFile(dir / "layer");
  ASSERT_TRUE(layer.ok()) << layer.status().ToString();
  for (const char* n : {"m1.json", "m2.json"}) EXPECT_EQ(env->ReadWholeFile(dir / n).value(), n);
  EXPECT_EQ(env->ReadWholeFile(dir / "none.json").status().code(), Status::Code::kNotFound);
  EXPECT_EQ(cache.open_count(), 1u);
  ASSERT_EQ(::unlink((dir / "layer").c_str()), 0);
  EXPECT_EQ(ReadAll(*layer.value()), std::string(100, 'l')) << "the layer's descriptor was evicted";
}

TEST(FileCache, CapacityFromTheSoftLimit) {
  EXPECT_EQ(FileCacheCapacityFor(1024), 512u);
  EXPECT_EQ(FileCacheCapacityFor(20), 16u);
  EXPECT_EQ(FileCacheCapacityFor(1u << 20), 65536u);
  EXPECT_GE(DefaultFileCacheCapacity(), 16u);
}

TEST(FileCache, DescriptorsToReserveAreTheCachePlusAMarginAtMost16384) {
  {
    SoftFileLimit limit(1024);  // a cache of 512
    EXPECT_EQ(DescriptorsToReserve(), 512u + 256u);
  }
  {
    SoftFileLimit limit(1u << 20);  // the hard limit, if lower
    EXPECT_GT(DescriptorsToReserve(), std::min<size_t>(DefaultFileCacheCapacity(), 16384 - 256));
    EXPECT_LE(DescriptorsToReserve(), 16384u);
  }
}

// FDSize of /proc/self/status: the slots of this process's descriptor table.
size_t DescriptorTableSize() {
  std::FILE* f = std::fopen("/proc/self/status", "re");
  if (f == nullptr) return 0;
  char line[256];
  size_t size = 0;
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::sscanf(line, "FDSize: %zu", &size) == 1) break;
  std::fclose(f);
  return size;
}

TEST(FileCache, ReserveDescriptorTableGrowsTheTableAndLeavesNothingOpen) {
  const size_t before = DescriptorTableSize();
  ASSERT_GT(before, 0u) << "no FDSize in /proc/self/status";
  const size_t want = before * 4 + 1000;  // beyond what the process has grown to
  SoftFileLimit limit(want + 64);
  const int open_before = OpenDescriptors();
  auto got = ReserveDescriptorTable(want);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_GE(got.value(), want);
  EXPECT_GE(DescriptorTableSize(), want) << "the table did not grow (it held " << before << ")";
  EXPECT_EQ(OpenDescriptors(), open_before) << "a descriptor was left open";
}

TEST(FileCache, ReserveDescriptorTableStopsAtTheSoftLimit) {
  const size_t cap = DescriptorTableSize() * 2 + 128;
  SoftFileLimit limit(cap);
  auto got = ReserveDescriptorTable(size_t{1} << 20);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_LE(got.value(), cap);
  EXPECT_GE(DescriptorTableSize(), got.value());
}

}  // namespace
}  // namespace chainfs
