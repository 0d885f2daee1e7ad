// Issue 14: a chain deeper than the open-file limit. Layers open their files
// through the Repository's FileCache, so backup, views, check and export work
// at any depth under a small RLIMIT_NOFILE.
#include <gtest/gtest.h>

#include <string>

#include "chain/repo/check.h"
#include "chain/repo/export.h"
#include "tests/chain/repo_util.h"

namespace chainfs {
namespace {

using testing::RandomBytes;
using testing::SoftFileLimit;
using testing::TempDir;
using testing::WriteFile;

std::string Name(int i) {
  char b[16];
  std::snprintf(b, sizeof b, "c%04d", i);
  return b;
}

TEST(DeepChain, Issue14ChainDeeperThanTheOpenFileLimitWorks) {
  constexpr int kDepth = 300;
  constexpr uint32_t kBs = 4096;
  SoftFileLimit limit(128);
  TempDir dir;
  testing::FaultyEnv env;
  auto repo = testing::NewRepository(dir, &env, kBs);
  ASSERT_NE(repo, nullptr);
  EXPECT_EQ(repo->open_file_limit(), 64u);  // half the soft limit

  std::string disk = RandomBytes(16 * kBs, 1);
  const std::string oldest = disk;
  for (int i = 0; i < kDepth; ++i) {
    if (i > 0) disk.replace((i % 16) * kBs, 100, RandomBytes(100, 1000 + i));
    WriteFile(dir / "disk.raw", disk);
    Status st = testing::BackupVda(*repo, Name(i), dir / "disk.raw");
    ASSERT_TRUE(st.ok()) << "backup " << i << ": " << st.ToString();
  }

  // From a snapshot of the test's own: the view holds every layer (one
  // opened by name holds only those that serve it).
  auto g = repo->LoadGroup("vm1");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  auto newest = repo->OpenView(g.value(), *g.value().Newest(), "vda");
  ASSERT_TRUE(newest.ok()) << newest.status().ToString();
  ASSERT_EQ(newest.value()->layers().size(), static_cast<size_t>(kDepth));
  auto first = repo->OpenView("vm1", Name(0), "vda");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  std::string got(disk.size(), '\0');
  ASSERT_TRUE(newest.value()->Read(0, got.size(), got.data()).ok());
  EXPECT_TRUE(got == disk);
  ASSERT_TRUE(first.value()->Read(0, got.size(), got.data()).ok());
  EXPECT_TRUE(got == oldest);

  auto report = Check(*repo, "vm1", "", /*deep=*/false);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report.value().checkpoints, static_cast<uint64_t>(kDepth));
  EXPECT_TRUE(report.value().problems.empty()) << report.value().problems[0].message;
  auto deep = Check(*repo, "vm1", Name(kDepth - 1), /*deep=*/true);
  ASSERT_TRUE(deep.ok()) << deep.status().ToString();
  EXPECT_TRUE(deep.value().problems.empty()) << deep.value().problems[0].message;

  auto exported = ExportView(repo->env(), *newest.value(), dir / "out.raw", 2);
  ASSERT_TRUE(exported.ok()) << exported.status().ToString();
  EXPECT_TRUE(testing::ReadFile(dir / "out.raw") == disk);
}

// Views keep reading with a limit of a few descriptors: layers reopen their
// files as they need them.
TEST(DeepChain, ViewsReadWithAFewDescriptors) {
  constexpr uint32_t kBs = 4096;
  TempDir dir;
  testing::FaultyEnv env;
  auto repo = testing::NewRepository(dir, &env, kBs);
  ASSERT_NE(repo, nullptr);
  repo->SetOpenFileLimit(2);
  std::string disk = RandomBytes(8 * kBs, 2);
  for (int i = 0; i < 8; ++i) {
    disk.replace(i * kBs, kBs, RandomBytes(kBs, 50 + i));
    WriteFile(dir / "disk.raw", disk);
    ASSERT_TRUE(testing::BackupVda(*repo, Name(i), dir / "disk.raw").ok());
  }
  auto view = repo->OpenView("vm1", Name(7), "vda");
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  for (int round = 0; round < 2; ++round) {
    std::string got(disk.size(), '\0');
    ASSERT_TRUE(view.value()->Read(0, got.size(), got.data()).ok());
    EXPECT_TRUE(got == disk);
  }
}

}  // namespace
}  // namespace chainfs
