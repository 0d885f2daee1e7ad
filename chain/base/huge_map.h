// Anonymous memory for big, long-lived buffers (the block cache's slabs,
// decoded lz4 frames), mapped 2 MiB-aligned and offered to the kernel as
// transparent huge pages (MADV_HUGEPAGE: these machines' THP mode is
// "madvise"). One page fault then maps 2 MiB instead of 4 KiB: a first pass
// over 256 MiB of fresh buffers takes 128 faults, not 65,536 (each a trap
// into a virtualised kernel).
#pragma once

#include <cstddef>

namespace chainfs {

inline constexpr size_t kHugePageBytes = 2u << 20;

// Maps `bytes` (a multiple of kHugePageBytes) aligned to kHugePageBytes.
// Throws std::bad_alloc when the kernel refuses.
char* MapHugeAligned(size_t bytes);

// Unmaps what MapHugeAligned returned.
void UnmapHuge(char* p, size_t bytes);

}  // namespace chainfs
