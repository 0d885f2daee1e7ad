// Repository: leftovers of failed writers (through a fault-injecting Env).
#include "chain/repo/repository.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/chain/repo_util.h"

namespace chainfs {
namespace {

using testing::FaultyEnv;
using testing::TempDir;

class RepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_ = testing::NewRepository(dir_, &env_);
    ASSERT_TRUE(repo_);
    testing::WriteFile(dir_ / "disk.raw", std::string(16384, 'x'));
    Status st = testing::BackupVda(*repo_, "c1", dir_ / "disk.raw");
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  TempDir dir_;
  FaultyEnv env_;
  std::unique_ptr<Repository> repo_;
};

TEST_F(RepositoryTest, CollectLeftoversRemovesStrayDeltasAndTemporaries) {
  testing::WriteFile(repo_->DeltaPath("vm1", "c2.vda.0123456789abcdef.delta"), "partial");
  testing::WriteFile(repo_->CheckpointDir("vm1") + "/c2.json.tmp.77", "{");
  auto removed = repo_->CollectLeftovers("vm1");
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  EXPECT_EQ(removed.value(), 2);
  EXPECT_FALSE(env_.FileExists(repo_->DeltaPath("vm1", "c2.vda.0123456789abcdef.delta")));
  EXPECT_FALSE(env_.FileExists(repo_->CheckpointDir("vm1") + "/c2.json.tmp.77"));
  EXPECT_TRUE(repo_->OpenView("vm1", "c1", "vda").ok()) << "referenced deltas stay";
}

// Issue 12: a failed unlink was counted as removed and its error dropped.
TEST_F(RepositoryTest, Issue12CollectLeftoversReportsAFailedUnlinkNamingTheFile) {
  const std::string stray = repo_->DeltaPath("vm1", "c2.vda.0123456789abcdef.delta");
  testing::WriteFile(stray, "partial");
  env_.FailNth(FaultyEnv::Op::kRemove, 1, EACCES, "/deltas/");
  auto removed = repo_->CollectLeftovers("vm1");
  ASSERT_FALSE(removed.ok()) << "counted " << removed.value() << " removed";
  EXPECT_EQ(removed.status().code(), Status::Code::kIoError);
  EXPECT_NE(removed.status().message().find(stray), std::string::npos)
      << removed.status().ToString();
  EXPECT_NE(removed.status().message().find("Permission denied"), std::string::npos)
      << removed.status().ToString();
  EXPECT_TRUE(env_.FileExists(stray));
  // Once the file system lets it go, the leftover is collected.
  removed = repo_->CollectLeftovers("vm1");
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  EXPECT_EQ(removed.value(), 1);
  EXPECT_FALSE(env_.FileExists(stray));
}

TEST_F(RepositoryTest, LockTellsTheHolderAndIsReleasedWithItsHandle) {
  auto lock = repo_->Lock("backup vm1/c2");
  ASSERT_TRUE(lock.ok()) << lock.status().ToString();
  auto again = repo_->Lock("prune vm1");
  ASSERT_EQ(again.status().code(), Status::Code::kBusy);
  EXPECT_NE(again.status().message().find("backup vm1/c2"), std::string::npos)
      << again.status().ToString();
  lock.value().reset();
  EXPECT_TRUE(repo_->Lock("prune vm1").ok());
  EXPECT_GE(env_.calls(FaultyEnv::Op::kLock), 3) << "the lock is taken through the Env";
}

}  // namespace
}  // namespace chainfs
