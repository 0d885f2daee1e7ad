// LiveGroups: when a mount re-reads a group's manifests and when it reuses
// its snapshot. Real repositories, real backups; times shortened through the
// constructor (max_age 200 ms, settle 300 ms; a snapshot must stay younger
// than max_age between two calls on a machine loaded by sanitizer builds).
#include "fusefs/driver/live_groups.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/filesystem.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "chain/ingest/backup.h"
#include "tests/chain/test_util.h"

namespace chainfs {
namespace {

using std::chrono::milliseconds;
using testing::TempDir;

constexpr milliseconds kMaxAge{200};
constexpr milliseconds kSettleForTest{300};

class LiveGroupsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RepoConfig cfg;
    cfg.block_size = 4096;
    ASSERT_TRUE(Repository::Init(dir_ / "repo", cfg).ok());
    auto repo = Repository::Open(dir_ / "repo");
    ASSERT_TRUE(repo.ok()) << repo.status().ToString();
    repo_ = std::move(repo).value();
    testing::WriteFile(dir_ / "disk.raw", std::string(16384, 'x'));
  }

  void Backup(const std::string& checkpoint, const std::string& group = "vm1") {
    BackupOptions o;
    o.group = group;
    o.checkpoint = checkpoint;
    o.threads = 1;
    o.disks.push_back({"vda", dir_ / "disk.raw", ""});
    auto r = chainfs::Backup(*repo_, o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  static void Sleep(milliseconds d) { std::this_thread::sleep_for(d); }
  // Waits until the checkpoints directory's times have settled.
  static void Settle() { Sleep(kSettleForTest + milliseconds(100)); }

  // The group's snapshot now; null (and a test failure) if Get fails.
  static std::shared_ptr<const GroupState> Snapshot(LiveGroups& groups) {
    auto g = groups.Get("vm1");
    EXPECT_TRUE(g.ok()) << g.status().ToString();
    return g.ok() ? g.value() : nullptr;
  }
  static std::vector<std::string> NamesOf(const std::shared_ptr<const GroupState>& g) {
    std::vector<std::string> names;
    if (g) for (const Checkpoint& cp : g->checkpoints) names.push_back(cp.name);
    return names;
  }

  TempDir dir_;
  std::unique_ptr<Repository> repo_;
};

using Names = std::vector<std::string>;

TEST_F(LiveGroupsTest, SettledSnapshotIsReusedPastMaxAge) {
  Backup("c1");
  Settle();
  LiveGroups groups(*repo_, kMaxAge, kSettleForTest);
  auto first = Snapshot(groups);
  EXPECT_EQ(NamesOf(first), Names{"c1"});
  Sleep(kMaxAge * 3);
  EXPECT_EQ(Snapshot(groups), first) << "nothing changed: the manifests are not read again";
}

TEST_F(LiveGroupsTest, UnsettledSnapshotIsReadAgainAfterMaxAge) {
  Backup("c1");
  LiveGroups groups(*repo_, kMaxAge, kSettleForTest);
  auto first = Snapshot(groups);  // the directory changed just now
  EXPECT_EQ(Snapshot(groups), first) << "younger than max_age: reused";
  Sleep(kMaxAge * 3);
  EXPECT_NE(Snapshot(groups), first)
      << "a change in the tick of the scan could hide behind unchanged times: read again";
}

TEST_F(LiveGroupsTest, CommitAndRemovalAfterASettledScanAreSeen) {
  Backup("c1");
  Settle();
  LiveGroups groups(*repo_, kMaxAge, kSettleForTest);
  EXPECT_EQ(NamesOf(Snapshot(groups)), Names{"c1"});
  Backup("c2");  // commits c2.json by rename into the checkpoints directory
  EXPECT_EQ(NamesOf(Snapshot(groups)), (Names{"c1", "c2"}));
  Settle();
  EXPECT_EQ(NamesOf(Snapshot(groups)), (Names{"c1", "c2"}));
  ASSERT_EQ(::unlink((repo_->CheckpointDir("vm1") + "/c2.json").c_str()), 0);
  EXPECT_EQ(NamesOf(Snapshot(groups)), Names{"c1"});
}

TEST_F(LiveGroupsTest, NothingSettlesWithZeroSettle) {
  Backup("c1");
  Settle();
  LiveGroups groups(*repo_, kMaxAge, milliseconds(0));  // as on a network filesystem
  auto first = Snapshot(groups);
  Sleep(kMaxAge * 3);
  EXPECT_NE(Snapshot(groups), first);
}

TEST(LiveGroupsSettle, OnlyLocalFilesystemsSettle) {
  EXPECT_TRUE(LiveGroups::LocalFilesystem(0xEF53));       // ext4
  EXPECT_TRUE(LiveGroups::LocalFilesystem(0x58465342));   // xfs
  EXPECT_FALSE(LiveGroups::LocalFilesystem(0x6969));      // nfs
  EXPECT_FALSE(LiveGroups::LocalFilesystem(0x00C36400));  // ceph
  EXPECT_FALSE(LiveGroups::LocalFilesystem(0x65735546));  // fuse
  EXPECT_EQ(LiveGroups::SettleFor(Env::Default(), "/proc"), milliseconds(0)) << "procfs is not local storage";
  EXPECT_EQ(LiveGroups::SettleFor(Env::Default(), "/nonexistent/path"), milliseconds(0));
}

// A directory of qcow2 images never settles: `qemu-img snapshot` changes an
// image's checkpoints without touching the directory. A repository on the
// same (local) filesystem does.
TEST(LiveGroupsSettle, SourcesThatChangeInPlaceNeverSettle) {
  TempDir tmp;
  const std::string img = tmp / "img";
  boost::filesystem::create_directories(img);
  ASSERT_EQ(std::system(("qemu-img create -q -f qcow2 '" + img + "/a.qcow2' 1M").c_str()), 0);
  auto qcow2 = Repository::Open(img);
  ASSERT_TRUE(qcow2.ok()) << qcow2.status().ToString();
  ASSERT_NE(qcow2.value()->foreign(), nullptr);
  EXPECT_EQ(LiveGroups::SettleFor(*qcow2.value()), milliseconds(0));
  ASSERT_TRUE(Repository::Init(tmp / "repo", RepoConfig{}).ok());
  auto repo = Repository::Open(tmp / "repo");
  ASSERT_TRUE(repo.ok());
  EXPECT_EQ(LiveGroups::SettleFor(*repo.value()), LiveGroups::SettleFor(Env::Default(), tmp / "repo"));
}

TEST_F(LiveGroupsTest, InvalidateForcesARead) {
  Backup("c1");
  Settle();
  LiveGroups groups(*repo_, kMaxAge, kSettleForTest);
  auto first = Snapshot(groups);
  groups.Invalidate("vm1");
  EXPECT_NE(Snapshot(groups), first);
}

// Issue 12: a rescan of one group (slow manifests on NFS) holds up neither
// lookups in other groups nor more than one read of that group.
TEST_F(LiveGroupsTest, SlowRescanOfOneGroupIsReadOnceAndDelaysNoOtherGroup) {
  Backup("c1", "vm1");
  Backup("c1", "vm2");
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> vm1_reads{0}, vm1_waiting{0};
  LiveGroups groups(*repo_, kMaxAge, kSettleForTest, [&](const std::string& group) {
    if (group == "vm1") {
      ++vm1_reads;
      std::unique_lock<std::mutex> lock(mu);
      ++vm1_waiting;
      cv.wait(lock, [&] { return release; });
    }
    return repo_->LoadGroup(group);
  });
  auto unblock = [&] {
    {
      std::lock_guard<std::mutex> lock(mu);
      release = true;
    }
    cv.notify_all();
  };
  std::future<Result<std::shared_ptr<const GroupState>>> a, b, other;
  // Declared after the futures, so destroyed first: a failed assertion
  // releases the stuck read instead of leaving the futures' threads blocked.
  std::shared_ptr<void> release_at_exit(nullptr, [&](void*) { unblock(); });
  a = std::async(std::launch::async, [&] { return groups.Get("vm1"); });
  b = std::async(std::launch::async, [&] { return groups.Get("vm1"); });
  while (vm1_waiting.load() == 0) Sleep(milliseconds(1));
  // vm1's read is stuck: vm2 is answered anyway.
  other = std::async(std::launch::async, [&] { return groups.Get("vm2"); });
  ASSERT_EQ(other.wait_for(std::chrono::seconds(10)), std::future_status::ready)
      << "a lookup in vm2 waited for vm1's rescan";
  auto vm2 = other.get();
  ASSERT_TRUE(vm2.ok()) << vm2.status().ToString();
  EXPECT_EQ(NamesOf(vm2.value()), Names{"c1"});
  unblock();
  auto ra = a.get(), rb = b.get();
  ASSERT_TRUE(ra.ok() && rb.ok());
  EXPECT_EQ(ra.value(), rb.value()) << "the waiting Get shares the one read";
  EXPECT_EQ(vm1_reads.load(), 1);
}

TEST_F(LiveGroupsTest, MissingGroupIsNotFoundAndLeavesNothingBehind) {
  Backup("c1");
  LiveGroups groups(*repo_, kMaxAge, kSettleForTest);
  for (int i = 0; i < 3; ++i) {
    auto g = groups.Get("nosuch");
    ASSERT_FALSE(g.ok());
    EXPECT_EQ(g.status().code(), Status::Code::kNotFound);
  }
  EXPECT_EQ(NamesOf(Snapshot(groups)), Names{"c1"});
}

}  // namespace
}  // namespace chainfs
