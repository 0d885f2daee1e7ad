// BufferPool: the memory of decoded blocks.
//
// Loading a block needs a block-sized buffer; the first pass over a disk
// fills the cache with fresh ones, and from then on each load is matched by
// an eviction. With plain new/delete, glibc's per-thread arenas grow with an
// mprotect per step and fault every 4 KiB page in on first touch, and give
// freed buffers back to the kernel only to fault them in again: together
// about a tenth of the daemon's CPU in a cold sequential `cat` (measured with
// perf). The pool instead
//   - carves buffers of up to kMaxSlabBuffer bytes out of 2 MiB slabs mapped
//     with MADV_HUGEPAGE (one fault per slab where transparent huge pages are
//     on), and keeps every freed one on a free list for the next load of that
//     size: slab memory is reused, never unmapped until the pool goes;
//   - allocates larger buffers with new[] and keeps up to max_free_bytes of
//     freed ones.
//
// Memory: slab memory is the peak of live slab buffers (the cache's capacity
// plus loads in flight), rounded up to a slab per block size in use; plus at
// most max_free_bytes of large buffers. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

namespace chainfs {

class BufferPool {
 public:
  static constexpr uint64_t kSlabBytes = 2ull << 20;
  static constexpr uint32_t kMaxSlabBuffer = 256u << 10;

  explicit BufferPool(uint64_t max_free_bytes) : max_free_bytes_(max_free_bytes) {}
  ~BufferPool();  // unmaps the slabs: every buffer must have been given back
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // A buffer of size bytes (contents undefined): a recycled one if the pool
  // holds one of that size, else a new one. Throws std::bad_alloc.
  char* Take(uint32_t size);
  // Returns a buffer of size bytes that Take gave.
  void Give(char* buffer, uint32_t size);

  uint64_t live_bytes() const { return live_bytes_.load(std::memory_order_relaxed); }
  uint64_t free_bytes() const;   // kept for reuse, slab and large
  uint64_t slab_bytes() const;   // mapped for slabs
  uint64_t reused() const { return reused_.load(std::memory_order_relaxed); }

 private:
  struct FreeList {
    uint32_t size;
    std::vector<char*> buffers;  // LIFO: the most recently freed is the warmest
  };
  FreeList& ListFor(uint32_t size);  // REQUIRES: mu_ held
  char* Carve(uint32_t size);        // REQUIRES: mu_ held

  const uint64_t max_free_bytes_;
  mutable std::mutex mu_;
  std::vector<FreeList> free_;
  uint64_t free_bytes_ = 0;        // all free buffers
  uint64_t large_free_bytes_ = 0;  // free buffers from new[]
  std::vector<char*> slabs_;
  char* slab_next_ = nullptr;
  uint64_t slab_left_ = 0;
  std::atomic<uint64_t> live_bytes_{0};
  std::atomic<uint64_t> reused_{0};
};

}  // namespace chainfs
