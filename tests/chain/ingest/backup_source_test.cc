// Backup through the Source seam: a slow fake source with many requests in
// flight stores exactly what the file source stores for the same bytes.
#include <gtest/gtest.h>

#include <random>

#include "chain/ingest/backup.h"
#include "tests/chain/ingest/fake_source.h"
#include "tests/chain/test_util.h"

namespace chainfs {
namespace {

using testing::FakeSource;
using testing::TempDir;
using testing::WriteFile;

constexpr uint32_t kBs = 65536;

// 19 MiB + 1000 bytes (five batches, a partial last block): random blocks,
// compressible blocks and zeros.
std::string DiskBytes(unsigned seed) {
  std::mt19937 rng(seed);
  std::string s((19u << 20) + 1000, '\0');
  for (size_t b = 0; b * kBs < s.size(); ++b) {
    const size_t off = b * kBs, len = std::min<size_t>(kBs, s.size() - off);
    switch (rng() % 3) {
      case 0:
        for (size_t i = 0; i < len; ++i) s[off + i] = static_cast<char>(rng());
        break;
      case 1:
        std::fill_n(s.begin() + off, len, static_cast<char>('a' + rng() % 26));
        break;
      default:
        break;
    }
  }
  return s;
}

struct Repo {
  TempDir dir;
  std::unique_ptr<Repository> repo;
  Repo() {
    RepoConfig cfg;
    cfg.block_size = kBs;
    cfg.compression_level = 1;
    EXPECT_TRUE(Repository::Init(dir / "repo", cfg).ok());
    repo = std::move(Repository::Open(dir / "repo")).value();
  }
  Result<BackupReport> Backup(const std::string& cp, DiskSource disk) {
    BackupOptions o;
    o.group = "vm1";
    o.checkpoint = cp;
    o.threads = 2;
    o.disks.push_back(std::move(disk));
    return chainfs::Backup(*repo, o);
  }
  std::string ViewBytes(const std::string& cp) {
    auto view = repo->OpenView("vm1", cp, "vda");
    EXPECT_TRUE(view.ok()) << view.status().ToString();
    if (!view.ok()) return "";
    std::string out(view.value()->size(), '\0');
    EXPECT_TRUE(view.value()->Read(0, out.size(), out.data()).ok());
    return out;
  }
};

void ExpectSameReport(const DiskReport& a, const DiskReport& b) {
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.virtual_size, b.virtual_size);
  EXPECT_EQ(a.blocks_read, b.blocks_read);
  EXPECT_EQ(a.blocks_stored, b.blocks_stored);
  EXPECT_EQ(a.blocks_zeroed, b.blocks_zeroed);
  EXPECT_EQ(a.stored_bytes, b.stored_bytes);
}

TEST(BackupSource, SlowFakeSourceReadsInParallelAndStoresWhatTheFileSourceStores) {
  const std::string c1 = DiskBytes(1);
  std::string c2 = c1;
  // Changes for the incremental: sectors in blocks 3 and 100, zeros over 200..209.
  std::fill_n(c2.begin() + 3 * kBs + 512, 512, 'Q');
  std::fill_n(c2.begin() + 100 * kBs + 7, 3, 'R');
  std::fill_n(c2.begin() + 200 * kBs, 10 * kBs, '\0');
  const std::vector<ByteRange> dirty = {{3 * kBs + 512, 512}, {100 * kBs, 4096},
                                        {200 * kBs, 10 * kBs}};

  Repo by_file, by_fake;
  WriteFile(by_file.dir / "c1.raw", c1);
  WriteFile(by_file.dir / "c2.raw", c2);
  WriteFile(by_file.dir / "c2.json",
            R"([{"offset": 197120, "length": 512, "type": 1},
                {"offset": 6553600, "length": 4096, "type": 1},
                {"offset": 13107200, "length": 655360, "type": 1}])");
  auto f1 = by_file.Backup("c1", {"vda", by_file.dir / "c1.raw", ""});
  ASSERT_TRUE(f1.ok()) << f1.status().ToString();
  auto f2 = by_file.Backup("c2", {"vda", by_file.dir / "c2.raw", by_file.dir / "c2.json"});
  ASSERT_TRUE(f2.ok()) << f2.status().ToString();

  auto fake1 = std::make_shared<FakeSource>(c1, ReadHints{8, 1 << 20});
  fake1->latency = std::chrono::milliseconds(5);
  auto k1 = by_fake.Backup("c1", {"vda", "", "", fake1});
  ASSERT_TRUE(k1.ok()) << k1.status().ToString();
  EXPECT_GT(fake1->max_in_flight_seen(), 1) << "reads of the fake source did not overlap";
  auto fake2 = std::make_shared<FakeSource>(c2, ReadHints{8, 1 << 20});
  fake2->latency = std::chrono::milliseconds(5);
  fake2->has_changed = true;
  fake2->changed = dirty;
  auto k2 = by_fake.Backup("c2", {"vda", "", "", fake2});
  ASSERT_TRUE(k2.ok()) << k2.status().ToString();
  // Only the touched blocks were asked for.
  uint64_t asked = 0;
  for (const ByteRange& r : fake2->reads()) asked += r.length;
  EXPECT_EQ(asked, 12u * kBs);

  ExpectSameReport(f1.value().disks[0], k1.value().disks[0]);
  ExpectSameReport(f2.value().disks[0], k2.value().disks[0]);
  EXPECT_EQ(k2.value().disks[0].blocks_read, 12u);
  EXPECT_TRUE(by_fake.ViewBytes("c1") == c1);
  EXPECT_TRUE(by_fake.ViewBytes("c2") == c2);
  EXPECT_TRUE(by_file.ViewBytes("c2") == c2);
}

// A full backup does not read what the source knows reads as zeros, and
// stores the same as reading it would.
TEST(BackupSource, FullBackupSkipsKnownZeros) {
  std::string c1 = DiskBytes(3);
  std::fill_n(c1.begin() + 10 * kBs, 40 * kBs, '\0');
  std::fill_n(c1.end() - 1000, 1000, '\0');  // the partial last block
  Repo by_file, by_fake;
  WriteFile(by_file.dir / "c1.raw", c1);
  auto f1 = by_file.Backup("c1", {"vda", by_file.dir / "c1.raw", ""});
  ASSERT_TRUE(f1.ok()) << f1.status().ToString();

  auto fake = std::make_shared<FakeSource>(c1, ReadHints{4, 1 << 20});
  fake->has_zeros = true;
  // Blocks 10..49 (with a half block either side, which must still be read)
  // and the last, partial block.
  fake->zeros = {{10 * kBs - 512, 20 * kBs + 512}, {30 * kBs, 20 * kBs + 512},
                 {c1.size() - 1000, 1000}};
  auto k1 = by_fake.Backup("c1", {"vda", "", "", fake});
  ASSERT_TRUE(k1.ok()) << k1.status().ToString();
  for (const ByteRange& r : fake->reads()) {
    EXPECT_FALSE(r.offset < 50 * kBs && r.offset + r.length > 10 * kBs)
        << "read " << r.offset << "+" << r.length << " inside the zero ranges";
    EXPECT_LE(r.offset + r.length, c1.size() - 1000);
  }
  const DiskReport& a = f1.value().disks[0];
  const DiskReport& b = k1.value().disks[0];
  EXPECT_EQ(b.blocks_read, a.blocks_read - 41);
  EXPECT_EQ(b.blocks_stored, a.blocks_stored);
  EXPECT_EQ(b.stored_bytes, a.stored_bytes);
  EXPECT_TRUE(by_fake.ViewBytes("c1") == c1);
}

// Batch buffers are reused (huge pages, never zeroed between batches): the
// bytes of a partial last block past the disk's end are zeros all the same,
// not what an earlier batch left there. A disk whose last 1,000 bytes turn
// to zeros then has an all-zero last block: a zero run, nothing stored.
TEST(BackupSource, APartialLastBlockReadsZerosPastTheEndInAReusedBuffer) {
  std::mt19937 rng(7);
  std::string noise((19u << 20) + 1000, '\0');
  for (char& c : noise) c = static_cast<char>(rng() | 1);  // no zero byte
  Repo r;
  WriteFile(r.dir / "noise.raw", noise);
  ASSERT_TRUE(r.Backup("c1", {"vda", r.dir / "noise.raw", ""}).ok());
  std::string quiet = noise;
  std::fill_n(quiet.end() - 1000, 1000, '\0');
  WriteFile(r.dir / "quiet.raw", quiet);
  auto k = r.Backup("c2", {"vda", r.dir / "quiet.raw", ""});
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  const DiskReport& d = k.value().disks[0];
  EXPECT_EQ(d.blocks_read, 305u);
  EXPECT_EQ(d.blocks_stored, 0u) << "the last block was stored as data: bytes past the end were not zeros";
  EXPECT_EQ(d.blocks_zeroed, 1u);
  EXPECT_TRUE(r.ViewBytes("c2") == quiet);
}

// A source that fails mid-backup: the error names the source and the disk,
// and no checkpoint appears.
TEST(BackupSource, FailingSourceNamesItAndCommitsNothing) {
  class Failing : public FakeSource {
   public:
    using FakeSource::FakeSource;
    Status ReadAt(uint64_t offset, size_t n, void* buf) const override {
      if (offset + n > (9u << 20)) return Status::FromErrno(EIO, Name() + ": read at offset " +
                                                                     std::to_string(offset));
      return FakeSource::ReadAt(offset, n, buf);
    }
  };
  Repo r;
  auto src = std::make_shared<Failing>(DiskBytes(2), ReadHints{4, 1 << 20});
  auto rep = r.Backup("c1", {"vda", "", "", src});
  ASSERT_FALSE(rep.ok());
  const std::string msg = rep.status().message();
  EXPECT_NE(msg.find("fake://disk"), std::string::npos) << msg;
  EXPECT_NE(msg.find("disk vda"), std::string::npos) << msg;
  EXPECT_NE(msg.find("9437184"), std::string::npos) << "the first failed offset: " << msg;
  auto g = r.repo->LoadGroup("vm1");
  EXPECT_TRUE(!g.ok() || g.value().checkpoints.empty());
}

// A fake source with changed ranges but no earlier backup is refused, as
// --dirty is.
TEST(BackupSource, ChangedRangesWithoutABaseAreRefused) {
  Repo r;
  auto src = std::make_shared<FakeSource>(std::string(kBs, 'a'), ReadHints{});
  src->has_changed = true;
  auto rep = r.Backup("c1", {"vda", "", "", src});
  ASSERT_FALSE(rep.ok());
  EXPECT_NE(rep.status().message().find("no earlier backup"), std::string::npos)
      << rep.status().ToString();
}

// Issue 13 item 7: a source claiming more than 2^56 bytes is refused before
// anything is written, naming the source, the disk and the bound.
TEST(BackupSource, Issue13SourceAboveTheVirtualSizeBoundIsRefused) {
  class Huge : public FakeSource {
   public:
    using FakeSource::FakeSource;
    uint64_t Size() const override { return uint64_t{1} << 63; }
  };
  Repo r;
  auto src = std::make_shared<Huge>(std::string(kBs, 'a'), ReadHints{});
  auto rep = r.Backup("c1", {"vda", "", "", src});
  ASSERT_FALSE(rep.ok());
  EXPECT_EQ(rep.status().code(), Status::Code::kInvalidArgument);
  const std::string msg = rep.status().message();
  EXPECT_NE(msg.find("fake://disk"), std::string::npos) << msg;
  EXPECT_NE(msg.find("disk vda"), std::string::npos) << msg;
  EXPECT_NE(msg.find("2^56"), std::string::npos) << msg;
  EXPECT_TRUE(src->reads().empty());
  EXPECT_FALSE(r.repo->LoadGroup("vm1").ok()) << "no group created";
}

}  // namespace
}  // namespace chainfs
