#include "chain/base/huge_map.h"

#include <sys/mman.h>

#include <cstdint>
#include <new>

namespace chainfs {

char* MapHugeAligned(size_t bytes) {
  // Map one huge page more and keep the aligned part.
  void* p = ::mmap(nullptr, bytes + kHugePageBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  const auto start = reinterpret_cast<uintptr_t>(p);
  const uintptr_t aligned = (start + kHugePageBytes - 1) & ~uintptr_t{kHugePageBytes - 1};
  if (aligned > start) ::munmap(p, aligned - start);
  const uintptr_t end = start + bytes + kHugePageBytes;
  if (aligned + bytes < end) ::munmap(reinterpret_cast<void*>(aligned + bytes), end - aligned - bytes);
  char* out = reinterpret_cast<char*>(aligned);
  (void)::madvise(out, bytes, MADV_HUGEPAGE);  // a hint: fine if refused
  return out;
}

void UnmapHuge(char* p, size_t bytes) {
  if (p != nullptr) ::munmap(p, bytes);
}

}  // namespace chainfs
