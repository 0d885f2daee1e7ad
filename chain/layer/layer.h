// Layer: one delta opened for reading, whatever its on-disk format.
//
// A layer is an extent index (which byte ranges it stores, which it says read
// as zeros) plus a way to read one stored entry: a block of the layer's own
// block_size(), a power of two (the native format's block, a qcow2 cluster).
// Layers of one view may have different block sizes and extents at any
// 512-byte granularity (LayerExtent). Composition (ExtentMap,
// View) and the block cache see only this interface: a virtnbdbackup stream
// or a qcow2 file becomes readable by implementing it, with no change to the
// read path.
//
// Thread-safety: all methods are const and safe to call concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chain/base/file.h"
#include "chain/base/hash.h"
#include "chain/base/status.h"
#include "chain/layer/layer_identity.h"
#include "chain/layer/stored_block.h"

namespace chainfs {

// The largest virtual size of a disk chainfs accepts: 2^56 bytes (64 PiB),
// far above any real disk, and small enough that block counts, byte offsets
// and their sums never overflow 64 bits. A delta claiming more is refused at
// open, a source claiming more at backup.
inline constexpr uint64_t kMaxVirtualSize = uint64_t{1} << 56;

// One extent of a layer, in bytes of the layer's disk: [offset, offset +
// length). offset and length are multiples of 512, except that the extent may
// end at the layer's virtual size. Extents never reach past virtual_size().
//
// A data extent's bytes are served by consecutive entries of the layer's own
// block_size() (its cluster size), from its start:
//
//   extent   |<---------------------- length ----------------------->|
//            offset
//   entries  | first_entry | first_entry + 1 | ... | first_entry + k  |...
//            |<--- bs ---->|
//
// entry first_entry + k holds bytes [offset + k * bs, offset + (k + 1) * bs)
// of the extent; the last entry may hold fewer (the extent ends inside it),
// and the rest of its block_size() bytes then read as zeros. A zero extent
// reads as zeros and has no entries.
struct LayerExtent {
  enum class Kind : uint8_t { kData, kZero };
  uint64_t offset = 0;
  uint64_t length = 0;
  Kind kind = Kind::kData;
  uint64_t first_entry = 0;  // kData: the entry holding byte `offset`
  uint64_t end() const { return offset + length; }
};

class Layer {
 public:
  virtual ~Layer() = default;
  // Unique among the layers of this process: the block cache's key.
  virtual uint64_t id() const = 0;
  // The size of one entry, a power of two.
  virtual uint32_t block_size() const = 0;
  virtual uint64_t virtual_size() const = 0;
  // Where it lives, for messages ("/repo/groups/vm1/deltas/c3.vda.x.delta").
  virtual const std::string& location() const = 0;
  // What the file says it is (group, checkpoint, disk, kind, base, id, index
  // digest), decoded and verified at open; null when it says nothing (a
  // native delta of version 1, a format that records no identity).
  virtual const LayerIdentity* identity() const { return nullptr; }
  // Calls fn for every extent, in increasing offset order, extents disjoint.
  virtual void ForEachExtent(const std::function<void(const LayerExtent&)>& fn) const = 0;
  // Reads, verifies and decodes one stored entry into out (block_size bytes;
  // past the end of its extent, zeros). A damaged entry is kCorruption naming
  // the location and block.
  virtual Status ReadBlock(uint64_t entry, char* out) const = 0;
  // The content hash of a stored entry's block_size() bytes as ReadBlock
  // gives them, when known without reading it (the native format stores
  // one); nullopt when the format keeps none (then a backup compares by
  // reading).
  virtual std::optional<ContentHash> BlockHash(uint64_t entry) const = 0;
  // Bytes this layer stores on disk for one entry (for du-like accounting).
  virtual uint64_t StoredLength(uint64_t entry) const = 0;
  // Where a stored entry's bytes lie in location() and how they are checked
  // and decoded, for formats whose entries a view map may keep (the native
  // format: its index entry); nullopt (the default) for the others, and for
  // an entry the layer does not have.
  virtual std::optional<StoredLocation> Locate(uint64_t entry) const {
    (void)entry;
    return std::nullopt;
  }
  // Opens what a layer opened lazily has deferred (a view map's layers,
  // chain/repo/view_map.h: the file, its binding and index); true once done.
  // Layers that open at once have nothing to do.
  virtual Status Load() const { return Status::Ok(); }
  virtual bool Loaded() const { return true; }
  // Hints that entries [first, first + count) will be read soon, so that
  // their stored bytes can be fetched from disk in the background (readahead
  // over a chain whose blocks are scattered across many files). No-op by
  // default.
  virtual void WillNeed(uint64_t first, uint64_t count) const {
    (void)first;
    (void)count;
  }
  // WillNeed of several runs of entries at once, in any order (a view asks
  // each layer once per window): a layer can then ask its file for their
  // stored bytes in file order, neighbours merged (WillNeedRanges,
  // chain/base/file.h). By default, WillNeed of each run.
  struct EntryRun {
    uint64_t first, count;
  };
  virtual void WillNeedRuns(const std::vector<EntryRun>& runs) const {
    for (const EntryRun& r : runs) WillNeed(r.first, r.count);
  }
  // Where bytes [offset, offset + n) of entry `entry`, as ReadBlock gives
  // them, lie unchanged in a file: stored raw, with no checksum of their own
  // to check and nothing to decode (a qcow2 image's uncompressed cluster, an
  // uncompressed virtnbdbackup stream's data). A reader may then move them
  // from the file's page cache to the kernel without copying them into the
  // process (splice(2), fusefs/driver/splice_reply.h): the bytes are as
  // trustworthy as ReadBlock's, which reads them the same way. nullopt (the
  // default) where they must be read: decoded, verified, zeros or not known
  // (ReadBlock then says why). The file lives as long as the layer.
  // REQUIRES: offset + n <= block_size().
  struct FileSpan {
    const RandomAccessFile* file;
    uint64_t offset;
  };
  virtual std::optional<FileSpan> RawSpan(uint64_t entry, uint32_t offset, uint32_t n) const {
    (void)entry;
    (void)offset;
    (void)n;
    return std::nullopt;
  }
  // Whether the layer keeps block `entry` decoded in memory of its own, so
  // that a sequential pass may be answered from there (PinDecoded) rather
  // than from a copy in the block cache: a virtnbdbackup lz4 frame, decoded
  // whole into one buffer (chain/vnb). Only for a block that lies wholly in
  // such memory. False by default.
  virtual bool KeepsDecoded(uint64_t entry) const {
    (void)entry;
    return false;
  }
  // Block `entry`'s decoded bytes (block_size() of them) in that memory,
  // decoding (and verifying) them first if needed, kept alive and unchanged
  // for as long as the pointer is held. REQUIRES: KeepsDecoded(entry).
  virtual Result<std::shared_ptr<const char>> PinDecoded(uint64_t entry) const {
    return Status::NotSupported(location() + ": keeps no decoded block " + std::to_string(entry));
  }
  // Hints that ForEachExtent will be called soon, so that what it reads (a
  // qcow2 image's L2 tables) can be fetched from disk in the background. A
  // view over N layers hints them all before walking any, so N layers' reads
  // wait on the disk together, not one after another. No-op by default.
  virtual void WillNeedExtents() const {}
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
