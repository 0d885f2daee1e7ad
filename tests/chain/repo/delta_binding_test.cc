// Issue 13 item 1: a delta file mixed up with another (swapped, a manifest
// naming another checkpoint's delta or another base) is refused naming the
// manifest and the file, never read as wrong bytes.
#include "chain/repo/delta_binding.h"

#include <gtest/gtest.h>

#include <boost/filesystem.hpp>
#include <string>

#include "chain/native/delta_format.h"
#include "chain/repo/check.h"
#include "chain/repo/consolidate.h"
#include "tests/chain/repo_util.h"

namespace chainfs {
namespace {

using testing::TempDir;
namespace fs = boost::filesystem;

constexpr uint32_t kBs = 4096;

// vm1/vda: c1 full, c2 and c3 incremental, c4 differential on c2; every
// checkpoint changes a different block, so that a mix-up shows in the bytes.
class DeltaBindingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_ = testing::NewRepository(dir_, &env_, kBs);  // no faults set: a plain rooted Env
    ASSERT_TRUE(repo_);
    std::string disk = testing::RandomBytes(8 * kBs, 1);
    for (int i = 1; i <= 4; ++i) {
      disk[i * kBs] = static_cast<char>('A' + i);
      testing::WriteFile(dir_ / "disk.raw", disk);
      BackupOptions o;
      o.group = "vm1";
      o.checkpoint = "c" + std::to_string(i);
      o.threads = 1;
      o.since = i == 4 ? "c2" : "";
      o.disks.push_back({"vda", dir_ / "disk.raw", ""});
      auto r = Backup(*repo_, o);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      bytes_[o.checkpoint] = disk;
    }
  }

  Checkpoint Manifest(const std::string& cp) {
    auto g = repo_->LoadGroup("vm1");
    EXPECT_TRUE(g.ok()) << g.status().ToString();
    return *g->Find(cp);
  }
  void Rewrite(const Checkpoint& cp) {
    ASSERT_TRUE(
        Env::Default()->WriteFileAtomic(repo_->ManifestPath("vm1", cp.name), cp.Encode()).ok());
  }
  std::string DeltaOf(const std::string& cp) { return Manifest(cp).disks[0].delta_file; }

  Status OpenStatus(const std::string& cp) {
    auto v = repo_->OpenView("vm1", cp, "vda");
    return v.ok() ? Status::Ok() : v.status();
  }
  // The view reads its original bytes.
  void ExpectReads(const std::string& cp) {
    auto v = repo_->OpenView("vm1", cp, "vda");
    ASSERT_TRUE(v.ok()) << cp << ": " << v.status().ToString();
    std::string out(bytes_[cp].size(), '\0');
    ASSERT_TRUE((*v)->Read(0, out.size(), out.data()).ok());
    EXPECT_TRUE(out == bytes_[cp]) << cp << " reads other bytes";
  }
  // OpenView of cp fails as corruption whose message has every needle.
  void ExpectRefused(const std::string& cp, const std::vector<std::string>& needles) {
    Status st = OpenStatus(cp);
    ASSERT_EQ(st.code(), Status::Code::kCorruption) << cp << ": " << st.ToString();
    for (const std::string& n : needles)
      EXPECT_NE(st.message().find(n), std::string::npos) << "'" << n << "' in " << st.ToString();
  }

  TempDir dir_;
  testing::FaultyEnv env_;
  std::unique_ptr<Repository> repo_;
  std::map<std::string, std::string> bytes_;
};

TEST_F(DeltaBindingTest, Issue13EveryDeltaIsBoundAndEveryViewReads) {
  for (const std::string cp : {"c1", "c2", "c3", "c4"}) {
    const DiskEntry e = Manifest(cp).disks[0];
    ASSERT_TRUE(e.delta_id && e.index_digest) << cp << " records id and index digest";
    auto layer = repo_->OpenLayer("vm1", cp, e);
    ASSERT_TRUE(layer.ok()) << layer.status().ToString();
    const LayerIdentity* id = (*layer)->identity();
    ASSERT_NE(id, nullptr);
    EXPECT_EQ(id->group, "vm1");
    EXPECT_EQ(id->checkpoint, cp);
    EXPECT_EQ(id->disk, "vda");
    EXPECT_EQ(id->kind, e.kind);
    EXPECT_EQ(id->base, e.base);
    EXPECT_EQ(id->id, *e.delta_id);
    EXPECT_EQ(id->index_digest, *e.index_digest);
    ExpectReads(cp);
  }
  EXPECT_EQ(Manifest("c4").disks[0].kind, DeltaKind::kDifferential);
  auto report = Check(*repo_, "", "", false);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->problems.empty());
  EXPECT_TRUE(report->notices.empty()) << report->notices[0].message;
}

TEST_F(DeltaBindingTest, Issue13SwappedDeltaFilesAreRefusedNamingBothFiles) {
  const std::string d1 = repo_->DeltaPath("vm1", DeltaOf("c1"));
  const std::string d2 = repo_->DeltaPath("vm1", DeltaOf("c2"));
  fs::rename(d1, d1 + ".x");
  fs::rename(d2, d1);
  fs::rename(d1 + ".x", d2);
  // c1 names d1, which now holds c2's delta; c2 names d2 (c1's): every view
  // whose chain reaches either is refused.
  ExpectRefused("c1", {repo_->ManifestPath("vm1", "c1"), d1, "checkpoint c2 (manifest: c1)"});
  ExpectRefused("c2", {repo_->ManifestPath("vm1", "c2"), d2, "checkpoint c1 (manifest: c2)",
                       "base none (full) (manifest: c1)", "delta id"});
  for (const std::string cp : {"c3", "c4"}) {
    Status st = OpenStatus(cp);
    EXPECT_EQ(st.code(), Status::Code::kCorruption) << cp << ": " << st.ToString();
  }
  auto report = Check(*repo_, "vm1", "", true);
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->problems.size(), 4u);
  const std::string& m = report->problems[0].message;
  EXPECT_NE(m.find(repo_->ManifestPath("vm1", "c1")), std::string::npos) << m;
  EXPECT_NE(m.find(d1), std::string::npos) << m;
}

TEST_F(DeltaBindingTest, Issue13ManifestNamingAnotherCheckpointsDeltaIsRefused) {
  Checkpoint c3 = Manifest("c3");
  const DiskEntry c2 = Manifest("c2").disks[0];
  c3.disks[0].delta_file = c2.delta_file;  // only the name
  Rewrite(c3);
  ExpectRefused("c3", {repo_->ManifestPath("vm1", "c3"), c2.delta_file,
                       "checkpoint c2 (manifest: c3)", "base c1 (manifest: c2)"});
  c3.disks[0] = c2;  // the whole entry, id and digest included
  Rewrite(c3);
  ExpectRefused("c3", {"checkpoint c2 (manifest: c3)"});
  ExpectReads("c2");  // the file itself is fine where it belongs
}

TEST_F(DeltaBindingTest, Issue13ChangedOrDroppedBaseIsRefused) {
  Checkpoint c3 = Manifest("c3");
  c3.disks[0].base = "c1";
  c3.disks[0].kind = DeltaKind::kDifferential;
  Rewrite(c3);
  ExpectRefused("c3", {repo_->ManifestPath("vm1", "c3"), "base c2 (manifest: c1)"});
  c3.disks[0].base = "";
  c3.disks[0].kind = DeltaKind::kFull;
  Rewrite(c3);
  ExpectRefused("c3", {"base c2 (manifest: none (full))", "kind incremental (manifest: full)"});
  auto report = Check(*repo_, "vm1", "c3", false);
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->problems.size(), 1u);
  EXPECT_NE(report->problems[0].message.find(DeltaOf("c3")), std::string::npos);
}

TEST_F(DeltaBindingTest, Issue13ChangedIdOrDigestOrMissingIdIsRefused) {
  const Checkpoint original = Manifest("c2");
  Checkpoint c2 = original;
  c2.disks[0].delta_id->bytes[5] ^= 1;
  Rewrite(c2);
  ExpectRefused("c2", {"delta id " + original.disks[0].delta_id->Hex() + " (manifest: " +
                       c2.disks[0].delta_id->Hex() + ")"});
  c2 = original;
  *c2.disks[0].index_digest ^= 1;
  Rewrite(c2);
  ExpectRefused("c2", {"index digest"});
  c2 = original;
  c2.disks[0].delta_id.reset();  // a bound file named by an entry without id
  c2.disks[0].index_digest.reset();
  Rewrite(c2);
  ExpectRefused("c2", {"delta id " + original.disks[0].delta_id->Hex() + " (manifest: none)"});
  Rewrite(original);
  ExpectReads("c2");
}

// A delta of version 1 and an entry without id (an earlier chainfs) read as
// before; check lists them as notices, not problems. One side bound and not
// the other is a mismatch.
TEST_F(DeltaBindingTest, Issue13UnboundVersion1DeltaStillReads) {
  Checkpoint c5 = Manifest("c4");
  c5.name = "c5";
  c5.sequence = 5;
  c5.parent = "c4";
  DiskEntry& e = c5.disks[0];
  e.delta_file = "c5.vda.0123456789abcdef.delta";
  e.kind = DeltaKind::kIncremental;
  e.base = "c4";
  e.delta_id.reset();
  e.index_digest.reset();
  auto w = DeltaWriter::Create(Env::Default(), repo_->DeltaPath("vm1", e.delta_file), kBs,
                               bytes_["c4"].size());  // no identity: version 1
  ASSERT_TRUE(w.ok());
  std::string block(kBs, 'v');
  IndexEntry entry{7, 0, kBs, Codec::kRaw, Checksum64(block.data(), kBs),
                   HashContent(block.data(), kBs)};
  ASSERT_TRUE((*w)->AddBlock(entry, block.data()).ok());
  ASSERT_TRUE((*w)->Finish().ok());
  e.stored_bytes = kBs;
  Rewrite(c5);
  bytes_["c5"] = bytes_["c4"];
  bytes_["c5"].replace(7 * kBs, kBs, block);
  ExpectReads("c5");
  auto layer = repo_->OpenLayer("vm1", "c5", e);
  ASSERT_TRUE(layer.ok());
  EXPECT_EQ((*layer)->identity(), nullptr);

  auto report = Check(*repo_, "vm1", "", true);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->problems.empty()) << report->problems[0].message;
  ASSERT_EQ(report->notices.size(), 1u);
  EXPECT_EQ(report->notices[0].checkpoint, "c5");
  EXPECT_NE(report->notices[0].message.find("unbound"), std::string::npos);
  EXPECT_NE(report->notices[0].message.find(e.delta_file), std::string::npos);

  e.delta_id = DeltaId::Random();  // an entry with an id naming a version 1 file
  Rewrite(c5);
  ExpectRefused("c5", {repo_->ManifestPath("vm1", "c5"), e.delta_file, "records no identity"});
}

// A consolidation rewrites c3 (its base c2 dropped) under its own identity:
// base c1, a new id, bound in c3's new manifest.
TEST_F(DeltaBindingTest, Issue13ConsolidatedDeltaCarriesItsNewIdentity) {
  const DiskEntry before = Manifest("c3").disks[0];
  ConsolidateOptions o;
  o.group = "vm1";
  o.drop = {"c2"};
  auto r = Consolidate(*repo_, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (const std::string cp : {"c3", "c4"}) {
    const DiskEntry e = Manifest(cp).disks[0];
    EXPECT_NE(e.delta_file, cp == "c3" ? before.delta_file : "") << cp << " rewritten";
    auto layer = repo_->OpenLayer("vm1", cp, e);
    ASSERT_TRUE(layer.ok()) << layer.status().ToString();
    const LayerIdentity* id = (*layer)->identity();
    ASSERT_NE(id, nullptr);
    EXPECT_EQ(id->checkpoint, cp);
    EXPECT_EQ(id->base, "c1");
    EXPECT_EQ(id->kind, e.kind);
    EXPECT_EQ(id->id, *e.delta_id);
    EXPECT_EQ(id->index_digest, *e.index_digest);
    ExpectReads(cp);
  }
  EXPECT_FALSE(*Manifest("c3").disks[0].delta_id == *before.delta_id) << "a new id";
  EXPECT_EQ(Manifest("c4").disks[0].kind, DeltaKind::kDifferential);  // parent c3, base c1
  auto report = Check(*repo_, "vm1", "", true);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->problems.empty()) << report->problems[0].message;
  EXPECT_TRUE(report->notices.empty());
}

}  // namespace
}  // namespace chainfs
