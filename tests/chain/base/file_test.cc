#include "chain/base/env.h"
#include "chain/base/file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <random>
#include <string>

#include "tests/chain/test_util.h"

namespace chainfs {
namespace {

using testing::ReadFile;
using testing::TempDir;

std::string Random(size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::string s(n + 8, '\0');
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(&s[i], &v, 8);
  }
  s.resize(n);
  return s;
}

// Appends pieces of odd sizes that cross the direct buffer several times,
// syncs, and checks the exact bytes and size on disk.
TEST(AppendFile, DirectWritesExactBytesAcrossBufferBoundaries) {
  TempDir dir;
  const std::string path = dir / "direct.bin";
  auto f = Env::Default()->NewAppendFile(path, WriteMode::kDirect);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f.value()->mode(), WriteMode::kDirect) << "the test directory refuses O_DIRECT";
  std::string want;
  const size_t sizes[] = {1, 4095, 4097, 65536 + 17, AppendFile::kDirectBuffer - 3,
                          AppendFile::kDirectBuffer + 5, 2 * AppendFile::kDirectBuffer + 123};
  unsigned seed = 1;
  for (size_t n : sizes) {
    std::string piece = Random(n, seed++);
    ASSERT_TRUE(f.value()->Append(piece.data(), piece.size()).ok());
    want += piece;
    EXPECT_EQ(f.value()->Offset(), want.size());
  }
  ASSERT_TRUE(f.value()->Sync().ok());
  ASSERT_TRUE(f.value()->Close().ok());
  const std::string got = ReadFile(path);
  ASSERT_EQ(got.size(), want.size()) << "the padded tail was not cut back";
  EXPECT_TRUE(got == want);
}

TEST(AppendFile, DirectAppendAfterSyncRewritesThePaddedTail) {
  TempDir dir;
  const std::string path = dir / "tail.bin";
  auto f = Env::Default()->NewAppendFile(path, WriteMode::kDirect);
  ASSERT_TRUE(f.ok());
  const std::string a = Random(5000, 7), b = Random(3000, 8);
  ASSERT_TRUE(f.value()->Append(a.data(), a.size()).ok());
  ASSERT_TRUE(f.value()->Sync().ok());
  EXPECT_EQ(ReadFile(path), a);
  ASSERT_TRUE(f.value()->Append(b.data(), b.size()).ok());
  ASSERT_TRUE(f.value()->Sync().ok());
  ASSERT_TRUE(f.value()->Close().ok());
  EXPECT_EQ(ReadFile(path), a + b);
}

TEST(AppendFile, CreateRefusesAnExistingFileInBothModes) {
  TempDir dir;
  const std::string path = dir / "x.bin";
  ASSERT_TRUE(Env::Default()->NewAppendFile(path).ok());
  for (WriteMode m : {WriteMode::kBuffered, WriteMode::kDirect}) {
    auto again = Env::Default()->NewAppendFile(path, m);
    ASSERT_FALSE(again.ok());
    EXPECT_NE(again.status().message().find(path), std::string::npos);
  }
}

}  // namespace
}  // namespace chainfs
