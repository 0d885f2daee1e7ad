#include "chain/vnb/vnb_layer.h"

#include <algorithm>
#include <cstring>
#include <condition_variable>
#include <list>
#include <set>
#include <map>
#include <mutex>

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
};

// Decoded lz4 frames, shared by every VnbLayer of the process, LRU, bounded
// by bytes.
class FrameCache {
 public:
  static FrameCache& Get() {
    static FrameCache* c = new FrameCache();  // never destroyed: used until exit
    return *c;
  }
  using Frame = std::shared_ptr<const std::string>;
  // The decoded frame `piece` of `layer`: from the cache, or loaded by
  // load() once however many threads ask for it at the same time (readahead
  // asks for several entries of one frame at once).
  Result<Frame> GetOrLoad(uint64_t layer, uint64_t piece, const std::function<Result<Frame>()>& load) {
    const Key key{layer, piece};
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      auto it = map_.find(key);
      if (it != map_.end()) {
        lru_.splice(lru_.begin(), lru_, it->second.second);
        return it->second.first;
      }
      if (!loading_.count(key)) break;
      loaded_.wait(l);
    }
    loading_.insert(key);
    l.unlock();
    Result<Frame> r = load();
    l.lock();
    loading_.erase(key);
    if (r.ok()) Insert(key, r.value());
    loaded_.notify_all();
    return r;
  }

 private:
  using Key = std::pair<uint64_t, uint64_t>;
  // REQUIRES: mu_ held.
  void Insert(const Key& key, Frame v) {
    lru_.push_front(key);
    bytes_ += v->size();
    map_[key] = {std::move(v), lru_.begin()};
    while (bytes_ > kVnbFrameCacheBytes && lru_.size() > 1) {
      auto it = map_.find(lru_.back());
      lru_.pop_back();
      bytes_ -= it->second.first->size();
      map_.erase(it);
    }
  }
  std::mutex mu_;
  std::condition_variable loaded_;
  std::set<Key> loading_;
  std::list<Key> lru_;
  std::map<Key, std::pair<std::shared_ptr<const std::string>, std::list<Key>::iterator>> map_;
  uint64_t bytes_ = 0;
};

class VnbLayer : public Layer {
 public:
  VnbLayer(std::unique_ptr<RandomAccessFile> file, const VnbStream& s, uint64_t id)
      : id_(id), file_(std::move(file)), virtual_size_(s.meta.virtual_size),
        compressed_(s.meta.compressed != 0) {
    uint64_t entry = 0;
    for (const VnbExtent& e : s.extents) {
      if (e.zero) {
        pieces_.push_back({e.offset, e.length, true, 0, 0, 0});
        continue;
      }
      if (!compressed_) {
        pieces_.push_back({e.offset, e.length, false, entry, e.payload_pos, 0});
        entry += (e.length + kVnbBlockSize - 1) / kVnbBlockSize;
        continue;
      }
      uint64_t off = e.offset;
      for (const VnbLz4Frame& f : e.frames) {
        pieces_.push_back({off, f.size, false, entry, f.pos, f.stored});
        entry += (f.size + kVnbBlockSize - 1) / kVnbBlockSize;
        off += f.size;
      }
    }
    for (size_t i = 0; i < pieces_.size(); ++i)
      if (!pieces_[i].zero) data_.push_back(i);
    entries_ = entry;
  }

  uint64_t id() const override { return id_; }
  uint32_t block_size() const override { return kVnbBlockSize; }
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

  Result<std::shared_ptr<const std::string>> Frame(size_t index, const Piece& p) const {
    return FrameCache::Get().GetOrLoad(id_, index, [&] { return Decode(p); });
  }

  Result<std::shared_ptr<const std::string>> Decode(const Piece& p) const {
    std::string in(p.stored, '\0');
    CHAINFS_RETURN_IF_ERROR(file_->ReadAt(p.pos, p.stored, in.data()));
    auto out = std::make_shared<std::string>(p.length, '\0');
    CHAINFS_RETURN_IF_ERROR(DecodeLz4Frame(in.data(), in.size(), out->data(), out->size(),
                                           file_->Path() + " at offset " + std::to_string(p.pos) +
                                               " (disk bytes " + std::to_string(p.offset) + "+" +
                                               std::to_string(p.length) + ")"));
    return std::shared_ptr<const std::string>(std::move(out));
  }

  Status ReadBlock(uint64_t entry, char* out) const override {
    size_t index = 0;
    const Piece* p = PieceOf(entry, &index);
    if (p == nullptr)
      return Status::Corruption(location() + ": no block " + std::to_string(entry) +
                                " (the stream has " + std::to_string(entries_) + ")");
    const uint64_t k = (entry - p->first_entry) * kVnbBlockSize;
    const uint64_t n = std::min<uint64_t>(kVnbBlockSize, p->length - k);
    if (!compressed_) {
      CHAINFS_RETURN_IF_ERROR(file_->ReadAt(p->pos + k, n, out));
    } else {
      CHAINFS_ASSIGN_OR_RETURN(std::shared_ptr<const std::string> frame, Frame(index, *p));
      std::memcpy(out, frame->data() + k, n);
    }
    if (n < kVnbBlockSize) std::memset(out + n, 0, kVnbBlockSize - n);
    return Status::Ok();
  }

  std::optional<ContentHash> BlockHash(uint64_t) const override { return std::nullopt; }

  uint64_t StoredLength(uint64_t entry) const override {
    size_t index = 0;
    const Piece* p = PieceOf(entry, &index);
    if (p == nullptr) return 0;
    const uint64_t k = (entry - p->first_entry) * kVnbBlockSize;
    const uint64_t n = std::min<uint64_t>(kVnbBlockSize, p->length - k);
    if (!compressed_) return n;
    return p->stored * n / p->length;  // the frame's share
  }

  void WillNeed(uint64_t first, uint64_t count) const override {
    size_t index = 0;
    const Piece* p = PieceOf(first, &index);
    if (p == nullptr || count == 0) return;
    if (!compressed_) {
      const uint64_t k = (first - p->first_entry) * kVnbBlockSize;
      file_->WillNeed(p->pos + k, std::min<uint64_t>(count * kVnbBlockSize, p->length - k));
    } else {
      file_->WillNeed(p->pos, p->stored);
    }
  }

  Status Verify(const std::function<void(uint64_t)>& progress) const {
    for (size_t i = 0; i < pieces_.size(); ++i) {
      const Piece& p = pieces_[i];
      if (p.zero) continue;
      if (compressed_) {
        CHAINFS_RETURN_IF_ERROR(Frame(i, p).status());
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
};

}  // namespace chainfs
