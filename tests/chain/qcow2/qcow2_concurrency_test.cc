// Qcow2Layer under concurrent readers (in chainfs_cache_tests: ThreadSanitizer
// runs it): 8 threads read the view of a chain of qcow2 images (compressed
// clusters, subclusters) at once, through the process-wide L2 table cache
// and the per-thread decompressed cluster; every read equals what qemu-img
// convert gives.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/filesystem.hpp>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

#include "chain/repo/repository.h"
#include "tests/chain/test_util.h"

namespace chainfs {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

TEST(Qcow2Concurrency, ManyReadersOfAChainGetQemusBytes) {
  testing::TempDir tmp;
  const std::string d = tmp / "img";
  boost::filesystem::create_directories(d);
  const std::string sh =
      "cd '" + d + "' && { head -c 4M /dev/urandom > r && yes chainfs | head -c 4M >> r && "
      "qemu-img convert -c -O qcow2 -o cluster_size=16K,compression_type=zstd r base.qcow2 && "
      "qemu-img create -q -f qcow2 -o cluster_size=16K,extended_l2=on -b base.qcow2 -F qcow2 top.qcow2 && "
      "qemu-io -c 'write -P 7 5K 2K' -c 'write -P 8 1M 100K' -c 'write -z 6M 3K' top.qcow2 && "
      "qemu-img convert -O raw top.qcow2 top.ref; } >/dev/null";
  ASSERT_EQ(std::system(sh.c_str()), 0) << sh;
  const std::string want = ReadAll(d + "/top.ref");
  auto repo = Repository::Open(d);
  ASSERT_TRUE(repo.ok()) << repo.status().ToString();
  auto view = repo.value()->OpenView("top", "top", "disk");
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  ASSERT_EQ(view.value()->size(), want.size());
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      std::string buf(12 << 10, '\0');  // not a multiple of the cluster: reads straddle
      for (uint64_t off = t * 4096; off + buf.size() <= want.size(); off += 3 * buf.size()) {
        if (!view.value()->Read(off, buf.size(), buf.data()).ok() ||
            std::memcmp(buf.data(), want.data() + off, buf.size()) != 0)
          ++bad;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
}  // namespace chainfs
