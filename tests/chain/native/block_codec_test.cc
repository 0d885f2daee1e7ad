#include "chain/native/block_codec.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

#include "chain/base/env.h"
#include "tests/chain/test_util.h"

namespace chainfs {
namespace {

constexpr uint32_t kBs = 65536;

std::string Compressible() {
  std::string raw(kBs, '\0');
  for (size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<char>("chainfs "[i % 8]);
  return raw;
}

std::string Random(uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::string raw(kBs, '\0');
  for (size_t i = 0; i < raw.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(raw.data() + i, &v, 8);
  }
  return raw;
}

TEST(BlockCodec, CompressibleRoundTripsExactly) {
  const std::string raw = Compressible();
  std::string buf;
  StoredBlock s = EncodeBlock(42, raw.data(), kBs, HashContent(raw.data(), kBs), {true, 3}, &buf);
  EXPECT_EQ(s.block, 42u);
  EXPECT_EQ(s.codec, static_cast<uint8_t>(Codec::kZstd));
  EXPECT_LT(s.size, kBs / 10);
  EXPECT_EQ(s.data, buf.data());
  EXPECT_EQ(s.size, buf.size());
  EXPECT_EQ(s.checksum, Checksum64(buf.data(), buf.size()));
  EXPECT_EQ(s.content, HashContent(raw.data(), kBs));
  ASSERT_TRUE(VerifyStoredBlock(s, "f", 0).ok());
  std::string out(kBs, 'x');
  ASSERT_TRUE(DecodeBlock(s, kBs, out.data(), "f").ok());
  EXPECT_EQ(out, raw);
}

TEST(BlockCodec, IncompressibleIsStoredRaw) {
  const std::string raw = Random(7);
  std::string buf;
  StoredBlock s = EncodeBlock(3, raw.data(), kBs, HashContent(raw.data(), kBs), {true, 3}, &buf);
  EXPECT_EQ(s.codec, static_cast<uint8_t>(Codec::kRaw));
  EXPECT_EQ(buf, raw);
  EXPECT_EQ(s.checksum, Checksum64(raw.data(), kBs));
  std::string out(kBs, '\0');
  ASSERT_TRUE(DecodeBlock(s, kBs, out.data(), "f").ok());
  EXPECT_EQ(out, raw);
}

TEST(BlockCodec, CompressionOffStoresRaw) {
  const std::string raw = Compressible();
  std::string buf;
  StoredBlock s = EncodeBlock(0, raw.data(), kBs, HashContent(raw.data(), kBs), {false, 3}, &buf);
  EXPECT_EQ(s.codec, static_cast<uint8_t>(Codec::kRaw));
  EXPECT_EQ(buf, raw);
}

TEST(BlockCodec, RawDecodesInPlace) {
  std::string raw = Random(8);
  std::string buf;
  StoredBlock s = EncodeBlock(0, raw.data(), kBs, HashContent(raw.data(), kBs), {true, 3}, &buf);
  ASSERT_EQ(s.codec, static_cast<uint8_t>(Codec::kRaw));
  s.data = raw.data();  // read straight into the output buffer
  EXPECT_TRUE(DecodeBlock(s, kBs, raw.data(), "f").ok());
}

TEST(BlockCodec, ChecksumMismatchNamesFileBlockAndOffset) {
  const std::string raw = Compressible();
  std::string buf;
  StoredBlock s = EncodeBlock(17, raw.data(), kBs, HashContent(raw.data(), kBs), {true, 3}, &buf);
  buf[1] ^= 1;
  Status st = VerifyStoredBlock(s, "/r/g/c1.vda.x.delta", 4096);
  EXPECT_EQ(st.code(), Status::Code::kCorruption);
  EXPECT_EQ(st.message(),
            "/r/g/c1.vda.x.delta: block 17 (offset 4096): checksum mismatch of stored bytes");
}

TEST(BlockCodec, DamagedFrameOrContentIsCorruptionNamingBlock) {
  const std::string raw = Compressible();
  std::string buf;
  StoredBlock s = EncodeBlock(5, raw.data(), kBs, HashContent(raw.data(), kBs), {true, 3}, &buf);
  std::string out(kBs, '\0');
  StoredBlock wrong_hash = s;
  wrong_hash.content.lo ^= 1;
  Status st = DecodeBlock(wrong_hash, kBs, out.data(), "f");
  EXPECT_EQ(st.code(), Status::Code::kCorruption);
  EXPECT_NE(st.message().find("f: block 5: content hash mismatch"), std::string::npos) << st.ToString();
  std::string cut = buf.substr(0, buf.size() / 2);
  StoredBlock truncated = s;
  truncated.data = cut.data();
  truncated.size = static_cast<uint32_t>(cut.size());
  st = DecodeBlock(truncated, kBs, out.data(), "f");
  EXPECT_EQ(st.code(), Status::Code::kCorruption);
  EXPECT_NE(st.message().find("block 5: zstd decompression failed"), std::string::npos)
      << st.ToString();
  StoredBlock unknown = s;
  unknown.codec = 9;
  EXPECT_EQ(DecodeBlock(unknown, kBs, out.data(), "f").code(), Status::Code::kCorruption);
}

TEST(BlockCodec, ReusedBufferShrinksAndGrows) {
  const std::string a = Compressible(), b = Random(9);
  std::string buf;
  StoredBlock sb = EncodeBlock(1, b.data(), kBs, HashContent(b.data(), kBs), {}, &buf);
  EXPECT_EQ(sb.size, kBs);
  StoredBlock sa = EncodeBlock(2, a.data(), kBs, HashContent(a.data(), kBs), {}, &buf);
  EXPECT_EQ(sa.size, buf.size());
  std::string out(kBs, '\0');
  ASSERT_TRUE(DecodeBlock(sa, kBs, out.data(), "f").ok());
  EXPECT_EQ(out, a);
}


// A raw block read from a file (ReadStoredBlock's direct path): its content
// hash alone accepts it, and each kind of damage keeps its own message.
TEST(BlockCodec, RawBlockReadFromFileNamesWhatIsDamaged) {
  testing::TempDir tmp;
  const std::string raw = Random(11);
  std::string buf;
  StoredBlock s = EncodeBlock(23, raw.data(), kBs, HashContent(raw.data(), kBs), {true, 3}, &buf);
  ASSERT_EQ(s.codec, static_cast<uint8_t>(Codec::kRaw));
  const std::string path = tmp / "d.delta";
  testing::WriteFile(path, std::string(4096, 'h') + buf);
  StoredLocation loc{4096, s};
  loc.stored.data = nullptr;
  auto read = [&](const StoredLocation& l) {
    auto f = Env::Default()->NewRandomAccessFile(path);
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    std::string out(kBs, 'x');
    Status st = ReadStoredBlock(*f.value(), l, kBs, out.data());
    return std::make_pair(st, out);
  };
  auto [ok, out] = read(loc);
  ASSERT_TRUE(ok.ok()) << ok.ToString();
  EXPECT_EQ(out, raw);
  // The entry's content hash is wrong, the bytes on disk are intact.
  StoredLocation wrong_hash = loc;
  wrong_hash.stored.content.hi ^= 1;
  Status st = read(wrong_hash).first;
  EXPECT_EQ(st.code(), Status::Code::kCorruption);
  EXPECT_EQ(st.message(), path + ": block 23: content hash mismatch after decoding");
  // One byte on disk flipped: the checksum of the stored bytes names it.
  std::string damaged = std::string(4096, 'h') + buf;
  damaged[4096 + 777] ^= 0x40;
  testing::WriteFile(path, damaged);
  st = read(loc).first;
  EXPECT_EQ(st.code(), Status::Code::kCorruption);
  EXPECT_EQ(st.message(),
            path + ": block 23 (offset 4096): checksum mismatch of stored bytes");
}

}  // namespace
}  // namespace chainfs
