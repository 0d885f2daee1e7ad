// Property tests of consolidation against a reference model: a plain byte
// array per checkpoint per disk. Random chains (full, incremental,
// differential, resize to unaligned sizes, zeroing, disks added later) are
// written through the real Backup(); random drop sets, --full-at points and
// retention policies are applied, several in a row. After each: every
// surviving view equals the model, check --deep is clean, no delta file is
// left unreferenced, and every stored block of the survivors has exactly the
// stored (compressed) bytes some delta had before (no recompression), except
// the blocks the report says were re-encoded because an unaligned smaller
// size cut them.
#include "chain/repo/consolidate.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <boost/filesystem.hpp>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "chain/ingest/backup.h"
#include "chain/repo/check.h"
#include "chain/base/file.h"
#include "chain/repo/txn.h"
#include "chain/native/native_layer.h"

namespace chainfs {
namespace {

namespace fs = boost::filesystem;
constexpr uint32_t kBs = 4096;

std::string MakeTempDir() {
  const char* base = std::getenv("CHAINFS_TEST_TMP");
  std::string root = base ? base : "/tmp";
  fs::create_directories(root);
  std::string tmpl = root + "/consolidate_test.XXXXXX";
  char* d = ::mkdtemp(tmpl.data());
  EXPECT_NE(d, nullptr);
  return tmpl;
}

using DiskBytes = std::map<std::string, std::string>;  // disk -> bytes

// Totals over a test, so that a property test can show it exercised something.
struct Stats {
  uint64_t rewrites = 0, reencoded = 0, dropped = 0, with_zeros = 0;
} g_stats;

class Fixture {
 public:
  explicit Fixture(uint32_t seed) : rng_(seed), dir_(MakeTempDir()) {
    RepoConfig cfg;
    cfg.block_size = kBs;
    cfg.compression_level = 1;
    EXPECT_TRUE(Repository::Init(dir_ + "/repo", cfg).ok());
    repo_ = std::move(Repository::Open(dir_ + "/repo")).value();
  }
  ~Fixture() { fs::remove_all(dir_); }

  uint64_t Rand(uint64_t n) {
    return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_);
  }

  // Changes a disk's bytes: random or compressible blocks, zeroed blocks,
  // resizes.
  void Mutate(std::string* d, bool aligned) {
    if (d->empty() || Rand(3) == 0) {
      uint64_t blocks = 8 + Rand(40);
      uint64_t size = blocks * kBs - (aligned ? 0 : Rand(kBs));
      d->resize(size, '\0');  // shrink drops bytes; grow reads zeros
    }
    const uint64_t nblocks = (d->size() + kBs - 1) / kBs;
    for (uint64_t n = Rand(nblocks / 2 + 1); n > 0; --n) {
      uint64_t b = Rand(nblocks);
      uint64_t off = b * kBs, len = std::min<uint64_t>(kBs, d->size() - off);
      switch (Rand(3)) {
        case 0:
          for (uint64_t i = 0; i < len; ++i)
            (*d)[off + i] = static_cast<char>(Rand(256));
          break;
        case 1:  // compressible, sometimes only a head (a zero tail, as small
                 // files leave)
          std::fill_n(d->begin() + off, Rand(2) ? len : Rand(len + 1),
                      static_cast<char>('a' + Rand(26)));
          break;
        default:
          std::fill_n(d->begin() + off, len, '\0');
          break;
      }
    }
  }

  // Writes the model state as source files and backs it up.
  void Backup(const std::string& name, const DiskBytes& disks, bool full,
              const std::string& since) {
    BackupOptions o;
    o.group = "g";
    o.checkpoint = name;
    o.full = full;
    o.since = since;
    o.threads = 1;
    for (const auto& [disk, bytes] : disks) {
      std::string src = dir_ + "/src." + disk;
      std::ofstream(src, std::ios::binary | std::ios::trunc) << bytes;
      o.disks.push_back({disk, src, ""});
    }
    auto r = chainfs::Backup(*repo_, o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    model_[name] = disks;
    order_.push_back(name);
  }

  // A random chain of n checkpoints.
  void BuildChain(int n, bool aligned) {
    DiskBytes cur;
    cur["vda"] = "";
    for (int i = 0; i < n; ++i) {
      for (auto& [disk, bytes] : cur) Mutate(&bytes, aligned);
      if (i == 2 && Rand(2) == 0) {  // a disk added later
        cur["vdb"] = "";
        Mutate(&cur["vdb"], aligned);
      }
      bool full = i == 0 || Rand(6) == 0;
      std::string since;
      if (!full && i >= 2 && Rand(3) == 0)
        since = order_[Rand(order_.size() - 1)];
      Backup("c" + std::to_string(i), cur, full, since);
    }
  }

  // checksum -> stored bytes of every block of every delta now in the group.
  std::map<uint64_t, std::string> StoredBlocks() {
    std::map<uint64_t, std::string> out;
    for (const auto& f : fs::directory_iterator(repo_->DeltaDir("g"))) {
      auto layer = NativeLayer::Open(Env::Default(), f.path().string());
      EXPECT_TRUE(layer.ok()) << layer.status().ToString();
      const DeltaReader& r = layer.value()->reader();
      for (size_t i = 0; i < r.entries().size(); ++i) {
        std::string s;
        EXPECT_TRUE(r.ReadStored(i, &s).ok());
        out[r.entries()[i].checksum] = s;
      }
    }
    return out;
  }

  void ExpectViewsMatchModel(const std::string& when) {
    auto g = repo_->LoadGroup("g");
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    std::set<std::string> names;
    for (const Checkpoint& cp : g->checkpoints) names.insert(cp.name);
    std::set<std::string> expected;
    for (const auto& [name, disks] : model_) expected.insert(name);
    ASSERT_EQ(names, expected) << when;
    for (const auto& [name, disks] : model_) {
      for (const auto& [disk, bytes] : disks) {
        auto repo = Repository::Open(
            dir_ + "/repo");  // a reader that opens files afresh
        auto v = repo.value()->OpenView("g", name, disk);
        ASSERT_TRUE(v.ok()) << when << ": " << v.status().ToString();
        ASSERT_EQ(v.value()->size(), bytes.size())
            << when << " " << name << "/" << disk;
        std::string got(bytes.size() + 100, 'x');
        ASSERT_TRUE(v.value()->Read(0, got.size(), got.data()).ok());
        size_t diff = 0;
        while (diff < got.size() &&
               got[diff] == (diff < bytes.size() ? bytes[diff] : '\0'))
          ++diff;
        ASSERT_EQ(diff, got.size()) << when << ": view " << name << "/" << disk
                                    << " differs from the model at byte "
                                    << diff << " (block " << diff / kBs << ")";
      }
    }
  }

  // The whole set of checks after a consolidation.
  void Consolidate(const ConsolidateOptions& o) {
    auto before = StoredBlocks();
    auto r = chainfs::Consolidate(*repo_, o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    for (const auto& n : r->dropped) model_.erase(n);
    std::string when = "after consolidating (" +
                       std::to_string(r->dropped.size()) + " dropped)";
    ExpectViewsMatchModel(when);
    auto check = Check(*repo_, "g", "", /*deep=*/true);
    ASSERT_TRUE(check.ok());
    for (const auto& p : check->problems)
      ADD_FAILURE() << when << ": " << p.message;
    // Stored bytes copied as they were.
    uint64_t reencoded = 0;
    for (const auto& w : r->rewrites) reencoded += w.blocks_reencoded;
    uint64_t unseen = 0;
    for (const auto& [sum, bytes] : StoredBlocks()) {
      auto it = before.find(sum);
      if (it == before.end()) {
        ++unseen;
      } else {
        EXPECT_EQ(it->second, bytes)
            << "stored bytes of a surviving block changed";
      }
    }
    EXPECT_LE(unseen, reencoded) << when << ": blocks were recompressed";
    if (aligned_) {
      EXPECT_EQ(reencoded, 0u);
    }
    g_stats.rewrites += r->rewrites.size();
    for (const auto& w : r->rewrites)
      g_stats.with_zeros += w.zero_blocks > 0 && !w.base.empty();
    g_stats.reencoded += reencoded;
    g_stats.dropped += r->dropped.size();
    // Nothing unreferenced, no journal.
    auto g = repo_->LoadGroup("g");
    std::set<std::string> named;
    for (const auto& cp : g->checkpoints)
      for (const auto& d : cp.disks) named.insert(d.delta_file);
    std::set<std::string> files;
    for (const auto& f : fs::directory_iterator(repo_->DeltaDir("g")))
      files.insert(f.path().filename().string());
    EXPECT_EQ(files, named) << when;
    EXPECT_FALSE(fs::exists(TxnPath(*repo_, "g")));
  }

  std::mt19937 rng_;
  std::string dir_;
  std::unique_ptr<Repository> repo_;
  std::map<std::string, DiskBytes> model_;
  std::vector<std::string> order_;
  bool aligned_ = true;
};

std::vector<std::string> Names(const std::map<std::string, DiskBytes>& model) {
  std::vector<std::string> out;
  for (const auto& [name, disks] : model) out.push_back(name);
  return out;
}

// One random consolidation of the kinds the CLI offers.
ConsolidateOptions RandomOp(Fixture& f) {
  ConsolidateOptions o;
  o.group = "g";
  std::vector<std::string> names = Names(f.model_);
  const uint64_t kind = f.Rand(5);
  if (kind < 3) {  // drops of a few, the case that merges over a kept base
    std::shuffle(names.begin(), names.end(), f.rng_);
    size_t n = 1 + f.Rand(std::max<size_t>(1, names.size() / 2));
    o.drop.assign(names.begin(), names.begin() + std::min(n, names.size() - 1));
  } else if (kind == 3) {
    o.full_at = names[f.Rand(names.size())];
  } else {
    o.policy = RetentionPolicy();
    o.policy->keep_last = 1 + static_cast<int>(f.Rand(names.size()));
  }
  return o;
}

void RunProperty(uint32_t seed, bool aligned) {
  Fixture f(seed);
  f.aligned_ = aligned;
  f.BuildChain(4 + static_cast<int>(f.Rand(6)), aligned);
  if (testing::Test::HasFatalFailure()) return;
  f.ExpectViewsMatchModel("before");
  for (int round = 0; round < 3 && f.model_.size() > 1; ++round) {
    SCOPED_TRACE("seed " + std::to_string(seed) + " round " +
                 std::to_string(round));
    f.Consolidate(RandomOp(f));
    if (testing::Test::HasFatalFailure()) return;
  }
}

TEST(ConsolidateProperty, RandomChainsAlignedSizes) {
  g_stats = Stats();
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    RunProperty(seed, true);
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(g_stats.rewrites, 40u);
  EXPECT_GT(g_stats.dropped, 40u);
}

TEST(ConsolidateProperty, RandomChainsUnalignedSizes) {
  g_stats = Stats();
  for (uint32_t seed = 100; seed <= 140; ++seed) {
    RunProperty(seed, false);
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(g_stats.rewrites, 40u);
  std::printf(
      "unaligned: %llu rewrites (%llu with zero runs over a base), %llu "
      "re-encoded blocks, "
      "%llu dropped\n",
      static_cast<unsigned long long>(g_stats.rewrites),
      static_cast<unsigned long long>(g_stats.with_zeros),
      static_cast<unsigned long long>(g_stats.reencoded),
      static_cast<unsigned long long>(g_stats.dropped));
}

// A disk shrunk to an unaligned size and grown again: dropping the small
// checkpoint must not let the older blocks past the cut show through.
// Backup always stores a block it cannot prove unchanged, so a block cut in
// the middle by a smaller size in between never comes from it; other layer
// sources can make one. Hand-made deltas:
//   c0 full 16 blocks of 'a' (backup); c1 size 5 blocks + 100 bytes, stores
//   nothing; c2 size 16 blocks, stores only block 15.
// c2 reads block 5 as 100 bytes of 'a' then zeros, blocks 6..14 as zeros.
void HandMade(Fixture& f, const std::string& name, const std::string& base,
              uint64_t size, const std::map<uint64_t, char>& blocks) {
  auto g = f.repo_->LoadGroup("g");
  ASSERT_TRUE(g.ok());
  Checkpoint cp;
  cp.group = "g";
  cp.name = name;
  cp.sequence = g->Newest()->sequence + 1;
  cp.created_unix_ns = g->Newest()->created_unix_ns + 1;
  cp.parent = g->Newest()->name;
  std::string file = name + ".vda.handmade.delta";
  auto w = DeltaWriter::Create(f.repo_->env(), f.repo_->DeltaPath("g", file), kBs, size);
  ASSERT_TRUE(w.ok());
  for (const auto& [b, c] : blocks) {
    std::string data(kBs, c);
    IndexEntry e;
    e.block = b;
    e.stored_len = kBs;
    e.checksum = Checksum64(data.data(), kBs);
    e.content = HashContent(data.data(), kBs);
    ASSERT_TRUE(w.value()->AddBlock(e, data.data()).ok());
  }
  ASSERT_TRUE(w.value()->Finish().ok());
  cp.disks.push_back({"vda", file, DeltaKind::kIncremental, base, size,
                      w.value()->stored_bytes()});
  ASSERT_TRUE(
      f.repo_->env()->WriteFileAtomic(f.repo_->CheckpointDir("g") + "/" + name + ".json",
                      cp.Encode())
          .ok());
  DiskBytes d;
  d["vda"] = f.model_[base]["vda"];
  d["vda"].resize(std::min<uint64_t>(d["vda"].size(), size));
  d["vda"].resize(size, '\0');
  for (const auto& [b, c] : blocks)
    std::fill_n(d["vda"].begin() + b * kBs, kBs, c);
  f.model_[name] = d;
}

void CutChain(Fixture& f) {
  f.aligned_ = false;
  DiskBytes d;
  d["vda"] = std::string(16 * kBs, 'a');
  f.Backup("c0", d, true, "");
  HandMade(f, "c1", "c0", 5 * kBs + 100, {});
  HandMade(f, "c2", "c1", 16 * kBs, {{15, 'z'}});
  f.ExpectViewsMatchModel("hand-made chain");
}

TEST(Consolidate, DropOfASmallerSizeReencodesTheCutBlock) {
  Fixture f(7);
  CutChain(f);
  g_stats = Stats();
  ConsolidateOptions o;
  o.group = "g";
  o.drop = {"c1"};
  f.Consolidate(o);
  EXPECT_EQ(g_stats.reencoded, 1u);
}

TEST(Consolidate, FullAtReencodesADataBlockCutBySmallerSize) {
  Fixture f(7);
  CutChain(f);
  g_stats = Stats();
  ConsolidateOptions o;
  o.group = "g";
  o.full_at = "c2";
  f.Consolidate(o);
  EXPECT_EQ(g_stats.reencoded, 1u);
}

TEST(Consolidate, DifferentialIsRebasedWhenItsBaseGoes) {
  Fixture f(8);
  DiskBytes d;
  d["vda"] = std::string(8 * kBs, 'a');
  f.Backup("c0", d, true, "");
  d["vda"][kBs] = 'b';
  f.Backup("c1", d, false, "");
  d["vda"][2 * kBs] = 'c';
  f.Backup("c2", d, false, "");
  d["vda"][3 * kBs] = 'd';
  f.Backup("c3", d, false, "c1");  // differential against c1
  ConsolidateOptions o;
  o.group = "g";
  o.drop = {"c1"};
  f.Consolidate(o);
  auto g = f.repo_->LoadGroup("g");
  const DiskEntry* e = g->Find("c3")->FindDisk("vda");
  EXPECT_EQ(e->base, "c0");
  EXPECT_EQ(e->kind, DeltaKind::kDifferential);
  EXPECT_EQ(g->Find("c2")->parent, "c0");
  EXPECT_EQ(g->Find("c2")->FindDisk("vda")->kind, DeltaKind::kIncremental);
}

TEST(Consolidate, FullAtMakesAFullAndDropsTheOlder) {
  Fixture f(9);
  f.BuildChain(6, true);
  ConsolidateOptions o;
  o.group = "g";
  o.full_at = "c3";
  f.Consolidate(o);
  auto g = f.repo_->LoadGroup("g");
  ASSERT_EQ(g->checkpoints.front().name, "c3");
  for (const auto& d : g->checkpoints.front().disks)
    EXPECT_EQ(d.kind, DeltaKind::kFull);
  EXPECT_EQ(g->checkpoints.front().parent, "");
}

TEST(Consolidate, DryRunChangesNothing) {
  Fixture f(10);
  f.BuildChain(4, true);
  auto before = f.StoredBlocks();
  ConsolidateOptions o;
  o.group = "g";
  o.drop = {"c1", "c2"};
  o.dry_run = true;
  auto r = chainfs::Consolidate(*f.repo_, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->dropped, (std::vector<std::string>{"c1", "c2"}));
  EXPECT_FALSE(r->rewrites.empty());
  f.ExpectViewsMatchModel("after a dry run");
  EXPECT_EQ(f.StoredBlocks().size(), before.size());
}

TEST(Consolidate, RefusesBadRequests) {
  Fixture f(11);
  f.BuildChain(3, true);
  ConsolidateOptions o;
  o.group = "g";
  o.drop = {"nope"};
  EXPECT_EQ(chainfs::Consolidate(*f.repo_, o).status().code(),
            Status::Code::kNotFound);
  o.drop = {"c0", "c1", "c2"};
  EXPECT_EQ(chainfs::Consolidate(*f.repo_, o).status().code(),
            Status::Code::kInvalidArgument);
  o.drop = {"../x"};
  EXPECT_EQ(chainfs::Consolidate(*f.repo_, o).status().code(),
            Status::Code::kInvalidArgument);
  f.ExpectViewsMatchModel("after refused requests");
}

// A journal whose steps already happened (a crash just before the journal's
// removal) replays harmlessly, and only once.
TEST(Consolidate, JournalRollForwardIsIdempotent) {
  Fixture f(12);
  f.BuildChain(5, true);
  ConsolidateOptions o;
  o.group = "g";
  o.drop = {"c2"};
  f.Consolidate(o);
  auto g = f.repo_->LoadGroup("g");
  Txn t;
  t.group = "g";
  t.steps.push_back({"c3", *g->Find("c3")});
  t.steps.push_back({"c2", std::nullopt});
  ASSERT_TRUE(f.repo_->env()->WriteFileAtomic(TxnPath(*f.repo_, "g"), t.Encode()).ok());
  auto r1 = RollForward(*f.repo_, "g");
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  EXPECT_TRUE(r1->has_value());
  auto r2 = RollForward(*f.repo_, "g");
  ASSERT_TRUE(r2.ok());
  EXPECT_FALSE(r2->has_value());
  f.ExpectViewsMatchModel("after replaying a journal");
}

TEST(Consolidate, CollectLeftoversWaitsForAJournal) {
  Fixture f(13);
  f.BuildChain(2, true);
  Txn t;
  t.group = "g";
  ASSERT_TRUE(f.repo_->env()->WriteFileAtomic(TxnPath(*f.repo_, "g"), t.Encode()).ok());
  EXPECT_EQ(f.repo_->CollectLeftovers("g").status().code(),
            Status::Code::kBusy);
  auto rec = RecoverGroup(*f.repo_, "g", nullptr);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_TRUE(f.repo_->CollectLeftovers("g").ok());
}

TEST(Consolidate, PruneByDailyPolicy) {
  Fixture f(14);
  f.BuildChain(6, true);
  // Spread the checkpoints over days: c0,c1 day 1; c2,c3 day 2; c4,c5 day 3.
  auto g = f.repo_->LoadGroup("g");
  const int64_t day = 86400LL * 1000000000LL;
  for (Checkpoint cp : g->checkpoints) {
    int i = std::stoi(cp.name.substr(1));
    cp.created_unix_ns =
        1700000000LL * 1000000000LL + (i / 2) * day + (i % 2) * 3600000000000LL;
    ASSERT_TRUE(
        f.repo_->env()->WriteFileAtomic(f.repo_->CheckpointDir("g") + "/" + cp.name + ".json",
                        cp.Encode())
            .ok());
  }
  ConsolidateOptions o;
  o.group = "g";
  o.policy = RetentionPolicy();
  o.policy->keep_daily = 2;
  f.Consolidate(o);
  EXPECT_EQ(Names(f.model_), (std::vector<std::string>{"c3", "c5"}));
}

}  // namespace
}  // namespace chainfs
