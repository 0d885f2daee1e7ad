// Issue 14: a view opened from its view map (chain/repo/view_map.h) makes
// each layer's path, id, open file and opened layer on first use, from
// whichever thread asks first. Threads that all ask at once get the same
// bytes as one thread would, and each layer ends with one path and one id.
// Also run under ThreadSanitizer (ctest -L tsan).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "chain/repo/view_map.h"
#include "tests/chain/repo_util.h"

namespace chainfs {
namespace {

using testing::RandomBytes;
using testing::TempDir;
using testing::WriteFile;

constexpr uint32_t kBs = 4096;
constexpr int kDepth = 24;  // past kMinViewMapDepth: the newest view has a map
constexpr int kThreads = 8;

TEST(ViewMapConcurrencyTest, Issue14ThreadsFirstTouchingAMappedViewsLayersReadItRight) {
  static_assert(kDepth >= static_cast<int>(kMinViewMapDepth));
  TempDir dir;
  testing::FaultyEnv env;
  auto repo = testing::NewRepository(dir, &env, kBs);
  ASSERT_NE(repo, nullptr);
  // Each checkpoint rewrites one block: the newest view reads from many layers.
  std::string disk = RandomBytes(32 * kBs, 1);
  for (int i = 0; i < kDepth; ++i) {
    if (i > 0) disk.replace((i * 5 % 32) * kBs, kBs, RandomBytes(kBs, 100 + i));
    WriteFile(dir / "disk.raw", disk);
    char name[16];
    std::snprintf(name, sizeof name, "c%03d", i);
    Status st = testing::BackupVda(*repo, name, dir / "disk.raw");
    ASSERT_TRUE(st.ok()) << name << ": " << st.ToString();
  }
  for (int round = 0; round < 4; ++round) {
    auto fresh = Repository::Open(dir / "repo", &env);  // nothing opened yet
    ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
    auto g = fresh.value()->LoadGroup("vm1");
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    auto v = fresh.value()->OpenView(g.value(), *g.value().Newest(), "vda");
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    const View& view = *v.value();
    ASSERT_EQ(view.layers().size(), static_cast<size_t>(kDepth));
    for (const View::LayerRef& ref : view.layers())  // opened from its map: nothing yet
      ASSERT_FALSE(ref.layer->Loaded()) << ref.checkpoint;
    std::atomic<int> ready{0};
    std::vector<std::string> got(kThreads);
    std::vector<std::vector<uint64_t>> ids(kThreads);
    std::vector<std::vector<std::string>> paths(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        ready.fetch_add(1);
        while (ready.load() < kThreads) std::this_thread::yield();
        // Half the threads read first, half ask paths and ids first.
        auto ask = [&] {
          for (const View::LayerRef& ref : view.layers()) {
            paths[t].push_back(ref.layer->location());
            ids[t].push_back(ref.layer->id());
          }
        };
        if (t % 2 == 1) ask();
        got[t].resize(view.size());
        Status st = view.Read(0, got[t].size(), got[t].data());
        EXPECT_TRUE(st.ok()) << st.ToString();
        if (t % 2 == 0) ask();
      });
    for (std::thread& th : threads) th.join();
    for (int t = 0; t < kThreads; ++t) {
      EXPECT_TRUE(got[t] == disk) << "thread " << t << " read other bytes";
      EXPECT_EQ(ids[t], ids[0]) << "thread " << t;
      EXPECT_EQ(paths[t], paths[0]) << "thread " << t;
    }
  }
}

}  // namespace
}  // namespace chainfs
