// Backup under storage faults (a fault-injecting Env): a failed backup
// leaves nothing visible and nothing behind, and running it again succeeds.
#include "chain/ingest/backup.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "tests/chain/repo_util.h"

namespace chainfs {
namespace {

using testing::FaultyEnv;
using testing::TempDir;

constexpr uint32_t kBs = 4096;

class BackupFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_ = testing::NewRepository(dir_, &env_, kBs);
    ASSERT_TRUE(repo_);
    WriteDisk(1);
    ASSERT_TRUE(Backup("c1").ok());
    WriteDisk(2);
  }

  // 8 blocks of random bytes (incompressible: one stored block per block).
  void WriteDisk(unsigned seed) {
    std::mt19937 rng(seed);
    disk_.resize(8 * kBs);
    for (char& c : disk_) c = static_cast<char>(rng());
    testing::WriteFile(dir_ / "disk.raw", disk_);
  }
  Status Backup(const std::string& checkpoint) {
    return testing::BackupVda(*repo_, checkpoint, dir_ / "disk.raw");
  }
  std::vector<std::string> Checkpoints() {
    std::vector<std::string> names;
    auto g = repo_->LoadGroup("vm1");
    EXPECT_TRUE(g.ok()) << g.status().ToString();
    if (g.ok())
      for (const Checkpoint& cp : g->checkpoints) names.push_back(cp.name);
    return names;
  }
  std::vector<std::string> Files(const std::string& dir) {
    auto names = Env::Default()->ListDir(dir);
    EXPECT_TRUE(names.ok()) << names.status().ToString();
    std::vector<std::string> out = names.ok() ? names.value() : std::vector<std::string>();
    std::sort(out.begin(), out.end());
    return out;
  }
  // Nothing of the failed backup is visible or left behind.
  void ExpectOnlyC1() {
    EXPECT_EQ(Checkpoints(), std::vector<std::string>{"c1"});
    EXPECT_EQ(Files(repo_->DeltaDir("vm1")).size(), 1u);
    EXPECT_EQ(Files(repo_->CheckpointDir("vm1")), std::vector<std::string>{"c1.json"});
  }
  // A re-run succeeds and c2 reads back the disk.
  void ExpectRerunSucceeds() {
    Status st = Backup("c2");
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(Checkpoints(), (std::vector<std::string>{"c1", "c2"}));
    auto view = repo_->OpenView("vm1", "c2", "vda");
    ASSERT_TRUE(view.ok()) << view.status().ToString();
    std::string got(disk_.size(), '\0');
    ASSERT_TRUE(view.value()->Read(0, got.size(), got.data()).ok());
    EXPECT_TRUE(got == disk_);
  }

  TempDir dir_;
  FaultyEnv env_;
  std::unique_ptr<Repository> repo_;
  std::string disk_;
};

TEST_F(BackupFaultTest, ManifestRenameFailureLeavesNothingVisible) {
  env_.FailNth(FaultyEnv::Op::kRename, 1, EIO, "/c2.json");
  Status st = Backup("c2");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Status::Code::kIoError);
  EXPECT_NE(st.message().find(repo_->CheckpointDir("vm1") + "/c2.json"), std::string::npos)
      << st.ToString();
  ExpectOnlyC1();
  ExpectRerunSucceeds();
}

TEST_F(BackupFaultTest, NoSpaceWhileWritingTheDeltaLeavesNoDeltaBehind) {
  // 1: the delta's header (the create), 4: a block in the middle.
  for (int nth : {1, 4}) {
    SCOPED_TRACE("append " + std::to_string(nth));
    env_.FailNth(FaultyEnv::Op::kAppend, nth, ENOSPC, ".delta");
    Status st = Backup("c2");
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.code(), Status::Code::kNoSpace) << st.ToString();
    EXPECT_NE(st.message().find(repo_->DeltaDir("vm1") + "/c2.vda."), std::string::npos)
        << st.ToString();
    EXPECT_NE(st.message().find("No space left on device"), std::string::npos) << st.ToString();
    ExpectOnlyC1();
  }
  ExpectRerunSucceeds();
}

}  // namespace
}  // namespace chainfs
