// StoredBlock: one block in the form a layer format keeps it on disk.
//
// The stored bytes as is (compressed or not) plus what the format records
// beside them. Consolidation copies stored blocks from an old layer into a
// new file of the same format without decoding them (Layer::ReadStored,
// LayerWriter::AddStored); backup produces them with LayerWriter::Encode.
// `codec` means something only to the format that made the block: a writer
// accepts stored blocks of its own format only.
#pragma once

#include <cstdint>
#include <functional>

#include "chain/base/hash.h"
#include "chain/base/status.h"

namespace chainfs {

struct StoredBlock {
  uint64_t block = 0;          // block number in the disk
  uint8_t codec = 0;           // the format's encoding of data (native: Codec)
  uint64_t checksum = 0;       // Checksum64 of the stored bytes
  ContentHash content;         // HashContent of the decoded block
  const char* data = nullptr;  // the stored bytes; not owned
  uint32_t size = 0;           // how many
};

// Where one stored entry lies in its layer's file, and what checks and
// decodes it: the stored bytes are [offset, offset + stored.size) of the file
// (stored.data is null). A native layer tells it for each entry
// (Layer::Locate); a view map keeps it for the entries of the small layers
// of a deep view, which are then read without opening their layers
// (chain/repo/view_map.h).
struct StoredLocation {
  uint64_t offset = 0;
  StoredBlock stored;
};

// Receives stored blocks one by one; data is valid only during the call. A
// non-ok status stops the walk and is returned by it.
using StoredBlockFn = std::function<Status(const StoredBlock&)>;

}  // namespace chainfs
