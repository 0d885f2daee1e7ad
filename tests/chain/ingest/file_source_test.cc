#include "chain/ingest/file_source.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <random>
#include <thread>
#include <vector>

#include "tests/chain/test_util.h"

namespace chainfs {
namespace {

using testing::RandomBytes;
using testing::TempDir;
using testing::WriteFile;

std::unique_ptr<Source> Open(const std::string& path, const std::string& dirty_map = "") {
  auto src = OpenSource({path, dirty_map});
  EXPECT_TRUE(src.ok()) << src.status().ToString();
  return src.ok() ? std::move(src).value() : nullptr;
}

std::vector<std::pair<uint64_t, uint64_t>> P(const std::vector<BlockRange>& runs) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (const auto& r : runs) out.emplace_back(r.first_block, r.block_count);
  return out;
}

TEST(FileSource, SizeNameHintsAndReads) {
  TempDir dir;
  const std::string data = RandomBytes(300000, 1);
  WriteFile(dir / "disk.raw", data);
  auto src = Open(dir / "disk.raw");
  ASSERT_NE(src, nullptr);
  EXPECT_EQ(src->Name(), dir / "disk.raw");
  EXPECT_EQ(src->Size(), data.size());
  EXPECT_GE(src->Hints().max_in_flight, 2u);
  EXPECT_FALSE(src->HasChangedRanges());
  EXPECT_FALSE(src->HasZeroRanges());
  EXPECT_EQ(src->ChangedRanges().status().code(), Status::Code::kNotSupported);
  std::string buf(1000, '\0');
  ASSERT_TRUE(src->ReadAt(299000, 1000, buf.data()).ok());
  EXPECT_EQ(buf, data.substr(299000));
}

TEST(FileSource, ParallelReadsFromManyThreadsEqualTheFile) {
  TempDir dir;
  const std::string data = RandomBytes(4 << 20, 2);
  WriteFile(dir / "disk.raw", data);
  auto src = Open(dir / "disk.raw");
  ASSERT_NE(src, nullptr);
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0}, reads{0};
  for (unsigned t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::string buf;
      for (int i = 0; i < 200; ++i) {
        const uint64_t off = rng() % data.size();
        const size_t n = 1 + rng() % std::min<uint64_t>(data.size() - off, 256 << 10);
        buf.resize(n);
        if (!src->ReadAt(off, n, buf.data()).ok() || buf != data.substr(off, n)) ++mismatches;
        ++reads;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(reads.load(), 1600);
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(FileSource, ReadPastTheEndIsAnErrorNamingTheFile) {
  TempDir dir;
  WriteFile(dir / "disk.raw", RandomBytes(10000, 3));
  auto src = Open(dir / "disk.raw");
  ASSERT_NE(src, nullptr);
  std::string buf(200, '\0');
  Status st = src->ReadAt(9900, 200, buf.data());
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find(dir / "disk.raw"), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("9900"), std::string::npos) << st.ToString();
  EXPECT_FALSE(src->ReadAt(UINT64_MAX - 10, 100, buf.data()).ok());
}

TEST(FileSource, ShrunkOrVanishedFileIsAnErrorNamingIt) {
  TempDir dir;
  WriteFile(dir / "disk.raw", RandomBytes(1 << 20, 4));
  auto src = Open(dir / "disk.raw");
  ASSERT_NE(src, nullptr);
  ASSERT_EQ(::truncate((dir / "disk.raw").c_str(), 4096), 0);  // changed under the reader
  std::string buf(65536, '\0');
  Status st = src->ReadAt(65536, buf.size(), buf.data());
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find(dir / "disk.raw"), std::string::npos) << st.ToString();

  ASSERT_EQ(::unlink((dir / "disk.raw").c_str()), 0);
  auto gone = OpenSource({dir / "disk.raw", ""});
  EXPECT_FALSE(gone.ok());
  EXPECT_NE(gone.status().message().find(dir / "disk.raw"), std::string::npos)
      << gone.status().ToString();
}

// A dirty map at a granularity smaller and larger than the repository's
// block: its entries, as bytes, reach exactly the blocks they touch.
TEST(FileSource, DirtyMapGivesChangedRangesAtAnyGranularity) {
  TempDir dir;
  WriteFile(dir / "disk.raw", std::string(4 << 20, 'x'));
  // 512-byte granules (two dirty, one clean between) and 1 MiB granules.
  WriteFile(dir / "map.json",
            R"([{"offset": 0, "length": 65536, "type": 0, "description": "clean"},
                {"offset": 66048, "length": 512, "type": 1, "description": "dirty"},
                {"offset": 66560, "length": 512, "type": 0, "description": "clean"},
                {"offset": 196096, "length": 512, "type": 1, "description": "dirty"},
                {"offset": 2097152, "length": 1048576, "type": 1, "description": "dirty"},
                {"offset": 3145728, "length": 1048576, "type": 3, "description": "dirty"},
                {"offset": 8388608, "length": 1048576, "type": 1, "description": "past"}])");
  auto src = Open(dir / "disk.raw", dir / "map.json");
  ASSERT_NE(src, nullptr);
  ASSERT_TRUE(src->HasChangedRanges());
  auto changed = src->ChangedRanges();
  ASSERT_TRUE(changed.ok()) << changed.status().ToString();
  EXPECT_EQ(changed.value().size(), 5u);
  // 64 KiB blocks: 66048 is in block 1, 196096 ends block 2; 2..4 MiB = blocks 32..63.
  EXPECT_EQ(P(BlocksTouched(changed.value(), 65536, src->Size())),
            (std::vector<std::pair<uint64_t, uint64_t>>{{1, 2}, {32, 32}}));
  // 4 KiB blocks: each 512-byte granule touches one block.
  EXPECT_EQ(P(BlocksTouched(changed.value(), 4096, src->Size())),
            (std::vector<std::pair<uint64_t, uint64_t>>{{16, 1}, {47, 1}, {512, 512}}));
  // 1 MiB blocks: one dirty 512 bytes makes the whole block read.
  EXPECT_EQ(P(BlocksTouched(changed.value(), 1 << 20, src->Size())),
            (std::vector<std::pair<uint64_t, uint64_t>>{{0, 1}, {2, 2}}));
}

TEST(FileSource, MalformedDirtyMapNamesFileAndEntry) {
  TempDir dir;
  WriteFile(dir / "disk.raw", std::string(4096, 'x'));
  WriteFile(dir / "map.json", R"([{"offset": 0, "length": 1, "type": 1}, {"offset": 5}])");
  auto src = Open(dir / "disk.raw", dir / "map.json");
  ASSERT_NE(src, nullptr);
  auto changed = src->ChangedRanges();
  ASSERT_FALSE(changed.ok());
  EXPECT_NE(changed.status().message().find(dir / "map.json"), std::string::npos);
  EXPECT_NE(changed.status().message().find("entry 1"), std::string::npos)
      << changed.status().ToString();
}

}  // namespace
}  // namespace chainfs
