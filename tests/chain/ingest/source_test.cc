#include "chain/ingest/source.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace chainfs {
namespace {

using Pairs = std::vector<std::pair<uint64_t, uint64_t>>;

// Block runs as comparable (and printable) pairs.
Pairs P(const std::vector<BlockRange>& runs) {
  Pairs out;
  for (const auto& r : runs) out.emplace_back(r.first_block, r.block_count);
  return out;
}

// The blocks of a per-block flag array, as merged runs.
std::vector<BlockRange> Runs(const std::vector<bool>& flags) {
  std::vector<BlockRange> runs;
  for (uint64_t b = 0; b < flags.size(); ++b) {
    if (!flags[b]) continue;
    if (!runs.empty() && runs.back().first_block + runs.back().block_count == b)
      ++runs.back().block_count;
    else
      runs.push_back({b, 1});
  }
  return runs;
}

TEST(BlocksTouched, GranularitySmallerThanTheBlock) {
  // 512-byte dirty sectors in blocks 1 and 16 of 64 KiB, twice in block 16.
  std::vector<ByteRange> r = {{16 * 65536 + 512, 512}, {70000, 100}, {16 * 65536, 512}};
  EXPECT_EQ(P(BlocksTouched(r, 65536, 1 << 30)), P({{1, 1}, {16, 1}}));
}

TEST(BlocksTouched, GranularityLargerThanTheBlock) {
  // 1 MiB bitmap granules over 64 KiB blocks: 16 blocks each; adjacent ones merge.
  std::vector<ByteRange> r = {{3 << 20, 1 << 20}, {1 << 20, 1 << 20}, {2 << 20, 1 << 20}};
  EXPECT_EQ(P(BlocksTouched(r, 65536, 1 << 30)), P({{16, 48}}));
}

TEST(BlocksTouched, ClipsToTheDiskAndRoundsOutTheLastPartialBlock) {
  // Disk of 2.5 blocks: a range across its end reaches the partial block 2.
  std::vector<ByteRange> r = {{4096, 1 << 20}, {1 << 20, 4096}, {0, 0}};
  EXPECT_EQ(P(BlocksTouched(r, 4096, 10240)), P({{1, 2}}));
}

TEST(BlocksCovered, OnlyWholeBlocksAndTheCoveredTail) {
  // Two adjacent ranges cover block 1 together; block 3 is only half covered;
  // the disk's partial last block 5 is covered up to the disk's end.
  std::vector<ByteRange> r = {{4096, 2048}, {6144, 2048}, {3 * 4096, 2048}, {5 * 4096, 100000}};
  EXPECT_EQ(P(BlocksCovered(r, 4096, 5 * 4096 + 1000)), P({{1, 1}, {5, 1}}));
}

// Random ranges against a byte model: a block is touched when any of its
// bytes is in a range, covered when all of them are.
TEST(BlocksTouched, MatchesAByteModel) {
  std::mt19937_64 rng(12);
  for (int round = 0; round < 300; ++round) {
    const uint32_t bs = 512u << (rng() % 4);
    const uint64_t size = 1 + rng() % (40 * bs);
    const uint64_t gran = 1 + rng() % (3 * bs);
    std::vector<bool> bytes(size + 8 * bs, false);
    std::vector<ByteRange> ranges;
    for (int n = static_cast<int>(rng() % 8); n > 0; --n) {
      ByteRange r{rng() % (size + 2 * bs), 1 + rng() % (4 * gran)};
      if (rng() % 2) r = {r.offset / gran * gran, gran};  // granule-aligned, as bitmaps are
      ranges.push_back(r);
      for (uint64_t i = r.offset; i < r.offset + r.length && i < bytes.size(); ++i)
        bytes[i] = true;
    }
    const uint64_t nblocks = BlockCount(size, bs);
    std::vector<bool> touched(nblocks), covered(nblocks);
    for (uint64_t b = 0; b < nblocks; ++b) {
      bool any = false, all = true;
      for (uint64_t i = b * bs; i < std::min<uint64_t>(size, (b + 1) * bs); ++i) {
        any = any || bytes[i];
        all = all && bytes[i];
      }
      touched[b] = any;
      covered[b] = all;
    }
    ASSERT_EQ(P(BlocksTouched(ranges, bs, size)), P(Runs(touched))) << "round " << round;
    ASSERT_EQ(P(BlocksCovered(ranges, bs, size)), P(Runs(covered))) << "round " << round;
  }
}

TEST(SubtractBlocks, MatchesAFlagModel) {
  std::mt19937_64 rng(5);
  for (int round = 0; round < 500; ++round) {
    const uint64_t n = 1 + rng() % 60;
    std::vector<bool> a(n), b(n), want(n);
    for (uint64_t i = 0; i < n; ++i) {
      a[i] = rng() % 3 != 0;
      b[i] = rng() % 2 == 0;
      want[i] = a[i] && !b[i];
    }
    ASSERT_EQ(P(SubtractBlocks(Runs(a), Runs(b))), P(Runs(want))) << "round " << round;
  }
}

}  // namespace
}  // namespace chainfs
