// virtnbdbackup directories read as a repository (chain/vnb), with streams
// written the way virtnbdbackup 1.9 writes them (vnb_writer.h), then
// damaged by hand. Real virtnbdbackup output: tests/scenario/vnb_mount_test.sh.
#include <gtest/gtest.h>

#include <boost/filesystem.hpp>
#include <atomic>
#include <cstring>
#include <fstream>
#include <set>

#include "chain/ingest/import.h"
#include "chain/repo/check.h"
#include "chain/repo/repository.h"
#include "chain/vnb/frame_buffer.h"
#include "chain/vnb/lz4_check.h"
#include "chain/vnb/sparse_stream.h"
#include "chain/vnb/vnb_layer.h"
#include "tests/chain/test_util.h"
#include "tests/chain/raw_span_check.h"
#include "tests/chain/vnb/vnb_writer.h"

namespace chainfs {
namespace {

using testing::RandomBytes;
using testing::TempDir;
using testing::VnbDisk;
using testing::VnbStreamBytes;
using testing::WriteFile;

constexpr uint64_t kMiB = 1 << 20;

std::string CpName(size_t i) { return "virtnbdbackup." + std::to_string(i); }

// A virtnbdbackup output directory of domain `dom`: a full and `incs`
// incrementals of disks vda (4 MiB, grown to 5 MiB at the 2nd incremental)
// and vdb (2 MiB); truth[i][disk] is each checkpoint's image.
struct VnbFixture {
  std::string dir;
  std::vector<std::map<std::string, std::string>> truth;

  static VnbFixture Make(const std::string& dir, const std::string& dom, bool compress,
                         int incs = 3, uint64_t max_request = 1 << 20) {
    boost::filesystem::create_directories(dir);
    VnbFixture fx{dir, {}};
    std::map<std::string, VnbDisk> disks;
    disks["vda"].Resize(4 * kMiB);
    disks["vdb"].Resize(2 * kMiB);
    disks["vda"].Write(0, RandomBytes(3 * kMiB / 2, 1));  // 1.5 MiB: two lz4 frames
    disks["vda"].Write(3 * kMiB, RandomBytes(64 << 10, 2));
    disks["vdb"].Write(kMiB, RandomBytes(128 << 10, 3));
    disks["vda"].changed.clear();
    disks["vdb"].changed.clear();
    std::string cpt = "[";
    for (int i = 0; i <= incs; ++i) {
      if (i > 0) {
        disks["vda"].Write(static_cast<uint64_t>(i) * 64 * 1024 * 3, RandomBytes(64 << 10, 10 + i));
        if (i != 1) disks["vdb"].Write(static_cast<uint64_t>(i) * 4096, RandomBytes(8192, 20 + i));
        if (i == 2) {
          disks["vda"].Resize(5 * kMiB);
          disks["vda"].Write(4 * kMiB + 512, RandomBytes(4096, 30));
        }
      }
      std::map<std::string, std::string> t;
      for (auto& [name, d] : disks) {
        const std::string file = i == 0 ? name + ".full.data" : name + ".inc." + CpName(i) + ".data";
        WriteFile(dir + "/" + file,
                  VnbStreamBytes(d.image.size(), CpName(i), i == 0 ? "" : CpName(i - 1), name,
                                 d.Take(i == 0), compress, max_request));
        t[name] = d.image;
      }
      fx.truth.push_back(t);
      WriteFile(dir + "/vmconfig." + CpName(i) + ".xml",
                "<domain type='kvm'>\n  <name>" + dom + "</name>\n  <!-- " + CpName(i) + " -->\n</domain>\n");
      cpt += (i ? ", \"" : "\"") + CpName(i) + "\"";
    }
    WriteFile(dir + "/" + dom + ".cpt", cpt + "]");
    return fx;
  }
};

std::string ReadView(const Repository& repo, const std::string& g, const std::string& cp,
                     const std::string& disk, Status* st) {
  auto v = repo.OpenView(g, cp, disk);
  if (!v.ok()) {
    *st = v.status();
    return "";
  }
  std::string out(v.value()->size(), '\0');
  *st = v.value()->Read(0, out.size(), out.data());
  return out;
}

void ExpectViews(const Repository& repo, const std::string& g, const VnbFixture& fx, size_t upto) {
  for (size_t i = 0; i < upto; ++i)
    for (const auto& [disk, image] : fx.truth[i]) {
      Status st;
      const std::string got = ReadView(repo, g, CpName(i), disk, &st);
      ASSERT_TRUE(st.ok()) << CpName(i) << "/" << disk << ": " << st.ToString();
      EXPECT_EQ(got.size(), image.size()) << CpName(i) << "/" << disk;
      EXPECT_TRUE(got == image) << CpName(i) << "/" << disk << " differs from its truth";
    }
}

class VnbCatalogTest : public ::testing::TestWithParam<bool> {};

TEST_P(VnbCatalogTest, EveryCheckpointReadsAsItsTruth) {
  TempDir tmp;
  auto fx = VnbFixture::Make(tmp / "vnb", "vm-one", GetParam());
  auto repo = Repository::Open(fx.dir);
  ASSERT_TRUE(repo.ok()) << repo.status().ToString();
  ASSERT_NE(repo.value()->foreign(), nullptr);
  auto groups = repo.value()->ListGroups();
  ASSERT_TRUE(groups.ok());
  EXPECT_EQ(groups.value(), std::vector<std::string>{"vm-one"});
  auto g = repo.value()->LoadGroup("vm-one");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  ASSERT_EQ(g->checkpoints.size(), 4u);
  EXPECT_TRUE(g->refused.empty());
  for (size_t i = 0; i < 4; ++i) {
    const Checkpoint& cp = g->checkpoints[i];
    EXPECT_EQ(cp.name, CpName(i));
    EXPECT_EQ(cp.parent, i ? CpName(i - 1) : "");
    ASSERT_EQ(cp.disks.size(), 2u);
    EXPECT_EQ(cp.disks[0].kind, i ? DeltaKind::kIncremental : DeltaKind::kFull);
    ASSERT_NE(cp.FindConfig("domain.xml"), nullptr);
    EXPECT_NE(cp.FindConfig("domain.xml")->content.find("<!-- " + CpName(i) + " -->"), std::string::npos);
  }
  // The disk grown at the second incremental: each checkpoint has its size.
  EXPECT_EQ(g->checkpoints[1].FindDisk("vda")->virtual_size, 4 * kMiB);
  EXPECT_EQ(g->checkpoints[2].FindDisk("vda")->virtual_size, 5 * kMiB);
  ExpectViews(*repo.value(), "vm-one", fx, 4);
  auto report = Check(*repo.value(), "", "", /*deep=*/true);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->problems.empty()) << report->problems[0].message;
  EXPECT_GT(report->blocks_verified, 0u);
}

// What a mount splices (Layer::RawSpan) is what ReadBlock reads: every
// data byte of an uncompressed stream, including an extent that ends inside
// its last block; nothing of an lz4 stream (decoded, checksummed).
TEST_P(VnbCatalogTest, RawSpansAreReadBlocksBytesOnlyUncompressed) {
  TempDir tmp;
  auto fx = VnbFixture::Make(tmp / "vnb", "vm-one", GetParam());
  auto repo = Repository::Open(fx.dir);
  ASSERT_TRUE(repo.ok()) << repo.status().ToString();
  for (const char* disk : {"vda", "vdb"}) {
    auto view = repo.value()->OpenView("vm-one", CpName(3), disk);
    ASSERT_TRUE(view.ok()) << view.status().ToString();
    const testing::RawSpanCount c = testing::ExpectRawSpansMatchReadBlock(*view.value());
    if (GetParam()) {
      EXPECT_EQ(c.spans, 0u) << disk << ": an lz4 stream's bytes given as spans";
    } else {
      EXPECT_GT(c.spans, 0u) << disk;
    }
    EXPECT_GT(c.reads + c.spans, 0u) << disk;
  }
}

TEST_P(VnbCatalogTest, SourceIsReadOnlyAndUntouched) {
  TempDir tmp;
  auto fx = VnbFixture::Make(tmp / "vnb", "vm1", GetParam());
  auto before = boost::filesystem::directory_iterator(fx.dir);
  size_t files = std::distance(before, boost::filesystem::directory_iterator());
  auto repo = Repository::Open(fx.dir);
  ASSERT_TRUE(repo.ok());
  auto lock = repo.value()->Lock("backup");
  ASSERT_FALSE(lock.ok());
  EXPECT_NE(lock.status().message().find("virtnbdbackup directory"), std::string::npos)
      << lock.status().message();
  ExpectViews(*repo.value(), "vm1", fx, 4);
  EXPECT_EQ(std::distance(boost::filesystem::directory_iterator(fx.dir),
                          boost::filesystem::directory_iterator()),
            static_cast<long>(files));
}

TEST_P(VnbCatalogTest, DirectoryOfDirectoriesIsOneGroupEach) {
  TempDir tmp;
  auto a = VnbFixture::Make(tmp / "all/a", "web", GetParam(), 1);
  auto b = VnbFixture::Make(tmp / "all/b", "db", GetParam(), 2);
  boost::filesystem::create_directories(tmp / "all/empty");
  auto repo = Repository::Open(tmp / "all");
  ASSERT_TRUE(repo.ok()) << repo.status().ToString();
  auto groups = repo.value()->ListGroups();
  ASSERT_TRUE(groups.ok());
  EXPECT_EQ(groups.value(), (std::vector<std::string>{"db", "web"}));
  ExpectViews(*repo.value(), "web", a, 2);
  ExpectViews(*repo.value(), "db", b, 3);
}

INSTANTIATE_TEST_SUITE_P(Lz4, VnbCatalogTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "lz4" : "plain"; });

// The refused checkpoint, or null.
const RefusedCheckpoint* Refused(const GroupState& g, const std::string& name) {
  return g.FindRefused(name);
}

TEST(VnbDamage, MissingIncrementalRefusesItAndLaterOnes) {
  TempDir tmp;
  auto fx = VnbFixture::Make(tmp / "vnb", "vm1", false);
  boost::filesystem::remove(fx.dir + "/vda.inc.virtnbdbackup.2.data");
  auto repo = Repository::Open(fx.dir);
  ASSERT_TRUE(repo.ok());
  auto g = repo.value()->LoadGroup("vm1");
  ASSERT_TRUE(g.ok());
  ASSERT_EQ(g->checkpoints.size(), 2u);
  const RefusedCheckpoint* r2 = Refused(g.value(), CpName(2));
  ASSERT_NE(r2, nullptr);
  EXPECT_NE(r2->reason.find("vda.inc.virtnbdbackup.2.data: missing"), std::string::npos) << r2->reason;
  const RefusedCheckpoint* r3 = Refused(g.value(), CpName(3));
  ASSERT_NE(r3, nullptr);
  EXPECT_NE(r3->reason.find("refused checkpoint virtnbdbackup.2"), std::string::npos) << r3->reason;
  ExpectViews(*repo.value(), "vm1", fx, 2);
  auto report = Check(*repo.value(), "", "", false);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->problems.size(), 2u);
}

TEST(VnbDamage, TruncatedStreamIsRefusedNamingFileAndOffset) {
  for (bool compress : {false, true}) {
    TempDir tmp;
    auto fx = VnbFixture::Make(tmp / "vnb", "vm1", compress);
    const std::string f = fx.dir + "/vda.inc.virtnbdbackup.3.data";
    const uint64_t size = boost::filesystem::file_size(f);
    boost::filesystem::resize_file(f, size - 300);  // inside a payload or the trailer
    auto repo = Repository::Open(fx.dir);
    ASSERT_TRUE(repo.ok());
    auto g = repo.value()->LoadGroup("vm1");
    ASSERT_TRUE(g.ok());
    EXPECT_EQ(g->checkpoints.size(), 3u);
    const RefusedCheckpoint* r = Refused(g.value(), CpName(3));
    ASSERT_NE(r, nullptr);
    EXPECT_NE(r->reason.find(f + " at offset "), std::string::npos) << r->reason;
    ExpectViews(*repo.value(), "vm1", fx, 3);
  }
}

TEST(VnbDamage, MalformedHeaderAndForeignParent) {
  TempDir tmp;
  auto fx = VnbFixture::Make(tmp / "vnb", "vm1", false);
  // A data frame header of the second incremental of vdb, broken.
  const std::string f = fx.dir + "/vdb.inc.virtnbdbackup.2.data";
  std::string bytes = testing::ReadFile(f);
  const size_t at = bytes.find("data 0");
  ASSERT_NE(at, std::string::npos);
  bytes[at + 10] = 'x';
  WriteFile(f, bytes);
  // The third incremental of vda names another parent.
  const std::string g3 = fx.dir + "/vda.inc.virtnbdbackup.3.data";
  std::string b3 = testing::ReadFile(g3);
  const size_t p = b3.find("\"parentCheckpoint\": \"virtnbdbackup.2\"");
  ASSERT_NE(p, std::string::npos);
  b3.replace(p, std::string("\"parentCheckpoint\": \"virtnbdbackup.2\"").size(),
             "\"parentCheckpoint\": \"virtnbdbackup.7\"");
  WriteFile(g3, b3);
  auto repo = Repository::Open(fx.dir);
  ASSERT_TRUE(repo.ok());
  auto g = repo.value()->LoadGroup("vm1");
  ASSERT_TRUE(g.ok());
  const RefusedCheckpoint* r2 = Refused(g.value(), CpName(2));
  ASSERT_NE(r2, nullptr);
  EXPECT_NE(r2->reason.find(f + " at offset " + std::to_string(at) + ": malformed frame header"),
            std::string::npos) << r2->reason;
  // Refused for its own reason would need checkpoint 2; its chain is named.
  ASSERT_NE(Refused(g.value(), CpName(3)), nullptr);
  ExpectViews(*repo.value(), "vm1", fx, 2);

  // Alone, the wrong parent is named.
  TempDir tmp2;
  auto fx2 = VnbFixture::Make(tmp2 / "vnb", "vm1", false);
  WriteFile(fx2.dir + "/vda.inc.virtnbdbackup.3.data", b3);
  auto repo2 = Repository::Open(fx2.dir);
  ASSERT_TRUE(repo2.ok());
  auto g2 = repo2.value()->LoadGroup("vm1");
  ASSERT_TRUE(g2.ok());
  const RefusedCheckpoint* r3 = Refused(g2.value(), CpName(3));
  ASSERT_NE(r3, nullptr);
  EXPECT_NE(r3->reason.find("parent 'virtnbdbackup.7'"), std::string::npos) << r3->reason;
  EXPECT_EQ(g2->checkpoints.size(), 3u);
}

TEST(VnbDamage, DamagedLz4FrameIsAnErrorNeverWrongBytes) {
  TempDir tmp;
  auto fx = VnbFixture::Make(tmp / "vnb", "vm1", true);
  const std::string f = fx.dir + "/vda.full.data";
  std::string bytes = testing::ReadFile(f);
  const size_t at = bytes.find("data 0000000000000000");
  ASSERT_NE(at, std::string::npos);
  bytes[at + 40 + 5000] ^= 0x40;  // inside the first lz4 frame (disk bytes [0, 1 MiB))
  WriteFile(f, bytes);
  auto repo = Repository::Open(fx.dir);
  ASSERT_TRUE(repo.ok());
  auto g = repo.value()->LoadGroup("vm1");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->checkpoints.size(), 4u);  // the structure is intact
  auto v = repo.value()->OpenView("vm1", CpName(0), "vda");
  ASSERT_TRUE(v.ok());
  std::string buf(4096, '\0');
  Status st = v.value()->Read(4096, buf.size(), buf.data());
  EXPECT_EQ(st.code(), Status::Code::kCorruption);
  EXPECT_NE(st.message().find(f), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("lz4"), std::string::npos) << st.message();
  // Other frames still read, and right.
  ASSERT_TRUE(v.value()->Read(kMiB + 4096, buf.size(), buf.data()).ok());
  EXPECT_EQ(buf, fx.truth[0]["vda"].substr(kMiB + 4096, 4096));
  auto report = Check(*repo.value(), "", "", /*deep=*/true);
  ASSERT_TRUE(report.ok());
  ASSERT_FALSE(report->problems.empty());
  EXPECT_EQ(report->problems[0].file, f);
}

TEST(VnbDamage, ContentChecksumIsCheckedByDeepCheck) {
  // Reads check each block's checksum (which fixes its decoded bytes) and
  // skip the frame's content checksum; `check --deep` checks both. A frame
  // whose stored content checksum alone is damaged still reads right, and
  // the deep check reports it.
  TempDir tmp;
  auto fx = VnbFixture::Make(tmp / "vnb", "vm1", true);
  const std::string f = fx.dir + "/vda.full.data";
  std::string bytes = testing::ReadFile(f);
  const size_t at = bytes.find("data 0000000000000000") + 40;
  Lz4FrameChecker c;
  size_t end = at;
  while (!c.ended() && end < bytes.size()) ASSERT_TRUE(c.Feed(&bytes[end++], 1, "f").ok());
  ASSERT_TRUE(c.ended());
  ASSERT_TRUE(c.content_checksum().has_value());
  bytes[end - 1] ^= 0x01;  // the frame's last byte: its content checksum
  WriteFile(f, bytes);
  auto repo = Repository::Open(fx.dir);
  ASSERT_TRUE(repo.ok());
  auto v = repo.value()->OpenView("vm1", CpName(0), "vda");
  ASSERT_TRUE(v.ok());
  std::string buf(kMiB, '\0');
  ASSERT_TRUE(v.value()->Read(0, buf.size(), buf.data()).ok());
  EXPECT_EQ(buf, fx.truth[0]["vda"].substr(0, kMiB));
  auto report = Check(*repo.value(), "", "", /*deep=*/true);
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->problems.size(), 1u);
  EXPECT_EQ(report->problems[0].file, f);
  EXPECT_NE(report->problems[0].message.find("content checksum"), std::string::npos)
      << report->problems[0].message;
  auto shallow = Check(*repo.value(), "", "", /*deep=*/false);
  ASSERT_TRUE(shallow.ok());
  EXPECT_TRUE(shallow->problems.empty());
}

TEST(VnbStream, FramesWithoutStoredSizeAndBigRequests) {
  // python-lz4 without store_size, and 32 MiB-style multi-frame extents
  // (here 256 KiB requests: several frames per data frame).
  TempDir tmp;
  VnbDisk d;
  d.Resize(3 * kMiB);
  d.Write(512, RandomBytes(kMiB + 4096, 7));
  WriteFile(tmp / "s.data", VnbStreamBytes(d.image.size(), CpName(0), "", "vda", d.Take(true),
                                          true, 256 << 10, /*store_size=*/false));
  auto f = Env::Default()->NewRandomAccessFile(tmp / "s.data");
  ASSERT_TRUE(f.ok());
  auto layer = OpenVnbLayer(std::move(f).value(), NextLayerId());
  ASSERT_TRUE(layer.ok()) << layer.status().ToString();
  auto view = View::Create({{layer.value(), "c"}}, "t");
  ASSERT_TRUE(view.ok());
  std::string out(d.image.size(), '\0');
  ASSERT_TRUE(view.value()->Read(0, out.size(), out.data()).ok());
  EXPECT_TRUE(out == d.image);
}

// Counts the reads a parse makes of a file, and what it asks the kernel for.
class CountingFile final : public RandomAccessFile {
 public:
  explicit CountingFile(const RandomAccessFile& f) : f_(f) {}
  Status ReadAt(uint64_t off, size_t n, void* out) const override {
    ++reads;
    bytes += n;
    return f_.ReadAt(off, n, out);
  }
  void WillNeed(uint64_t off, uint64_t n) const override {
    ++asks;
    for (uint64_t p = off / 4096; p < (off + n + 4095) / 4096; ++p) asked.insert(p);
  }
  uint64_t Size() const override { return f_.Size(); }
  const std::string& Path() const override { return f_.Path(); }
  mutable int reads = 0, asks = 0;
  mutable uint64_t bytes = 0;
  mutable std::set<uint64_t> asked;  // 4 KiB pages

 private:
  const RandomAccessFile& f_;
};

TEST(VnbStream, SmallFramesAreAskedAheadAndNoPayloadIsRead) {
  // An incremental of 300 extents of 16 KiB, 64 KiB apart (plain and lz4):
  // the parse reads about a page per header, and asks the kernel for the
  // whole file ahead of it in a few large pieces (cold, one random disk
  // read per header was the cost), without copying payloads (warm).
  TempDir tmp;
  for (bool compress : {false, true}) {
    SCOPED_TRACE(compress ? "lz4" : "plain");
    VnbDisk d;
    d.Resize(300 * 64 * 1024);
    (void)d.Take(true);
    for (uint64_t i = 0; i < 300; ++i) d.Write(i * 64 * 1024, RandomBytes(16 << 10, 100 + i));
    const std::vector<testing::VnbFrameSpec> frames = d.Take(false);
    ASSERT_EQ(frames.size(), 300u);
    WriteFile(tmp / "s.data",
              VnbStreamBytes(d.image.size(), CpName(1), CpName(0), "vda", frames, compress));
    auto f = Env::Default()->NewRandomAccessFile(tmp / "s.data");
    ASSERT_TRUE(f.ok());
    CountingFile counted(*f.value());
    auto s = ParseSparseStream(counted);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    ASSERT_EQ(s->extents.size(), 300u);
    for (size_t i = 0; i < 300; ++i) {
      EXPECT_EQ(s->extents[i].offset, i * 64 * 1024);
      EXPECT_EQ(s->extents[i].length, 16u << 10);
    }
    const uint64_t size = f.value()->Size(), pages = (size + 4095) / 4096;
    EXPECT_GE(counted.asked.size(), pages * 9 / 10) << size << " bytes";
    EXPECT_LE(counted.asks, static_cast<int>(size / (512 << 10)) + 4);
    EXPECT_LE(counted.reads, 2 * 300 + 8);
    EXPECT_LE(counted.bytes, 2 * 300 * 4096 + (64 << 10)) << size << " bytes";
  }
  // A full of 40 extents of 1 MiB, 2 MiB apart: the payloads it skips are
  // neither read nor asked for, only a page or two around each header.
  for (bool compress : {false, true}) {
    SCOPED_TRACE(compress ? "full, lz4" : "full, plain");
    VnbDisk d;
    for (uint64_t i = 0; i < 40; ++i) d.Write(i * 2 * kMiB, RandomBytes(kMiB, 500 + i));
    WriteFile(tmp / "f.data", VnbStreamBytes(d.image.size(), CpName(0), "", "vda", d.Take(true),
                                             compress, 32 * kMiB));
    auto f = Env::Default()->NewRandomAccessFile(tmp / "f.data");
    ASSERT_TRUE(f.ok());
    CountingFile counted(*f.value());
    auto s = ParseSparseStream(counted);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_EQ(s->extents.size(), 79u);  // 40 data and 39 zero frames
    EXPECT_LE(counted.bytes, 80 * (8u << 10) + (64 << 10)) << f.value()->Size() << " bytes";
    EXPECT_LE(counted.asked.size(), (kMiB + (64 << 10)) / 4096);  // its start only
  }
}

std::string Meta(const std::string& json) {
  return testing::VnbHeader("meta", 0, json.size()) + json + "\r\n";
}

TEST(VnbStream, RefusesWhatIsNotAStream) {
  TempDir tmp;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "truncated stream"},
      {"meta 0000000000000000 00000000000000zz\r\n", "malformed frame header"},
      {VnbStreamBytes(kMiB, "c", "", "vda", {{0, std::string(4096, 'a'), 0}}, false).substr(0, 150),
       "truncated stream"},
      {Meta("{}") + testing::VnbHeader("stop", 0, 0), "no virtualSize"},
      {Meta("{\"virtualSize\": 4096}") +
           testing::VnbHeader("data", 0, 8192) + std::string(8192, 'x') + "\r\n" +
           testing::VnbHeader("stop", 0, 0),
       "outside the disk"},
      {Meta("{\"virtualSize\": 8192}") +
           testing::VnbHeader("zero", 4096, 4096) + testing::VnbHeader("zero", 0, 4096) +
           testing::VnbHeader("stop", 0, 0),
       "precedes the previous one"},
      {Meta("{\"virtualSize\": 8192}") +
           testing::VnbHeader("stop", 0, 0) + "junk",
       "bytes after the stop frame"},
  };
  for (const auto& [bytes, want] : cases) {
    WriteFile(tmp / "x.data", bytes);
    auto f = Env::Default()->NewRandomAccessFile(tmp / "x.data");
    ASSERT_TRUE(f.ok());
    auto s = ParseSparseStream(*f.value());
    ASSERT_FALSE(s.ok()) << want;
    EXPECT_NE(s.status().message().find(want), std::string::npos) << s.status().message();
    EXPECT_NE(s.status().message().find(tmp / "x.data"), std::string::npos) << s.status().message();
  }
}

TEST(VnbCatalog, NotASourceSaysWhatItIsNot) {
  TempDir tmp;
  WriteFile(tmp / "notes.txt", "hello");
  auto repo = Repository::Open(tmp.path());
  ASSERT_FALSE(repo.ok());
  EXPECT_NE(repo.status().message().find("not a chainfs repository"), std::string::npos)
      << repo.status().message();
}

TEST(VnbCatalog, DifferentialIsACheckpointAfterItsParent) {
  TempDir tmp;
  const std::string dir = tmp / "vnb";
  auto fx = VnbFixture::Make(dir, "vm1", true, 1);
  // A differential since virtnbdbackup.1, then more changes.
  VnbDisk a, b;
  a.image = fx.truth[1]["vda"];
  b.image = fx.truth[1]["vdb"];
  a.Write(2 * kMiB, RandomBytes(65536, 99));
  WriteFile(dir + "/vda.diff.1764756000.data",
            VnbStreamBytes(a.image.size(), CpName(2), CpName(1), "vda", a.Take(false), true));
  WriteFile(dir + "/vdb.diff.1764756001.data",
            VnbStreamBytes(b.image.size(), CpName(2), CpName(1), "vdb", b.Take(false), true));
  auto repo = Repository::Open(dir);
  ASSERT_TRUE(repo.ok());
  auto g = repo.value()->LoadGroup("vm1");
  ASSERT_TRUE(g.ok());
  ASSERT_EQ(g->checkpoints.size(), 3u);
  EXPECT_TRUE(g->refused.empty()) << g->refused[0].reason;
  EXPECT_EQ(g->checkpoints[2].name, "diff.1764756000");
  EXPECT_EQ(g->checkpoints[2].parent, CpName(1));
  EXPECT_EQ(g->checkpoints[2].disks[0].kind, DeltaKind::kDifferential);
  Status st;
  EXPECT_TRUE(ReadView(*repo.value(), "vm1", "diff.1764756000", "vda", &st) == a.image);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(ReadView(*repo.value(), "vm1", "diff.1764756000", "vdb", &st) == b.image);
}

}  // namespace
}  // namespace chainfs

namespace chainfs {
namespace {

// Every checkpoint of the source, imported: the repository's views equal the
// source's truth; a second run skips everything; an import interrupted
// (here: a source that had fewer incrementals) resumes.
TEST(VnbImport, ImportsVerifiesAndResumes) {
  for (bool compress : {false, true}) {
    TempDir tmp;
    auto fx = VnbFixture::Make(tmp / "vnb", "vm1", compress, 3);
    // First, a copy of the directory with only the full and one incremental.
    const std::string early = tmp / "early";
    boost::filesystem::create_directories(early);
    for (const char* f : {"vda.full.data", "vdb.full.data", "vda.inc.virtnbdbackup.1.data",
                          "vdb.inc.virtnbdbackup.1.data", "vmconfig.virtnbdbackup.0.xml"})
      boost::filesystem::copy_file(fx.dir + "/" + f, early + "/" + f);
    WriteFile(early + "/vm1.cpt", "[\"virtnbdbackup.0\", \"virtnbdbackup.1\"]");
    RepoConfig cfg;
    ASSERT_TRUE(Repository::Init(tmp / "repo", cfg).ok());
    auto dst = Repository::Open(tmp / "repo");
    ASSERT_TRUE(dst.ok());
    {
      auto src = Repository::Open(early);
      ASSERT_TRUE(src.ok());
      auto r = Import(*src.value(), *dst.value(), {});
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      ASSERT_EQ(r->checkpoints.size(), 2u);
      EXPECT_FALSE(r->checkpoints[0].skipped);
      EXPECT_GT(r->checkpoints[1].bytes_verified, 0u);
    }
    auto src = Repository::Open(fx.dir);
    ASSERT_TRUE(src.ok());
    auto r = Import(*src.value(), *dst.value(), {});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->checkpoints.size(), 4u);
    EXPECT_TRUE(r->checkpoints[0].skipped && r->checkpoints[1].skipped);
    EXPECT_FALSE(r->checkpoints[2].skipped || r->checkpoints[3].skipped);
    // Incrementals read only what their stream holds.
    EXPECT_LT(r->checkpoints[3].bytes_read, 1u << 20);
    ExpectViews(*dst.value(), "vm1", fx, 4);
    auto g = dst.value()->LoadGroup("vm1");
    ASSERT_TRUE(g.ok());
    EXPECT_EQ(g->checkpoints[3].disks[0].kind, DeltaKind::kIncremental);
    ASSERT_NE(g->checkpoints[2].FindConfig("domain.xml"), nullptr);
    auto again = Import(*src.value(), *dst.value(), {});
    ASSERT_TRUE(again.ok());
    for (const auto& c : again->checkpoints) EXPECT_TRUE(c.skipped) << c.name;
    auto report = Check(*dst.value(), "", "", true);
    ASSERT_TRUE(report.ok());
    EXPECT_TRUE(report->problems.empty());
  }
}

TEST(VnbImport, StopsAtARefusedCheckpointNamingIt) {
  TempDir tmp;
  auto fx = VnbFixture::Make(tmp / "vnb", "vm1", false, 3);
  boost::filesystem::remove(fx.dir + "/vdb.inc.virtnbdbackup.2.data");
  ASSERT_TRUE(Repository::Init(tmp / "repo", RepoConfig{}).ok());
  auto dst = Repository::Open(tmp / "repo");
  auto src = Repository::Open(fx.dir);
  ASSERT_TRUE(dst.ok() && src.ok());
  auto r = Import(*src.value(), *dst.value(), {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("imported 2 checkpoints"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("vdb.inc.virtnbdbackup.2.data: missing"), std::string::npos)
      << r.status().message();
  ExpectViews(*dst.value(), "vm1", fx, 2);
  // Into a foreign source: refused.
  auto into = Import(*dst.value(), *src.value(), {});
  ASSERT_FALSE(into.ok());
}

}  // namespace
}  // namespace chainfs

namespace chainfs {
namespace {

// virtnbdbackup 1.9.4x's FILE.chksum (zlib adler32 of the file, decimal):
// check --deep verifies it where it is there.
TEST(VnbChecksum, DeepCheckVerifiesChksumFiles) {
  TempDir tmp;
  auto fx = VnbFixture::Make(tmp / "vnb", "vm1", false, 1);
  // adler32 as zlib computes it, by its definition.
  auto adler = [](const std::string& s) {
    uint64_t a = 1, b = 0;
    for (unsigned char c : s) {
      a = (a + c) % 65521;
      b = (b + a) % 65521;
    }
    return b << 16 | a;
  };
  const std::string f = fx.dir + "/vda.inc.virtnbdbackup.1.data";
  WriteFile(f + ".chksum", std::to_string(adler(testing::ReadFile(f))));
  WriteFile(fx.dir + "/vdb.full.data.chksum", "12345");
  auto repo = Repository::Open(fx.dir);
  ASSERT_TRUE(repo.ok());
  auto report = Check(*repo.value(), "", "", true);
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->problems.size(), 1u);
  EXPECT_EQ(report->problems[0].file, fx.dir + "/vdb.full.data");
  EXPECT_NE(report->problems[0].message.find("differs from 12345"), std::string::npos)
      << report->problems[0].message;
  auto shallow = Check(*repo.value(), "", "", false);
  ASSERT_TRUE(shallow.ok());
  EXPECT_TRUE(shallow->problems.empty());
}

TEST(VnbCatalog, CopyBackupIsOneCheckpoint) {
  TempDir tmp;
  const std::string dir = tmp / "copy";
  boost::filesystem::create_directories(dir);
  VnbDisk d;
  d.Resize(kMiB);
  d.Write(4096, RandomBytes(8192, 3));
  WriteFile(dir + "/sda.copy.data",
            VnbStreamBytes(d.image.size(), "virtnbdbackup.0", "", "sda", d.Take(true), true));
  auto repo = Repository::Open(dir);
  ASSERT_TRUE(repo.ok()) << repo.status().ToString();
  auto g = repo.value()->LoadGroup("copy");  // no .cpt, no vmconfig: the directory's name
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  ASSERT_EQ(g->checkpoints.size(), 1u);
  Status st;
  EXPECT_TRUE(ReadView(*repo.value(), "copy", g->checkpoints[0].name, "sda", &st) == d.image);
  EXPECT_TRUE(st.ok());
}

}  // namespace
}  // namespace chainfs

namespace chainfs {
namespace {

// The number of entries a layer's data extents span (one past the last).
uint64_t DataEntries(const Layer& layer) {
  uint64_t entries = 0;
  layer.ForEachExtent([&](const LayerExtent& e) {
    if (e.kind == LayerExtent::Kind::kData)
      entries = std::max(entries, e.first_entry + (e.length + layer.block_size() - 1) / layer.block_size());
  });
  return entries;
}

// Frames announced by WillNeed are decoded on threads of their own, which
// hold their layer while they run; the repository (its file cache, through
// which the layer reads) waits for them before it goes. Under
// AddressSanitizer a use after free would fail this.
TEST(VnbDecodeAhead, RepositoryOutlivesItsBackgroundDecoding) {
  TempDir tmp;
  const std::string dir = tmp / "big";
  boost::filesystem::create_directories(dir);
  VnbDisk d;
  d.Resize(24 * kMiB);
  d.Write(0, RandomBytes(20 * kMiB, 11));
  WriteFile(dir + "/vda.full.data",
            VnbStreamBytes(d.image.size(), "virtnbdbackup.0", "", "vda", d.Take(true), true,
                           4 * kMiB));  // 5 frames of 4 MiB (decoded ahead: >= 4 MiB)
  for (int round = 0; round < 3; ++round) {
    auto repo = Repository::Open(dir);
    ASSERT_TRUE(repo.ok());
    auto v = repo.value()->OpenView("big", "virtnbdbackup.0", "vda");
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    v.value()->WillNeed(0, d.image.size());
    // Gone at once, with the frames still being decoded.
  }
  // And what is decoded ahead is right.
  auto repo = Repository::Open(dir);
  ASSERT_TRUE(repo.ok());
  auto v = repo.value()->OpenView("big", "virtnbdbackup.0", "vda");
  ASSERT_TRUE(v.ok());
  v.value()->WillNeed(0, d.image.size());
  std::string out(d.image.size(), '\0');
  ASSERT_TRUE(v.value()->Read(0, out.size(), out.data()).ok());
  EXPECT_TRUE(out == d.image);
}

// An uncompressed stream keeps each extent as a data frame of its own: a
// window's hint that spans several frames fetches all of them, not only the
// first (each byte a cold sequential read needs is asked for ahead).
TEST(VnbWillNeed, AHintOverFramesThatFollowEachOtherFetchesThemAll) {
  TempDir tmp;
  const std::string path = tmp / "vda.full.data";
  std::vector<testing::VnbFrameSpec> frames;
  std::string image;
  for (int i = 0; i < 6; ++i) {
    frames.push_back({static_cast<uint64_t>(i) * kMiB, RandomBytes(kMiB, 40 + i), 0});
    image += frames.back().data;
  }
  WriteFile(path, testing::VnbStreamBytes(image.size(), "virtnbdbackup.0", "", "vda", frames, false));
  auto f = Env::Default()->NewRandomAccessFile(path);
  ASSERT_TRUE(f.ok());
  f.value()->AdviseRandom();  // the kernel's own readahead must not bring in what the hint misses
  auto layer = OpenVnbLayer(std::move(f).value(), NextLayerId());
  ASSERT_TRUE(layer.ok()) << layer.status().ToString();
  const uint64_t entries = DataEntries(*layer.value());
  ASSERT_GT(entries, 0u);
  ASSERT_TRUE(testing::EvictFromPageCache(path)) << "the page cache of " << path << " cannot be dropped";
  layer.value()->WillNeedRuns({{0, entries}});
  // The reads run in the background: wait for them (20 s for a loaded
  // machine). The kernel's readahead is best effort and may skip a few pages
  // of a busy machine (CI once saw 6,047 of 6,144 KiB), so each sixth of the
  // file must be mostly resident; a hint that fetched only the first frame
  // leaves five sixths bare.
  const uint64_t sixth = boost::filesystem::file_size(path) / 6;
  auto least = [&] {
    uint64_t low = UINT64_MAX;
    for (uint64_t k = 0; k < 6; ++k) low = std::min(low, testing::ResidentBytes(path, k * sixth, sixth));
    return low;
  };
  uint64_t resident = 0;
  for (int i = 0; i < 200 && (resident = least()) < sixth * 3 / 4; ++i) ::usleep(100 * 1000);
  EXPECT_GE(resident, sixth * 3 / 4) << "six frames of 1 MiB hinted, not all fetched: the least resident sixth of "
                                     << sixth << " bytes";
  for (uint64_t e = 0; e < entries; ++e) {
    std::string block(layer.value()->block_size(), '\0');
    ASSERT_TRUE(layer.value()->ReadBlock(e, block.data()).ok());
    const uint64_t at = e * block.size();
    EXPECT_EQ(block.substr(0, std::min<uint64_t>(block.size(), image.size() - at)),
              image.substr(at, block.size())) << "entry " << e;
  }
}

// Decoded frames differ in size (one per extent, cut at 32 MiB): a spare
// buffer serves any frame it can hold, or every frame of a full stream was a
// fresh mapping, faulted in and zeroed page by page by the kernel. Buffers
// are huge-page mappings: capacities are multiples of 2 MiB.
TEST(VnbFrameBuffer, ASpareServesAnyFrameItHoldsAndTheLargestAreKept) {
  // Take whatever spares earlier tests left.
  std::vector<std::unique_ptr<FrameBuffer>> held;
  for (size_t i = 0; i < FrameBuffer::kSpare; ++i) held.push_back(std::make_unique<FrameBuffer>(1));
  const char* p = nullptr;
  {
    FrameBuffer a(5 * kMiB);
    p = a.data();
    EXPECT_EQ(a.capacity(), 6 * kMiB);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (2 * kMiB), 0u);  // huge-page aligned
    std::memset(a.data(), 0x5a, a.capacity());                   // all of it is writable
  }
  {
    FrameBuffer b(3 * kMiB + 17);  // smaller, odd size: a's memory
    EXPECT_EQ(b.data(), p);
    EXPECT_EQ(b.size(), 3 * kMiB + 17);
    EXPECT_EQ(b.capacity(), 6 * kMiB);
  }
  {
    FrameBuffer c(6 * kMiB + 1);  // larger than any spare: new
    EXPECT_NE(c.data(), p);
    EXPECT_EQ(c.capacity(), 8 * kMiB);
  }
  // Spares now: 6 and 8 MiB. Four more released: the kSpare largest stay.
  {
    FrameBuffer d(1 * kMiB), e(3 * kMiB), f(9 * kMiB), g(11 * kMiB);
  }
  std::vector<size_t> caps;
  for (size_t i = 0; i < FrameBuffer::kSpare; ++i) {
    held.push_back(std::make_unique<FrameBuffer>(1));  // the smallest spare first
    caps.push_back(held.back()->capacity());
  }
  EXPECT_EQ(caps, (std::vector<size_t>{8 * kMiB, 10 * kMiB, 12 * kMiB}));
  FrameBuffer fresh(1);  // none left: a new buffer of one huge page
  EXPECT_EQ(fresh.capacity(), 2 * kMiB);
}

// An incremental's extents are small lz4 frames, decoded by whoever reads
// them; readahead's hint fetches their bytes from disk ahead, as it does for
// an uncompressed stream, or each read waited for its own disk read.
TEST(VnbDecodeAhead, WillNeedFetchesAnIncrementalsSmallFrames) {
  TempDir tmp;
  VnbDisk d;
  d.Resize(16 * kMiB);
  (void)d.Take(true);
  for (uint64_t k = 0; k < 40; ++k) d.Write(k * 384 * 1024, RandomBytes(64 << 10, 100 + k));
  const std::string path = tmp / "vda.inc.data";
  WriteFile(path, VnbStreamBytes(d.image.size(), CpName(1), CpName(0), "vda", d.Take(false), true,
                                 32 * kMiB));
  auto f = Env::Default()->NewRandomAccessFile(path);
  ASSERT_TRUE(f.ok());
  auto layer = OpenVnbLayer(std::move(f).value(), NextLayerId());  // reads every frame header
  ASSERT_TRUE(layer.ok()) << layer.status().ToString();
  auto view = View::Create({{layer.value(), "c"}}, "t");
  ASSERT_TRUE(view.ok());
  ASSERT_TRUE(testing::EvictFromPageCache(path)) << "the page cache of " << path << " cannot be dropped";
  view.value()->WillNeed(0, d.image.size());
  // The reads run in the background: wait for them (20 s for a loaded machine).
  const uint64_t size = boost::filesystem::file_size(path);
  uint64_t resident = 0;
  for (int i = 0; i < 200 && (resident = testing::ResidentBytes(path)) < size * 9 / 10; ++i)
    ::usleep(100 * 1000);
  EXPECT_GE(resident, size * 9 / 10) << "of " << size << " bytes";
  // And what was fetched reads right.
  std::string out(d.image.size(), '\0');
  ASSERT_TRUE(view.value()->Read(0, out.size(), out.data()).ok());
  EXPECT_TRUE(out == d.image);
}

}  // namespace
}  // namespace chainfs

namespace chainfs {
namespace {

// Counts what a view asks of its block reader (then reads directly).
class CountingReader : public BlockReader {
 public:
  Status ReadBlockRange(const Layer& layer, uint64_t entry, uint32_t offset, uint32_t n, char* out,
                        const ReadOptions& options) override {
    ++calls;
    return DirectBlockReader::Get()->ReadBlockRange(layer, entry, offset, n, out, options);
  }
  Result<std::shared_ptr<const char>> PinBlock(const Layer& layer, uint64_t entry, uint32_t offset,
                                               uint32_t n, const ReadOptions& options) override {
    ++calls;
    return DirectBlockReader::Get()->PinBlock(layer, entry, offset, n, options);
  }
  std::atomic<int> calls{0};
};

std::string Joined(const std::vector<ReadPiece>& pieces) {
  std::string s;
  for (const ReadPiece& p : pieces) s += p.data ? std::string(p.data, p.size) : std::string(p.size, '\0');
  return s;
}

// A full stream's large lz4 frames are decoded whole into buffers of their
// own: a scan by a reader that takes pieces (the mount's splice path) is
// answered from them, not from copies in the block cache; other reads go
// through the cache as before. A damaged frame is an error either way.
TEST(VnbKeepsDecoded, AScanIsAnsweredFromTheDecodedFrameNotTheCache) {
  TempDir tmp;
  VnbDisk d;
  d.Resize(8 * kMiB);
  d.Write(0, RandomBytes(3 * kMiB, 21));
  d.Write(5 * kMiB, RandomBytes(kMiB + 4096, 22));  // its frame ends inside a block
  const std::string path = tmp / "vda.full.data";
  WriteFile(path, VnbStreamBytes(d.image.size(), "virtnbdbackup.0", "", "vda", d.Take(true), true,
                                 2 * kMiB));
  auto open = [&]() -> std::shared_ptr<const Layer> {
    auto f = Env::Default()->NewRandomAccessFile(path);
    EXPECT_TRUE(f.ok());
    auto layer = OpenVnbLayer(std::move(f).value(), NextLayerId());
    EXPECT_TRUE(layer.ok()) << layer.status().ToString();
    return layer.ok() ? std::move(layer).value() : nullptr;
  };
  auto layer = open();
  ASSERT_NE(layer, nullptr);
  // Frames of 2, 1 and 1 MiB + 64 KiB: entries (of 256 KiB, counted from
  // each frame's start) 0-7, 8-11 and 12-16, the last past its frame's end.
  const uint64_t entries = DataEntries(*layer);
  ASSERT_EQ(entries, 17u);
  for (uint64_t e = 0; e < entries; ++e)
    EXPECT_EQ(layer->KeepsDecoded(e), e != 16) << "entry " << e;
  CountingReader reader;
  auto v = View::Create({{layer, "c"}}, "t", &reader);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  std::vector<ReadPiece> pieces;
  ASSERT_TRUE(v.value()->ReadPieces(0, d.image.size(), &pieces, {.scan = true, .file_pieces = true}).ok());
  EXPECT_TRUE(Joined(pieces) == d.image) << "a scan answered from the decoded frames";
  EXPECT_EQ(reader.calls.load(), 1) << "only the block partly past its frame comes from the reader";
  pieces.clear();
  reader.calls = 0;
  ASSERT_TRUE(v.value()->ReadPieces(0, d.image.size(), &pieces, {.scan = false, .file_pieces = true}).ok());
  EXPECT_TRUE(Joined(pieces) == d.image);
  EXPECT_GT(reader.calls.load(), 1) << "a read that is not a scan goes through the reader";
  pieces.clear();

  // Damaged inside the second frame (disk bytes [2, 3) MiB; the first
  // frame's random 2 MiB take a little more than 2 MiB compressed, the
  // second's about 1 MiB): an error, on both paths.
  std::string bytes = testing::ReadFile(path);
  const size_t at = bytes.find("data 0000000000000000");
  ASSERT_NE(at, std::string::npos);
  bytes[at + 40 + 2 * kMiB + 100000] ^= 0x40;
  WriteFile(path, bytes);
  auto damaged = open();
  ASSERT_NE(damaged, nullptr);
  auto dv = View::Create({{damaged, "c"}}, "t", &reader);
  ASSERT_TRUE(dv.ok());
  for (bool scan : {true, false}) {
    Status st = dv.value()->ReadPieces(2 * kMiB, kMiB, &pieces, {.scan = scan, .file_pieces = true});
    EXPECT_EQ(st.code(), Status::Code::kCorruption) << "scan " << scan << ": " << st.ToString();
    EXPECT_NE(st.message().find(path), std::string::npos) << st.message();
    pieces.clear();
  }
  ASSERT_TRUE(dv.value()->ReadPieces(0, 2 * kMiB, &pieces, {.scan = true, .file_pieces = true}).ok());
  EXPECT_TRUE(Joined(pieces) == d.image.substr(0, 2 * kMiB)) << "the first frame still reads right";
}

}  // namespace
}  // namespace chainfs
