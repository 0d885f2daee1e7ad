// The header of a qcow2 image (QEMU's docs/interop/qcow2.txt), versions 2
// and 3, as chainfs reads it: geometry, backing file, the features that
// change how data clusters are read, and the refusals.
//
//   0  magic "QFI\xfb"          24 size (virtual)        72 incompatible_features (v3)
//   4  version (2, 3)           32 crypt_method          80 compatible_features
//   8  backing_file_offset      36 l1_size               88 autoclear_features
//   16 backing_file_size        40 l1_table_offset       96 refcount_order
//   20 cluster_bits (9..21)     48..71 refcounts, snaps  100 header_length
//                                                        104 compression_type
//   then header extensions (type, length, data padded to 8) up to type 0:
//   0xe2792aca backing format name, 0x44415441 external data file name.
//
// Refused (Qcow2Header::refused, kNotSupported naming the file and the
// feature): encryption, an external data file, incompatible features this
// reader does not know; and (kCorruption) the corrupt bit. Not a usable
// header (kCorruption naming file and field): cluster_bits out of range, an L1 table outside the file or smaller than
// the virtual size needs, a backing file name outside the header cluster.
// The dirty bit is accepted: it says refcounts may be stale, which reading
// does not use.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "chain/base/file.h"
#include "chain/base/status.h"

namespace chainfs {

inline constexpr size_t kQcow2ProbeSize = 4;
// QEMU's own limit on an L1 table (QCOW_MAX_L1_SIZE): 32 MiB.
inline constexpr uint64_t kQcow2MaxL1Bytes = 32ull << 20;

enum class Qcow2Compression : uint8_t { kZlib = 0, kZstd = 1 };

struct Qcow2Header {
  uint32_t version = 0;
  uint32_t cluster_bits = 0;
  uint64_t virtual_size = 0;
  uint64_t l1_offset = 0;
  uint32_t l1_size = 0;        // entries
  uint64_t incompatible = 0;   // v3 feature bits (dirty: bit 0)
  bool extended_l2 = false;    // incompatible bit 4: 128-bit L2 entries, 32 subclusters
  Qcow2Compression compression = Qcow2Compression::kZlib;
  uint32_t refcount_order = 4;
  uint32_t nb_snapshots = 0;
  uint64_t snapshots_offset = 0;
  std::string backing_file;    // as recorded (relative to the image, or absolute); "" none
  std::string backing_format;  // from the header extension; "" if not recorded
  // Why the image cannot be read (encryption, the corrupt bit, an unknown
  // incompatible feature, an external data file), while the rest of the
  // header, the backing file above all, is known: the chain below the image
  // is still found. Ok when readable.
  Status refused = Status::Ok();

  uint64_t cluster_size() const { return uint64_t{1} << cluster_bits; }
  // L2 entries per table (a table is one cluster).
  uint64_t l2_entries() const { return cluster_size() / (extended_l2 ? 16 : 8); }
  bool dirty() const { return (incompatible & 1) != 0; }
};

// One internal snapshot (`qemu-img snapshot -c`), from the snapshot table:
// a frozen L1 table of the same image, sharing its clusters, read through
// the same backing file.
struct Qcow2Snapshot {
  std::string id;    // the unique id string QEMU gave ("1", "2", ...)
  std::string name;  // the tag given by the user
  uint64_t l1_offset = 0;
  uint32_t l1_size = 0;       // entries
  uint64_t disk_size = 0;     // the virtual size when taken (extra data; else the image's)
  uint32_t date_sec = 0, date_nsec = 0;
  uint64_t vm_clock_nsec = 0;
  uint64_t vm_state_size = 0;  // bytes of saved VM state (not shown)
};

// How a DiskEntry names a snapshot (its part): "ID@SEC.NSEC", the id and the
// time it was taken. QEMU reuses the id of a deleted snapshot, so the id
// alone could name another snapshot than the one listed; with the time, a
// snapshot deleted or replaced since it was listed is not found.
std::string Qcow2SnapshotPart(const Qcow2Snapshot& s);

// QEMU's limits (QCOW_MAX_SNAPSHOTS, QCOW_MAX_SNAPSHOTS_SIZE).
inline constexpr uint32_t kQcow2MaxSnapshots = 65536;
inline constexpr uint64_t kQcow2MaxSnapshotTableBytes = 64ull << 20;

// The snapshot table of an image whose header is h (empty if it has none).
// A table outside the file, an entry running past it, a snapshot L1 table
// outside the file, not aligned, too large, or not covering its disk size,
// snapshot L1 tables adding up to more than the file, or two snapshots
// with one id: kCorruption naming the file (and the snapshot).
Result<std::vector<Qcow2Snapshot>> ReadQcow2Snapshots(const RandomAccessFile& file, const Qcow2Header& h);

// The same checks of an L1 table as the header's: aligned, inside the file,
// at most kQcow2MaxL1Bytes, covering virtual_size. what: "L1 table" or
// "snapshot 'x': L1 table", for the message.
Status ValidateQcow2L1(const RandomAccessFile& file, const Qcow2Header& h, uint64_t l1_offset,
                       uint32_t l1_size, uint64_t virtual_size, const std::string& what);

// True if head (n bytes, the file's first) starts with the qcow2 magic.
bool LooksLikeQcow2(const char* head, size_t n);

// True if file starts with the qcow2 magic (false for a shorter file).
Result<bool> IsQcow2File(const RandomAccessFile& file);

// Reads and validates the header of file: an error if it is not a qcow2
// header chainfs can make sense of; a header with `refused` set if it can,
// but the image's data cannot be read.
Result<Qcow2Header> ReadQcow2Header(const RandomAccessFile& file);

}  // namespace chainfs
