#include "chain/base/file.h"

#include <algorithm>

namespace chainfs {

void WillNeedRanges::Add(uint64_t offset, uint64_t n) {
  if (n == 0) return;
  if (!ranges_.empty() && ranges_.back().second == offset) {
    ranges_.back().second += n;  // continues the last one (the common case)
    return;
  }
  ranges_.emplace_back(offset, offset + n);
}

void WillNeedRanges::Issue(const RandomAccessFile& f, uint64_t max_gap) {
  std::sort(ranges_.begin(), ranges_.end());
  uint64_t start = 0, end = 0;
  bool open = false;
  for (const auto& [s, e] : ranges_) {
    if (open && s <= end + max_gap) {
      end = std::max(end, e);
      continue;
    }
    if (open) f.WillNeed(start, end - start);
    start = s;
    end = e;
    open = true;
  }
  if (open) f.WillNeed(start, end - start);
  ranges_.clear();
}

}  // namespace chainfs
