// FakeLayer: an in-memory Layer for cache tests. Block i is entry i, its bytes
// a pattern of (id, entry); counts ReadBlock calls per entry, can fail chosen
// entries with kCorruption and can hold a load on a hook until a test lets it
// go.
#pragma once

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "chain/layer/layer.h"

namespace chainfs::testing {

class FakeLayer : public Layer {
 public:
  FakeLayer(uint64_t blocks, uint32_t block_size = 65536)
      : id_(NextLayerId()), blocks_(blocks), block_size_(block_size), reads_(blocks) {}

  uint64_t id() const override { return id_; }
  uint32_t block_size() const override { return block_size_; }
  uint64_t virtual_size() const override { return blocks_ * block_size_; }
  const std::string& location() const override { return location_; }
  void ForEachExtent(const std::function<void(const LayerExtent&)>& fn) const override {
    fn({0, blocks_, LayerExtent::Kind::kData, 0});
  }
  Status ReadBlock(uint64_t entry, char* out) const override {
    reads_[entry].fetch_add(1);
    if (on_read) on_read(entry);
    if (corrupt.count(entry)) return Status::Corruption(location_ + ": block checksum mismatch");
    Fill(entry, out);
    return Status::Ok();
  }
  ContentHash BlockHash(uint64_t) const override { return {}; }
  uint64_t StoredLength(uint64_t) const override { return block_size_ / 2; }
  void WillNeed(uint64_t first, uint64_t count) const override {
    std::lock_guard<std::mutex> lock(will_need_mu_);
    for (uint64_t e = first; e < first + count; ++e) will_need_.insert(e);
  }
  // Entries WillNeed was called for.
  std::set<uint64_t> will_need() const {
    std::lock_guard<std::mutex> lock(will_need_mu_);
    return will_need_;
  }

  // The bytes block `entry` holds.
  void Fill(uint64_t entry, char* out) const {
    for (uint32_t i = 0; i < block_size_; i += 8) {
      uint64_t v = (id_ << 40) ^ (entry << 16) ^ i;
      std::memcpy(out + i, &v, 8);
    }
  }
  uint64_t reads(uint64_t entry) const { return reads_[entry].load(); }
  uint64_t total_reads() const {
    uint64_t n = 0;
    for (const auto& r : reads_) n += r.load();
    return n;
  }

  std::set<uint64_t> corrupt;             // set before sharing the layer
  std::function<void(uint64_t)> on_read;  // called inside ReadBlock

 private:
  uint64_t id_;
  uint64_t blocks_;
  uint32_t block_size_;
  std::string location_ = "fake.delta";
  mutable std::vector<std::atomic<uint64_t>> reads_;
  mutable std::mutex will_need_mu_;
  mutable std::set<uint64_t> will_need_;
};

}  // namespace chainfs::testing
