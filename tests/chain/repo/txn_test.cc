#include "chain/repo/txn.h"

#include <gtest/gtest.h>

#include <boost/filesystem.hpp>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "chain/ingest/backup.h"
#include "chain/repo/consolidate.h"
#include "tests/chain/test_util.h"

namespace chainfs {
namespace {

namespace fs = boost::filesystem;
using testing::FaultyEnv;

// A journal with one removal step, as Txn::Encode writes it.
nlohmann::json Journal() {
  Txn t;
  t.group = "vm1";
  t.purpose = "consolidate --drop c2";
  t.steps.push_back({"c2", std::nullopt});
  t.delete_deltas = {"c2.vda.0123456789abcdef.delta"};
  return nlohmann::json::parse(t.Encode());
}

TEST(Txn, EncodeDecodeRoundTrip) {
  const std::string text = Journal().dump();
  auto t = Txn::Decode(text, "txn.json");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->purpose, "consolidate --drop c2");
  ASSERT_EQ(t->steps.size(), 1u);
  EXPECT_TRUE(t->Drops("c2"));
  auto again = Txn::Decode(t->Encode(), "txn.json");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->Encode(), t->Encode());
}

// Issue 13 (found by tests/fuzz/txn_fuzz.cc): a journal whose "format",
// "purpose" or a step's "remove" has the wrong type is corruption naming
// the file; before, json::value() threw and the uncaught exception aborted
// every writer of the group (they roll a journal forward first).
TEST(Txn, Issue13FieldsOfTheWrongTypeAreCorruptionNotAnException) {
  std::vector<nlohmann::json> bad;
  bad.push_back(Journal());
  bad.back()["format"] = 1;
  bad.push_back(Journal());
  bad.back()["purpose"] = 5;
  bad.push_back(Journal());
  bad.back()["manifest_steps"][0]["remove"] = "yes";
  bad.push_back(Journal());
  bad.back()["manifest_steps"][0]["remove"] = false;
  for (const nlohmann::json& j : bad) {
    Result<Txn> t = Txn::Decode(j.dump(), "/r/groups/vm1/txn.json");
    ASSERT_FALSE(t.ok()) << j.dump();
    EXPECT_EQ(t.status().code(), Status::Code::kCorruption);
    EXPECT_NE(t.status().message().find("/r/groups/vm1/txn.json"), std::string::npos);
  }
}

// Issue 14: "manifest_sync" says when ApplyTxn fsyncs checkpoints/. A
// journal without it (written before it existed) is "each-step"; a
// "per-phase" one must hold its writes before its removals.
TEST(Txn, Issue14ManifestSyncRoundTripsAndIsChecked) {
  nlohmann::json j = Journal();
  j.erase("manifest_sync");
  auto old = Txn::Decode(j.dump(), "txn.json");
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  EXPECT_EQ(old->manifest_sync, ManifestSync::kEachStep);

  Txn t = *old;
  Checkpoint c3;
  c3.group = "vm1";
  c3.name = "c3";
  c3.sequence = 3;
  t.steps.insert(t.steps.begin(), ManifestStep{"c3", c3});
  t.manifest_sync = ManifestSync::kPerPhase;
  auto phased = Txn::Decode(t.Encode(), "txn.json");
  ASSERT_TRUE(phased.ok()) << phased.status().ToString();
  EXPECT_EQ(phased->manifest_sync, ManifestSync::kPerPhase);
  EXPECT_EQ(phased->Encode(), t.Encode());

  std::swap(t.steps[0], t.steps[1]);  // a removal, then a write
  auto interleaved = Txn::Decode(t.Encode(), "/r/groups/vm1/txn.json");
  ASSERT_FALSE(interleaved.ok());
  EXPECT_EQ(interleaved.status().code(), Status::Code::kCorruption);
  EXPECT_NE(interleaved.status().message().find("manifest_steps[1]"), std::string::npos);

  j["manifest_sync"] = "sometimes";
  EXPECT_EQ(Txn::Decode(j.dump(), "txn.json").status().code(), Status::Code::kCorruption);
  j["manifest_sync"] = 2;
  EXPECT_EQ(Txn::Decode(j.dump(), "txn.json").status().code(), Status::Code::kCorruption);
}

constexpr uint32_t kBs = 4096;

// A group "g" of one 16-block disk, backed up through a FaultyEnv that counts
// every storage call; views_ holds what each checkpoint reads.
class TxnSyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RepoConfig cfg;
    cfg.block_size = kBs;
    cfg.compression_level = 1;
    ASSERT_TRUE(Repository::Init(Repo(), cfg).ok());
    ASSERT_TRUE(env_.ConfineTo(Repo()).ok());
    auto r = Repository::Open(Repo(), &env_);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    repo_ = std::move(r).value();
    disk_ = testing::RandomBytes(16 * kBs, 1);
  }
  std::string Repo() const { return dir_ / "repo"; }
  std::string Checkpoints() const { return repo_->CheckpointDir("g"); }

  // Changes block (seed % 16) and backs up checkpoint `name`.
  void Backup(const std::string& name, unsigned seed, const std::string& since = "") {
    disk_.replace((seed % 16) * kBs, kBs, testing::RandomBytes(kBs, seed));
    testing::WriteFile(dir_ / "vda.img", disk_);
    BackupOptions o;
    o.group = "g";
    o.checkpoint = name;
    o.since = since;
    o.threads = 1;
    o.disks = {{"vda", dir_ / "vda.img", "", nullptr}};
    auto b = chainfs::Backup(*repo_, o);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    views_[name] = disk_;
  }

  Result<ConsolidateReport> Consolidate(const ConsolidateOptions& o) {
    return chainfs::Consolidate(*repo_, o);
  }

  // Every checkpoint in `want` exists in the repository at `path` and reads
  // its bytes (a fresh reader, no Env of ours).
  void ExpectReads(const std::string& path, const std::set<std::string>& want,
                   const std::string& where) {
    auto repo = Repository::Open(path);
    ASSERT_TRUE(repo.ok()) << where << ": " << repo.status().ToString();
    for (const std::string& cp : want) {
      auto v = repo.value()->OpenView("g", cp, "vda");
      ASSERT_TRUE(v.ok()) << where << ": " << cp << ": " << v.status().ToString();
      std::string got(v.value()->size(), '\0');
      ASSERT_TRUE(v.value()->Read(0, got.size(), got.data()).ok()) << where << ": " << cp;
      EXPECT_TRUE(got == views_.at(cp)) << where << ": " << cp << " reads other bytes";
    }
  }

  testing::TempDir dir_;
  FaultyEnv env_;
  std::unique_ptr<Repository> repo_;
  std::string disk_;
  std::map<std::string, std::string> views_;
};

std::string Name(int i) {
  char s[16];
  std::snprintf(s, sizeof s, "c%02d", i);
  return s;
}

// Issue 14: a prune fsynced checkpoints/ once per dropped manifest (992 for
// one prune of 1,000). Now each directory a constant number of times.
TEST_F(TxnSyncTest, Issue14PruneOfFiftySyncsEachDirectoryAConstantNumberOfTimes) {
  for (int i = 0; i < 60; ++i) Backup(Name(i), static_cast<unsigned>(i + 2));
  const std::string cps = Checkpoints(), deltas = repo_->DeltaDir("g"),
                    group = repo_->GroupDir("g");
  const int cps0 = env_.calls(FaultyEnv::Op::kSyncDir, cps),
            deltas0 = env_.calls(FaultyEnv::Op::kSyncDir, deltas),
            group0 = env_.calls(FaultyEnv::Op::kSyncDir, group);
  ConsolidateOptions o;
  o.group = "g";
  o.policy = RetentionPolicy();
  o.policy->keep_last = 10;
  auto r = Consolidate(o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->dropped.size(), 50u);
  // One after the survivor's new manifest, one after the removals.
  EXPECT_EQ(env_.calls(FaultyEnv::Op::kSyncDir, cps) - cps0, 2);
  // The new delta before the commit; the removal of the old ones.
  EXPECT_EQ(env_.calls(FaultyEnv::Op::kSyncDir, deltas) - deltas0, 2);
  // The intent, the journal's commit, its removal.
  EXPECT_LE(env_.calls(FaultyEnv::Op::kSyncDir, group) - group0, 3);
  std::set<std::string> kept;
  for (int i = 50; i < 60; ++i) kept.insert(Name(i));
  ExpectReads(Repo(), kept, "after the prune");
  auto g = repo_->LoadGroup("g");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->checkpoints.size(), 10u);
}

// A dropped differential whose base is dropped too, with a survivor between
// them that is relinked past that base: writing the survivor first would cut
// the dropped one's chain while it is still there, so the journal keeps the
// interleaved order with an fsync per step.
TEST_F(TxnSyncTest, Issue14DifferentialPastARewrittenSurvivorSyncsEachStep) {
  Backup("c0", 2);
  Backup("c1", 3);
  Backup("c2", 4);
  Backup("c3", 5, "c1");
  Backup("c4", 6);
  const int before = env_.calls(FaultyEnv::Op::kSyncDir, Checkpoints());
  ConsolidateOptions o;
  o.group = "g";
  o.drop = {"c1", "c3"};
  auto r = Consolidate(o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // Write c4, remove c3, write c2, remove c1: one fsync each.
  EXPECT_EQ(env_.calls(FaultyEnv::Op::kSyncDir, Checkpoints()) - before, 4);
  ExpectReads(Repo(), {"c0", "c2", "c4"}, "after the consolidation");
}

// The crash argument of a per-phase journal (txn.h), on a file system that
// keeps any subset of the un-synced directory operations: whichever of the
// writes survive (before the fsync between the phases), and whichever of the
// removals (after it), every survivor reads its bytes; and the journal,
// rolled forward from any such state, finishes the job.
TEST_F(TxnSyncTest, Issue14SurvivorsReadTheirBytesWhateverSubsetOfAPhaseSurvives) {
  for (int i = 0; i < 8; ++i)
    Backup(Name(i), static_cast<unsigned>(i + 2), i == 6 ? Name(2) : "");
  const std::string pre = dir_ / "pre", post = dir_ / "post", work = dir_ / "work";
  auto copy = [](const std::string& from, const std::string& to) {
    fs::remove_all(to);
    ASSERT_EQ(std::system(("cp -a " + from + " " + to).c_str()), 0);
  };
  copy(Repo(), pre);
  // Stop at the fsync between the phases: every write done, no removal.
  env_.FailNth(FaultyEnv::Op::kSyncDir, 1, EIO, "/checkpoints");
  ConsolidateOptions o;
  o.group = "g";
  o.drop = {Name(1), Name(3), Name(4)};
  ASSERT_FALSE(Consolidate(o).ok());
  copy(Repo(), post);
  auto text = Env::Default()->ReadWholeFile(post + "/groups/g/txn.json");
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  auto txn = Txn::Decode(text.value(), "txn.json");
  ASSERT_TRUE(txn.ok()) << txn.status().ToString();
  ASSERT_EQ(txn->manifest_sync, ManifestSync::kPerPhase);
  std::vector<std::string> writes, removals;
  for (const ManifestStep& st : txn->steps) (st.write ? writes : removals).push_back(st.checkpoint);
  ASSERT_EQ(writes, (std::vector<std::string>{Name(5), Name(2)}));
  ASSERT_EQ(removals, (std::vector<std::string>{Name(4), Name(3), Name(1)}));
  const std::set<std::string> survivors = {Name(0), Name(2), Name(5), Name(6), Name(7)};
  auto manifest = [](const std::string& root, const std::string& cp) {
    return root + "/groups/g/checkpoints/" + cp + ".json";
  };
  // Writes phase: the old manifest of each write left out stays.
  for (unsigned mask = 0; mask < (1u << writes.size()); ++mask) {
    copy(post, work);
    for (size_t i = 0; i < writes.size(); ++i)
      if (!(mask & (1u << i))) fs::copy_file(manifest(pre, writes[i]), manifest(work, writes[i]),
                                             fs::copy_options::overwrite_existing);
    ExpectReads(work, survivors, "writes kept: mask " + std::to_string(mask));
  }
  // Removals phase: every write durable, any subset of the removals.
  for (unsigned mask = 0; mask < (1u << removals.size()); ++mask) {
    copy(post, work);
    for (size_t i = 0; i < removals.size(); ++i)
      if (mask & (1u << i)) fs::remove(manifest(work, removals[i]));
    ExpectReads(work, survivors, "removals kept: mask " + std::to_string(mask));
    auto repo = Repository::Open(work);
    ASSERT_TRUE(repo.ok());
    auto rolled = RollForward(*repo.value(), "g");
    ASSERT_TRUE(rolled.ok()) << rolled.status().ToString();
    ASSERT_TRUE(rolled->has_value());
    auto g = repo.value()->LoadGroup("g");
    ASSERT_TRUE(g.ok());
    std::set<std::string> present;
    for (const Checkpoint& cp : g->checkpoints) present.insert(cp.name);
    EXPECT_EQ(present, survivors) << "rolled forward from mask " << mask;
    ExpectReads(work, survivors, "rolled forward from mask " + std::to_string(mask));
  }
}

}  // namespace
}  // namespace chainfs
