// Layer: one delta opened for reading, whatever its on-disk format.
//
// A layer is an extent index (which blocks it stores, which ranges it says
// read as zeros) plus a way to read one stored block. Composition (ExtentMap,
// View) and the block cache see only this interface: a virtnbdbackup stream
// or a qcow2 file becomes readable by implementing it, with no change to the
// read path.
//
// Thread-safety: all methods are const and safe to call concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "chain/base/hash.h"
#include "chain/base/status.h"
#include "chain/layer/stored_block.h"

namespace chainfs {

struct LayerExtent {
  enum class Kind : uint8_t { kData, kZero };
  uint64_t first_block = 0;
  uint64_t block_count = 0;
  Kind kind = Kind::kData;
  // kData: entry number of first_block; entry numbers of the following blocks
  // of the extent are consecutive.
  uint64_t first_entry = 0;
};

class Layer {
 public:
  virtual ~Layer() = default;
  // Unique among the layers of this process: the block cache's key.
  virtual uint64_t id() const = 0;
  virtual uint32_t block_size() const = 0;
  virtual uint64_t virtual_size() const = 0;
  // Where it lives, for messages ("/repo/groups/vm1/deltas/c3.vda.x.delta").
  virtual const std::string& location() const = 0;
  // Calls fn for every extent, in increasing block order, extents disjoint.
  virtual void ForEachExtent(const std::function<void(const LayerExtent&)>& fn) const = 0;
  // Reads, verifies and decodes one stored block into out (block_size bytes).
  // A damaged block is kCorruption naming the location and block.
  virtual Status ReadBlock(uint64_t entry, char* out) const = 0;
  // The content hash of a stored block, known without reading it.
  virtual ContentHash BlockHash(uint64_t entry) const = 0;
  // Bytes this layer stores on disk for one entry (for du-like accounting).
  virtual uint64_t StoredLength(uint64_t entry) const = 0;
  // Hints that entries [first, first + count) will be read soon, so that
  // their stored bytes can be fetched from disk in the background (readahead
  // over a chain whose blocks are scattered across many files). No-op by
  // default.
  virtual void WillNeed(uint64_t first, uint64_t count) const {
    (void)first;
    (void)count;
  }
  // The stored blocks of entries [first, first + count), as is (not decoded),
  // each checksum verified, passed to fn in entry order: consolidation copies
  // them into a new file of the same format. Reads in bulk (one read for
  // stored bytes that lie together), with *scratch as the buffer. count 0
  // only asks whether the layer can (scratch and fn may then be null). A
  // damaged block is kCorruption naming location and block, before fn sees
  // it. A format that cannot give its stored bytes returns kNotSupported
  // naming the location (the default).
  virtual Status ReadStored(uint64_t first, uint64_t count, std::string* scratch,
                            const StoredBlockFn& fn) const {
    (void)first;
    (void)count;
    (void)scratch;
    (void)fn;
    return Status::NotSupported(location() +
                                ": this layer's format cannot give its stored blocks as is");
  }
};

// A fresh process-unique layer id.
uint64_t NextLayerId();

}  // namespace chainfs
