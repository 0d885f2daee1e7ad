#include "chain/base/huge_map.h"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
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

HugeSlots& HugeSlots::Get() {
  static HugeSlots* slots = new HugeSlots;  // never destroyed: buffers may outlive statics
  return *slots;
}

HugeSlots::~HugeSlots() {
  for (auto& [p, bytes] : chunks_) UnmapHuge(p, bytes);
}

char* HugeSlots::Alloc(size_t bytes) {
  if (!std::has_single_bit(bytes) || std::countr_zero(bytes) >= static_cast<int>(free_.size()))
    throw std::bad_alloc();
  std::vector<char*>& list = free_[static_cast<size_t>(std::countr_zero(bytes))];
  std::lock_guard<std::mutex> l(mu_);
  if (list.empty()) {
    // One mapping of at least a huge page, cut into slots.
    const size_t chunk = bytes > kHugePageBytes ? bytes : kHugePageBytes;
    char* p = MapHugeAligned(chunk);
    chunks_.emplace_back(p, chunk);
    mapped_ += chunk;
    for (size_t at = chunk; at > 0; at -= bytes) list.push_back(p + at - bytes);
  }
  char* out = list.back();
  list.pop_back();
  return out;
}

void HugeSlots::Free(char* p, size_t bytes) {
  if (p == nullptr) return;
  std::lock_guard<std::mutex> l(mu_);
  free_[static_cast<size_t>(std::countr_zero(bytes))].push_back(p);
}

size_t HugeSlots::MappedBytes() {
  std::lock_guard<std::mutex> l(mu_);
  return mapped_;
}

bool HugeSlots::Owns(const void* p) {
  const auto* c = static_cast<const char*>(p);
  std::lock_guard<std::mutex> l(mu_);
  return std::any_of(chunks_.begin(), chunks_.end(),
                     [&](const auto& m) { return c >= m.first && c < m.first + m.second; });
}

}  // namespace chainfs
