// Repository: leftovers of failed writers (through a fault-injecting Env).
#include "chain/repo/repository.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

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

// Issue 13: a repository opened without an Env is confined to its directory:
// links planted in it are refused, and nothing behind them is written or
// removed.
class RepositoryLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Repository::Init(repo_path_, RepoConfig()).ok());
    auto repo = Repository::Open(repo_path_);
    ASSERT_TRUE(repo.ok()) << repo.status().ToString();
    repo_ = std::move(repo).value();
    ASSERT_TRUE(Env::Default()->CreateDirs(outside_).ok());
    for (const char* f : {"c1.vda.0123456789abcdef.delta", "x.tmp.1", "keep"})
      testing::WriteFile(outside_ + "/" + f, f);
    testing::WriteFile(dir_ / "disk.raw", std::string(16384, 'x'));
  }
  void ExpectOutsideIntact() {
    auto names = Env::Default()->ListDir(outside_);
    ASSERT_TRUE(names.ok());
    EXPECT_EQ(names.value().size(), 3u) << "a file was added or removed outside";
    for (const char* f : {"c1.vda.0123456789abcdef.delta", "x.tmp.1", "keep"})
      EXPECT_EQ(testing::ReadFile(outside_ + "/" + f), f);
  }
  void Link(const std::string& target, const std::string& at) {
    ASSERT_EQ(::symlink(target.c_str(), at.c_str()), 0) << at;
  }
  Status BackupInto(const std::string& group) {
    BackupOptions o;
    o.group = group;
    o.checkpoint = "c1";
    o.threads = 1;
    o.disks.push_back({"vda", dir_ / "disk.raw", ""});
    return Backup(*repo_, o).status();
  }

  TempDir dir_;
  const std::string repo_path_ = dir_ / "repo";
  const std::string outside_ = dir_ / "outside";
  std::unique_ptr<Repository> repo_;
};

TEST_F(RepositoryLinkTest, Issue13BackupIntoLinkedDeltasFailsAndTouchesNothingOutside) {
  ASSERT_TRUE(Env::Default()->CreateDirs(repo_->GroupDir("vm2")).ok());
  Link(outside_, repo_->DeltaDir("vm2"));
  Status st = BackupInto("vm2");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(repo_->DeltaDir("vm2") + " is a symbolic link"), std::string::npos)
      << st.ToString();
  ExpectOutsideIntact();
}

TEST_F(RepositoryLinkTest, Issue13LinkedCheckpointsAreRefusedAndNothingIsRemovedBehindThem) {
  ASSERT_TRUE(Env::Default()->CreateDirs(repo_->GroupDir("vm2")).ok());
  Link(outside_, repo_->CheckpointDir("vm2"));
  EXPECT_FALSE(BackupInto("vm2").ok());
  auto g = repo_->LoadGroup("vm2");
  ASSERT_FALSE(g.ok());
  auto removed = repo_->CollectLeftovers("vm2");
  ASSERT_FALSE(removed.ok()) << removed.value() << " removed";
  EXPECT_NE(removed.status().message().find(repo_->CheckpointDir("vm2") + " is a symbolic link"),
            std::string::npos)
      << removed.status().ToString();
  ExpectOutsideIntact();
}

TEST_F(RepositoryLinkTest, Issue13ALinkPlantedInDeltasIsReportedNotFollowed) {
  ASSERT_TRUE(BackupInto("vm1").ok());
  const std::string planted = repo_->DeltaPath("vm1", "c9.vda.0123456789abcdef.delta");
  Link(outside_ + "/keep", planted);
  auto removed = repo_->CollectLeftovers("vm1");
  ASSERT_FALSE(removed.ok());
  EXPECT_NE(removed.status().message().find(planted + " is a symbolic link"), std::string::npos)
      << removed.status().ToString();
  struct stat st;
  EXPECT_EQ(::lstat(planted.c_str(), &st), 0);
  ExpectOutsideIntact();
}

TEST_F(RepositoryLinkTest, Issue13ALinkedLockIsNeitherWrittenNorCreated) {
  const std::string lock = repo_path_ + "/lock";
  Link(outside_ + "/keep", lock);
  auto held = repo_->Lock("backup vm1/c1");
  ASSERT_FALSE(held.ok());
  EXPECT_NE(held.status().message().find(lock + " is a symbolic link"), std::string::npos)
      << held.status().ToString();
  ASSERT_EQ(::unlink(lock.c_str()), 0);
  Link(outside_ + "/created", lock);
  EXPECT_FALSE(repo_->Lock("prune vm1").ok());
  ExpectOutsideIntact();
}

}  // namespace
}  // namespace chainfs
