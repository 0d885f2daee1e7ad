// NbdSource against real QEMU tools: images made by qemu-img and qemu-io,
// served by the qemu-nbd the source starts itself (socket activation).
#include "chain/ingest/nbd_source.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <thread>
#include <vector>

#include "chain/base/file.h"
#include "tests/chain/test_util.h"

namespace chainfs {
namespace {

using testing::TempDir;
using testing::WriteFile;

void Shell(const std::string& cmd) { ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd; }

std::string Slurp(const std::string& path) {
  auto text = ReadWholeFile(path, 1 << 30);
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  return text.ok() ? text.value() : "";
}

TEST(NbdSource, Issue15ImagesAreToldByContentNotByName) {
  TempDir dir;
  for (const char* fmt : {"qcow2", "vmdk", "vdi", "vhdx", "vpc", "qed"}) {
    const std::string path = dir / (std::string("img.") + fmt + ".raw");  // a misleading name
    Shell("qemu-img create -q -f " + std::string(fmt) + " " + path + " 4M");
    auto got = ProbeImageFormat(path);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got.value(), fmt) << path;
  }
  WriteFile(dir / "raw.qcow2", std::string(8192, 'x'));  // raw content, qcow2 name
  auto raw = ProbeImageFormat(dir / "raw.qcow2");
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw.value(), "");
  WriteFile(dir / "tiny", "QF");  // shorter than any magic
  EXPECT_EQ(ProbeImageFormat(dir / "tiny").value(), "");
  auto missing = ProbeImageFormat(dir / "nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(dir / "nope"), std::string::npos);
}

TEST(NbdSource, Issue15UriSchemes) {
  for (const char* uri : {"nbd://host/export", "nbd+unix:///e?socket=/s", "nbds://h:10809/e",
                          "nbds+unix:///?socket=/s", "nbd+vsock:///", "nbd:/bad"})
    EXPECT_TRUE(IsNbdUri(uri)) << uri;
  for (const char* path : {"/dev/sda", "disk.qcow2", "nbd.img", "./nbd://x"})
    EXPECT_FALSE(IsNbdUri(path)) << path;
}

TEST(NbdSource, Issue15AQcow2ReadsAsQemuSeesItFromManyThreads) {
  TempDir dir;
  const std::string img = dir / "d.qcow2";
  Shell("qemu-img create -q -f qcow2 " + img + " 24M");
  Shell("qemu-io -f qcow2 -c 'write -P 0x5a 1M 3M' -c 'write -P 0x17 7340033 70000' "
      "-c 'write -P 0x33 20M 4M' " + img + " >/dev/null");
  Shell("qemu-img convert -f qcow2 -O raw " + img + " " + dir / "want.raw");
  const std::string want = Slurp(dir / "want.raw");

  auto opened = OpenSource({img, "", ""});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  const Source& src = *opened.value();
  EXPECT_EQ(src.Size(), want.size());
  EXPECT_NE(src.Name().find("qcow2, through qemu-nbd"), std::string::npos) << src.Name();
  EXPECT_FALSE(src.HasChangedRanges());

  // Four threads read interleaved unaligned pieces at once.
  std::string got(want.size(), '\0');
  std::vector<std::thread> threads;
  std::vector<Status> status(4);
  constexpr uint64_t kPiece = 1234567;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (uint64_t off = t * kPiece; off < got.size() && status[t].ok(); off += 4 * kPiece) {
        const size_t n = std::min<uint64_t>(kPiece, got.size() - off);
        status[t] = src.ReadAt(off, n, got.data() + off);
      }
    });
  for (auto& th : threads) th.join();
  for (const auto& st : status) ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(got == want) << "bytes read over NBD differ from qemu-img convert";

  // base:allocation: the never-written space is known to read as zeros.
  ASSERT_TRUE(src.HasZeroRanges());
  auto zeros = src.ZeroRanges();
  ASSERT_TRUE(zeros.ok()) << zeros.status().ToString();
  uint64_t zero_bytes = 0;
  for (const auto& r : zeros.value()) {
    zero_bytes += r.length;
    ASSERT_LE(r.offset + r.length, want.size());
    const size_t data = want.find_first_not_of('\0', r.offset);
    EXPECT_TRUE(data == std::string::npos || data >= r.offset + r.length)
        << "a zero range holds data at " << r.offset;
  }
  EXPECT_GE(zero_bytes, 24ull * 1048576 - 8ull * 1048576 - 2 * 65536)
      << "base:allocation should report the unwritten 16 MiB as zeros";

  char b[16];
  auto past = src.ReadAt(want.size() - 8, 16, b);
  ASSERT_FALSE(past.ok());
  EXPECT_NE(past.message().find("past its end"), std::string::npos) << past.ToString();
}

}  // namespace
}  // namespace chainfs
