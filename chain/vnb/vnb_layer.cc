#include "chain/vnb/vnb_layer.h"

#include <lz4frame.h>
#include <xxhash.h>

#include "chain/base/coding.h"
#include "chain/base/worker_pool.h"
#include "chain/vnb/frame_buffer.h"
#include "chain/vnb/lz4_check.h"

#include <algorithm>
#include <cstring>
#include <condition_variable>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace chainfs {
namespace {

// One piece of the layer: a data frame (uncompressed) or one lz4 frame of a
// data frame (compressed), or a zero frame.
struct Piece {
  uint64_t offset = 0;  // in the disk
  uint64_t length = 0;
  bool zero = false;
  uint64_t first_entry = 0;
  uint64_t pos = 0;      // payload / lz4 frame position in the file
  uint32_t stored = 0;   // lz4 frame's compressed size (0: uncompressed)
  bool block_sums = false;  // lz4 blocks checksummed: a decoded prefix is verified
};

// Compressed bytes read and not yet decoded: a buffer that, unlike a
// std::string, does not zero what it is about to read into (a memset of
// every compressed byte, 5% of an lz4 view's read CPU).
class InputBuffer {
 public:
  char* data() { return p_.get(); }
  size_t size() const { return len_; }
  // Drops the first n bytes, keeping the rest at the front.
  void Consume(size_t n) {
    if (n < len_) std::memmove(p_.get(), p_.get() + n, len_ - n);
    len_ -= std::min(n, len_);
  }
  // n more bytes at the end, not initialised: returns where they start.
  char* Append(size_t n) {
    if (len_ + n > cap_) {
      const size_t cap = std::max(len_ + n, cap_ * 2);
      auto p = std::make_unique_for_overwrite<char[]>(cap);
      if (len_ > 0) std::memcpy(p.get(), p_.get(), len_);
      p_ = std::move(p);
      cap_ = cap;
    }
    len_ += n;
    return p_.get() + len_ - n;
  }
  void Release() {
    p_.reset();
    len_ = cap_ = 0;
  }

 private:
  std::unique_ptr<char[]> p_;
  size_t len_ = 0, cap_ = 0;
};

// One lz4 frame being decoded, front to back, by whichever reader needs
// bytes not decoded yet (python-lz4 links blocks: byte X needs every byte
// before it). A reader of bytes already decoded copies them at once, so a
// sequential pass is served while the frame is still being decoded, and a
// random read decodes only up to what it reads.
struct FrameState {
  explicit FrameState(size_t size) : out(size) {}
  ~FrameState() {
    if (dctx != nullptr) LZ4F_freeDecompressionContext(dctx);
  }
  std::mutex mu;
  std::condition_variable cv;
  FrameBuffer out;    // decoded bytes: [0, ready) final, the rest not yet written
  size_t ready = 0;   // guarded by mu
  bool busy = false;  // a thread is decoding (guarded by mu)
  bool queued = false;  // given to the decode-ahead pool once (guarded by mu)
  Status error;       // sticky (guarded by mu)
  // The decoder's state, touched only by the thread that set busy.
  LZ4F_dctx* dctx = nullptr;
  uint64_t in_pos = 0;  // next compressed byte to read (file offset)
  InputBuffer in;       // compressed bytes read, not yet consumed from in_off
  size_t in_off = 0;
  // Verifies block checksums as bytes are read; the decoder is given only
  // verified blocks (set for frames with block checksums).
  std::unique_ptr<Lz4FrameChecker> checker;
  bool ended = false;   // the frame's end (and content checksum) was seen
};

// Decoded lz4 frames, shared by every VnbLayer of the process, LRU, bounded
// by bytes.
class FrameCache {
 public:
  static FrameCache& Get() {
    static FrameCache* c = new FrameCache();  // never destroyed: used until exit
    return *c;
  }
  using Frame = std::shared_ptr<FrameState>;
  using Key = std::pair<uint64_t, uint64_t>;
  // The state of frame `piece` of `layer` (made by make() if not kept).
  Frame Get(uint64_t layer, uint64_t piece, const std::function<Frame()>& make) {
    const Key key{layer, piece};
    std::lock_guard<std::mutex> l(mu_);
    auto it = map_.find(key);
    if (it != map_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.second);
      return it->second.first;
    }
    Frame f = make();
    Insert(key, f);
    return f;
  }


 private:
  // REQUIRES: mu_ held.
  void Insert(const Key& key, Frame v) {
    lru_.push_front(key);
    bytes_ += v->out.capacity();  // what it maps, not what it holds
    map_[key] = {std::move(v), lru_.begin()};
    // Oldest first, skipping frames in use (being decoded or read: the
    // cache's reference is not the only one), which an eviction would have
    // decoded twice.
    for (auto at = lru_.end(); bytes_ > kVnbFrameCacheBytes && at != lru_.begin();) {
      --at;
      auto it = map_.find(*at);
      if (it->second.first.use_count() > 1) continue;
      bytes_ -= it->second.first->out.capacity();
      map_.erase(it);
      at = lru_.erase(at);
    }
  }
  std::mutex mu_;
  std::list<Key> lru_;
  std::map<Key, std::pair<Frame, std::list<Key>::iterator>> map_;
  uint64_t bytes_ = 0;
};

// Decodes lz4 frames ahead of readers (VnbLayer::WillNeed): a sequential
// pass then decodes the next frame on another core while this one is read.
// Never destroyed: tasks may run until the process exits. Small frames (an
// incremental's scattered extents) are not worth a task.
constexpr uint64_t kMinDecodeAheadBytes = 4 << 20;
WorkerPool& DecodeAheadPool() {
  static WorkerPool* pool = new WorkerPool(2);
  return *pool;
}

// Decode-ahead tasks queued or running (each holds its layer while it
// runs): QuiesceDecodeAhead waits for none.
struct AheadTasks {
  std::mutex mu;
  std::condition_variable idle;
  int64_t n = 0;
};
AheadTasks& Ahead() {
  static AheadTasks* a = new AheadTasks();
  return *a;
}

void QuiesceDecodeAhead() {
  AheadTasks& a = Ahead();
  std::unique_lock<std::mutex> l(a.mu);
  a.idle.wait(l, [&] { return a.n == 0; });
}

class VnbLayer : public Layer, public std::enable_shared_from_this<VnbLayer> {
 public:
  VnbLayer(std::unique_ptr<RandomAccessFile> file, const VnbStream& s, uint64_t id)
      : id_(id), file_(std::move(file)), virtual_size_(s.meta.virtual_size),
        compressed_(s.meta.compressed != 0),
        bs_(compressed_ ? kVnbBlockSize : kVnbPlainBlockSize) {
    uint64_t entry = 0;
    for (const VnbExtent& e : s.extents) {
      if (e.zero) {
        pieces_.push_back({e.offset, e.length, true, 0, 0, 0});
        continue;
      }
      if (!compressed_) {
        pieces_.push_back({e.offset, e.length, false, entry, e.payload_pos, 0});
        entry += (e.length + bs_ - 1) / bs_;
        continue;
      }
      uint64_t off = e.offset;
      for (const VnbLz4Frame& f : e.frames) {
        pieces_.push_back({off, f.size, false, entry, f.pos, f.stored, f.block_checksums});
        entry += (f.size + bs_ - 1) / bs_;
        off += f.size;
      }
    }
    for (size_t i = 0; i < pieces_.size(); ++i)
      if (!pieces_[i].zero) data_.push_back(i);
    entries_ = entry;
  }

  uint64_t id() const override { return id_; }
  uint32_t block_size() const override { return bs_; }
  uint64_t virtual_size() const override { return virtual_size_; }
  const std::string& location() const override { return file_->Path(); }

  void ForEachExtent(const std::function<void(const LayerExtent&)>& fn) const override {
    for (const Piece& p : pieces_)
      fn({p.offset, p.length, p.zero ? LayerExtent::Kind::kZero : LayerExtent::Kind::kData,
          p.first_entry});
  }

  // The index into pieces_ of the data piece holding entry, or -1.
  const Piece* PieceOf(uint64_t entry, size_t* index) const {
    auto it = std::upper_bound(data_.begin(), data_.end(), entry, [&](uint64_t e, size_t i) {
      return e < pieces_[i].first_entry;
    });
    if (it == data_.begin() || entry >= entries_) return nullptr;
    *index = *(it - 1);
    return &pieces_[*index];
  }

  static std::shared_ptr<FrameState> NewFrame(const Piece& p) {
    auto s = std::make_shared<FrameState>(p.length);
    s->in_pos = p.pos;
    return s;
  }

  std::string Where(const Piece& p) const {
    return file_->Path() + " at offset " + std::to_string(p.pos) + " (lz4 frame of disk bytes " +
           std::to_string(p.offset) + "+" + std::to_string(p.length) + ")";
  }

  // The frame of piece `index` with at least its first `need` bytes decoded
  // (all of them when its blocks carry no checksum of their own).
  Result<std::shared_ptr<FrameState>> Frame(size_t index, const Piece& p, size_t need) const {
    auto f = FrameCache::Get().Get(id_, index, [&] { return NewFrame(p); });
    if (!p.block_sums) need = p.length;
    std::unique_lock<std::mutex> l(f->mu);
    for (;;) {
      if (!f->error.ok()) return f->error;
      if (f->ready >= need) return f;
      if (!f->busy) break;
      f->cv.wait(l);
    }
    f->busy = true;
    size_t ready = f->ready;
    l.unlock();
    Status st = DecodeUpTo(*f, p, ready, need);
    l.lock();
    f->busy = false;
    if (!st.ok()) f->error = st;
    f->cv.notify_all();
    if (!st.ok()) return st;
    return f;
  }

  // Decodes f from `ready` until at least `need` bytes (then to the next
  // 1 MiB step) are final, publishing progress as it goes. REQUIRES: f.busy
  // set by the caller.
  Status DecodeUpTo(FrameState& f, const Piece& p, size_t ready, size_t need) const {
    constexpr size_t kStep = 1 << 20;
    const std::string where = Where(p);
    if (f.dctx == nullptr && LZ4F_isError(LZ4F_createDecompressionContext(&f.dctx, LZ4F_VERSION)))
      return Status::IoError(where + ": cannot create an lz4 context");
    const size_t target = std::min(f.out.size(), std::max(need, ready + kStep));
    const uint64_t in_end = p.pos + p.stored;
    // Block checksums are verified by f.checker as bytes are read, and the
    // decoder skips liblz4's slow copy of them (chain/vnb/lz4_check.h).
    if (p.block_sums && f.checker == nullptr) f.checker = std::make_unique<Lz4FrameChecker>();
    LZ4F_decompressOptions_t opts{};
    opts.skipChecksums = p.block_sums ? 1 : 0;
    while (ready < target || (ready == f.out.size() && !f.ended)) {
      // What the decoder may take: f.in[in_off, limit), verified blocks only.
      size_t limit = f.in.size();
      if (f.checker != nullptr) {
        const uint64_t in_start = f.in_pos - f.in.size() - p.pos;  // frame byte of f.in[0]
        limit = static_cast<size_t>(std::min<uint64_t>(limit, f.checker->verified() - in_start));
      }
      if (f.in_off == limit) {
        if (f.in_pos >= in_end)
          return Status::Corruption(where + ": damaged lz4 frame (ends after " +
                                    std::to_string(ready) + " of " + std::to_string(f.out.size()) +
                                    " bytes)");
        // The next piece, after what is read and not yet decoded (the
        // rest of a block that runs past the last piece).
        f.in.Consume(f.in_off);
        f.in_off = 0;
        const size_t n = std::min<uint64_t>(kStep, in_end - f.in_pos);
        char* at = f.in.Append(n);
        CHAINFS_RETURN_IF_ERROR(file_->ReadAt(f.in_pos, n, at));
        f.in_pos += n;
        if (f.checker != nullptr) CHAINFS_RETURN_IF_ERROR(f.checker->Feed(at, n, where));
        continue;
      }
      size_t in_n = limit - f.in_off;
      size_t out_n = std::min(f.out.size() - ready, kStep);
      const size_t r = LZ4F_decompress(f.dctx, f.out.data() + ready, &out_n,
                                       f.in.data() + f.in_off, &in_n, &opts);
      if (LZ4F_isError(r))
        return Status::Corruption(where + ": damaged lz4 frame (" + LZ4F_getErrorName(r) + ")");
      f.in_off += in_n;
      ready += out_n;
      if (r == 0) {
        f.ended = true;
        if (ready != f.out.size() || f.in_off != f.in.size() || f.in_pos != in_end)
          return Status::Corruption(where + ": damaged lz4 frame (decodes to " +
                                    std::to_string(ready) + " of " + std::to_string(f.out.size()) +
                                    " bytes, or leaves bytes)");
      } else if (out_n == 0 && in_n == 0) {
        return Status::Corruption(where + ": damaged lz4 frame (" +
                                  (ready == f.out.size()
                                       ? "more than " + std::to_string(f.out.size()) + " bytes"
                                       : "the decoder stops after " + std::to_string(ready) +
                                             " bytes") +
                                  ")");
      }
      if (out_n > 0 && (p.block_sums || ready == f.out.size())) {
        std::lock_guard<std::mutex> g(f.mu);
        // Without block checksums nothing is final before the frame's end.
        if (p.block_sums || f.ended) f.ready = ready;
        f.cv.notify_all();
      }
    }
    if (f.ended) {
      std::lock_guard<std::mutex> g(f.mu);
      f.ready = ready;
      LZ4F_freeDecompressionContext(f.dctx);
      f.dctx = nullptr;
      f.in.Release();
      f.in_off = 0;
      f.checker.reset();
    }
    return Status::Ok();
  }

  Status ReadBlock(uint64_t entry, char* out) const override {
    size_t index = 0;
    const Piece* p = PieceOf(entry, &index);
    if (p == nullptr)
      return Status::Corruption(location() + ": no block " + std::to_string(entry) +
                                " (the stream has " + std::to_string(entries_) + ")");
    const uint64_t k = (entry - p->first_entry) * bs_;
    const uint64_t n = std::min<uint64_t>(bs_, p->length - k);
    if (!compressed_) {
      CHAINFS_RETURN_IF_ERROR(file_->ReadAt(p->pos + k, n, out));
    } else {
      if (p->length <= bs_) {
        // A frame that is one entry (an incremental's extent): decoded
        // straight into it; the block cache keeps the entry, the frame
        // cache is left to frames read piece by piece. Its block checksums
        // are checked; its content checksum by `check --deep` (Verify).
        auto in = std::make_unique_for_overwrite<char[]>(p->stored);
        CHAINFS_RETURN_IF_ERROR(file_->ReadAt(p->pos, p->stored, in.get()));
        CHAINFS_RETURN_IF_ERROR(
            DecodeLz4Frame(in.get(), p->stored, out, n, Where(*p), /*content_checksum=*/false));
      } else {
        CHAINFS_ASSIGN_OR_RETURN(std::shared_ptr<FrameState> frame, Frame(index, *p, k + n));
        std::memcpy(out, frame->out.data() + k, n);
      }
    }
    if (n < bs_) std::memset(out + n, 0, bs_ - n);
    return Status::Ok();
  }

  // A large lz4 frame is decoded whole into its FrameState's buffer (kept
  // in the FrameCache): a sequential pass answers from there, which spares
  // ReadBlock's copy into a cache block and the cache's bookkeeping (with
  // them, a warm read of an lz4 view took ~40% more of the daemon's CPU).
  bool KeepsDecoded(uint64_t entry) const override {
    size_t index = 0;
    return DecodedPiece(entry, &index) != nullptr;
  }
  Result<std::shared_ptr<const char>> PinDecoded(uint64_t entry) const override {
    size_t index = 0;
    const Piece* p = DecodedPiece(entry, &index);
    if (p == nullptr) return Layer::PinDecoded(entry);
    const uint64_t k = (entry - p->first_entry) * bs_;
    CHAINFS_ASSIGN_OR_RETURN(std::shared_ptr<FrameState> frame, Frame(index, *p, k + bs_));
    const char* at = frame->out.data() + k;
    return std::shared_ptr<const char>(std::move(frame), at);  // holds the frame
  }

  // The large frame that holds block `entry` whole, or null.
  const Piece* DecodedPiece(uint64_t entry, size_t* index) const {
    const Piece* p = compressed_ ? PieceOf(entry, index) : nullptr;
    return p != nullptr && p->length > bs_ && (entry - p->first_entry + 1) * bs_ <= p->length ? p
                                                                                              : nullptr;
  }

  std::optional<ContentHash> BlockHash(uint64_t) const override { return std::nullopt; }

  // An uncompressed stream's data bytes, where ReadBlock reads them.
  std::optional<FileSpan> RawSpan(uint64_t entry, uint32_t offset, uint32_t n) const override {
    size_t index = 0;
    const Piece* p = compressed_ ? nullptr : PieceOf(entry, &index);
    if (p == nullptr) return std::nullopt;
    const uint64_t k = (entry - p->first_entry) * bs_;
    if (k + offset + n > p->length) return std::nullopt;  // zeros past the extent
    return FileSpan{file_.get(), p->pos + k + offset};
  }

  uint64_t StoredLength(uint64_t entry) const override {
    size_t index = 0;
    const Piece* p = PieceOf(entry, &index);
    if (p == nullptr) return 0;
    const uint64_t k = (entry - p->first_entry) * bs_;
    const uint64_t n = std::min<uint64_t>(bs_, p->length - k);
    if (!compressed_) return n;
    return p->stored * n / p->length;  // the frame's share
  }

  void WillNeed(uint64_t first, uint64_t count) const override { WillNeedRuns({{first, count}}); }
  // An uncompressed stream's payload bytes of every data frame the runs
  // touch, in file order (WillNeedRanges). Compressed: WillNeedFrames, whose
  // small frames are merged the same way.
  void WillNeedRuns(const std::vector<EntryRun>& runs) const override {
    WillNeedRanges ranges;
    for (const EntryRun& r : runs) {
      if (compressed_) {
        WillNeedFrames(r.first, r.count, &ranges);
        continue;
      }
      size_t index = 0;
      if (r.count == 0 || PieceOf(r.first, &index) == nullptr) continue;
      const uint64_t stop = r.first + r.count;
      for (size_t i = index; i < pieces_.size(); ++i) {
        const Piece& q = pieces_[i];
        if (q.zero) continue;
        if (q.first_entry >= stop) break;
        const uint64_t from = std::max(r.first, q.first_entry);
        const uint64_t k = (from - q.first_entry) * bs_;
        if (k < q.length) ranges.Add(q.pos + k, std::min<uint64_t>((stop - from) * bs_, q.length - k));
      }
    }
    ranges.Issue(*file_, kWillNeedMaxGap);
  }

  // The lz4 frames holding entries [first, first + count): large ones
  // decoded in the background, whole; small ones (an incremental's extents,
  // decoded by whoever reads them) only fetched from disk, added to *small.
  void WillNeedFrames(uint64_t first, uint64_t count, WillNeedRanges* small) const {
    size_t index = 0;
    const Piece* p = PieceOf(first, &index);
    if (p == nullptr || count == 0) return;
    std::weak_ptr<const VnbLayer> weak = weak_from_this();
    for (size_t i = index; i < pieces_.size(); ++i) {
      const Piece& q = pieces_[i];
      if (q.zero) continue;
      if (q.first_entry >= first + count) break;
      if (q.length < kMinDecodeAheadBytes) {
        small->Add(q.pos, q.stored);
        continue;
      }
      auto f = FrameCache::Get().Get(id_, i, [&] { return NewFrame(q); });
      {
        std::lock_guard<std::mutex> l(f->mu);
        if (f->busy || f->ready == f->out.size() || !f->error.ok() || f->queued) continue;
        f->queued = true;
      }
      file_->WillNeed(q.pos, q.stored);
      {
        std::lock_guard<std::mutex> l(Ahead().mu);
        ++Ahead().n;
      }
      DecodeAheadPool().Submit([weak, i] {
        if (auto self = weak.lock()) (void)self->Frame(i, self->pieces_[i], self->pieces_[i].length);
        // The layer is released above, before the count drops.
        AheadTasks& a = Ahead();
        std::lock_guard<std::mutex> l(a.mu);
        if (--a.n == 0) a.idle.notify_all();
      });
    }
  }

  // Decodes every lz4 frame whole, past the frame cache, checking block and
  // content checksums (reads skip the content checksum of a frame whose
  // blocks carry their own: chain/vnb/lz4_check.h).
  Status Verify(const std::function<void(uint64_t)>& progress) const {
    std::unique_ptr<char[]> in, out;
    size_t in_cap = 0, out_cap = 0;
    for (const Piece& p : pieces_) {
      if (p.zero) continue;
      if (compressed_) {
        if (p.stored > in_cap) in = std::make_unique_for_overwrite<char[]>(in_cap = p.stored);
        if (p.length > out_cap) out = std::make_unique_for_overwrite<char[]>(out_cap = p.length);
        CHAINFS_RETURN_IF_ERROR(file_->ReadAt(p.pos, p.stored, in.get()));
        CHAINFS_RETURN_IF_ERROR(DecodeLz4Frame(in.get(), p.stored, out.get(), p.length, Where(p)));
      }
      if (progress) progress(p.length);
    }
    return Status::Ok();
  }

 private:
  const uint64_t id_;
  std::unique_ptr<RandomAccessFile> file_;
  const uint64_t virtual_size_;
  const bool compressed_;
  const uint32_t bs_;  // entry size
  std::vector<Piece> pieces_;
  std::vector<size_t> data_;  // indexes of data pieces, by first_entry
  uint64_t entries_ = 0;
};

bool Probe(const char* head, size_t n) { return LooksLikeVnbStream(head, n); }

Result<std::shared_ptr<const Layer>> Open(std::unique_ptr<RandomAccessFile> file,
                                          const LayerIdFn& id_for) {
  CHAINFS_ASSIGN_OR_RETURN(VnbStream s, ParseSparseStream(*file));
  // The stream's fingerprint: its size and structure do not identify its
  // bytes, so every open gets a fresh id (a cached block is never reused
  // across a reopen).
  (void)id_for;
  return OpenVnbLayerParsed(std::move(file), s, NextLayerId());
}

}  // namespace

Result<std::shared_ptr<const Layer>> OpenVnbLayerParsed(std::unique_ptr<RandomAccessFile> file,
                                                        const VnbStream& s, uint64_t id) {
  if (s.meta.virtual_size > kMaxVirtualSize)
    return Status::Corruption(file->Path() + ": virtual size " + std::to_string(s.meta.virtual_size) +
                              " is above the largest chainfs accepts");
  return std::shared_ptr<const Layer>(std::make_shared<VnbLayer>(std::move(file), s, id));
}

Result<std::shared_ptr<const Layer>> OpenVnbLayer(std::unique_ptr<RandomAccessFile> file,
                                                  uint64_t id) {
  CHAINFS_ASSIGN_OR_RETURN(VnbStream s, ParseSparseStream(*file));
  return OpenVnbLayerParsed(std::move(file), s, id);
}

Status VerifyVnbLayer(const Layer& layer, const std::function<void(uint64_t)>& progress) {
  const auto* v = dynamic_cast<const VnbLayer*>(&layer);
  if (v == nullptr) return Status::InvalidArgument(layer.location() + ": not a virtnbdbackup stream");
  return v->Verify(progress);
}

const LayerFormat kVnbLayerFormat = {
    .name = "virtnbdbackup",
    .probe_size = kVnbFrameHeaderSize,
    .probe = Probe,
    .open = Open,
    .create_writer = nullptr,
    .overhead_bytes = nullptr,
    .max_stored_bytes = nullptr,
    .quiesce = QuiesceDecodeAhead,
};

}  // namespace chainfs
