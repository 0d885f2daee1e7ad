#include "chain/base/coding.h"

#include <gtest/gtest.h>

namespace chainfs {

TEST(Coding, FixedWidthIsLittleEndian) {
  std::string s;
  PutFixed32(&s, 0x04030201u);
  PutFixed64(&s, 0x0c0b0a0908070605ull);
  ASSERT_EQ(s.size(), 12u);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(static_cast<uint8_t>(s[i]), i + 1);
  EXPECT_EQ(DecodeFixed32(s.data()), 0x04030201u);
  EXPECT_EQ(DecodeFixed64(s.data() + 4), 0x0c0b0a0908070605ull);
}

TEST(Coding, DecoderStopsAtEnd) {
  std::string s;
  PutFixed32(&s, 7);
  Decoder d(s.data(), s.size());
  EXPECT_EQ(d.Get32(), 7u);
  EXPECT_TRUE(d.ok());
  EXPECT_EQ(d.Get64(), 0u);
  EXPECT_FALSE(d.ok());
}

}  // namespace chainfs
