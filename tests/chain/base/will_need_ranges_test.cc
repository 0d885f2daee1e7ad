// WillNeedRanges: a layer's hints for one window, asked of its file in file
// order, neighbours closer than the gap merged.
#include <gtest/gtest.h>

#include <mutex>
#include <utility>
#include <vector>

#include "chain/base/file.h"

namespace chainfs {
namespace {

// Records the WillNeed calls it gets; reads nothing.
class HintLog : public RandomAccessFile {
 public:
  Status ReadAt(uint64_t, size_t, void*) const override { return Status::NotSupported("no reads"); }
  uint64_t Size() const override { return 1ull << 40; }
  const std::string& Path() const override { return path_; }
  void WillNeed(uint64_t offset, uint64_t n) const override { calls.emplace_back(offset, n); }
  mutable std::vector<std::pair<uint64_t, uint64_t>> calls;

 private:
  std::string path_ = "hint-log";
};

using Calls = std::vector<std::pair<uint64_t, uint64_t>>;
constexpr uint64_t K = 1024;

TEST(WillNeedRanges, AsksInFileOrderAndMergesRangesCloserThanTheGap) {
  HintLog f;
  WillNeedRanges r;
  // Out of order, as a window's runs of one layer come (in guest order, not
  // in the order the image's clusters were written).
  r.Add(1024 * K, 64 * K);
  r.Add(0, 64 * K);
  r.Add(128 * K, 64 * K);   // 64 KiB after the first: merged, gap read too
  r.Add(192 * K, 64 * K);   // continues it
  r.Add(320 * K + 1, 10);   // 64 KiB + 1 after: a hint of its own
  r.Add(2048 * K, 0);       // empty: nothing
  r.Issue(f, 64 * K);
  EXPECT_EQ(f.calls, (Calls{{0, 256 * K}, {320 * K + 1, 10}, {1024 * K, 64 * K}}));
}

TEST(WillNeedRanges, OverlapsAndDuplicatesAreAskedForOnceAndIssueEmptiesTheList) {
  HintLog f;
  WillNeedRanges r;
  r.Add(100, 50);
  r.Add(120, 10);   // inside the first
  r.Add(100, 50);   // the same again
  r.Add(140, 100);  // overlaps its end
  r.Issue(f, 0);
  EXPECT_EQ(f.calls, (Calls{{100, 140}}));
  r.Issue(f, 0);
  EXPECT_EQ(f.calls.size(), 1u) << "a second Issue asked again";
}

TEST(WillNeedRanges, WithoutAGapOnlyTouchingRangesMerge) {
  HintLog f;
  WillNeedRanges r;
  r.Add(0, 10);
  r.Add(11, 10);
  r.Add(21, 5);
  r.Issue(f, 0);
  EXPECT_EQ(f.calls, (Calls{{0, 10}, {11, 15}}));
}

}  // namespace
}  // namespace chainfs
