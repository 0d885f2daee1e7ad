#include "chain/qcow2/qcow2_header.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <set>
#include <vector>

#include "chain/qcow2/big_endian.h"

namespace chainfs {
namespace {

constexpr uint32_t kExtEnd = 0;
constexpr uint32_t kExtBackingFormat = 0xe2792aca;
constexpr uint32_t kExtDataFile = 0x44415441;
constexpr uint32_t kExtCrypto = 0x0537be77;

constexpr uint64_t kIncDirty = 1u << 0;
constexpr uint64_t kIncCorrupt = 1u << 1;
constexpr uint64_t kIncDataFile = 1u << 2;
constexpr uint64_t kIncCompression = 1u << 3;
constexpr uint64_t kIncExtendedL2 = 1u << 4;
constexpr uint64_t kIncKnown = kIncDirty | kIncCorrupt | kIncDataFile | kIncCompression | kIncExtendedL2;

}  // namespace

bool LooksLikeQcow2(const char* head, size_t n) {
  return n >= 4 && std::memcmp(head, "QFI\xfb", 4) == 0;
}

Result<bool> IsQcow2File(const RandomAccessFile& file) {
  char head[kQcow2ProbeSize];
  if (file.Size() < sizeof head) return false;
  CHAINFS_RETURN_IF_ERROR(file.ReadAt(0, sizeof head, head));
  return LooksLikeQcow2(head, sizeof head);
}

Result<Qcow2Header> ReadQcow2Header(const RandomAccessFile& file) {
  const std::string& path = file.Path();
  auto bad = [&](const std::string& what) { return Status::Corruption(path + ": " + what); };
  if (file.Size() < 72) return bad("truncated qcow2 header (" + std::to_string(file.Size()) + " bytes)");
  // The header and its extensions lie in the first cluster (at most 2 MiB);
  // read what the file has of it, at most 64 KiB (the extensions QEMU writes
  // are a few hundred bytes; a larger header is read on demand below).
  std::vector<char> h(std::min<uint64_t>(file.Size(), 64 << 10));
  CHAINFS_RETURN_IF_ERROR(file.ReadAt(0, h.size(), h.data()));
  if (!LooksLikeQcow2(h.data(), h.size())) return bad("not a qcow2 image (no QFI\\xfb magic)");

  Qcow2Header q;
  q.version = LoadBe32(&h[4]);
  if (q.version != 2 && q.version != 3)
    return Status::NotSupported(path + ": qcow2 version " + std::to_string(q.version) +
                                " (this chainfs reads versions 2 and 3)");
  const uint64_t backing_offset = LoadBe64(&h[8]);
  const uint32_t backing_size = LoadBe32(&h[16]);
  q.cluster_bits = LoadBe32(&h[20]);
  q.virtual_size = LoadBe64(&h[24]);
  const uint32_t crypt = LoadBe32(&h[32]);
  q.l1_size = LoadBe32(&h[36]);
  q.l1_offset = LoadBe64(&h[40]);
  q.nb_snapshots = LoadBe32(&h[60]);
  q.snapshots_offset = LoadBe64(&h[64]);
  if (q.cluster_bits < 9 || q.cluster_bits > 21)
    return bad("cluster_bits " + std::to_string(q.cluster_bits) + " (qcow2 allows 9..21: 512 B to 2 MiB)");
  if (crypt != 0)
    q.refused = Status::NotSupported(path + ": encrypted qcow2 image (crypt_method " + std::to_string(crypt) +
                                (crypt == 1 ? ", AES" : crypt == 2 ? ", LUKS" : "") +
                                "): chainfs does not read encrypted images");

  uint32_t header_length = 72;
  if (q.version == 3) {
    if (h.size() < 104) return bad("truncated qcow2 v3 header");
    q.incompatible = LoadBe64(&h[72]);
    q.refcount_order = LoadBe32(&h[96]);
    header_length = LoadBe32(&h[100]);
    if (header_length < 104 || header_length > h.size())
      return bad("header_length " + std::to_string(header_length) + " out of range");
    if (q.incompatible & kIncCorrupt)
      q.refused = bad("the corrupt bit is set (incompatible feature bit 1): QEMU found this image's "
                 "metadata damaged; repair a copy with qemu-img check -r all before reading it");
    if (q.incompatible & ~kIncKnown) {
      char hex[32];
      std::snprintf(hex, sizeof hex, "0x%llx",
                    static_cast<unsigned long long>(q.incompatible & ~kIncKnown));
      q.refused = Status::NotSupported(path + ": unknown incompatible qcow2 features " + hex +
                                  " (this chainfs knows dirty, corrupt, external data file, "
                                  "compression type, extended L2)");
    }
    if (q.incompatible & kIncDataFile)
      q.refused = Status::NotSupported(path + ": qcow2 image with an external data file (incompatible "
                                  "feature bit 2): not supported by this chainfs");
    q.extended_l2 = (q.incompatible & kIncExtendedL2) != 0;
    if (q.incompatible & kIncCompression) {
      if (header_length < 105) return bad("compression type bit set but header_length < 105");
      const uint8_t t = static_cast<uint8_t>(h[104]);
      if (t > 1)
        return Status::NotSupported(path + ": unknown compression type " + std::to_string(t) +
                                    " (this chainfs reads zlib and zstd)");
      q.compression = static_cast<Qcow2Compression>(t);
    } else if (header_length >= 105 && h[104] != 0) {
      return bad("compression type " + std::to_string(static_cast<uint8_t>(h[104])) +
                 " without the compression type feature bit");
    }
    if (q.extended_l2 && q.cluster_bits < 14)
      return bad("extended L2 entries with clusters below 16 KiB");
  }

  // Header extensions.
  for (uint64_t at = header_length;;) {
    if (at + 8 > h.size()) return bad("header extensions run past the first 64 KiB");
    const uint32_t type = LoadBe32(&h[at]);
    const uint32_t len = LoadBe32(&h[at + 4]);
    if (type == kExtEnd) break;
    if (at + 8 + len > h.size()) return bad("header extension 0x" + std::to_string(type) + " runs past its cluster");
    if (type == kExtBackingFormat) q.backing_format.assign(&h[at + 8], len);
    if (type == kExtDataFile && q.refused.ok())
      q.refused = Status::NotSupported(path + ": qcow2 image with an external data file: not supported "
                                       "by this chainfs");
    if (type == kExtCrypto && q.refused.ok())
      q.refused = Status::NotSupported(path + ": encrypted qcow2 image: chainfs does not read encrypted images");
    at += 8 + ((uint64_t{len} + 7) & ~uint64_t{7});
  }

  if (backing_offset != 0) {
    // Compared so that nothing wraps: the offset is any 64-bit value.
    const uint64_t in_header = std::min<uint64_t>(h.size(), q.cluster_size());
    if (backing_size == 0 || backing_size > 1023 || backing_offset > in_header ||
        backing_size > in_header - backing_offset)
      return bad("backing file name at offset " + std::to_string(backing_offset) + " (" +
                 std::to_string(backing_size) + " bytes) lies outside the header");
    q.backing_file.assign(&h[backing_offset], backing_size);
    if (q.backing_file.find('\0') != std::string::npos) return bad("backing file name holds a NUL byte");
  }

  if (q.virtual_size > (uint64_t{1} << 56)) return bad("virtual size " + std::to_string(q.virtual_size) + " is absurd");
  CHAINFS_RETURN_IF_ERROR(ValidateQcow2L1(file, q, q.l1_offset, q.l1_size, q.virtual_size, "L1 table"));
  return q;
}

Status ValidateQcow2L1(const RandomAccessFile& file, const Qcow2Header& q, uint64_t l1_offset,
                       uint32_t l1_size, uint64_t virtual_size, const std::string& what) {
  auto bad = [&](const std::string& m) { return Status::Corruption(file.Path() + ": " + what + " " + m); };
  // Inside the file, cluster-aligned, covering the disk.
  const uint64_t per_l1 = q.cluster_size() * q.l2_entries();  // bytes one L1 entry maps
  const uint64_t need = (virtual_size + per_l1 - 1) / per_l1;
  if (uint64_t{l1_size} * 8 > kQcow2MaxL1Bytes)
    return bad("of " + std::to_string(l1_size) + " entries (QEMU's limit is 32 MiB)");
  if (l1_size < need)
    return bad("of " + std::to_string(l1_size) + " entries, the virtual size needs " + std::to_string(need));
  if (l1_size > 0) {
    if (l1_offset % q.cluster_size() != 0)
      return bad("offset " + std::to_string(l1_offset) + " is not cluster-aligned");
    if (l1_offset > file.Size() || uint64_t{l1_size} * 8 > file.Size() - l1_offset)  // no wrap
      return bad("at offset " + std::to_string(l1_offset) + " (" + std::to_string(l1_size) +
                 " entries) runs past the end of the file (" + std::to_string(file.Size()) +
                 " bytes): truncated image");
  }
  return Status::Ok();
}

std::string Qcow2SnapshotPart(const Qcow2Snapshot& s) {
  char t[32];
  std::snprintf(t, sizeof t, "@%u.%09u", s.date_sec, s.date_nsec);
  return s.id + t;
}

Result<std::vector<Qcow2Snapshot>> ReadQcow2Snapshots(const RandomAccessFile& file, const Qcow2Header& h) {
  std::vector<Qcow2Snapshot> out;
  if (h.nb_snapshots == 0) return out;
  auto bad = [&](const std::string& what) {
    return Status::Corruption(file.Path() + ": snapshot table: " + what);
  };
  if (h.nb_snapshots > kQcow2MaxSnapshots)
    return bad(std::to_string(h.nb_snapshots) + " snapshots (QEMU's limit is 65536)");
  if (h.snapshots_offset % h.cluster_size() != 0)
    return bad("offset " + std::to_string(h.snapshots_offset) + " is not cluster-aligned");
  if (h.snapshots_offset >= file.Size())
    return bad("offset " + std::to_string(h.snapshots_offset) + " lies past the end of the file (" +
               std::to_string(file.Size()) + " bytes): truncated image");
  // The table is at most QEMU's 64 MiB and what the file holds; it is read
  // as the walk needs it, from 64 KiB on, doubling (a table of a few
  // entries is a few hundred bytes, and reading up to the end of the file
  // made opening a snapshot's view of a 1 GiB image 13% slower).
  const uint64_t avail = std::min<uint64_t>(file.Size() - h.snapshots_offset, kQcow2MaxSnapshotTableBytes);
  std::vector<char> t;
  // Makes t hold the table's first n bytes; false if the file (or the
  // limit) ends before.
  auto have = [&](uint64_t n) -> Result<bool> {
    if (n <= t.size()) return true;
    if (n > avail) return false;
    const uint64_t old = t.size();
    t.resize(std::min<uint64_t>(avail, std::max<uint64_t>({n, 2 * old, 64 << 10})));
    CHAINFS_RETURN_IF_ERROR(file.ReadAt(h.snapshots_offset + old, t.size() - old, t.data() + old));
    return true;
  };
  std::set<std::string> ids;
  uint64_t at = 0, l1_bytes = 0;
  for (uint32_t i = 0; i < h.nb_snapshots; ++i) {
    const std::string which = "entry " + std::to_string(i + 1) + " of " + std::to_string(h.nb_snapshots);
    auto past = [&] {
      return bad(which + " runs past " +
                 (avail == kQcow2MaxSnapshotTableBytes ? std::string("64 MiB (QEMU's limit)")
                                                       : "the end of the file (" + std::to_string(file.Size()) +
                                                             " bytes): truncated image"));
    };
    CHAINFS_ASSIGN_OR_RETURN(bool head, have(at + 40));
    if (!head) return past();
    const char* e = &t[at];
    Qcow2Snapshot s;
    s.l1_offset = LoadBe64(e);
    s.l1_size = LoadBe32(e + 8);
    const uint16_t id_size = LoadBe16(e + 12);
    const uint16_t name_size = LoadBe16(e + 14);
    s.date_sec = LoadBe32(e + 16);
    s.date_nsec = LoadBe32(e + 20);
    s.vm_clock_nsec = LoadBe64(e + 24);
    s.vm_state_size = LoadBe32(e + 32);
    const uint32_t extra = LoadBe32(e + 36);
    const uint64_t len = 40 + uint64_t{extra} + id_size + name_size;
    CHAINFS_ASSIGN_OR_RETURN(bool whole, have(at + len));
    if (!whole) return past();
    e = &t[at];  // t may have grown
    s.disk_size = h.virtual_size;  // v2 images without extra data: the size did not change
    if (extra >= 8) s.vm_state_size = LoadBe64(e + 40);
    if (extra >= 16) s.disk_size = LoadBe64(e + 48);
    s.id.assign(e + 40 + extra, id_size);
    s.name.assign(e + 40 + extra + id_size, name_size);
    const std::string named = which + " (id '" + s.id + "', name '" + s.name + "')";
    if (s.id.empty() || s.id.find('\0') != std::string::npos || !ids.insert(s.id).second)
      return bad(named + ": its id is empty, holds a NUL byte or is another snapshot's");
    if (s.disk_size > (uint64_t{1} << 56)) return bad(named + ": disk size " + std::to_string(s.disk_size) + " is absurd");
    CHAINFS_RETURN_IF_ERROR(
        ValidateQcow2L1(file, h, s.l1_offset, s.l1_size, s.disk_size, "snapshot '" + s.name + "' (id " + s.id + "): L1 table"));
    // Every snapshot has an L1 table of its own: together they fit in the
    // file (else tables are shared, which QEMU never writes, and checking
    // each would read the same bytes over and over).
    l1_bytes += uint64_t{s.l1_size} * 8;
    if (l1_bytes > file.Size())
      return bad(named + ": the snapshots' L1 tables add up to more than the file's " +
                 std::to_string(file.Size()) + " bytes (tables shared between snapshots)");
    out.push_back(std::move(s));
    at += (len + 7) & ~uint64_t{7};
  }
  return out;
}

}  // namespace chainfs
