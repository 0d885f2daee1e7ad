#include "cache/buffer_pool.h"

#include "chain/base/huge_map.h"

#include <cstdint>
#include <new>

namespace chainfs {

BufferPool::~BufferPool() {
  for (FreeList& l : free_)
    if (l.size > kMaxSlabBuffer)
      for (char* b : l.buffers) delete[] b;
  for (char* s : slabs_) UnmapHuge(s, kSlabBytes);
}

BufferPool::FreeList& BufferPool::ListFor(uint32_t size) {
  for (FreeList& l : free_)
    if (l.size == size) return l;
  free_.push_back(FreeList{size, {}});
  return free_.back();
}

char* BufferPool::Carve(uint32_t size) {
  if (slab_left_ < size) {
    char* slab = MapHugeAligned(kSlabBytes);  // one huge page
    slabs_.push_back(slab);
    // The rest of the previous slab (less than one buffer) is left unused.
    slab_next_ = slab;
    slab_left_ = kSlabBytes;
  }
  char* b = slab_next_;
  slab_next_ += size;
  slab_left_ -= size;
  return b;
}

char* BufferPool::Take(uint32_t size) {
  live_bytes_.fetch_add(size, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    FreeList& l = ListFor(size);
    if (!l.buffers.empty()) {
      char* b = l.buffers.back();
      l.buffers.pop_back();
      free_bytes_ -= size;
      if (size > kMaxSlabBuffer) large_free_bytes_ -= size;
      reused_.fetch_add(1, std::memory_order_relaxed);
      return b;
    }
    if (size <= kMaxSlabBuffer) return Carve(size);
  }
  return new char[size];
}

void BufferPool::Give(char* buffer, uint32_t size) {
  live_bytes_.fetch_sub(size, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (size <= kMaxSlabBuffer || large_free_bytes_ + size <= max_free_bytes_) {
      ListFor(size).buffers.push_back(buffer);
      free_bytes_ += size;
      if (size > kMaxSlabBuffer) large_free_bytes_ += size;
      return;
    }
  }
  delete[] buffer;  // a large buffer beyond the bound, freed outside the lock
}

uint64_t BufferPool::free_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return free_bytes_;
}

uint64_t BufferPool::slab_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return slabs_.size() * kSlabBytes;
}

}  // namespace chainfs
