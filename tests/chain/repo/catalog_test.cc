// Issue 14: the manifest catalogue (chain/repo/catalog.h). A group loads
// from one file and a listing, with the result reading every manifest
// would give; a manifest changed, replaced, added or removed since is read
// (or dropped) again; a damaged or foreign catalogue is ignored whole;
// check never trusts it.
#include "chain/repo/catalog.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "chain/repo/check.h"
#include "chain/repo/consolidate.h"
#include "tests/chain/repo_util.h"

namespace chainfs {
namespace {

using testing::FaultyEnv;
using testing::RandomBytes;
using testing::TempDir;
using testing::WriteFile;
namespace fs = std::filesystem;

constexpr int kDepth = 12;

std::string Name(int i) { return "c" + std::to_string(100 + i); }

// The group as a string: every checkpoint's manifest encoding and every
// refused one's name and reason, in order.
std::string Describe(const GroupState& g) {
  std::string out;
  for (const Checkpoint& c : g.checkpoints) out += c.Encode() + "\n";
  for (const RefusedCheckpoint& r : g.refused) out += "refused " + r.name + ": " + r.reason + "\n";
  return out;
}

class CatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_ = testing::NewRepository(dir_, &env_);
    ASSERT_NE(repo_, nullptr);
    std::string disk = RandomBytes(8 * 4096, 1);
    for (int i = 0; i < kDepth; ++i) {
      disk.replace((i % 8) * 4096, 100, RandomBytes(100, 10 + i));
      WriteFile(dir_ / "disk.raw", disk);
      BackupOptions o;
      o.group = "vm1";
      o.checkpoint = Name(i);
      o.threads = 1;
      o.disks.push_back({"vda", dir_ / "disk.raw", ""});
      if (i % 3 == 0) {  // a config, as a libvirt backup keeps its domain XML
        WriteFile(dir_ / "domain.xml", "<domain><name>vm1</name><i>" + std::to_string(i) +
                                           "</i></domain>");
        o.config_path = dir_ / "domain.xml";
      }
      auto r = Backup(*repo_, o);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
    }
    // Every manifest settles (kCatalogSettleNs), then a writer's rewrite.
    std::this_thread::sleep_for(std::chrono::nanoseconds(kCatalogSettleNs) +
                                std::chrono::milliseconds(100));
    auto g = repo_->LoadGroup("vm1", Repository::ManifestSource::kManifests);
    ASSERT_TRUE(g.ok());
    ASSERT_EQ(g->manifest_stamps.size(), static_cast<size_t>(kDepth));
    ASSERT_TRUE(repo_->WriteCatalog(g.value()).ok());
  }

  std::string ManifestPath(int i) const { return repo_->ManifestPath("vm1", Name(i)); }
  // Opens of the manifests there are now.
  int ManifestReads() const {
    int n = 0;
    for (const auto& e : fs::directory_iterator(repo_->CheckpointDir("vm1")))
      n += env_.calls(FaultyEnv::Op::kOpenRead, e.path().string());
    return n;
  }
  std::vector<std::string> CatalogNames() const {
    std::vector<std::string> out;
    auto entries = DecodeCatalog(testing::ReadFile(repo_->CatalogPath("vm1")), "catalog", "vm1");
    EXPECT_TRUE(entries.ok()) << entries.status().ToString();
    if (entries.ok())
      for (const Checkpoint& c : entries.value().checkpoints) out.push_back(c.name);
    return out;
  }
  // LoadGroup from the catalogue equals reading every manifest; returns
  // how many manifests the catalogue load opened.
  int ExpectSameAsManifests() {
    auto truth = repo_->LoadGroup("vm1", Repository::ManifestSource::kManifests);
    EXPECT_TRUE(truth.ok());
    const int before = ManifestReads();
    auto got = repo_->LoadGroup("vm1");
    EXPECT_TRUE(got.ok());
    const int reads = ManifestReads() - before;
    if (truth.ok() && got.ok()) {
      EXPECT_EQ(Describe(got.value()), Describe(truth.value()));
    }
    return reads;
  }

  TempDir dir_;
  FaultyEnv env_;
  std::unique_ptr<Repository> repo_;
};

TEST_F(CatalogTest, AGroupLoadsFromItWithoutReadingAManifest) {
  EXPECT_EQ(CatalogNames().size(), static_cast<size_t>(kDepth));
  EXPECT_EQ(ExpectSameAsManifests(), 0);
  auto g = repo_->LoadGroup("vm1");
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(g->catalog_current);
  const Checkpoint* c = g->Find(Name(3));
  ASSERT_NE(c, nullptr);
  ASSERT_NE(c->FindConfig("domain.xml"), nullptr);
  EXPECT_EQ(c->FindConfig("domain.xml")->content, "<domain><name>vm1</name><i>3</i></domain>");
  // Views open from it as from the manifests.
  auto v = repo_->OpenView(g.value(), *g->Newest(), "vda");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v.value()->size(), 8u * 4096);
}

// An entry is used exactly while its file's stamp is the recorded one: a
// catalogue whose entry says something else under the true stamp is
// believed (it is a cache), check is not (it reads every manifest).
TEST_F(CatalogTest, AnEntryIsUsedOnlyUnderItsFilesStamp) {
  auto g = repo_->LoadGroup("vm1", Repository::ManifestSource::kManifests);
  ASSERT_TRUE(g.ok());
  std::vector<std::pair<ManifestStamp, const Checkpoint*>> entries;
  Checkpoint forged = *g->Find(Name(5));
  forged.created_unix_ns += 1;
  for (const Checkpoint& c : g->checkpoints)
    entries.push_back({g->manifest_stamps.at(c.name), c.name == Name(5) ? &forged : &c});
  WriteFile(repo_->CatalogPath("vm1"), EncodeCatalog("vm1", entries));
  auto loaded = repo_->LoadGroup("vm1");
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->Find(Name(5))->created_unix_ns, forged.created_unix_ns);

  // Under another stamp (the same bytes, another inode), the manifest is read.
  entries[5].first.inode += 1;
  WriteFile(repo_->CatalogPath("vm1"), EncodeCatalog("vm1", entries));
  loaded = repo_->LoadGroup("vm1");
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->Find(Name(5))->created_unix_ns, g->Find(Name(5))->created_unix_ns);
  EXPECT_FALSE(loaded->catalog_current);
}

TEST_F(CatalogTest, ManifestsChangedReplacedAddedOrRemovedSinceAreReadAgain) {
  // Edited in place, same size: its change time moves, so it is read and
  // refused like any damaged manifest.
  std::string text = testing::ReadFile(ManifestPath(4));
  const std::string before = text;
  text[text.find("\"sequence\"") + 1] = 'X';
  ASSERT_EQ(text.size(), before.size());
  {
    FILE* f = std::fopen(ManifestPath(4).c_str(), "r+");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(text.data(), 1, text.size(), f), text.size());
    std::fclose(f);
  }
  // Replaced by a rename: a new inode.
  const std::string replaced = testing::ReadFile(ManifestPath(7));
  WriteFile(ManifestPath(7) + ".new", replaced);
  fs::rename(ManifestPath(7) + ".new", ManifestPath(7));
  // Removed (the newest: no other chain needs it).
  fs::remove(ManifestPath(kDepth - 1));
  EXPECT_EQ(ExpectSameAsManifests(), 2);  // 4 and 7
  auto g = repo_->LoadGroup("vm1");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->Find(Name(kDepth - 1)), nullptr);
  ASSERT_EQ(g->refused.size(), 1u);
  EXPECT_EQ(g->refused[0].name, Name(4));
  EXPECT_NE(g->refused[0].reason.find("Xequence"), std::string::npos) << g->refused[0].reason;
  EXPECT_FALSE(g->catalog_current);

  // Put back and settled, the next writer records them again.
  WriteFile(ManifestPath(4), before);
  std::this_thread::sleep_for(std::chrono::nanoseconds(kCatalogSettleNs) +
                              std::chrono::milliseconds(100));
  ASSERT_TRUE(repo_->WriteCatalog(repo_->LoadGroup("vm1").value()).ok());
  EXPECT_EQ(CatalogNames().size(), static_cast<size_t>(kDepth - 1));
  EXPECT_EQ(ExpectSameAsManifests(), 0);
}

TEST_F(CatalogTest, ADamagedTruncatedOrForeignCatalogueIsIgnoredWhole) {
  const std::string good = testing::ReadFile(repo_->CatalogPath("vm1"));
  std::string flipped = good;
  flipped[flipped.size() / 2] ^= 0x20;
  const std::string other = EncodeCatalog("vm2", {});
  for (const std::string& bad : {flipped, good.substr(0, good.size() - 1), good.substr(0, 20),
                                 std::string(), other}) {
    WriteFile(repo_->CatalogPath("vm1"), bad);
    EXPECT_EQ(ExpectSameAsManifests(), kDepth);
  }
  // Every cut of a good one fails to decode, cleanly.
  for (size_t n = 0; n < good.size(); n += 7)
    EXPECT_FALSE(DecodeCatalog(good.substr(0, n), "catalog", "vm1").ok()) << n;
  // A symbolic link in its place is not followed (the repository has none).
  fs::remove(repo_->CatalogPath("vm1"));
  WriteFile(dir_ / "elsewhere", good);
  fs::create_symlink(dir_ / "elsewhere", repo_->CatalogPath("vm1"));
  EXPECT_EQ(ExpectSameAsManifests(), kDepth);
}

TEST_F(CatalogTest, OnlySettledManifestsAreRecordedAndWritersKeepIt) {
  // A backup records what had settled when it loaded the group, not itself.
  WriteFile(dir_ / "disk.raw", RandomBytes(8 * 4096, 77));
  ASSERT_TRUE(testing::BackupVda(*repo_, "c900", dir_ / "disk.raw").ok());
  std::vector<std::string> names = CatalogNames();
  EXPECT_EQ(names.size(), static_cast<size_t>(kDepth));
  EXPECT_EQ(std::count(names.begin(), names.end(), "c900"), 0);
  EXPECT_EQ(ExpectSameAsManifests(), 1);  // c900, not settled

  // Settled, the next writer (a consolidation) records it; the manifests it
  // replaces are new files, read until they settle in turn.
  std::this_thread::sleep_for(std::chrono::nanoseconds(kCatalogSettleNs) +
                              std::chrono::milliseconds(100));
  ConsolidateOptions o;
  o.group = "vm1";
  o.drop = {Name(2)};
  auto r = Consolidate(*repo_, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  names = CatalogNames();
  EXPECT_EQ(std::count(names.begin(), names.end(), "c900"), 1);
  EXPECT_EQ(std::count(names.begin(), names.end(), Name(2)), 0);
  EXPECT_LT(names.size(), static_cast<size_t>(kDepth));  // the rewritten ones are new
  const int reads = ExpectSameAsManifests();
  EXPECT_EQ(static_cast<size_t>(reads), static_cast<size_t>(kDepth) - names.size());

  // A temporary left by a writer that died is removed by the next one.
  WriteFile(repo_->CatalogPath("vm1") + ".tmp.0123456789abcdef", "partial");
  WriteFile(dir_ / "disk.raw", RandomBytes(8 * 4096, 78));
  ASSERT_TRUE(testing::BackupVda(*repo_, "c901", dir_ / "disk.raw").ok());
  EXPECT_FALSE(fs::exists(repo_->CatalogPath("vm1") + ".tmp.0123456789abcdef"));
}

// check reads every manifest: a manifest's damage shows even where the
// catalogue still holds its old, good entry under a matching stamp.
TEST_F(CatalogTest, CheckReadsTheManifestsNotTheCatalogue) {
  auto g = repo_->LoadGroup("vm1", Repository::ManifestSource::kManifests);
  ASSERT_TRUE(g.ok());
  // The catalogue records a stamp the damaged manifest will have: the
  // damage is made first, its stamp then given to the good entry.
  const std::string good = testing::ReadFile(ManifestPath(6));
  std::string bad = good;
  bad[bad.find("\"sequence\"") + 1] = 'X';
  WriteFile(ManifestPath(6), bad);
  auto info = repo_->env()->Stat(ManifestPath(6));
  ASSERT_TRUE(info.ok());
  std::vector<std::pair<ManifestStamp, const Checkpoint*>> entries;
  for (const Checkpoint& c : g->checkpoints)
    entries.push_back({c.name == Name(6) ? *StampOf(info.value()) : g->manifest_stamps.at(c.name),
                       &c});
  WriteFile(repo_->CatalogPath("vm1"), EncodeCatalog("vm1", entries));
  auto cached = repo_->LoadGroup("vm1");
  ASSERT_TRUE(cached.ok());
  EXPECT_TRUE(cached->refused.empty());  // the cache believed

  auto report = Check(*repo_, "vm1", "", /*deep=*/false);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  bool named = false;
  for (const auto& p : report->problems)
    named = named || p.message.find(Name(6) + ".json") != std::string::npos;
  EXPECT_TRUE(named) << "check did not report the damaged manifest";
}

}  // namespace
}  // namespace chainfs
