// BlockCache: decoded blocks shared by every view of a mount.
//
//   View::Read ──► BlockCache::ReadBlockRange(layer, entry, off, n, out)
//                     │ hit: copy out of the cached block
//                     │ miss: one thread loads (Layer::ReadBlock: pread,
//                     │       checksum, decompress), the others wait for it
//                     ▼
//                  shard[hash(layer id, entry) % shards]
//                     small FIFO (10%) ──► main FIFO (CLOCK) ──► evicted
//                          │ not re-used
//                          ▼
//                     ghost FIFO (keys only)
//
// Key: (Layer::id(), entry). Layer ids are process-unique and a Repository
// reuses an open layer for every view that reaches it, so a block of a full
// backup is cached once for all checkpoints above it.
//
// Policy: S3-FIFO (Yang et al., SOSP'23), chosen because a backup mount sees
// long one-pass scans (rsync, dd, qemu-img convert) mixed with a small hot
// set (filesystem metadata, a booted VM's working set). New blocks enter a
// small FIFO (10% of the capacity); a block leaving it is promoted to the
// main FIFO only if it was re-used while there, otherwise only its key goes
// to the ghost FIFO. A scan therefore cycles through the small FIFO and never
// touches the main one. A miss on a ghost key goes straight to main (the
// block came back soon after being dropped). Main evicts with CLOCK-like
// reinsertion: a block with a non-zero use count (0..3) is reinserted with
// the count decremented. Hits only bump a counter under the shard lock; no
// list is reordered on a hit.
//
// What counts as a re-use: a read of the block that does not continue where
// the previous read of the same block ended (a sequential reader copying a
// 64 KiB block in 4 KiB pieces uses it once), is not part of a sequential
// scan (ReadOptions::scan), and is not the first read of a block that readahead
// loaded (that read is the prefetch's "use").
//
// A block a sequential scan has read to its end (or read for the last time,
// ReadOptions::last_of_block) is a scan entry: it leaves
// the small FIFO as soon as that FIFO is over its share, even while the
// cache has room (S3Fifo). A `cat`, `dd` or `rsync` of a whole disk then
// recycles about 10% of the capacity instead of filling it: it does not
// fault in (and the kernel zero) cache_size of fresh memory, which took about
// a fifth of the daemon's CPU in a fresh mount's sequential read.
//
// Memory: bytes_held (sum of charges of resident blocks) never exceeds the
// capacity after an insert returns. The charge of a block is its size plus
// kEntryOverhead (its list and index nodes, handle control block and malloc
// header, about 200 bytes measured, rounded up). Beyond the capacity, each
// loading thread holds at most one block buffer not charged yet, and a
// reader pins the blocks of the request it is answering (PinBlock, up to
// 1 MiB) until the reply is written (a block evicted meanwhile is freed with
// the last handle):
//   block memory <= capacity + loading threads * block_size
//                   + reading threads * max(1 MiB, block_size)
// The ghost FIFO adds at most one key (~80 bytes) per block the capacity
// holds: 0.1% of the capacity with 64 KiB blocks.
//
// The daemon's resident memory (docs: the mount's -o cache_size help):
//   RSS <= cache_size
//        + (readahead threads + FUSE threads) * block_size   (loads in flight)
//        + FUSE threads * 2 MiB       (request buffer, pinned blocks of a reply)
//        + up to 2 MiB per block size (the last slab) and 4 MiB of freed
//          buffers of blocks over 256 KiB (BufferPool)
//        + per open layer: 48 bytes per stored block + 16 per zero run (index)
//        + per open view: 32 bytes per extent map run
//        + readahead queue: <= max_queued_blocks * ~64 bytes
//        + the inode table and the binary (~10 MiB)
// Layers and views are held only while a file is open (or a loop device on
// it), so the per-layer term counts the chains of the open views, not the
// repository.
// Block buffers come from BufferPool slabs, not malloc, so per-thread malloc
// arenas hold no freed block memory. Measured: README (cache_size option)
// and scripts/bench-cache.
//
// Thread-safety: all public methods are thread-safe. Counters are relaxed
// atomics: a Stats() snapshot is not one instant, but each counter is exact.
//
//   BlockCache cache({.capacity_bytes = 256 << 20});
//   auto view = repo->OpenView("vm1", "c3", "vda", &cache);
//   std::vector<char> buf(4096);
//   Status st = (*view)->Read(1 << 20, buf.size(), buf.data());  // miss: loads
//   st = (*view)->Read(1 << 20, buf.size(), buf.data());           // hit
//   BlockCacheStats s = cache.Stats();  // s.hits == 1, s.misses == 1
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "cache/buffer_pool.h"
#include "cache/s3fifo.h"
#include "chain/layer/layer.h"
#include "chain/base/status.h"
#include "chain/layer/view.h"

namespace chainfs {

struct BlockCacheOptions {
  // Bound on the charges of resident blocks. 0 disables caching: every read
  // loads (concurrent loads of one block are still merged).
  uint64_t capacity_bytes = 256ull << 20;
  // Lock shards; 0 picks min(16, capacity / 8 MiB) rounded down to a power of
  // two (at least 1), so each shard holds enough blocks for the policy.
  unsigned shards = 0;
  // Share of each shard's capacity for the small FIFO, in percent.
  unsigned small_percent = 10;
};

// A snapshot of the counters. "load" = Layer::ReadBlock: pread, checksum
// check, decompression and content hash check.
struct BlockCacheStats {
  uint64_t capacity_bytes = 0;
  uint64_t bytes_held = 0;  // sum of charges of resident blocks
  uint64_t blocks_held = 0;
  uint64_t hits = 0;          // reads served from a resident block
  uint64_t misses = 0;        // reads that started a load
  uint64_t loads_merged = 0;  // reads that waited for another's load
  uint64_t evictions = 0;
  uint64_t load_ns = 0;             // time inside Layer::ReadBlock (decompression)
  uint64_t loaded_bytes = 0;        // decoded bytes loaded (block_size per load)
  uint64_t stored_bytes_read = 0;   // stored (on-disk) bytes of loaded blocks
  uint64_t checksum_failures = 0;   // loads failing with kCorruption
  uint64_t load_failures = 0;       // all failed loads (never cached)
  uint64_t readahead_issued = 0;    // prefetch loads started
  uint64_t readahead_used = 0;      // prefetched blocks later read
  uint64_t readahead_wasted = 0;    // prefetched blocks evicted unread
  uint64_t readahead_skipped = 0;   // prefetch requests already cached/in flight
  uint64_t block_memory_bytes = 0;  // every live block buffer (held, loading, pinned)
  uint64_t pool_free_bytes = 0;     // freed block buffers kept for reuse (BufferPool)
  uint64_t pool_slab_bytes = 0;     // memory mapped for block buffers up to 256 KiB
  uint64_t buffers_reused = 0;      // loads that got a recycled buffer
};

class BlockCache : public BlockReader {
 public:
  // Charge of one resident block beyond its bytes: list and index nodes,
  // handle control block, malloc headers (~200 bytes, rounded up). Keeps the
  // capacity a bound on memory, not only on block bytes.
  static constexpr uint64_t kEntryOverhead = 256;
  // Freed block buffers over 256 KiB kept for the next loads (BufferPool);
  // smaller ones are all kept (slab memory).
  static constexpr uint64_t kPoolBytes = 4ull << 20;

  // A decoded block. Shared: a reader copying out of it is safe against
  // eviction, the memory goes with the last handle.
  class Block {
   public:
    Block(uint32_t size, std::shared_ptr<BufferPool> pool);
    ~Block();
    Block(const Block&) = delete;
    Block& operator=(const Block&) = delete;
    const char* data() const { return data_; }
    char* mutable_data() { return data_; }
    uint32_t size() const { return size_; }

   private:
    char* data_;  // from pool_
    uint32_t size_;
    std::shared_ptr<BufferPool> pool_;  // outlives the cache if need be
  };
  using Handle = std::shared_ptr<const Block>;

  explicit BlockCache(const BlockCacheOptions& options);
  ~BlockCache() override;
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  // BlockReader: copies [offset, offset + n) of the decoded block, loading it
  // on a miss. A failed load is returned to this reader and every reader that
  // waited for it, and is not cached: the next read tries again.
  // REQUIRES: offset + n <= layer.block_size().
  // options.scan: the read belongs to a sequential scan (the mount sets it
  // for reads of a stream readahead sees as sequential): a hit does not count
  // as a re-use for the eviction policy (as the kernel does not activate
  // pages a sequential reader touches), so a one-pass read that revisits
  // blocks in pieces out of order still leaves through the small FIFO.
  Status ReadBlockRange(const Layer& layer, uint64_t entry, uint32_t offset, uint32_t n,
                        char* out, const ReadOptions& options) override;

  // BlockReader: the block's bytes, held for the caller (a reply to the
  // kernel is written straight from the cache). Accounted as a read of
  // [offset, offset + n).
  Result<std::shared_ptr<const char>> PinBlock(const Layer& layer, uint64_t entry, uint32_t offset,
                                               uint32_t n, const ReadOptions& options) override;

  // The decoded block, loading it on a miss. Same accounting as a read of the
  // whole block from offset 0.
  Result<Handle> Get(const Layer& layer, uint64_t entry);

  // Readahead: loads the block into the cache without copying it out, unless
  // it is resident or being loaded (then returns false, counted as skipped).
  // Returns true if this call loaded it (successfully or not).
  bool Prefetch(const Layer& layer, uint64_t entry);

  // True if the block is resident or being loaded right now.
  bool Contains(uint64_t layer_id, uint64_t entry) const;

  BlockCacheStats Stats() const;
  unsigned shard_count() const { return static_cast<unsigned>(shards_.size()); }
  uint64_t capacity_bytes() const { return capacity_; }

 private:
  struct Shard;
  struct Counters;
  enum class Origin { kRead, kPrefetch };

  // The block, from the shard or loaded; *skipped (prefetch only) when it was
  // resident or in flight and nothing was done.
  Result<Handle> Lookup(const Layer& layer, uint64_t entry, uint32_t offset, uint32_t n,
                        Origin origin, const ReadOptions& options, bool* skipped);
  // Loads the block (this thread owns the shard's in-flight slot for it).
  Result<Handle> LoadBlock(const Layer& layer, uint64_t entry);
  Shard& ShardFor(const CacheKey& key) const;

  const uint64_t capacity_;
  std::shared_ptr<Counters> counters_;
  std::shared_ptr<BufferPool> pool_;  // block buffers
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace chainfs
