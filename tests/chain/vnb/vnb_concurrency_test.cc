// VnbLayer under concurrent readers (in chainfs_cache_tests: ThreadSanitizer
// runs it): 8 threads read an lz4 stream's entries, many of them inside one
// frame at the same time (as readahead does), through the shared decoded
// frame cache, each frame decoded by one thread while the others wait; every
// read equals the image.
#include <gtest/gtest.h>

#include <thread>

#include "chain/layer/view.h"
#include "chain/vnb/vnb_layer.h"
#include "tests/chain/test_util.h"
#include "tests/chain/vnb/vnb_writer.h"

namespace chainfs {
namespace {

TEST(VnbConcurrency, ManyReadersOfOneFrameGetTheSameBytes) {
  testing::TempDir tmp;
  testing::VnbDisk d;
  d.Resize(8 << 20);
  d.Write(0, testing::RandomBytes(6 << 20, 5));
  testing::WriteFile(tmp / "s.data",
                     testing::VnbStreamBytes(d.image.size(), "virtnbdbackup.0", "", "vda",
                                             d.Take(true), /*compress=*/true, 2 << 20));
  auto f = Env::Default()->NewRandomAccessFile(tmp / "s.data");
  ASSERT_TRUE(f.ok());
  auto layer = OpenVnbLayer(std::move(f).value(), NextLayerId());
  ASSERT_TRUE(layer.ok()) << layer.status().ToString();
  auto view = View::Create({{layer.value(), "c"}}, "t");
  ASSERT_TRUE(view.ok());
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      std::string buf(64 << 10, '\0');
      for (int round = 0; round < 3; ++round)
        for (uint64_t off = (t % 4) * buf.size(); off + buf.size() <= d.image.size();
             off += 4 * buf.size()) {
          if (!view.value()->Read(off, buf.size(), buf.data()).ok() ||
              buf != d.image.substr(off, buf.size()))
            ++bad;
        }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
}  // namespace chainfs
