// NbdSource read by a backup's SourceReader over several connections
// (qemu-nbd --shared=4 allows multi-conn) while the bitmap's and
// base:allocation's extents are asked: every byte right. Built into
// chainfs_cache_tests, so it also runs under ThreadSanitizer.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "chain/base/file.h"
#include "chain/ingest/nbd_source.h"
#include "chain/ingest/source_reader.h"
#include "tests/chain/test_util.h"

namespace chainfs {
namespace {

using testing::TempDir;

void Shell(const std::string& cmd) { ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd; }

TEST(NbdSourceConcurrency, Issue15ManyReadsOverSeveralConnections) {
  TempDir dir;
  const std::string img = dir / "d.qcow2", sock = dir / "s.sock", pid = dir / "pid";
  Shell("qemu-img create -q -f qcow2 " + img + " 40M");
  Shell("qemu-io -f qcow2 -c 'write -P 0x21 0 9M' -c 'write -P 0x42 13M 5M' "
        "-c 'write -P 0x63 33554431 7000000' " + img + " >/dev/null");
  Shell("qemu-img bitmap --add " + img + " inc");
  Shell("qemu-io -f qcow2 -c 'write -P 0x7e 5M 64k' " + img + " >/dev/null");
  Shell("qemu-img convert -f qcow2 -O raw " + img + " " + dir / "want.raw");
  Shell("qemu-nbd -r -f qcow2 -t --shared=4 -B inc --fork --pid-file=" + pid + " -k " + sock +
        " " + img);
  std::ifstream pf(pid);
  pid_t server = 0;
  pf >> server;
  ASSERT_GT(server, 0);
  struct Kill {
    pid_t p;
    ~Kill() { ::kill(p, SIGTERM); }
  } kill_server{server};

  auto want = ReadWholeFile(dir / "want.raw", 1 << 30);
  ASSERT_TRUE(want.ok());
  auto opened = OpenSource({"nbd+unix:///?socket=" + sock, "", "inc"});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  const Source& src = *opened.value();
  ASSERT_EQ(src.Hints().max_in_flight, 4u) << "qemu-nbd --shared=4 allows multi-conn";

  // Two whole passes through readers of 8 threads, with the extents asked
  // from other threads meanwhile.
  std::string got(src.Size(), '\0');
  auto extents = std::async(std::launch::async, [&] {
    for (int i = 0; i < 5; ++i) {
      auto c = src.ChangedRanges();
      auto z = src.ZeroRanges();
      if (!c.ok()) return c.status();
      if (!z.ok()) return z.status();
      if (c.value().size() != 1 || c.value()[0].offset != 5ull << 20 ||
          c.value()[0].length != 65536)
        return Status::Corruption("the bitmap's extents are not [5M, 5M + 64K)");
    }
    return Status::Ok();
  });
  for (int pass = 0; pass < 2; ++pass) {
    std::fill(got.begin(), got.end(), '\0');
    SourceReader reader(src, 8);
    std::vector<std::promise<Status>> done(got.size() / (3 << 20) + 1);
    for (size_t i = 0; i < done.size(); ++i) {
      const uint64_t off = i * (3ull << 20);
      const size_t n = std::min<uint64_t>(3ull << 20, got.size() - off);
      reader.Read(off, n, got.data() + off, [&done, i](Status st) { done[i].set_value(st); });
    }
    for (auto& d : done) {
      Status st = d.get_future().get();
      ASSERT_TRUE(st.ok()) << st.ToString();
    }
    ASSERT_TRUE(got == want.value()) << "pass " << pass << ": bytes differ from qemu-img convert";
  }
  Status ex = extents.get();
  EXPECT_TRUE(ex.ok()) << ex.ToString();
}

}  // namespace
}  // namespace chainfs
