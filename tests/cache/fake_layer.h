// FakeLayer: an in-memory Layer for cache tests. Block i is entry i, its bytes
// a pattern of (id, entry); counts ReadBlock calls per entry, can fail chosen
// entries with kCorruption and can hold a load on a hook until a test lets it
// go.
//
// ExtentLayer: an in-memory Layer the way a foreign format looks: extents at
// 512-byte granularity (not aligned to its block size), any power-of-two
// block size, an optional content hash; for property tests of views that
// compose layers of different block sizes.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "chain/base/hash.h"
#include "chain/layer/layer.h"

namespace chainfs::testing {

// A thread-safe record of entry numbers (entries hinted, entries read).
class EntrySet {
 public:
  void Add(uint64_t first, uint64_t count = 1) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (uint64_t e = first; e < first + count; ++e) entries_.insert(e);
  }
  std::set<uint64_t> Get() const {
    std::lock_guard<std::mutex> lock(mu_);
    return entries_;
  }
  void Clear() const {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.clear();
  }

 private:
  mutable std::mutex mu_;
  mutable std::set<uint64_t> entries_;
};

class FakeLayer : public Layer {
 public:
  FakeLayer(uint64_t blocks, uint32_t block_size = 65536)
      : id_(NextLayerId()), blocks_(blocks), block_size_(block_size), reads_(blocks) {}

  uint64_t id() const override { return id_; }
  uint32_t block_size() const override { return block_size_; }
  uint64_t virtual_size() const override { return blocks_ * block_size_; }
  const std::string& location() const override { return location_; }
  void ForEachExtent(const std::function<void(const LayerExtent&)>& fn) const override {
    fn({0, virtual_size(), LayerExtent::Kind::kData, 0});
  }
  Status ReadBlock(uint64_t entry, char* out) const override {
    reads_[entry].fetch_add(1);
    if (on_read) on_read(entry);
    if (corrupt.count(entry)) return Status::Corruption(location_ + ": block checksum mismatch");
    Fill(entry, out);
    return Status::Ok();
  }
  std::optional<ContentHash> BlockHash(uint64_t) const override { return std::nullopt; }
  uint64_t StoredLength(uint64_t) const override { return block_size_ / 2; }
  void WillNeed(uint64_t first, uint64_t count) const override { will_need_.Add(first, count); }
  void WillNeedRuns(const std::vector<EntryRun>& runs) const override {
    will_need_runs_calls_.fetch_add(1);
    static std::atomic<uint64_t> calls{0};  // over all FakeLayers
    will_need_runs_last_.store(calls.fetch_add(1) + 1);
    Layer::WillNeedRuns(runs);
  }
  // Entries WillNeed was called for; how many WillNeedRuns calls asked, and
  // when the last one came (a count of every FakeLayer's calls; 0: never).
  std::set<uint64_t> will_need() const { return will_need_.Get(); }
  int will_need_runs_calls() const { return will_need_runs_calls_.load(); }
  uint64_t will_need_runs_last() const { return will_need_runs_last_.load(); }

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
  EntrySet will_need_;
  mutable std::atomic<int> will_need_runs_calls_{0};
  mutable std::atomic<uint64_t> will_need_runs_last_{0};
};

// Data entry e holds pattern bytes up to its extent's end (Byte(e, offset))
// and zeros past it, as Layer::ReadBlock promises. Records the entries read
// and hinted.
class ExtentLayer : public Layer {
 public:
  ExtentLayer(uint32_t block_size, uint64_t virtual_size, bool known_hashes = true)
      : id_(NextLayerId()), block_size_(block_size), size_(virtual_size),
        known_hashes_(known_hashes) {}

  // Appends a data extent whose entries follow the previous extent's after a
  // gap of `skip` entries; returns its first entry. REQUIRES: offset past
  // the previous extent, multiples of 512 (the end may be virtual_size).
  uint64_t AddData(uint64_t offset, uint64_t length, uint64_t skip = 0) {
    const uint64_t first = next_entry_ + skip;
    extents_.push_back({offset, length, LayerExtent::Kind::kData, first});
    for (uint64_t done = 0; done < length; done += block_size_)
      valid_[first + done / block_size_] =
          static_cast<uint32_t>(std::min<uint64_t>(block_size_, length - done));
    next_entry_ = first + (length + block_size_ - 1) / block_size_;
    return first;
  }
  void AddZero(uint64_t offset, uint64_t length) {
    extents_.push_back({offset, length, LayerExtent::Kind::kZero, 0});
  }
  const std::vector<LayerExtent>& extents() const { return extents_; }

  // The block_size() bytes of data entry `entry` (not recorded as a read).
  void Fill(uint64_t entry, char* out) const {
    const uint32_t valid = valid_.at(entry);
    for (uint32_t w = 0; w * 8 < valid; ++w) {
      const uint64_t v = Word(entry, w);
      std::memcpy(out + w * 8, &v, 8);
    }
    std::memset(out + valid, 0, block_size_ - valid);
  }

  uint64_t id() const override { return id_; }
  uint32_t block_size() const override { return block_size_; }
  uint64_t virtual_size() const override { return size_; }
  const std::string& location() const override { return location_; }
  void ForEachExtent(const std::function<void(const LayerExtent&)>& fn) const override {
    for (const LayerExtent& x : extents_) fn(x);
  }
  Status ReadBlock(uint64_t entry, char* out) const override {
    read_.Add(entry);
    Fill(entry, out);
    return Status::Ok();
  }
  std::optional<ContentHash> BlockHash(uint64_t entry) const override {
    if (!known_hashes_) return std::nullopt;
    std::string block(block_size_, '\0');
    Fill(entry, block.data());
    return HashContent(block.data(), block.size());
  }
  uint64_t StoredLength(uint64_t entry) const override { return entry + 1; }
  void WillNeed(uint64_t first, uint64_t count) const override { will_need_.Add(first, count); }

  std::set<uint64_t> read() const { return read_.Get(); }
  std::set<uint64_t> will_need() const { return will_need_.Get(); }
  void ClearRecords() const {
    read_.Clear();
    will_need_.Clear();
  }

 private:
  uint64_t Word(uint64_t entry, uint64_t w) const {
    uint64_t v = (id_ * 0x9E3779B97F4A7C15ull) ^ (entry * 0xC2B2AE3D27D4EB4Full) ^
                 (w * 0x165667B19E3779F9ull);
    v ^= v >> 29;
    return v * 0xBF58476D1CE4E5B9ull;
  }

  uint64_t id_;
  uint32_t block_size_;
  uint64_t size_;
  bool known_hashes_;
  std::string location_ = "extent.layer";
  std::vector<LayerExtent> extents_;
  std::map<uint64_t, uint32_t> valid_;  // data entry -> bytes its extent fills
  uint64_t next_entry_ = 0;
  EntrySet read_;
  EntrySet will_need_;
};

}  // namespace chainfs::testing
