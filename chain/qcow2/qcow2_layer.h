// Qcow2Layer: one qcow2 image (chain/qcow2/qcow2_header.h) as a Layer, so
// that a backing chain composes flat with the same ExtentMap, View, block
// cache and readahead as native deltas: each image's extents are the
// clusters it holds itself (data) or marks as zero; an unallocated range is
// absent and falls through to the backing image below it in the view.
//
// Entries are guest clusters (entry = guest offset / cluster size), or guest
// subclusters (cluster size / 32) in an image with extended L2 entries, so
// that a read finds its L2 entry by arithmetic. Opening reads the header and
// the L1 table only; L2 tables are read when the view is built
// (ForEachExtent, after WillNeedExtents has asked the disk for all of them)
// or a block is read, and kept in a process-wide cache of
// kQcow2L2CacheBytes, decoded in place in HugeSlots memory
// (chain/base/huge_map.h; the slots it recycles are bounded by that cache
// plus the tables in use). A standard cluster is one pread; a compressed one
// (zlib raw deflate or zstd, per the header) is decoded whole, the last one
// per thread kept for the next subcluster. A data cluster outside the file,
// not aligned, or that does not decode is kCorruption naming the file, the
// guest offset and the host offset (EIO through the mount): never wrong
// bytes.
//
// RawLayer ("raw"): a raw image (a qcow2 chain's raw base) as one data extent.
#pragma once

#include <functional>
#include <memory>

#include "chain/layer/format.h"
#include "chain/qcow2/qcow2_header.h"

namespace chainfs {

inline constexpr uint64_t kQcow2L2CacheBytes = 64ull << 20;
inline constexpr uint32_t kRawBlockSize = 64u << 10;

// Registry names "qcow2" and "raw": read-only.
extern const LayerFormat kQcow2LayerFormat;
extern const LayerFormat kRawLayerFormat;

// snapshot non-empty: the internal snapshot it names (Qcow2SnapshotPart:
// id and time) instead of the active image: its L1 table and disk size, the
// same clusters and backing file; its location() names the file and the
// snapshot; kNotFound if the image has no such snapshot (any more).
// Registered as the qcow2 format's open_part: a DiskEntry's part.
Result<std::shared_ptr<const Layer>> OpenQcow2Layer(std::unique_ptr<RandomAccessFile> file,
                                                    const std::string& snapshot = "");

// `check --deep`'s structural pass over an image: every L1 and L2 entry
// inside the file and aligned, no two data clusters (nor a cluster and the
// header, L1 or an L2 table) on the same host bytes, every compressed
// cluster inside the file; the first problems found, one line each, naming
// the file, guest and host offsets. Empty: sound.
Result<std::vector<std::string>> CheckQcow2Structure(const RandomAccessFile& file);

}  // namespace chainfs
