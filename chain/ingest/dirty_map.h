// Dirty maps: which byte ranges of a disk changed since a QEMU dirty bitmap
// was started, in the JSON printed by
//   nbdinfo --json --map=qemu:dirty-bitmap:BITMAP nbd://...
// (an array of {"offset", "length", "type", "description"}; type bit 0 set =
// dirty), as exported by `qemu-nbd -B BITMAP`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "chain/base/status.h"

namespace chainfs {

struct BlockRange {
  uint64_t first_block = 0;
  uint64_t block_count = 0;
};

// Parses the map at path and returns the dirty ranges rounded out to whole
// blocks of block_size, clipped to disk_size, sorted and merged. A malformed
// map fails naming the file and the entry.
Result<std::vector<BlockRange>> LoadDirtyMap(const std::string& path, uint32_t block_size,
                                             uint64_t disk_size);

}  // namespace chainfs
