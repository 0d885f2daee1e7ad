#include "cache/buffer_pool.h"

#include <sys/mman.h>

#include <cstdint>
#include <new>

namespace chainfs {

BufferPool::~BufferPool() {
  for (FreeList& l : free_)
    if (l.size > kMaxSlabBuffer)
      for (char* b : l.buffers) delete[] b;
  for (char* s : slabs_) ::munmap(s, kSlabBytes);
}

BufferPool::FreeList& BufferPool::ListFor(uint32_t size) {
  for (FreeList& l : free_)
    if (l.size == size) return l;
  free_.push_back(FreeList{size, {}});
  return free_.back();
}

char* BufferPool::Carve(uint32_t size) {
  if (slab_left_ < size) {
    // Map twice the slab and keep the 2 MiB-aligned middle, so that the slab
    // can be one huge page.
    void* p = ::mmap(nullptr, 2 * kSlabBytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    const auto start = reinterpret_cast<uintptr_t>(p);
    const uintptr_t aligned = (start + kSlabBytes - 1) & ~(kSlabBytes - 1);
    if (aligned > start) ::munmap(p, aligned - start);
    if (aligned + kSlabBytes < start + 2 * kSlabBytes)
      ::munmap(reinterpret_cast<void*>(aligned + kSlabBytes),
               start + 2 * kSlabBytes - aligned - kSlabBytes);
    char* slab = reinterpret_cast<char*>(aligned);
    (void)::madvise(slab, kSlabBytes, MADV_HUGEPAGE);  // a hint: fine if refused
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
