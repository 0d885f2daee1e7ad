#include "cache/block_cache.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <mutex>
#include <unordered_map>

namespace chainfs {

struct BlockCache::Counters {
  std::atomic<uint64_t> bytes_held{0};
  std::atomic<uint64_t> blocks_held{0};
  std::atomic<uint64_t> hits{0};
  std::atomic<uint64_t> misses{0};
  std::atomic<uint64_t> loads_merged{0};
  std::atomic<uint64_t> evictions{0};
  std::atomic<uint64_t> load_ns{0};
  std::atomic<uint64_t> loaded_bytes{0};
  std::atomic<uint64_t> stored_bytes_read{0};
  std::atomic<uint64_t> checksum_failures{0};
  std::atomic<uint64_t> load_failures{0};
  std::atomic<uint64_t> readahead_issued{0};
  std::atomic<uint64_t> readahead_used{0};
  std::atomic<uint64_t> readahead_wasted{0};
  std::atomic<uint64_t> readahead_skipped{0};
};

namespace {

void Add(std::atomic<uint64_t>& c, uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }
void Sub(std::atomic<uint64_t>& c, uint64_t n) { c.fetch_sub(n, std::memory_order_relaxed); }
uint64_t Load(const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); }

// What a shard keeps per resident block besides the policy's fields.
struct Resident {
  std::shared_ptr<const BlockCache::Block> block;
  bool prefetched_unused = false;  // loaded by readahead, not read yet
  uint32_t next_offset = 0;        // where the last read of this block ended
};

// A read of a sequential scan that reaches the end of the block, or the last
// the scan makes of it (ReadOptions::last_of_block: the rest of the block is
// shadowed in the view, or holds none of its data): the scan is done with it
// (S3Fifo holds such blocks to the small FIFO's share). Without the second
// case a view whose newer layers shadow pieces of older blocks kept every
// such block, and a one-pass read of a deep view filled the whole cache.
bool ConsumedByScan(const ReadOptions& o, uint32_t offset, uint32_t n, uint32_t block_size) {
  return o.scan && n > 0 && (o.last_of_block || offset + n == block_size);
}

unsigned AutoShards(uint64_t capacity) {
  uint64_t want = std::clamp<uint64_t>(capacity / (8ull << 20), 1, 16);
  unsigned shards = 1;
  while (shards * 2 <= want) shards *= 2;
  return shards;
}

}  // namespace

struct BlockCache::Shard {
  Shard(uint64_t capacity, uint64_t small) : policy(capacity, small) {}
  std::mutex mu;
  S3Fifo<Resident> policy;
  // Loads in flight: waiters share the loader's result.
  std::unordered_map<CacheKey, std::shared_future<Result<Handle>>, CacheKeyHash> loading;

  // A read (not a prefetch) of [offset, offset + n) of resident entry e.
  // REQUIRES: mu held.
  void RecordRead(S3Fifo<Resident>::Entry* e, uint32_t offset, uint32_t n, const ReadOptions& o,
                  Counters& c) {
    const bool scan = o.scan;
    Resident& r = e->value;
    if (r.prefetched_unused) {
      r.prefetched_unused = false;  // the prefetch's use, not a re-use
      Add(c.readahead_used);
    } else if (!scan && (offset == 0 || offset != r.next_offset)) {
      policy.Use(e);  // not a scan, nor the continuation of a read of the block
    }
    if (ConsumedByScan(o, offset, n, r.block->size())) policy.MarkScan(e);
    r.next_offset = offset + n;
  }
};

BlockCache::Block::Block(uint32_t size, std::shared_ptr<BufferPool> pool)
    : data_(pool->Take(size)), size_(size), pool_(std::move(pool)) {}

BlockCache::Block::~Block() { pool_->Give(data_, size_); }

BlockCache::BlockCache(const BlockCacheOptions& options)
    : capacity_(options.capacity_bytes),
      counters_(std::make_shared<Counters>()),
      pool_(std::make_shared<BufferPool>(kPoolBytes)) {
  const unsigned n = options.shards ? options.shards : AutoShards(capacity_);
  const uint64_t per_shard = capacity_ / n;
  const uint64_t small = per_shard * std::min(options.small_percent, 100u) / 100;
  for (unsigned i = 0; i < n; ++i) shards_.push_back(std::make_unique<Shard>(per_shard, small));
}

BlockCache::~BlockCache() = default;

BlockCache::Shard& BlockCache::ShardFor(const CacheKey& key) const {
  return *shards_[(CacheKeyHash()(key) >> 32) % shards_.size()];
}

Status BlockCache::ReadBlockRange(const Layer& layer, uint64_t entry, uint32_t offset, uint32_t n,
                                  char* out, const ReadOptions& options) {
  bool skipped = false;
  Result<Handle> h = Lookup(layer, entry, offset, n, Origin::kRead, options, &skipped);
  if (!h.ok()) return h.status();
  std::memcpy(out, h.value()->data() + offset, n);
  return Status::Ok();
}

Result<std::shared_ptr<const char>> BlockCache::PinBlock(const Layer& layer, uint64_t entry,
                                                         uint32_t offset, uint32_t n,
                                                         const ReadOptions& options) {
  bool skipped = false;
  Result<Handle> h = Lookup(layer, entry, offset, n, Origin::kRead, options, &skipped);
  if (!h.ok()) return h.status();
  const char* data = h.value()->data();
  return std::shared_ptr<const char>(std::move(h).value(), data);
}

Result<BlockCache::Handle> BlockCache::Get(const Layer& layer, uint64_t entry) {
  bool skipped = false;
  return Lookup(layer, entry, 0, layer.block_size(), Origin::kRead, ReadOptions{}, &skipped);
}

bool BlockCache::Prefetch(const Layer& layer, uint64_t entry) {
  bool skipped = false;
  Lookup(layer, entry, 0, 0, Origin::kPrefetch, ReadOptions{}, &skipped);
  return !skipped;
}

bool BlockCache::Contains(uint64_t layer_id, uint64_t entry) const {
  const CacheKey key{layer_id, entry};
  Shard& shard = ShardFor(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  return shard.policy.Find(key) != nullptr || shard.loading.count(key) != 0;
}

Result<BlockCache::Handle> BlockCache::Lookup(const Layer& layer, uint64_t entry, uint32_t offset,
                                              uint32_t n, Origin origin,
                                              const ReadOptions& options, bool* skipped) {
  const CacheKey key{layer.id(), entry};
  Shard& shard = ShardFor(key);
  Counters& c = *counters_;
  std::unique_lock<std::mutex> lock(shard.mu);
  if (auto* e = shard.policy.Find(key)) {
    if (origin == Origin::kPrefetch) {
      *skipped = true;
      Add(c.readahead_skipped);
      return Handle();
    }
    shard.RecordRead(e, offset, n, options, c);
    Add(c.hits);
    return e->value.block;
  }
  if (auto it = shard.loading.find(key); it != shard.loading.end()) {
    if (origin == Origin::kPrefetch) {
      *skipped = true;
      Add(c.readahead_skipped);
      return Handle();
    }
    std::shared_future<Result<Handle>> pending = it->second;
    lock.unlock();
    Add(c.loads_merged);
    Result<Handle> r = pending.get();
    if (r.ok()) {  // it may have been a prefetch: this read is its use
      lock.lock();
      if (auto* e = shard.policy.Find(key)) shard.RecordRead(e, offset, n, options, c);
    }
    return r;
  }
  std::promise<Result<Handle>> promise;
  shard.loading.emplace(key, promise.get_future().share());
  lock.unlock();

  Add(origin == Origin::kRead ? c.misses : c.readahead_issued);
  Result<Handle> r = Status::Corruption("unreachable");
  try {
    r = LoadBlock(layer, entry);
  } catch (...) {  // bad_alloc: free the slot, waiters see a broken promise
    lock.lock();
    shard.loading.erase(key);
    throw;
  }
  lock.lock();
  shard.loading.erase(key);
  const uint64_t charge = layer.block_size() + kEntryOverhead;
  if (r.ok() && charge <= shard.policy.capacity()) {
    // Counters move under the shard lock, by the net change, so bytes_held is
    // always a sum of shard states, each within its shard's capacity.
    uint64_t freed = 0, dropped = 0;
    Resident res{r.value(), origin == Origin::kPrefetch, offset + n};
    const bool consumed =
        origin == Origin::kRead && ConsumedByScan(options, offset, n, layer.block_size());
    shard.policy.Insert(
        key, std::move(res), charge,
        [&](S3Fifo<Resident>::Entry&& gone) {
          freed += gone.charge;
          ++dropped;
          if (gone.value.prefetched_unused) Add(c.readahead_wasted);
        },
        consumed);
    Add(c.evictions, dropped);
    if (charge >= freed)
      Add(c.bytes_held, charge - freed);
    else
      Sub(c.bytes_held, freed - charge);
    if (dropped == 0)
      Add(c.blocks_held);
    else
      Sub(c.blocks_held, dropped - 1);
  }
  lock.unlock();
  promise.set_value(r);
  return r;
}

Result<BlockCache::Handle> BlockCache::LoadBlock(const Layer& layer, uint64_t entry) {
  Counters& c = *counters_;
  auto block = std::make_shared<Block>(layer.block_size(), pool_);
  const auto start = std::chrono::steady_clock::now();
  Status st = layer.ReadBlock(entry, block->mutable_data());
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::steady_clock::now() - start);
  Add(c.load_ns, static_cast<uint64_t>(ns.count()));
  if (!st.ok()) {
    Add(c.load_failures);
    if (st.code() == Status::Code::kCorruption) Add(c.checksum_failures);
    return st;
  }
  Add(c.loaded_bytes, layer.block_size());
  Add(c.stored_bytes_read, layer.StoredLength(entry));
  return Handle(std::move(block));
}

BlockCacheStats BlockCache::Stats() const {
  const Counters& c = *counters_;
  BlockCacheStats s;
  s.capacity_bytes = capacity_;
  s.bytes_held = Load(c.bytes_held);
  s.blocks_held = Load(c.blocks_held);
  s.hits = Load(c.hits);
  s.misses = Load(c.misses);
  s.loads_merged = Load(c.loads_merged);
  s.evictions = Load(c.evictions);
  s.load_ns = Load(c.load_ns);
  s.loaded_bytes = Load(c.loaded_bytes);
  s.stored_bytes_read = Load(c.stored_bytes_read);
  s.checksum_failures = Load(c.checksum_failures);
  s.load_failures = Load(c.load_failures);
  s.readahead_issued = Load(c.readahead_issued);
  s.readahead_used = Load(c.readahead_used);
  s.readahead_wasted = Load(c.readahead_wasted);
  s.readahead_skipped = Load(c.readahead_skipped);
  s.block_memory_bytes = pool_->live_bytes();
  s.pool_free_bytes = pool_->free_bytes();
  s.buffers_reused = pool_->reused();
  s.pool_slab_bytes = pool_->slab_bytes();
  return s;
}

}  // namespace chainfs
