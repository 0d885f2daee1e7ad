// Property test: composed views against a reference model.
//
// The model is a plain byte array per disk. Random writes, zeroings and
// resizes are applied to it; after each step a backup (full, incremental
// with or without a dirty map, or differential) stores it as a checkpoint.
// At the end every view of every checkpoint must equal the model's copy
// from that time, byte for byte, and `check --deep` must find nothing.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "chain/ingest/backup.h"
#include "chain/repo/check.h"
#include "chain/repo/repository.h"
#include "tests/chain/test_util.h"

namespace chainfs {
namespace {

using testing::TempDir;
using testing::WriteFile;

struct Range {
  uint64_t off, len;
};

struct DiskModel {
  std::string bytes;
  std::vector<Range> dirty;  // since the previous checkpoint
};

class ChainModel {
 public:
  ChainModel(uint32_t bs, uint64_t seed) : bs_(bs), rng_(seed) {}

  void Mutate(DiskModel& d) {
    int ops = Uniform(1, 4);
    for (int i = 0; i < ops; ++i) {
      int kind = Uniform(0, 9);
      if (kind <= 5 && !d.bytes.empty()) {
        Range r = RandomRange(d.bytes.size());
        for (uint64_t k = 0; k < r.len; ++k) d.bytes[r.off + k] = static_cast<char>(rng_() % 7);
        d.dirty.push_back(r);
      } else if (kind <= 7 && !d.bytes.empty()) {
        Range r = RandomRange(d.bytes.size());
        std::fill_n(d.bytes.begin() + static_cast<long>(r.off), r.len, '\0');
        d.dirty.push_back(r);
      } else {
        uint64_t old = d.bytes.size();
        uint64_t size = 512 * static_cast<uint64_t>(Uniform(1, MaxSectors()));
        d.bytes.resize(size, '\0');
        // A shrunk range that grows back must read zeros: a correct dirty
        // bitmap reports it (we model that; QEMU users re-enable bitmaps).
        if (size < old) d.dirty.push_back({size, old - size});
      }
    }
  }

  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  int MaxSectors() const { return static_cast<int>(24 * bs_ / 512); }

 private:
  Range RandomRange(uint64_t size) {
    uint64_t off = std::uniform_int_distribution<uint64_t>(0, size - 1)(rng_);
    uint64_t max_len = std::min<uint64_t>(size - off, 3 * bs_);
    uint64_t len = std::uniform_int_distribution<uint64_t>(1, max_len)(rng_);
    return {off, len};
  }
  uint32_t bs_;
  std::mt19937_64 rng_;
};

std::string DirtyMapJson(const DiskModel& d) {
  nlohmann::json j = nlohmann::json::array();
  for (const Range& r : d.dirty)
    j.push_back({{"offset", r.off}, {"length", r.len}, {"type", 1}, {"description", "dirty"}});
  return j.dump();
}

void ExpectViewEquals(const View& view, const std::string& want, std::mt19937_64& rng) {
  ASSERT_EQ(view.size(), want.size()) << view.label();
  std::string got(want.size(), '\x55');
  Status st = view.Read(0, got.size(), got.data());
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_TRUE(got == want) << view.label() << " differs from the model";
  // Unaligned reads, some crossing the end.
  for (int i = 0; i < 8; ++i) {
    uint64_t off = want.empty() ? 0 : rng() % want.size();
    uint64_t len = 1 + rng() % (3 * view.block_size());
    std::string buf(len, '\x55');
    ASSERT_TRUE(view.Read(off, len, buf.data()).ok());
    std::string expect = want.substr(off, len);
    expect.resize(len, '\0');
    ASSERT_TRUE(buf == expect) << view.label() << " at " << off << "+" << len;
    // The zero-copy form (the mount's read path) gives the same bytes.
    std::vector<ReadPiece> pieces;
    ASSERT_TRUE(view.ReadPieces(off, len, &pieces).ok());
    std::string joined;
    for (const ReadPiece& p : pieces)
      joined += p.data ? std::string(p.data, p.size) : std::string(p.size, '\0');
    ASSERT_TRUE(joined == expect) << view.label() << " pieces at " << off << "+" << len;
  }
  // Everything SEEK_HOLE/SEEK_DATA calls a hole reads zeros.
  for (uint64_t pos = view.SeekHole(0); pos < view.size();) {
    uint64_t data = view.SeekData(pos);
    for (uint64_t k = pos; k < data; ++k)
      ASSERT_EQ(want[k], '\0') << view.label() << " hole byte " << k;
    if (data >= view.size()) break;
    pos = view.SeekHole(data);
  }
}

class ViewProperty : public ::testing::TestWithParam<uint32_t> {};

TEST_P(ViewProperty, EveryCheckpointEqualsTheModel) {
  const uint32_t bs = GetParam();
  TempDir dir;
  RepoConfig cfg;
  cfg.block_size = bs;
  ASSERT_TRUE(Repository::Init(dir / "repo", cfg).ok());
  auto repo = Repository::Open(dir / "repo");
  ASSERT_TRUE(repo.ok());
  ChainModel model(bs, 1234 + bs);
  std::map<std::string, DiskModel> disks;
  disks["vda"].bytes.assign(16 * bs + 1024, '\0');
  std::map<std::string, std::map<std::string, std::string>> expected;  // cp -> disk -> bytes
  std::vector<std::string> names;
  const int kCheckpoints = 55;
  for (int i = 1; i <= kCheckpoints; ++i) {
    if (i == 4) disks["vdb"].bytes.assign(8 * bs, '\0');  // a disk added later
    for (auto& [name, d] : disks) model.Mutate(d);
    BackupOptions opts;
    opts.group = "vm";
    opts.checkpoint = "c" + std::to_string(i);
    int kind = model.Uniform(0, 9);
    opts.full = i == 1 || kind == 0;
    if (!opts.full && kind <= 2 && names.size() > 2)
      opts.since = names[static_cast<size_t>(model.Uniform(0, static_cast<int>(names.size()) - 2))];
    bool dirty = !opts.full && opts.since.empty() && kind >= 6 && i > 5;
    for (auto& [name, d] : disks) {
      std::string src = dir / ("src-" + name);
      WriteFile(src, d.bytes);
      DiskSource ds{name, src, ""};
      if (dirty) {
        ds.dirty_map = dir / ("dirty-" + name + ".json");
        WriteFile(ds.dirty_map, DirtyMapJson(d));
      }
      opts.disks.push_back(ds);
    }
    auto r = Backup(*repo.value(), opts);
    ASSERT_TRUE(r.ok()) << opts.checkpoint << ": " << r.status().ToString();
    for (auto& [name, d] : disks) {
      expected[opts.checkpoint][name] = d.bytes;
      d.dirty.clear();
    }
    names.push_back(opts.checkpoint);
  }
  std::mt19937_64 rng(99);
  for (const auto& [cp, per_disk] : expected) {
    for (const auto& [disk, bytes] : per_disk) {
      auto view = repo.value()->OpenView("vm", cp, disk);
      ASSERT_TRUE(view.ok()) << view.status().ToString();
      ExpectViewEquals(*view.value(), bytes, rng);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
  auto check = Check(*repo.value(), "", "", /*deep=*/true);
  ASSERT_TRUE(check.ok());
  EXPECT_TRUE(check->problems.empty()) << check->problems[0].message;
  EXPECT_EQ(check->checkpoints, static_cast<uint64_t>(kCheckpoints));
}

INSTANTIATE_TEST_SUITE_P(BlockSizes, ViewProperty, ::testing::Values(4096u, 16384u, 65536u));

}  // namespace
}  // namespace chainfs
