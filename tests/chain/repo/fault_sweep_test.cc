// Storage-fault sweep: for backup, consolidate, prune and export, every
// storage call the command makes (through the repository's Env: opens,
// reads, appends, positioned writes, fsyncs, renames, removals, listings,
// locks, stats) fails once, in turn, with each fault that call can meet:
// EIO, ENOSPC, a short write (half the bytes written, then ENOSPC), an fsync
// failure, a rename failure, and a rename, removal or mkdir that happened but
// reported EIO (its directory fsync failed). After each run:
//   - the repository checks clean (check --deep: no problem);
//   - every committed view reads its original bytes: a checkpoint the
//     command did not remove reads exactly as before, a checkpoint it added
//     reads exactly its source;
//   - the command either failed with nothing of it visible, and then the
//     same command run again (without faults) succeeds, or its effect is
//     wholly visible (the fault hit after the commit point);
//   - export leaves no partial or temporary file on failure: nothing, or
//     (a failed directory fsync after the rename) the complete image.
// The number of calls swept and of faults injected is printed per command.
#include <gtest/gtest.h>

#include <boost/filesystem.hpp>
#include <cerrno>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "chain/ingest/backup.h"
#include "chain/repo/check.h"
#include "chain/repo/consolidate.h"
#include "chain/repo/export.h"
#include "chain/repo/repository.h"
#include "tests/chain/test_util.h"

namespace chainfs {
namespace {

namespace fs = boost::filesystem;
using testing::FaultyEnv;
using testing::RandomBytes;
using testing::TempDir;
using testing::WriteFile;
using Op = FaultyEnv::Op;

constexpr uint32_t kBs = 4096;
const char kGroup[] = "vm1";

// "c2/vda" -> the bytes that view reads.
using Views = std::map<std::string, std::string>;

std::string Key(const std::string& cp, const std::string& disk) { return cp + "/" + disk; }

// Sources for three checkpoints of two disks, changed between checkpoints
// (vdb grows at c3, a range of vda is zeroed at c2), and the expected views.
class Template {
 public:
  Template() {
    RepoConfig cfg;
    cfg.block_size = kBs;
    cfg.compression_level = 1;
    EXPECT_TRUE(Repository::Init(repo(), cfg).ok());
    std::string vda = RandomBytes(24 * kBs, 1), vdb = RandomBytes(8 * kBs, 2);
    vda.replace(4 * kBs, 2 * kBs, 2 * kBs, '\0');  // zeros from the start
    Commit("c1", vda, vdb);
    vda.replace(0, kBs, RandomBytes(kBs, 3));
    vda.replace(10 * kBs, 3 * kBs, 3 * kBs, '\0');
    vdb.replace(5 * kBs, kBs, RandomBytes(kBs, 4));
    Commit("c2", vda, vdb);
    vda.replace(20 * kBs, 2 * kBs, RandomBytes(2 * kBs, 5));
    vdb += RandomBytes(4 * kBs + 100, 6);
    Commit("c3", vda, vdb);
    // The sources of the next backup (c4).
    vda.replace(7 * kBs, kBs, RandomBytes(kBs, 7));
    vdb.replace(0, 2 * kBs, RandomBytes(2 * kBs, 8));
    WriteFile(dir_ / "vda.img", vda);
    WriteFile(dir_ / "vdb.img", vdb);
    next_[Key("c4", "vda")] = vda;
    next_[Key("c4", "vdb")] = vdb;
  }

  std::string repo() const { return dir_ / "repo"; }
  const std::string& dir() const { return dir_.path(); }
  const Views& views() const { return views_; }
  const Views& next() const { return next_; }

  // A fresh copy of the repository at `to`.
  void CopyTo(const std::string& to) const {
    fs::remove_all(to);
    CopyDir(repo(), to);
  }

 private:
  static void CopyDir(const fs::path& from, const fs::path& to) {
    fs::create_directories(to);
    for (const auto& e : fs::directory_iterator(from)) {
      if (fs::is_directory(e.path())) {
        CopyDir(e.path(), to / e.path().filename());
      } else {
        fs::copy_file(e.path(), to / e.path().filename());
      }
    }
  }

  void Commit(const std::string& cp, const std::string& vda, const std::string& vdb) {
    WriteFile(dir_ / "vda.img", vda);
    WriteFile(dir_ / "vdb.img", vdb);
    auto r = Repository::Open(repo());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    BackupOptions o;
    o.group = kGroup;
    o.checkpoint = cp;
    o.threads = 1;
    o.disks = {{"vda", dir_ / "vda.img", "", nullptr}, {"vdb", dir_ / "vdb.img", "", nullptr}};
    auto b = Backup(*r.value(), o);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    views_[Key(cp, "vda")] = vda;
    views_[Key(cp, "vdb")] = vdb;
  }

  TempDir dir_;
  Views views_, next_;
};

std::string ReadView(const View& v) {
  std::string got(v.size(), '\0');
  Status st = v.Read(0, got.size(), got.data());
  EXPECT_TRUE(st.ok()) << st.ToString();
  return got;
}

// What one command is: its run, and what the repository must show after it.
struct Command {
  std::string name;
  // Runs the command on the repository at `repo` through env; `out` is a
  // directory of its own for output files.
  std::function<Status(const std::string& repo, Env* env, const std::string& out)> run;
  // Views the command's success adds (key -> bytes) and checkpoints it removes.
  Views added;
  std::set<std::string> removed;
  // Export: the file it writes (checked in `out`) and the view it holds.
  std::string output_file;
  std::string output_view;
};

// The faults a call of op can meet.
struct Injection {
  int err;
  FaultyEnv::Fault fault;
  const char* what;
};
std::vector<Injection> FaultsFor(Op op) {
  using F = FaultyEnv::Fault;
  switch (op) {
    case Op::kAppend:
    case Op::kWriteAt:
      return {{EIO, F::kError, "EIO"}, {ENOSPC, F::kError, "ENOSPC"},
              {ENOSPC, F::kShortWrite, "short write"}};
    case Op::kCreateDirs:
      return {{EIO, F::kError, "EIO"}, {ENOSPC, F::kError, "ENOSPC"},
              {EIO, F::kAfterEffect, "EIO after the directory was made"}};
    case Op::kRemove:
      return {{EIO, F::kError, "EIO"}, {EIO, F::kAfterEffect, "EIO after the removal"}};
    case Op::kCreateAppend:
    case Op::kOpenWrite:
    case Op::kTruncate:
      return {{EIO, F::kError, "EIO"}, {ENOSPC, F::kError, "ENOSPC"}};
    case Op::kSync:
    case Op::kSyncDir:
      return {{EIO, F::kError, "fsync EIO"}};
    case Op::kRename:
      return {{EIO, F::kError, "rename EIO"}, {ENOSPC, F::kError, "rename ENOSPC"},
              {EIO, F::kAfterEffect, "EIO after the rename (its directory fsync failed)"}};
    default:
      return {{EIO, F::kError, "EIO"}};
  }
}

// Outcome of one injected run, after verification.
enum class Outcome { kFailedClean, kSucceeded, kFailedAfterCommit };

bool HasJournal(const std::string& repo) {
  return fs::exists(repo + "/groups/" + kGroup + "/txn.json");
}

class FaultSweep : public ::testing::Test {
 protected:
  // Reads every committed view of the repository at `repo` and compares it
  // with the views before the command (`before`) and the command's `added`.
  // Returns whether the command's effect is visible. Fails the test if a view
  // reads other bytes, if the effect is partly visible, or if check finds a
  // problem.
  bool Verify(const std::string& repo_path, const Command& c, const std::string& where) {
    auto repo = Repository::Open(repo_path);
    EXPECT_TRUE(repo.ok()) << where << ": " << repo.status().ToString();
    if (!repo.ok()) return false;
    auto g = repo.value()->LoadGroup(kGroup);
    EXPECT_TRUE(g.ok()) << where << ": " << g.status().ToString();
    if (!g.ok()) return false;
    std::set<std::string> present;
    for (const Checkpoint& cp : g.value().checkpoints) {
      present.insert(cp.name);
      for (const DiskEntry& d : cp.disks) {
        const std::string key = Key(cp.name, d.name);
        auto v = repo.value()->OpenView(g.value(), cp, d.name);
        EXPECT_TRUE(v.ok()) << where << ": " << key << ": " << v.status().ToString();
        if (!v.ok()) continue;
        auto want = tmpl_.views().count(key) ? tmpl_.views().at(key) : c.added.at(key);
        EXPECT_TRUE(ReadView(*v.value()) == want) << where << ": " << key << " reads other bytes";
      }
    }
    auto report = Check(*repo.value(), "", "", /*deep=*/true);
    EXPECT_TRUE(report.ok()) << where << ": " << report.status().ToString();
    if (report.ok())
      for (const CheckProblem& p : report.value().problems)
        ADD_FAILURE() << where << ": check: " << p.checkpoint << " " << p.disk << " " << p.file
                      << ": " << p.message;
    // The effect: every added checkpoint present and every removed one gone.
    int effect = 0, parts = 0;
    std::set<std::string> added_cps;
    for (const auto& [key, bytes] : c.added) added_cps.insert(key.substr(0, key.find('/')));
    for (const std::string& cp : added_cps) parts++, effect += present.count(cp) ? 1 : 0;
    for (const std::string& cp : c.removed) parts++, effect += present.count(cp) ? 0 : 1;
    for (const auto& [key, bytes] : tmpl_.views()) {
      const std::string cp = key.substr(0, key.find('/'));
      EXPECT_TRUE(present.count(cp) || c.removed.count(cp)) << where << ": lost " << cp;
    }
    // Partly visible only while a committed journal says how to finish it.
    EXPECT_TRUE(effect == 0 || effect == parts || HasJournal(repo_path))
        << where << ": the command is partly visible (" << effect << " of " << parts << ")";
    return parts > 0 ? effect == parts : true;
  }

  // Export's output directory: the output with the view's bytes, or (after
  // a failure) nothing, or the complete output if the failure came after its
  // rename (the directory fsync). Never a partial or temporary file.
  void VerifyOutput(const Command& c, const std::string& out, bool ok, const std::string& where) {
    if (c.output_file.empty()) return;
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(out)) files.push_back(e.path().filename().string());
    if (!ok && files.empty()) return;
    ASSERT_EQ(files, std::vector<std::string>{c.output_file}) << where;
    EXPECT_TRUE(testing::ReadFile(out + "/" + c.output_file) == tmpl_.views().at(c.output_view))
        << where << ": the exported image differs from the view";
  }

  void Sweep(const Command& c) {
    const std::string work = tmpl_.dir() + "/work", out = tmpl_.dir() + "/out";
    auto fresh = [&] {
      tmpl_.CopyTo(work);
      fs::remove_all(out);
      fs::create_directories(out);
    };
    // The calls of a clean run.
    fresh();
    FaultyEnv counting;
    ASSERT_TRUE(counting.ConfineTo(work).ok());  // as Repository::Open does
    counting.FailCall(0, 0);
    Status st = c.run(work, &counting, out);
    ASSERT_TRUE(st.ok()) << c.name << " without faults: " << st.ToString();
    const std::vector<Op> ops = counting.ops();
    ASSERT_GT(ops.size(), 5u) << c.name << ": too few storage calls to sweep";
    Verify(work, c, c.name + " without faults");
    VerifyOutput(c, out, true, c.name + " without faults");

    std::map<Outcome, int> outcomes;
    int injected = 0;
    for (size_t k = 1; k <= ops.size(); ++k) {
      for (const Injection& inj : FaultsFor(ops[k - 1])) {
        const std::string where = c.name + ": call " + std::to_string(k) + " of " +
                                  std::to_string(ops.size()) + " (" +
                                  FaultyEnv::OpName(ops[k - 1]) + ") fails with " + inj.what;
        fresh();
        FaultyEnv env;
        ASSERT_TRUE(env.ConfineTo(work).ok());
        env.FailCall(static_cast<int>(k), inj.err, inj.fault);
        Status r = c.run(work, &env, out);
        if (!env.swept()) continue;  // the run took another path (threads): fewer calls
        ++injected;
        if (!r.ok()) {
          EXPECT_NE(r.message().find("injected"), std::string::npos)
              << where << ": the error does not carry the failed call's message: " << r.ToString();
        }
        // Export changes nothing in the repository: its effect is its output.
        const bool repo_effect = Verify(work, c, where);
        const bool visible = c.output_file.empty() ? repo_effect : r.ok();
        VerifyOutput(c, out, r.ok(), where);
        if (r.ok()) {
          EXPECT_TRUE(visible) << where << ": succeeded but its effect is not visible";
          ++outcomes[Outcome::kSucceeded];
          continue;
        }
        if (visible) {
          ++outcomes[Outcome::kFailedAfterCommit];
          continue;
        }
        if (c.output_file.empty() && HasJournal(work)) {
          // Committed, partly applied: the next writer finishes it, and the
          // command run again then succeeds.
          ++outcomes[Outcome::kFailedAfterCommit];
          Status again = c.run(work, Env::Default(), out);
          EXPECT_TRUE(again.ok()) << where << ": run again: " << again.ToString();
          EXPECT_TRUE(Verify(work, c, where + ", run again")) << where << ": run again";
          continue;
        }
        ++outcomes[Outcome::kFailedClean];
        // Nothing visible: running it again (no faults) succeeds.
        fs::remove_all(out);
        fs::create_directories(out);
        Status again = c.run(work, Env::Default(), out);
        EXPECT_TRUE(again.ok()) << where << ": run again: " << again.ToString();
        if (again.ok()) {
          EXPECT_TRUE(Verify(work, c, where + ", run again")) << where << ": run again";
          VerifyOutput(c, out, true, where + ", run again");
        }
        if (HasFailure()) return;  // one broken case is enough to read
      }
    }
    std::printf(
        "fault sweep %s: %zu storage calls swept, %d faults injected: %d failed with nothing "
        "changed (and ran again fine), %d absorbed (succeeded), %d failed after the commit "
        "(effect complete)\n",
        c.name.c_str(), ops.size(), injected, outcomes[Outcome::kFailedClean],
        outcomes[Outcome::kSucceeded], outcomes[Outcome::kFailedAfterCommit]);
    EXPECT_GT(outcomes[Outcome::kFailedClean], 0) << c.name << ": no injected fault failed it";
  }

  Template tmpl_;
};

Status RunConsolidate(const std::string& repo, Env* env, const ConsolidateOptions& o) {
  CHAINFS_ASSIGN_OR_RETURN(auto r, Repository::Open(repo, env));
  return Consolidate(*r, o).status();
}

TEST_F(FaultSweep, Backup) {
  Command c;
  c.name = "backup";
  c.added = tmpl_.next();
  const std::string src = tmpl_.dir();
  c.run = [src](const std::string& repo, Env* env, const std::string&) -> Status {
    CHAINFS_ASSIGN_OR_RETURN(auto r, Repository::Open(repo, env));
    BackupOptions o;
    o.group = kGroup;
    o.checkpoint = "c4";
    o.threads = 1;
    o.disks = {{"vda", src + "/vda.img", "", nullptr}, {"vdb", src + "/vdb.img", "", nullptr}};
    return Backup(*r, o).status();
  };
  Sweep(c);
}

TEST_F(FaultSweep, Consolidate) {
  Command c;
  c.name = "consolidate --drop c2";
  c.removed = {"c2"};
  c.run = [](const std::string& repo, Env* env, const std::string&) {
    ConsolidateOptions o;
    o.group = kGroup;
    o.drop = {"c2"};
    return RunConsolidate(repo, env, o);
  };
  Sweep(c);
}

TEST_F(FaultSweep, Prune) {
  Command c;
  c.name = "prune --keep-last 1";
  c.removed = {"c1", "c2"};
  c.run = [](const std::string& repo, Env* env, const std::string&) {
    ConsolidateOptions o;
    o.group = kGroup;
    RetentionPolicy p;
    p.keep_last = 1;
    o.policy = p;
    return RunConsolidate(repo, env, o);
  };
  Sweep(c);
}

TEST_F(FaultSweep, Export) {
  Command c;
  c.name = "export c3 vdb";
  c.output_file = "vdb.img";
  c.output_view = Key("c3", "vdb");
  c.run = [](const std::string& repo, Env* env, const std::string& out) -> Status {
    CHAINFS_ASSIGN_OR_RETURN(auto r, Repository::Open(repo, env));
    CHAINFS_ASSIGN_OR_RETURN(auto v, r->OpenView(kGroup, "c3", "vdb"));
    return ExportView(env, *v, out + "/vdb.img", 1).status();
  };
  Sweep(c);
}

}  // namespace
}  // namespace chainfs
