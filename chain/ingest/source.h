// Source: where a backup reads one disk. The seam behind which raw files and
// block devices stand today, and NBD exports (libnbd, QEMU dirty bitmaps,
// base:allocation), qcow2 images through qemu-nbd and libvirt pull-mode jobs
// next.
//
//   SourceSpec spec{"/dev/vg/vm1-vda", "vda.dirty.json"};
//   Result<std::unique_ptr<Source>> src = OpenSource(spec);
//   if (!src.ok()) return src.status();
//   const Source& s = *src.value();
//   // s.Name() == "/dev/vg/vm1-vda", s.Size() == 10 GiB,
//   // s.Hints() == {max_in_flight 4, request_bytes 4 MiB}.
//   std::vector<BlockRange> read = {{0, BlockCount(s.Size(), 65536)}};
//   if (s.HasChangedRanges()) {
//     // The map says bytes [70000, 70100) and [1 MiB, 1 MiB + 4096) changed:
//     Result<std::vector<ByteRange>> changed = s.ChangedRanges();
//     if (!changed.ok()) return changed.status();
//     read = BlocksTouched(changed.value(), 65536, s.Size());
//     // == {{1, 1}, {16, 1}}: a block is read when any byte of it changed.
//   }
//   // Several threads at once, up to s.Hints().max_in_flight of them:
//   Status st = s.ReadAt(16 * 65536, 65536, buf);
//
// A source is a snapshot by contract: its bytes and size do not change while
// a backup reads it (an LVM/ZFS snapshot, a pull-mode export, an image of a
// shut-off VM). When they change anyway, a read fails or returns the new
// bytes; the backup then fails naming the source, and no checkpoint appears.
//
// Ranges are in bytes (dirty bitmaps and allocation maps have their own
// granularity, 512 bytes to megabytes); BlocksTouched turns them into the
// repository's blocks.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "chain/base/status.h"

namespace chainfs {

// Bytes [offset, offset + length) of a source.
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

// Blocks [first_block, first_block + block_count) of a disk.
struct BlockRange {
  uint64_t first_block = 0;
  uint64_t block_count = 0;
};

// How a source likes to be read; the backup keeps up to max_in_flight
// ReadAt calls running at once (on threads of its own), each of at most
// request_bytes, aligned to request_bytes where the range allows.
struct ReadHints {
  unsigned max_in_flight = 1;           // >= 1; a network source: its queue depth
  uint64_t request_bytes = 4ull << 20;  // >= 4096; an NBD server: its preferred block size
};

class Source {
 public:
  virtual ~Source() = default;

  // What messages call the source: a path, or a URI without secrets.
  virtual const std::string& Name() const = 0;
  // The disk's size in bytes, fixed when the source was opened.
  virtual uint64_t Size() const = 0;
  virtual ReadHints Hints() const = 0;

  // Reads exactly n bytes at offset into buf. Thread-safe: up to
  // Hints().max_in_flight calls run at once. A read past Size() or a short
  // read is an error; every error names the source and the offset. n may
  // exceed Hints().request_bytes (the source then splits it itself).
  virtual Status ReadAt(uint64_t offset, size_t n, void* buf) const = 0;

  // Whether the source knows which bytes changed since the base checkpoint
  // (a dirty map file, a QEMU dirty bitmap). Cheap; never does I/O.
  virtual bool HasChangedRanges() const { return false; }
  // The changed bytes, in any order, possibly overlapping, possibly past
  // Size() (BlocksTouched clips). Called once, by the planner; may do I/O
  // (parse a file, query a server) and fail naming what it read.
  // REQUIRES: HasChangedRanges().
  virtual Result<std::vector<ByteRange>> ChangedRanges() const;

  // Whether the source knows which bytes read as zeros without reading them
  // (NBD base:allocation holes and zero extents, SEEK_HOLE). Cheap.
  virtual bool HasZeroRanges() const { return false; }
  // Byte ranges that certainly read as zeros; a range not listed may be
  // zeros too. Same form as ChangedRanges. REQUIRES: HasZeroRanges().
  virtual Result<std::vector<ByteRange>> ZeroRanges() const;
};

// What to open: the --disk NAME=SOURCE, --dirty NAME=MAP.json and
// --bitmap NAME=BITMAP of a disk.
struct SourceSpec {
  std::string location;   // raw image, block device, QEMU image path or NBD URI
  std::string dirty_map;  // nbdinfo --json --map output; empty = none
  std::string bitmap;     // QEMU dirty bitmap of an NBD or image source; empty = none
  // NBD and image sources: how long the server may leave the handshake or
  // the requests in flight without an answer before the source fails
  // (ETIMEDOUT, and the connection is given up); zero waits for ever (a
  // stop signal still ends the wait).
  std::chrono::milliseconds timeout{0};
};

// Opens the source a spec names. The one place that knows every kind of
// source: an NBD URI (chain/ingest/nbd_source.h), a QEMU image that is not
// raw (told by content; served by a qemu-nbd of our own), else a raw file or
// block device (chain/ingest/file_source.h).
Result<std::unique_ptr<Source>> OpenSource(const SourceSpec& spec);

// OK if path is a regular file (or, with block_device_ok, a block device);
// else an error naming path and what it is (a FIFO, a socket, a character
// device, a directory). Every input path of a backup is checked before it is
// opened: opening a FIFO blocks until a writer comes, and a backup must not
// wait forever holding the writer lock.
Status CheckInputFile(const std::string& path, const std::string& what, bool block_device_ok);

// Number of blocks of block_size that cover size bytes.
inline uint64_t BlockCount(uint64_t size, uint32_t block_size) {
  return size / block_size + (size % block_size != 0);
}

// The blocks that hold any byte of ranges, clipped to disk_size: rounded out
// to whole blocks, sorted, overlapping and adjacent runs merged.
// REQUIRES: block_size > 0; no range wraps past 2^64.
std::vector<BlockRange> BlocksTouched(const std::vector<ByteRange>& ranges, uint32_t block_size,
                                      uint64_t disk_size);

// The blocks that lie wholly inside ranges (clipped to disk_size; the last,
// partial block counts as whole when its bytes up to disk_size are covered):
// blocks known to read as zeros when ranges are ZeroRanges(). Sorted, merged.
std::vector<BlockRange> BlocksCovered(const std::vector<ByteRange>& ranges, uint32_t block_size,
                                      uint64_t disk_size);

// The blocks of from that are not in remove. REQUIRES: both sorted and
// merged (as BlocksTouched and BlocksCovered return them).
std::vector<BlockRange> SubtractBlocks(const std::vector<BlockRange>& from,
                                       const std::vector<BlockRange>& remove);

}  // namespace chainfs
