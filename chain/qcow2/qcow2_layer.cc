#include "chain/qcow2/qcow2_layer.h"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <list>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "chain/base/huge_map.h"
#include "chain/qcow2/big_endian.h"

namespace chainfs {
namespace {

constexpr uint64_t kOffsetMask = 0x00fffffffffffe00ull;  // bits 9..55: L1 and standard L2 entries
constexpr uint64_t kCompressedBit = 1ull << 62;
constexpr uint64_t kZeroBit = 1;                         // standard L2 entry, no extended L2
constexpr uint32_t kSubclusters = 32;

// A decoded L2 table: cluster size / 8 entries, in HugeSlots memory.
using Table = std::shared_ptr<const uint64_t>;

// L2 tables of every qcow2 layer of the process, decoded, least recently
// used first out beyond kQcow2L2CacheBytes. Keyed by layer id (unique per
// open) and the table's host offset.
class L2Cache {
 public:
  static L2Cache& Get() {
    static L2Cache* c = new L2Cache;  // never destroyed: layers may outlive statics
    return *c;
  }
  Table Find(uint64_t layer, uint64_t off) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = map_.find({layer, off});
    if (it == map_.end()) return nullptr;
    lru_.splice(lru_.end(), lru_, it->second.pos);
    return it->second.table;
  }
  void Insert(uint64_t layer, uint64_t off, Table t, uint64_t bytes) {
    std::lock_guard<std::mutex> l(mu_);
    const Key k{layer, off};
    if (map_.count(k)) return;
    bytes_ += bytes;
    lru_.push_back(k);
    map_.emplace(k, Slot{std::move(t), bytes, std::prev(lru_.end())});
    while (bytes_ > kQcow2L2CacheBytes && lru_.size() > 1) {
      auto victim = map_.find(lru_.front());
      bytes_ -= victim->second.bytes;
      map_.erase(victim);
      lru_.pop_front();
    }
  }

 private:
  struct Key {
    uint64_t layer, off;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const { return std::hash<uint64_t>()(k.layer * 0x9e3779b97f4a7c15ull ^ k.off); }
  };
  struct Slot {
    Table table;
    uint64_t bytes;
    std::list<Key>::iterator pos;
  };
  std::mutex mu_;
  std::list<Key> lru_;
  std::unordered_map<Key, Slot, KeyHash> map_;
  uint64_t bytes_ = 0;
};

std::string Hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

// What one L2 entry says about one unit (a cluster, or a subcluster).
enum class Unit : uint8_t { kNone, kData, kZero };

class Qcow2Layer : public Layer {
 public:
  // h: the image's header, or for an internal snapshot a copy with the
  // snapshot's L1 table and disk size; where: the file's path, or the path
  // and the snapshot (messages, location()).
  Qcow2Layer(std::unique_ptr<RandomAccessFile> file, const Qcow2Header& h, std::vector<uint64_t> l1,
             std::string where)
      : id_(NextLayerId()), file_(std::move(file)), where_(std::move(where)), h_(h), l1_(std::move(l1)),
        cs_(h.cluster_size()), bs_(static_cast<uint32_t>(h.extended_l2 ? cs_ / kSubclusters : cs_)),
        width_(h.extended_l2 ? 2 : 1), l2e_(h.l2_entries()),
        csize_shift_(62 - (h.cluster_bits - 8)) {
    // Each L2 table belongs to one L1 entry. Tables two entries share are
    // damage (and would let a small file claim a huge map): both ranges
    // read as errors.
    std::vector<std::pair<uint64_t, uint64_t>> offs;  // (table offset, L1 index)
    for (uint64_t i = 0; i < l1_.size(); ++i)
      if (const uint64_t off = l1_[i] & kOffsetMask) offs.push_back({off, i});
    std::sort(offs.begin(), offs.end());
    for (size_t k = 1; k < offs.size(); ++k)
      if (offs[k].first == offs[k - 1].first) {
        shared_.emplace(offs[k].second, offs[k - 1].second);
        shared_.emplace(offs[k - 1].second, offs[k].second);
      }
  }

  uint64_t id() const override { return id_; }
  uint32_t block_size() const override { return bs_; }
  uint64_t virtual_size() const override { return h_.virtual_size; }
  const std::string& location() const override { return where_; }
  std::optional<ContentHash> BlockHash(uint64_t) const override { return std::nullopt; }

  // The host offset of L1 entry i's L2 table: 0 if unallocated; an error if
  // the entry is damaged.
  Result<uint64_t> TableOffset(uint64_t i) const {
    const uint64_t off = l1_[i] & kOffsetMask;
    if (off == 0) return uint64_t{0};
    if (auto it = shared_.find(i); it != shared_.end())
      return Status::Corruption(where_ + ": the L2 table at host offset " + std::to_string(off) +
                                " belongs to L1 entries " + std::to_string(std::min(i, it->second)) + " and " +
                                std::to_string(std::max(i, it->second)) + " (guest offsets " +
                                std::to_string(i * l2e_ * cs_) + " and " +
                                std::to_string(it->second * l2e_ * cs_) + "): damaged image");
    if (off % cs_ != 0 || off + cs_ > file_->Size())
      return Status::Corruption(where_ + ": L1 entry " + std::to_string(i) + " (guest offset " +
                                std::to_string(i * l2e_ * cs_) + ") points to an L2 table at host offset " +
                                std::to_string(off) + (off % cs_ != 0 ? ", not cluster-aligned"
                                                                      : ", past the end of the file (" +
                                                                            std::to_string(file_->Size()) + " bytes)"));
    return off;
  }

  // The L2 table of L1 entry i: null if unallocated.
  Result<Table> L2(uint64_t i) const {
    CHAINFS_ASSIGN_OR_RETURN(const uint64_t off, TableOffset(i));
    if (off == 0) return Table();
    if (Table t = L2Cache::Get().Find(id_, off)) return t;
    // Read in place, then decoded in place.
    char* mem = HugeSlots::Get().Alloc(cs_);
    std::shared_ptr<uint64_t> t(reinterpret_cast<uint64_t*>(mem),
                                [n = cs_](uint64_t* p) { HugeSlots::Get().Free(reinterpret_cast<char*>(p), n); });
    CHAINFS_RETURN_IF_ERROR(file_->ReadAt(off, cs_, mem));
    for (uint64_t k = 0; k < cs_ / 8; ++k) t.get()[k] = LoadBe64(mem + k * 8);
    L2Cache::Get().Insert(id_, off, t, cs_);
    return Table(std::move(t));
  }

  // The L2 tables ForEachExtent will read and the cache does not hold, as
  // hints; tables next to each other in the file as one. Damaged entries are
  // skipped (L2() reports them).
  void WillNeedExtents() const override {
    const uint64_t per_l1 = l2e_ * cs_;
    WillNeedRanges tables;
    for (uint64_t i = 0; i < l1_.size() && i * per_l1 < h_.virtual_size; ++i) {
      const Result<uint64_t> at = TableOffset(i);
      const uint64_t off = at.ok() ? at.value() : 0;
      if (off == 0 || L2Cache::Get().Find(id_, off) != nullptr) continue;
      tables.Add(off, cs_);
    }
    tables.Issue(*file_, 0);  // the tables only: no data cluster between them
  }

  uint64_t Entry(const Table& t, uint64_t j) const { return t.get()[j * width_]; }
  uint64_t Bitmap(const Table& t, uint64_t j) const { return width_ == 2 ? t.get()[j * 2 + 1] : 0; }

  // Unit u (0 for a whole cluster, else the subcluster) of L2 entry e.
  Unit Classify(uint64_t e, uint64_t bitmap, uint32_t u) const {
    if (e & kCompressedBit) return Unit::kData;
    if (h_.extended_l2) {
      if (bitmap & (uint64_t{1} << u)) return Unit::kData;
      if (bitmap & (uint64_t{1} << (u + 32))) return Unit::kZero;
      return Unit::kNone;
    }
    if (e & kZeroBit) return Unit::kZero;
    return (e & kOffsetMask) != 0 ? Unit::kData : Unit::kNone;
  }

  void ForEachExtent(const std::function<void(const LayerExtent&)>& fn) const override {
    const uint64_t vsize = h_.virtual_size;
    LayerExtent cur;
    bool open = false;
    auto flush = [&] {
      if (open) fn(cur);
      open = false;
    };
    auto add = [&](Unit kind, uint64_t off, uint64_t len) {
      if (off >= vsize) return;
      len = std::min(len, vsize - off);
      if (kind == Unit::kNone) return flush();
      const auto k = kind == Unit::kData ? LayerExtent::Kind::kData : LayerExtent::Kind::kZero;
      if (open && cur.kind == k && cur.end() == off) {
        cur.length += len;
        return;
      }
      flush();
      cur = {off, len, k, k == LayerExtent::Kind::kData ? off / bs_ : 0};
      open = true;
    };
    const uint64_t per_l1 = l2e_ * cs_;
    for (uint64_t i = 0; i < l1_.size() && i * per_l1 < vsize; ++i) {
      auto t = L2(i);
      if (!t.ok()) {
        // Unreadable table: its range is data that reads as EIO (ReadBlock
        // meets the same error), never the backing image's bytes.
        add(Unit::kData, i * per_l1, per_l1);
        continue;
      }
      if (t.value() == nullptr) {
        flush();
        continue;
      }
      const Table& table = t.value();
      for (uint64_t j = 0; j < l2e_; ++j) {
        const uint64_t g = i * per_l1 + j * cs_;
        if (g >= vsize) break;
        const uint64_t e = Entry(table, j), b = Bitmap(table, j);
        if (!h_.extended_l2 || (e & kCompressedBit)) {
          add(Classify(e, b, 0), g, cs_);
          continue;
        }
        for (uint32_t u = 0; u < kSubclusters; ++u) add(Classify(e, b, u), g + u * bs_, bs_);
      }
    }
    flush();
  }

  std::string Where(uint64_t guest) const {
    return where_ + " at guest offset " + std::to_string(guest);
  }

  // Decodes compressed cluster entry e into out (cs_ bytes).
  Status Decompress(uint64_t guest, uint64_t e, char* out) const {
    const uint64_t coff = e & ((uint64_t{1} << csize_shift_) - 1);
    const uint64_t nsec = ((e >> csize_shift_) & ((uint64_t{1} << (h_.cluster_bits - 8)) - 1)) + 1;
    const uint64_t csize = nsec * 512 - (coff & 511);
    const std::string where = Where(guest) + " (compressed cluster at host offset " + std::to_string(coff) + ")";
    if (coff >= file_->Size())
      return Status::Corruption(where + ": past the end of the file (" + std::to_string(file_->Size()) + " bytes)");
    // The last compressed cluster's sectors may reach past the end of file.
    const uint64_t n = std::min(csize, file_->Size() - coff);
    thread_local std::vector<char> in;
    in.resize(n);
    CHAINFS_RETURN_IF_ERROR(file_->ReadAt(coff, n, in.data()));
    if (h_.compression == Qcow2Compression::kZlib) {
      z_stream s{};
      if (inflateInit2(&s, -12) != Z_OK) return Status::IoError(where + ": zlib init failed");
      s.next_in = reinterpret_cast<Bytef*>(in.data());
      s.avail_in = static_cast<uInt>(n);
      s.next_out = reinterpret_cast<Bytef*>(out);
      s.avail_out = static_cast<uInt>(cs_);
      const int r = inflate(&s, Z_FINISH);
      const bool ok = (r == Z_STREAM_END || r == Z_BUF_ERROR) && s.avail_out == 0;
      inflateEnd(&s);
      if (!ok) return Status::Corruption(where + ": damaged zlib data (" + std::to_string(r) + ")");
      return Status::Ok();
    }
    thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
    ZSTD_DCtx_reset(dctx.get(), ZSTD_reset_session_only);
    ZSTD_inBuffer zin{in.data(), n, 0};
    ZSTD_outBuffer zout{out, cs_, 0};
    while (zout.pos < zout.size) {
      const size_t in_was = zin.pos, out_was = zout.pos;
      const size_t r = ZSTD_decompressStream(dctx.get(), &zout, &zin);
      if (ZSTD_isError(r))
        return Status::Corruption(where + ": damaged zstd data (" + ZSTD_getErrorName(r) + ")");
      if (zin.pos == in_was && zout.pos == out_was)
        return Status::Corruption(where + ": zstd data ends after " + std::to_string(zout.pos) +
                                  " of " + std::to_string(cs_) + " bytes");
    }
    return Status::Ok();
  }

  Status ReadBlock(uint64_t entry, char* out) const override {
    const uint64_t g = entry * bs_;
    if (g >= h_.virtual_size) {
      std::memset(out, 0, bs_);
      return Status::Ok();
    }
    const uint64_t valid = std::min<uint64_t>(bs_, h_.virtual_size - g);
    const uint64_t cl = g >> h_.cluster_bits;
    const uint64_t in_cluster = g - (cl << h_.cluster_bits);
    CHAINFS_ASSIGN_OR_RETURN(Table t, L2(cl / l2e_));
    const uint64_t e = t ? Entry(t, cl % l2e_) : 0, b = t ? Bitmap(t, cl % l2e_) : 0;
    const Unit kind = Classify(e, b, static_cast<uint32_t>(in_cluster / bs_));
    if (kind == Unit::kNone)
      return Status::Corruption(Where(g) + ": not allocated in this image (the image changed "
                                "since it was opened?)");
    if (kind == Unit::kZero) {
      std::memset(out, 0, bs_);
      return Status::Ok();
    }
    if (e & kCompressedBit) {
      if (bs_ == cs_) {
        CHAINFS_RETURN_IF_ERROR(Decompress(g, e, out));
      } else {
        struct Last {
          uint64_t layer = 0, cluster = UINT64_MAX;
          std::vector<char> data;
        };
        thread_local Last last;
        if (last.layer != id_ || last.cluster != cl) {
          last.cluster = UINT64_MAX;
          last.data.resize(cs_);
          CHAINFS_RETURN_IF_ERROR(Decompress(g, e, last.data.data()));
          last.layer = id_;
          last.cluster = cl;
        }
        std::memcpy(out, last.data.data() + in_cluster, bs_);
      }
      if (valid < bs_) std::memset(out + valid, 0, bs_ - valid);
      return Status::Ok();
    }
    const uint64_t host = e & kOffsetMask;
    if (host % cs_ != 0)
      return Status::Corruption(Where(g) + ": L2 entry points to host offset " + std::to_string(host) +
                                ", not cluster-aligned");
    if (host == 0 || host + in_cluster + valid > file_->Size())
      return Status::Corruption(Where(g) + ": its data cluster at host offset " + std::to_string(host) +
                                " lies past the end of the file (" + std::to_string(file_->Size()) +
                                " bytes): truncated or damaged image");
    CHAINFS_RETURN_IF_ERROR(file_->ReadAt(host + in_cluster, valid, out));
    if (valid < bs_) std::memset(out + valid, 0, bs_ - valid);
    return Status::Ok();
  }

  // An allocated, uncompressed cluster inside the file: ReadBlock's bytes.
  std::optional<FileSpan> RawSpan(uint64_t entry, uint32_t offset, uint32_t n) const override {
    const uint64_t g = entry * bs_;
    if (g >= h_.virtual_size || offset + n > std::min<uint64_t>(bs_, h_.virtual_size - g))
      return std::nullopt;
    const uint64_t cl = g >> h_.cluster_bits;
    const uint64_t in_cluster = g - (cl << h_.cluster_bits);
    auto t = L2(cl / l2e_);
    if (!t.ok() || !t.value()) return std::nullopt;
    const uint64_t e = Entry(t.value(), cl % l2e_), b = Bitmap(t.value(), cl % l2e_);
    if (Classify(e, b, static_cast<uint32_t>(in_cluster / bs_)) != Unit::kData ||
        (e & kCompressedBit))
      return std::nullopt;
    const uint64_t host = e & kOffsetMask;
    if (host == 0 || host % cs_ != 0 || host + in_cluster + offset + n > file_->Size())
      return std::nullopt;
    return FileSpan{file_.get(), host + in_cluster + offset};
  }
  uint64_t StoredLength(uint64_t) const override { return bs_; }

  void WillNeed(uint64_t first, uint64_t count) const override { WillNeedRuns({{first, count}}); }
  // Clusters are laid out in the order they were written, so an overlay's
  // clusters of one window lie together, with shadowed ones between.
  void WillNeedRuns(const std::vector<EntryRun>& runs) const override {
    WillNeedRanges ranges;
    for (const EntryRun& r : runs) {
      for (uint64_t k = 0; k < r.count; ++k) {
        const uint64_t g = (r.first + k) * bs_;
        if (g >= h_.virtual_size) break;
        const uint64_t cl = g >> h_.cluster_bits;
        auto t = L2(cl / l2e_);
        if (!t.ok() || t.value() == nullptr) continue;
        const uint64_t e = Entry(t.value(), cl % l2e_);
        if ((e & kCompressedBit) || (e & kOffsetMask) == 0) continue;
        ranges.Add((e & kOffsetMask) + (g - (cl << h_.cluster_bits)), bs_);
      }
    }
    ranges.Issue(*file_, kWillNeedMaxGap);
  }

  // CheckQcow2Structure's walk.
  std::vector<std::string> CheckStructure() const {
    std::vector<std::string> problems;
    auto problem = [&](std::string s) {
      if (problems.size() < 10) problems.push_back(std::move(s));
    };
    // Host ranges in use: what holds them is told only for a problem.
    enum What : uint8_t { kHeader, kL1, kL2, kData, kVmState };
    struct Range {
      uint64_t start, end;
      What what;
      uint64_t arg;  // kL2: the L1 index; kData: the guest offset
    };
    auto name = [](const Range& r) {
      switch (r.what) {
        case kHeader: return std::string("the header");
        case kL1: return std::string("the L1 table");
        case kL2: return "the L2 table of L1 entry " + std::to_string(r.arg);
        case kData: return "the data cluster of guest offset " + std::to_string(r.arg);
        case kVmState: return "the VM state cluster at offset " + std::to_string(r.arg);
      }
      return std::string();
    };
    std::vector<Range> used;
    used.push_back({0, cs_, kHeader, 0});
    used.push_back({h_.l1_offset, h_.l1_offset + (l1_.size() * 8 + cs_ - 1) / cs_ * cs_, kL1, 0});
    const uint64_t size = file_->Size();
    const uint64_t per_l1 = l2e_ * cs_;
    // Where QEMU keeps a snapshot's saved VM state (savevm, libvirt's
    // internal snapshots of a running domain): from the first L1 entry past
    // the disk (qcow2_vm_state_offset). Never shown; its clusters are
    // checked like data clusters.
    const uint64_t vm_state = (h_.virtual_size + per_l1 - 1) / per_l1 * per_l1;
    for (uint64_t i = 0; i < l1_.size(); ++i) {
      auto t = L2(i);
      if (!t.ok()) {
        problem(t.status().message());
        continue;
      }
      if (t.value() == nullptr) continue;
      const uint64_t l2off = l1_[i] & kOffsetMask;
      used.push_back({l2off, l2off + cs_, kL2, i});
      for (uint64_t j = 0; j < l2e_; ++j) {
        const uint64_t g = i * per_l1 + j * cs_;
        const uint64_t e = Entry(t.value(), j), b = Bitmap(t.value(), j);
        if (e & kCompressedBit) {
          const uint64_t coff = e & ((uint64_t{1} << csize_shift_) - 1);
          if (coff >= size)
            problem(Where(g) + ": compressed cluster at host offset " + std::to_string(coff) +
                    " past the end of the file (" + std::to_string(size) + " bytes)");
          continue;
        }
        const uint64_t host = e & kOffsetMask;
        if (host == 0) continue;
        if (g >= h_.virtual_size && g < vm_state) {
          problem(Where(g) + ": L2 entry " + Hex(e) + " maps a cluster beyond the virtual size");
          continue;
        }
        if (host % cs_ != 0) {
          problem(Where(g) + ": L2 entry points to host offset " + std::to_string(host) + ", not cluster-aligned");
          continue;
        }
        if (g >= vm_state) {
          if (host >= size)  // the last one may end short of its cluster
            problem(Where(g) + ": VM state cluster at host offset " + std::to_string(host) +
                    " lies past the end of the file (" + std::to_string(size) + " bytes)");
          used.push_back({host, host + cs_, kVmState, g});
          continue;
        }
        // The bytes the entry's allocated units need.
        uint64_t need = cs_;
        if (h_.extended_l2) {
          const uint32_t alloc = static_cast<uint32_t>(b);
          need = alloc == 0 ? 0 : (32 - __builtin_clz(alloc)) * bs_;
        }
        need = std::min(need, h_.virtual_size - g);
        if (need > 0 && host + need > size)
          problem(Where(g) + ": data cluster at host offset " + std::to_string(host) +
                  " lies past the end of the file (" + std::to_string(size) + " bytes)");
        used.push_back({host, host + cs_, kData, g});
      }
    }
    std::sort(used.begin(), used.end(), [](const Range& a, const Range& b) { return a.start < b.start; });
    for (size_t k = 1; k < used.size(); ++k)
      if (used[k].start < used[k - 1].end)
        problem(where_ + ": host bytes at offset " + std::to_string(used[k].start) + " are used twice: by " +
                name(used[k - 1]) + " and by " + name(used[k]));
    return problems;
  }

 private:
  const uint64_t id_;
  const std::unique_ptr<RandomAccessFile> file_;
  const std::string where_;
  const Qcow2Header h_;
  const std::vector<uint64_t> l1_;
  const uint64_t cs_;
  const uint32_t bs_;
  const uint32_t width_;  // 64-bit words per L2 entry
  const uint64_t l2e_;
  const uint32_t csize_shift_;
  std::unordered_map<uint64_t, uint64_t> shared_;  // L1 index -> another sharing its table
};

// The layer of file read through h's L1 table and virtual size (the
// image's header, or SnapshotHeader's copy); where names it in messages.
Result<std::unique_ptr<Qcow2Layer>> LayerOf(std::unique_ptr<RandomAccessFile> file, const Qcow2Header& h,
                                            std::string where) {
  std::vector<uint64_t> l1(h.l1_size);
  if (h.l1_size > 0) {
    std::vector<char> raw(uint64_t{h.l1_size} * 8);
    CHAINFS_RETURN_IF_ERROR(file->ReadAt(h.l1_offset, raw.size(), raw.data()));
    for (size_t i = 0; i < l1.size(); ++i) l1[i] = LoadBe64(&raw[i * 8]);
  }
  return std::make_unique<Qcow2Layer>(std::move(file), h, std::move(l1), std::move(where));
}

// h as internal snapshot s reads: its L1 table and disk size.
Qcow2Header SnapshotHeader(Qcow2Header h, const Qcow2Snapshot& s) {
  h.l1_offset = s.l1_offset;
  h.l1_size = s.l1_size;
  h.virtual_size = s.disk_size;
  return h;
}
std::string SnapshotWhere(const std::string& path, const Qcow2Snapshot& s) {
  return path + " (internal snapshot '" + s.name + "', id " + s.id + ")";
}

// The image's active L1 table, or with snapshot non-empty that internal
// snapshot's (Qcow2SnapshotPart: its id and time).
Result<std::unique_ptr<Qcow2Layer>> OpenImage(std::unique_ptr<RandomAccessFile> file,
                                              const std::string& snapshot = "") {
  CHAINFS_ASSIGN_OR_RETURN(const Qcow2Header h, ReadQcow2Header(*file));
  CHAINFS_RETURN_IF_ERROR(h.refused);
  const std::string path = file->Path();
  if (snapshot.empty()) return LayerOf(std::move(file), h, path);
  CHAINFS_ASSIGN_OR_RETURN(std::vector<Qcow2Snapshot> snaps, ReadQcow2Snapshots(*file, h));
  auto it = std::find_if(snaps.begin(), snaps.end(),
                         [&](const Qcow2Snapshot& s) { return Qcow2SnapshotPart(s) == snapshot; });
  if (it == snaps.end())
    return Status::NotFound(path + ": no internal snapshot '" + snapshot +
                            "' (id@time): deleted or replaced since it was listed");
  return LayerOf(std::move(file), SnapshotHeader(h, *it), SnapshotWhere(path, *it));
}

class RawLayer : public Layer {
 public:
  explicit RawLayer(std::unique_ptr<RandomAccessFile> file)
      : id_(NextLayerId()), file_(std::move(file)), size_(file_->Size()) {}
  uint64_t id() const override { return id_; }
  uint32_t block_size() const override { return kRawBlockSize; }
  uint64_t virtual_size() const override { return size_; }
  const std::string& location() const override { return file_->Path(); }
  void ForEachExtent(const std::function<void(const LayerExtent&)>& fn) const override {
    if (size_ > 0) fn({0, size_, LayerExtent::Kind::kData, 0});
  }
  Status ReadBlock(uint64_t entry, char* out) const override {
    const uint64_t off = entry * kRawBlockSize;
    const uint64_t n = off >= size_ ? 0 : std::min<uint64_t>(kRawBlockSize, size_ - off);
    if (n > 0) CHAINFS_RETURN_IF_ERROR(file_->ReadAt(off, n, out));
    if (n < kRawBlockSize) std::memset(out + n, 0, kRawBlockSize - n);
    return Status::Ok();
  }
  std::optional<ContentHash> BlockHash(uint64_t) const override { return std::nullopt; }
  std::optional<FileSpan> RawSpan(uint64_t entry, uint32_t offset, uint32_t n) const override {
    const uint64_t off = entry * kRawBlockSize + offset;
    if (off >= size_ || n > size_ - off) return std::nullopt;  // zeros past the end
    return FileSpan{file_.get(), off};
  }
  uint64_t StoredLength(uint64_t) const override { return kRawBlockSize; }
  void WillNeed(uint64_t first, uint64_t count) const override {
    file_->WillNeed(first * kRawBlockSize, count * kRawBlockSize);
  }
 private:
  const uint64_t id_;
  const std::unique_ptr<RandomAccessFile> file_;
  const uint64_t size_;
};

bool ProbeQcow2(const char* head, size_t n) { return LooksLikeQcow2(head, n); }
bool ProbeRaw(const char*, size_t) { return false; }  // raw is named, never probed

Result<std::shared_ptr<const Layer>> OpenQcow2(std::unique_ptr<RandomAccessFile> file, const LayerIdFn&) {
  return OpenQcow2Layer(std::move(file));
}
Result<std::shared_ptr<const Layer>> OpenQcow2Part(std::unique_ptr<RandomAccessFile> file,
                                                   const std::string& part) {
  return OpenQcow2Layer(std::move(file), part);
}
Result<std::shared_ptr<const Layer>> OpenRaw(std::unique_ptr<RandomAccessFile> file, const LayerIdFn&) {
  file->AdviseRandom();  // as OpenQcow2Layer's
  return std::shared_ptr<const Layer>(std::make_shared<RawLayer>(std::move(file)));
}

}  // namespace

Result<std::shared_ptr<const Layer>> OpenQcow2Layer(std::unique_ptr<RandomAccessFile> file,
                                                   const std::string& snapshot) {
  // The kernel's own readahead is off for the image: in a chain most of an
  // older image's clusters are shadowed by newer ones, and a cluster read
  // (or an L2 table read) with readahead on fetched up to read_ahead_kb
  // (8 MiB here) around it: 1.69 GB read from disk for a 1 GiB view at depth
  // 100, where 1.05 GB is what the view shows. Sequential reads still stream
  // from disk: the view's readahead asks for exactly the clusters it will
  // read, windows ahead (WillNeed).
  file->AdviseRandom();
  CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<Qcow2Layer> l, OpenImage(std::move(file), snapshot));
  return std::shared_ptr<const Layer>(std::move(l));
}

Result<std::vector<std::string>> CheckQcow2Structure(const RandomAccessFile& file) {
  // A second handle on the same file: the layer owns its file.
  struct Borrowed : RandomAccessFile {
    const RandomAccessFile& f;
    explicit Borrowed(const RandomAccessFile& f) : f(f) {}
    Status ReadAt(uint64_t o, size_t n, void* b) const override { return f.ReadAt(o, n, b); }
    uint64_t Size() const override { return f.Size(); }
    const std::string& Path() const override { return f.Path(); }
  };
  // The header and the snapshot table read once; each table checked on its
  // own (a snapshot shares its clusters with the image and other snapshots).
  CHAINFS_ASSIGN_OR_RETURN(const Qcow2Header h, ReadQcow2Header(file));
  CHAINFS_RETURN_IF_ERROR(h.refused);
  CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<Qcow2Layer> l, LayerOf(std::make_unique<Borrowed>(file), h, file.Path()));
  std::vector<std::string> problems = l->CheckStructure();
  auto snaps = ReadQcow2Snapshots(file, h);
  if (!snaps.ok()) {
    problems.push_back(snaps.status().message());
    return problems;
  }
  for (const Qcow2Snapshot& s : snaps.value()) {
    auto sl = LayerOf(std::make_unique<Borrowed>(file), SnapshotHeader(h, s), SnapshotWhere(file.Path(), s));
    if (!sl.ok()) {
      problems.push_back(sl.status().message());
      continue;
    }
    for (std::string& p : sl.value()->CheckStructure()) problems.push_back(std::move(p));
  }
  return problems;
}

const LayerFormat kQcow2LayerFormat = {
    .name = "qcow2",
    .probe_size = kQcow2ProbeSize,
    .probe = ProbeQcow2,
    .open = OpenQcow2,
    .create_writer = nullptr,
    .overhead_bytes = nullptr,
    .max_stored_bytes = nullptr,
    .open_part = OpenQcow2Part,
};

const LayerFormat kRawLayerFormat = {
    .name = "raw",
    .probe_size = 0,
    .probe = ProbeRaw,
    .open = OpenRaw,
    .create_writer = nullptr,
    .overhead_bytes = nullptr,
    .max_stored_bytes = nullptr,
};

}  // namespace chainfs
