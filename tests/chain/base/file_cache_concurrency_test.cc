// FileCache under many readers and a small capacity: every read gets the
// right bytes while descriptors are evicted and reopened under it. Built
// into chainfs_cache_tests, so it also runs under ThreadSanitizer.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <thread>
#include <vector>

#include "chain/base/file_cache.h"
#include "tests/chain/test_util.h"

namespace chainfs {
namespace {

using testing::RandomBytes;
using testing::TempDir;
using testing::WriteFile;

void ReadRandomly(const std::vector<std::unique_ptr<RandomAccessFile>>& files,
                  const std::vector<std::string>& contents, unsigned seed, int reads,
                  std::vector<std::string>* errors) {
  std::mt19937 rng(seed);
  std::string buf;
  for (int r = 0; r < reads; ++r) {
    const size_t i = rng() % files.size();
    const size_t off = rng() % (contents[i].size() - 1);
    const size_t n = 1 + rng() % (contents[i].size() - off);
    buf.resize(n);
    if (r % 7 == 0) files[i]->WillNeed(off, n);
    Status st = files[i]->ReadAt(off, n, buf.data());
    if (!st.ok()) {
      errors->push_back(st.ToString());
    } else if (buf.compare(0, n, contents[i], off, n) != 0) {
      errors->push_back(files[i]->Path() + ": wrong bytes at " + std::to_string(off));
    }
  }
}

TEST(FileCacheConcurrency, ManyReadersWithASmallCapacityReadTheRightBytes) {
  for (size_t capacity : {2u, 3u, 4u}) {
    TempDir dir;
    FileCache cache(capacity);
    std::vector<std::string> contents;
    std::vector<std::unique_ptr<RandomAccessFile>> files;
    for (int i = 0; i < 12; ++i) {
      contents.push_back(RandomBytes(4096 + 100 * i, 7 + i));
      WriteFile(dir / std::to_string(i), contents.back());
      auto f = cache.Open(Env::Default(), dir / std::to_string(i));
      ASSERT_TRUE(f.ok()) << f.status().ToString();
      files.push_back(std::move(f).value());
    }
    constexpr int kThreads = 8;
    std::vector<std::vector<std::string>> errors(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back(ReadRandomly, std::cref(files), std::cref(contents), 1000 + t, 1500,
                           &errors[t]);
    for (auto& t : threads) t.join();
    for (const auto& e : errors) EXPECT_TRUE(e.empty()) << e.size() << " errors, first: " << e[0];
    EXPECT_LE(cache.open_count(), capacity);
    files.clear();
    EXPECT_EQ(cache.open_count(), 0u);
  }
}

// Files opened and destroyed while others read: the cache's list stays sound.
TEST(FileCacheConcurrency, OpeningAndClosingWhileOthersRead) {
  TempDir dir;
  FileCache cache(3);
  std::vector<std::string> contents;
  std::vector<std::unique_ptr<RandomAccessFile>> files;
  for (int i = 0; i < 6; ++i) {
    contents.push_back(RandomBytes(2048, 50 + i));
    WriteFile(dir / std::to_string(i), contents.back());
    files.push_back(std::move(cache.Open(Env::Default(), dir / std::to_string(i))).value());
  }
  std::vector<std::vector<std::string>> errors(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back(ReadRandomly, std::cref(files), std::cref(contents), 77 + t, 2000,
                         &errors[t]);
  threads.emplace_back([&] {
    for (int r = 0; r < 300; ++r) {
      auto f = cache.Open(Env::Default(), dir / std::to_string(r % 6));
      if (!f.ok()) {
        errors[3].push_back(f.status().ToString());
        continue;
      }
      std::string buf(16, '\0');
      if (!f.value()->ReadAt(r % 100, 16, buf.data()).ok() ||
          buf != contents[r % 6].substr(r % 100, 16))
        errors[3].push_back("wrong bytes from a fresh file");
    }
  });
  for (auto& t : threads) t.join();
  for (const auto& e : errors) EXPECT_TRUE(e.empty()) << e.size() << " errors, first: " << e[0];
  EXPECT_LE(cache.open_count(), 3u);
}

}  // namespace
}  // namespace chainfs
