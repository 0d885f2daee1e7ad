// A Source over bytes in memory for tests: optional latency per read,
// optional changed and zero ranges, and counters of what was read and how
// many reads ran at once.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "chain/ingest/source.h"

namespace chainfs::testing {

class FakeSource : public Source {
 public:
  FakeSource(std::string bytes, ReadHints hints) : bytes_(std::move(bytes)), hints_(hints) {}

  std::chrono::milliseconds latency{0};
  std::vector<ByteRange> changed;  // reported when has_changed
  bool has_changed = false;
  std::vector<ByteRange> zeros;  // reported when has_zeros
  bool has_zeros = false;

  const std::string& Name() const override { return name_; }
  uint64_t Size() const override { return bytes_.size(); }
  ReadHints Hints() const override { return hints_; }
  Status ReadAt(uint64_t offset, size_t n, void* buf) const override {
    const int now = ++in_flight_;
    int seen = max_in_flight_seen_.load();
    while (now > seen && !max_in_flight_seen_.compare_exchange_weak(seen, now)) {
    }
    if (latency.count() > 0) std::this_thread::sleep_for(latency);
    Status st;
    if (offset > bytes_.size() || n > bytes_.size() - offset) {
      st = Status::InvalidArgument(name_ + ": read past the end at offset " +
                                   std::to_string(offset));
    } else {
      std::memcpy(buf, bytes_.data() + offset, n);
      std::lock_guard<std::mutex> lock(mu_);
      reads_.push_back({offset, n});
    }
    --in_flight_;
    return st;
  }
  bool HasChangedRanges() const override { return has_changed; }
  Result<std::vector<ByteRange>> ChangedRanges() const override { return changed; }
  bool HasZeroRanges() const override { return has_zeros; }
  Result<std::vector<ByteRange>> ZeroRanges() const override { return zeros; }

  int max_in_flight_seen() const { return max_in_flight_seen_.load(); }
  std::vector<ByteRange> reads() const {
    std::lock_guard<std::mutex> lock(mu_);
    return reads_;
  }

 private:
  std::string name_ = "fake://disk";
  std::string bytes_;
  ReadHints hints_;
  mutable std::atomic<int> in_flight_{0};
  mutable std::atomic<int> max_in_flight_seen_{0};
  mutable std::mutex mu_;
  mutable std::vector<ByteRange> reads_;
};

}  // namespace chainfs::testing
