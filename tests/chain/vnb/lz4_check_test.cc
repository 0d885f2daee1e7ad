// Lz4FrameChecker (chain/vnb/lz4_check.h): the block checksums chainfs
// verifies itself so that liblz4 may skip its slow copy of them. A frame fed
// in pieces of any size verifies; every damaged byte of a frame is refused,
// by the checker or by the decoder and content checksum after it, never
// decoded into other bytes; and a VnbLayer reading a large frame serves the
// blocks before a damaged one and refuses the rest.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <random>

#include "chain/layer/view.h"
#include "chain/vnb/lz4_check.h"
#include "chain/vnb/sparse_stream.h"
#include "chain/vnb/vnb_layer.h"
#include "tests/chain/test_util.h"
#include "tests/chain/vnb/vnb_writer.h"

namespace chainfs {
namespace {

// Text that lz4 compresses, alternating with random bytes it stores as they
// are: both kinds of block.
std::string Mixed(size_t n, unsigned seed) {
  std::string s = testing::RandomBytes(n, seed);
  for (size_t at = 0; at < n; at += 96 << 10)
    for (size_t i = at; i < std::min(n, at + (48 << 10)); ++i)
      s[i] = "the quick brown fox jumps over the lazy dog "[i % 44];
  return s;
}

TEST(Lz4FrameChecker, VerifiesAFrameFedInPiecesOfAnySize) {
  const std::string data = Mixed(1 << 20, 3);
  const std::string frame = testing::Lz4Frame(data);
  ASSERT_FALSE(frame.empty());
  std::mt19937 rng(7);
  for (int round = 0; round < 20; ++round) {
    Lz4FrameChecker c;
    uint64_t fed = 0, last = 0;
    while (fed < frame.size()) {
      const size_t n = std::min<size_t>(frame.size() - fed, 1 + rng() % (round < 10 ? 7 : 90000));
      ASSERT_TRUE(c.Feed(frame.data() + fed, n, "f").ok());
      fed += n;
      ASSERT_LE(c.verified(), fed);
      ASSERT_GE(c.verified(), last);
      last = c.verified();
    }
    EXPECT_TRUE(c.ended());
    EXPECT_TRUE(c.block_checksums());
    EXPECT_EQ(c.verified(), frame.size());
    ASSERT_TRUE(c.content_checksum().has_value());
    EXPECT_EQ(*c.content_checksum(), XXH32(data.data(), data.size(), 0));
    // Past the end: refused.
    EXPECT_EQ(c.Feed("x", 1, "f").code(), Status::Code::kCorruption);
  }
}

TEST(Lz4FrameChecker, EveryDamagedByteIsRefusedNeverDecoded) {
  const std::string data = Mixed(200 << 10, 4);
  const std::string frame = testing::Lz4Frame(data);
  ASSERT_FALSE(frame.empty());
  std::string out(data.size(), '\0');
  ASSERT_TRUE(DecodeLz4Frame(frame.data(), frame.size(), out.data(), out.size(), "f").ok());
  ASSERT_EQ(out, data);
  // Every byte of the header, the first block's size and the content
  // checksum, and every 61st byte elsewhere, each flipped in turn.
  size_t tried = 0;
  for (size_t at = 0; at < frame.size(); ++at) {
    if (at >= 24 && at + 4 < frame.size() && at % 61 != 0) continue;
    for (uint8_t bit : {0x01, 0x80}) {
      std::string bad = frame;
      bad[at] = static_cast<char>(bad[at] ^ bit);
      Status st = DecodeLz4Frame(bad.data(), bad.size(), out.data(), out.size(), "frame.lz4");
      ASSERT_FALSE(st.ok()) << "byte " << at << " bit " << int(bit) << " decoded";
      EXPECT_NE(st.message().find("frame.lz4"), std::string::npos) << st.message();
      ++tried;
    }
  }
  EXPECT_GT(tried, 100u);
  // Truncated anywhere: refused.
  for (size_t n : {size_t{0}, size_t{6}, size_t{40}, frame.size() / 2, frame.size() - 1})
    EXPECT_FALSE(DecodeLz4Frame(frame.data(), n, out.data(), out.size(), "f").ok()) << n;
}

TEST(Lz4FrameChecker, ALargeFrameServesTheBlocksBeforeADamagedOneAndRefusesTheRest) {
  // One 8 MiB lz4 frame of 64 KiB linked blocks, read through a VnbLayer,
  // which decodes it front to back in 1 MiB pieces whose ends cut blocks.
  testing::TempDir tmp;
  testing::VnbDisk d;
  d.Resize(8 << 20);
  d.Write(0, Mixed(8 << 20, 5));
  std::string bytes = testing::VnbStreamBytes(d.image.size(), "virtnbdbackup.0", "", "vda",
                                              d.Take(true), /*compress=*/true, 16 << 20);
  const std::string path = tmp / "s.data";
  auto open = [&](const std::string& b) {
    testing::WriteFile(path, b);
    auto f = Env::Default()->NewRandomAccessFile(path);
    EXPECT_TRUE(f.ok());
    auto layer = OpenVnbLayer(std::move(f).value(), NextLayerId());
    EXPECT_TRUE(layer.ok()) << layer.status().ToString();
    return View::Create({{layer.value(), "c"}}, "t");
  };
  {
    auto view = open(bytes);
    ASSERT_TRUE(view.ok());
    std::string got(d.image.size(), '\0');
    ASSERT_TRUE(view.value()->Read(0, got.size(), got.data()).ok());
    EXPECT_EQ(got, d.image);
  }
  // Damage a byte about 5 MiB into the frame's compressed bytes.
  const size_t frame_at = bytes.find("data 0000000000000000") + 40;
  const size_t at = frame_at + (bytes.size() - frame_at) * 5 / 8;
  bytes[at] = static_cast<char>(bytes[at] ^ 0x10);
  auto view = open(bytes);
  ASSERT_TRUE(view.ok());
  std::string got(1 << 20, '\0');
  ASSERT_TRUE(view.value()->Read(0, got.size(), got.data()).ok());  // well before it
  EXPECT_EQ(got, d.image.substr(0, got.size()));
  Status st = view.value()->Read(7 << 20, got.size(), got.data());  // after it
  EXPECT_EQ(st.code(), Status::Code::kCorruption);
  EXPECT_NE(st.message().find(path), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("lz4"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace chainfs
