// Repository: leftovers of failed writers (through a fault-injecting Env).
#include "chain/repo/repository.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdio.h>

#include <functional>
#include <string>

#include "chain/repo/check.h"
#include "chain/repo/consolidate.h"
#include "chain/repo/write_intent.h"
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

// What a backup of c2 killed while writing leaves: its intent and a delta.
void LeaveKilledBackup(const Repository& repo, const std::string& delta) {
  WriteIntent intent{"vm1", "backup vm1/c2", "c2", {delta}};
  ASSERT_TRUE(RecordIntent(repo.env(), repo.IntentPath("vm1"), intent).ok());
  testing::WriteFile(repo.DeltaPath("vm1", delta), "partial");
}

TEST_F(RepositoryTest, CollectLeftoversRemovesRecordedDeltasAndTemporaries) {
  LeaveKilledBackup(*repo_, "c2.vda.0123456789abcdef.delta");
  testing::WriteFile(repo_->CheckpointDir("vm1") + "/c2.json.tmp.77", "{");
  auto removed = repo_->CollectLeftovers("vm1");
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  EXPECT_EQ(removed.value(), 2);
  EXPECT_FALSE(env_.FileExists(repo_->DeltaPath("vm1", "c2.vda.0123456789abcdef.delta")));
  EXPECT_FALSE(env_.FileExists(repo_->CheckpointDir("vm1") + "/c2.json.tmp.77"));
  EXPECT_TRUE(repo_->OpenView("vm1", "c1", "vda").ok()) << "referenced deltas stay";
  EXPECT_FALSE(env_.FileExists(repo_->IntentPath("vm1"))) << "the record goes last";
}

// Issue 12: a failed unlink was counted as removed and its error dropped.
TEST_F(RepositoryTest, Issue12CollectLeftoversReportsAFailedUnlinkNamingTheFile) {
  const std::string stray = repo_->DeltaPath("vm1", "c2.vda.0123456789abcdef.delta");
  LeaveKilledBackup(*repo_, "c2.vda.0123456789abcdef.delta");
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
  // No record explains it: garbage collection leaves it (and refuses links
  // where it removes recorded files: RootedEnvTest).
  auto removed = repo_->CollectLeftovers("vm1");
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  EXPECT_EQ(removed.value(), 0);
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

// Issue 13: a delta file that no manifest names and no record explains is
// left in place (its manifest may be missing only for a while), and check
// names it.
TEST_F(RepositoryTest, Issue13UnrecordedStrayDeltaIsLeftInPlaceAndReported) {
  const std::string stray = repo_->DeltaPath("vm1", "c2.vda.0123456789abcdef.delta");
  testing::WriteFile(stray, "partial");
  auto removed = repo_->CollectLeftovers("vm1");
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  EXPECT_EQ(removed.value(), 0);
  EXPECT_TRUE(env_.FileExists(stray));
  auto report = Check(*repo_, "", "", false);
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->problems.size(), 1u);
  EXPECT_EQ(report->problems[0].file, stray);
  EXPECT_NE(report->problems[0].message.find("not referenced by any manifest; left in place"),
            std::string::npos)
      << report->problems[0].message;
}

// A backup killed after its commit: the manifest names the recorded deltas,
// even when that manifest cannot be read; only the record goes.
TEST_F(RepositoryTest, Issue13CommittedIntentKeepsItsDeltas) {
  auto g = repo_->LoadGroup("vm1");
  ASSERT_TRUE(g.ok());
  const std::string delta = g->Find("c1")->disks[0].delta_file;
  WriteIntent intent{"vm1", "backup vm1/c1", "c1", {delta}};
  ASSERT_TRUE(RecordIntent(&env_, repo_->IntentPath("vm1"), intent).ok());
  testing::WriteFile(repo_->CheckpointDir("vm1") + "/c1.json", "{ damaged");
  auto removed = repo_->CollectLeftovers("vm1");
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  EXPECT_EQ(removed.value(), 0);
  EXPECT_TRUE(env_.FileExists(repo_->DeltaPath("vm1", delta)));
  EXPECT_FALSE(env_.FileExists(repo_->IntentPath("vm1")));
}

// An intent record whose "format" is not a string (found by fuzz_intent:
// an uncaught json exception) is refused as corruption naming it.
TEST_F(RepositoryTest, Issue13IntentWithNumericFormatIsCorruption) {
  testing::WriteFile(repo_->IntentPath("vm1"),
                     R"({"format": 1, "version": 1, "group": "vm1", "purpose": "p",)"
                     R"( "commits": "c2", "deltas": []})");
  auto removed = repo_->CollectLeftovers("vm1");
  ASSERT_FALSE(removed.ok());
  EXPECT_EQ(removed.status().code(), Status::Code::kCorruption);
  EXPECT_NE(removed.status().message().find("intent.json"), std::string::npos)
      << removed.status().ToString();
}

// A chain c1..c5 of one disk, each checkpoint changing one block.
class ChainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_ = testing::NewRepository(dir_, &env_);
    ASSERT_TRUE(repo_);
    std::string disk = testing::RandomBytes(4 * 4096, 1);
    for (int i = 1; i <= 5; ++i) {
      disk.replace((i % 4) * 4096, 100, testing::RandomBytes(100, 10 + i));
      testing::WriteFile(dir_ / "disk.raw", disk);
      Status st = testing::BackupVda(*repo_, "c" + std::to_string(i), dir_ / "disk.raw");
      ASSERT_TRUE(st.ok()) << st.ToString();
      bytes_.push_back(disk);
    }
  }
  std::string Manifest(const std::string& cp) const {
    return repo_->CheckpointDir("vm1") + "/" + cp + ".json";
  }
  // The bytes a view reads, or the error.
  Result<std::string> Read(const std::string& cp) const {
    CHAINFS_ASSIGN_OR_RETURN(auto view, repo_->OpenView("vm1", cp, "vda"));
    std::string out(view->size(), '\0');
    CHAINFS_RETURN_IF_ERROR(view->Read(0, out.size(), out.data()));
    return out;
  }
  void Rewrite(const std::string& cp, const std::function<void(Checkpoint*)>& edit) {
    auto text = env_.ReadWholeFile(Manifest(cp));
    ASSERT_TRUE(text.ok());
    auto c = Checkpoint::Decode(text.value(), "m");
    ASSERT_TRUE(c.ok());
    edit(&c.value());
    testing::WriteFile(Manifest(cp), c->Encode());
  }

  TempDir dir_;
  FaultyEnv env_;
  std::unique_ptr<Repository> repo_;
  std::vector<std::string> bytes_;  // c1..c5
};

// Issue 13: with c2.json missing (an NFS hiccup, a restore under way),
// prune deleted c2's deltas and c5 could no longer be read once c2.json was
// back.
TEST_F(ChainTest, Issue13PruneDeletesNothingOfACheckpointWhoseManifestIsMissing) {
  auto g = repo_->LoadGroup("vm1");
  ASSERT_TRUE(g.ok());
  const std::string c2_delta = repo_->DeltaPath("vm1", g->Find("c2")->disks[0].delta_file);
  ASSERT_EQ(::rename(Manifest("c2").c_str(), (dir_ / "c2.json").c_str()), 0);
  ConsolidateOptions o;
  o.group = "vm1";
  o.policy = RetentionPolicy();
  o.policy->keep_last = 2;
  (void)Consolidate(*repo_, o);  // fails (c3's base is gone) or not: c2's deltas stay
  EXPECT_TRUE(env_.FileExists(c2_delta));
  auto report = Check(*repo_, "vm1", "", false);
  ASSERT_TRUE(report.ok());
  bool named = false;
  for (const CheckProblem& p : report->problems)
    named = named || (p.file == c2_delta &&
                      p.message.find("left in place") != std::string::npos);
  EXPECT_TRUE(named) << "check names " << c2_delta;
  ASSERT_EQ(::rename((dir_ / "c2.json").c_str(), Manifest("c2").c_str()), 0);
  auto c5 = Read("c5");
  ASSERT_TRUE(c5.ok()) << c5.status().ToString();
  EXPECT_EQ(c5.value(), bytes_[4]);
}

// Issue 13: a garbage manifest refused only its checkpoint and the views
// that need it; the rest of the group is served, writers refuse the group.
TEST_F(ChainTest, Issue13GarbageManifestIsRefusedAndTheRestServed) {
  testing::WriteFile(Manifest("c3"), "garbage");
  auto g = repo_->LoadGroup("vm1");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(g->checkpoints.size(), 4u);
  ASSERT_EQ(g->refused.size(), 1u);
  EXPECT_EQ(g->refused[0].name, "c3");
  EXPECT_NE(g->refused[0].reason.find(Manifest("c3")), std::string::npos);
  for (int i : {1, 2}) {
    auto r = Read("c" + std::to_string(i));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r.value(), bytes_[i - 1]);
  }
  for (const char* cp : {"c3", "c4", "c5"}) {
    auto r = Read(cp);
    ASSERT_FALSE(r.ok()) << cp;
    EXPECT_NE(r.status().message().find("c3.json"), std::string::npos)
        << cp << ": " << r.status().ToString();
  }
  auto report = Check(*repo_, "", "", false);
  ASSERT_TRUE(report.ok());
  bool named = false;
  for (const CheckProblem& p : report->problems)
    named = named || (p.checkpoint == "c3" && p.file == Manifest("c3"));
  EXPECT_TRUE(named);
  ConsolidateOptions o;
  o.group = "vm1";
  o.drop = {"c1"};
  auto c = Consolidate(*repo_, o);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("c3.json"), std::string::npos) << c.status().ToString();
  Status b = testing::BackupVda(*repo_, "c6", dir_ / "disk.raw");
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.message().find("c3.json"), std::string::npos) << b.ToString();
}

// Issue 13: a flipped sequence digit silently reordered checkpoints (and so
// `latest` and what prune keeps). Both ends of the broken order are refused.
TEST_F(ChainTest, Issue13SequenceOutOfOrderRefusesBothEnds) {
  Rewrite("c3", [](Checkpoint* c) { c->sequence = 9; });
  auto g = repo_->LoadGroup("vm1");
  ASSERT_TRUE(g.ok());
  ASSERT_EQ(g->refused.size(), 2u);
  EXPECT_EQ(g->refused[0].name, "c3");
  EXPECT_EQ(g->refused[1].name, "c4");
  EXPECT_NE(g->refused[1].reason.find("c4.json: field 'parent'"), std::string::npos)
      << g->refused[1].reason;
  ASSERT_NE(g->Newest(), nullptr);
  EXPECT_EQ(g->Newest()->name, "c5");
  EXPECT_EQ(g->Find("c3"), nullptr);
}

TEST_F(ChainTest, Issue13DuplicateSequenceRefusesBoth) {
  Rewrite("c4", [](Checkpoint* c) { c->sequence = 2; });
  auto g = repo_->LoadGroup("vm1");
  ASSERT_TRUE(g.ok());
  std::vector<std::string> refused;
  for (const auto& r : g->refused) refused.push_back(r.name);
  // c4 (now 2) also breaks the order with its parent c3 (3).
  EXPECT_EQ(refused, (std::vector<std::string>{"c2", "c3", "c4"}));
  EXPECT_NE(g->refused[0].reason.find("field 'sequence' 2"), std::string::npos)
      << g->refused[0].reason;
  auto c1 = Read("c1");
  ASSERT_TRUE(c1.ok());
  EXPECT_EQ(c1.value(), bytes_[0]);
}

// A backup that fails leaves neither deltas nor its record; one killed
// before its commit leaves both, and the next writer removes them.
TEST_F(ChainTest, Issue13FailedBackupRemovesItsRecordedDeltas) {
  env_.FailNth(FaultyEnv::Op::kRename, 1, EIO, "/checkpoints/c6.json");
  ASSERT_FALSE(testing::BackupVda(*repo_, "c6", dir_ / "disk.raw").ok());
  EXPECT_FALSE(env_.FileExists(repo_->IntentPath("vm1")));
  auto names = env_.ListDir(repo_->DeltaDir("vm1"));
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(names->size(), 5u);
}

}  // namespace
}  // namespace chainfs
