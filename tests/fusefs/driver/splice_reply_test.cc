// SplicePipe (fusefs/driver/splice_reply.h): a reply's pieces put into the
// pipe in order, exactly; a failure leaves no pipe to be reused. Replying
// through libfuse is the mount's (tests/scenario/splice_reply_test.sh).
#include "fusefs/driver/splice_reply.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "chain/base/env.h"
#include "tests/chain/test_util.h"

namespace chainfs {
namespace {

using testing::DrainPipe;
using testing::RandomBytes;
using testing::TempDir;
using testing::WriteFile;

TEST(SplicePipe, FillsFileMemoryAndZeroPiecesInOrder) {
  TempDir dir;
  const std::string data = RandomBytes(1 << 20, 9);
  WriteFile(dir / "f", data);
  auto f = Env::Default()->NewRandomAccessFile(dir / "f");
  ASSERT_TRUE(f.ok());
  const std::string memory = RandomBytes(70000, 10);
  std::string zeros(128 << 10, '\0');
  // A file piece at a page boundary, memory, zeros longer than the zero
  // buffer, a file piece at an odd offset.
  std::vector<ReadPiece> pieces = {{nullptr, 65536, nullptr, f.value().get(), 4096},
                                   {memory.data(), memory.size(), nullptr},
                                   {nullptr, 200000, nullptr},
                                   {nullptr, 12345, nullptr, f.value().get(), 777}};
  ASSERT_TRUE(HasFilePieces(pieces));
  SplicePipe pipe;
  ASSERT_TRUE(pipe.Fill(pieces, zeros).ok());
  const std::string want =
      data.substr(4096, 65536) + memory + std::string(200000, '\0') + data.substr(777, 12345);
  EXPECT_EQ(pipe.filled(), want.size());
  EXPECT_TRUE(DrainPipe(pipe.read_fd(), 1 << 20) == want);
  // Emptied, the pipe serves the next reply.
  ASSERT_TRUE(pipe.Fill({{nullptr, 100, nullptr, f.value().get(), 0}}, zeros).ok());
  EXPECT_EQ(DrainPipe(pipe.read_fd(), 1 << 20), data.substr(0, 100));
  EXPECT_FALSE(HasFilePieces({{memory.data(), 10, nullptr}, {nullptr, 10, nullptr}}));
}

TEST(SplicePipe, AFileShorterThanItsPieceFailsAndDropsThePipe) {
  TempDir dir;
  WriteFile(dir / "f", std::string(10000, 'x'));
  auto f = Env::Default()->NewRandomAccessFile(dir / "f");
  ASSERT_TRUE(f.ok());
  std::string zeros(4096, '\0');
  SplicePipe pipe;
  Status st = pipe.Fill({{nullptr, 4096, nullptr, f.value().get(), 0},
                         {nullptr, 8192, nullptr, f.value().get(), 8192}},
                        zeros);
  EXPECT_EQ(st.code(), Status::Code::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find(dir / "f"), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("truncated"), std::string::npos) << st.ToString();
  EXPECT_EQ(pipe.read_fd(), -1) << "a pipe holding part of a reply was kept";
  // The next fill starts from an empty pipe.
  ASSERT_TRUE(pipe.Fill({{nullptr, 5000, nullptr, f.value().get(), 5000}}, zeros).ok());
  EXPECT_EQ(DrainPipe(pipe.read_fd(), 1 << 20), std::string(5000, 'x'));
}

TEST(SplicePipe, MorePagesThanAPipeMayHoldAreLeftToCopying) {
  TempDir dir;
  WriteFile(dir / "f", std::string(8 << 20, 'y'));
  auto f = Env::Default()->NewRandomAccessFile(dir / "f");
  ASSERT_TRUE(f.ok());
  std::string zeros(4096, '\0');
  // 512-byte pieces, each on a page of its own: one pipe slot each.
  std::vector<ReadPiece> pieces;
  for (size_t i = 0; i <= SplicePipe::kMaxSlots; ++i)
    pieces.push_back({nullptr, 512, nullptr, f.value().get(), i * 8192});
  SplicePipe pipe;
  EXPECT_EQ(pipe.Fill(pieces, zeros).code(), Status::Code::kNotSupported);
  EXPECT_EQ(pipe.read_fd(), -1);
  pieces.resize(200);  // within the 1 MiB any process may make a pipe hold
  ASSERT_TRUE(pipe.Fill(pieces, zeros).ok());
  EXPECT_EQ(DrainPipe(pipe.read_fd(), 1 << 20), std::string(512 * pieces.size(), 'y'));
}

}  // namespace
}  // namespace chainfs
