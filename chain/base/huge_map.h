// Anonymous memory for big, long-lived buffers (the block cache's slabs,
// decoded lz4 frames), mapped 2 MiB-aligned and offered to the kernel as
// transparent huge pages (MADV_HUGEPAGE: these machines' THP mode is
// "madvise"). One page fault then maps 2 MiB instead of 4 KiB: a first pass
// over 256 MiB of fresh buffers takes 128 faults, not 65,536 (each a trap
// into a virtualised kernel).
#pragma once

#include <array>
#include <cstddef>
#include <mutex>
#include <utility>
#include <vector>

namespace chainfs {

inline constexpr size_t kHugePageBytes = 2u << 20;

// Maps `bytes` (a multiple of kHugePageBytes) aligned to kHugePageBytes.
// Throws std::bad_alloc when the kernel refuses.
char* MapHugeAligned(size_t bytes);

// Unmaps what MapHugeAligned returned.
void UnmapHuge(char* p, size_t bytes);

// Buffers of power-of-two sizes carved out of huge-page mappings, handed
// back with Free and reused: for many small buffers made in bursts (qcow2 L2
// tables: opening a view of a depth-100 chain decodes 202 tables of 64 KiB;
// from malloc, their 3,200 page faults were half of the open's time). What
// is mapped is kept for reuse, never unmapped: memory is the peak in use,
// rounded up to 2 MiB per size. Thread-safe.
class HugeSlots {
 public:
  static HugeSlots& Get();  // the process's (never destroyed)
  HugeSlots() = default;
  HugeSlots(const HugeSlots&) = delete;
  HugeSlots& operator=(const HugeSlots&) = delete;
  ~HugeSlots();  // unmaps everything: no buffer may be in use
  // An uninitialised buffer of `bytes` (a power of two, at most 2^40),
  // aligned to min(bytes, 2 MiB). Throws std::bad_alloc when the kernel
  // refuses.
  char* Alloc(size_t bytes);
  // Returns what Alloc(bytes) gave.
  void Free(char* p, size_t bytes);
  // Bytes mapped so far.
  size_t MappedBytes();

 private:
  std::mutex mu_;
  std::array<std::vector<char*>, 41> free_;  // by log2(bytes)
  std::vector<std::pair<char*, size_t>> chunks_;  // what was mapped
  size_t mapped_ = 0;
};

}  // namespace chainfs
