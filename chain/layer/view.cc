#include "chain/layer/view.h"

#include <algorithm>
#include <cstring>

namespace chainfs {

DirectBlockReader* DirectBlockReader::Get() {
  static DirectBlockReader reader;
  return &reader;
}

Status DirectBlockReader::ReadBlockRange(const Layer& layer, uint64_t entry, uint32_t offset,
                                         uint32_t n, char* out) {
  if (offset == 0 && n == layer.block_size()) return layer.ReadBlock(entry, out);
  thread_local std::vector<char> scratch;
  scratch.resize(layer.block_size());
  CHAINFS_RETURN_IF_ERROR(layer.ReadBlock(entry, scratch.data()));
  std::memcpy(out, scratch.data() + offset, n);
  return Status::Ok();
}

Result<std::shared_ptr<const char>> DirectBlockReader::PinBlock(const Layer& layer,
                                                                uint64_t entry, uint32_t,
                                                                uint32_t) {
  std::shared_ptr<char[]> block(new char[layer.block_size()]);
  char* data = block.get();
  CHAINFS_RETURN_IF_ERROR(layer.ReadBlock(entry, data));
  return std::shared_ptr<const char>(std::move(block), data);
}

Result<std::shared_ptr<const View>> View::Create(std::vector<LayerRef> layers, std::string label,
                                                 BlockReader* reader) {
  if (layers.empty()) return Status::InvalidArgument(label + ": a view needs a layer");
  std::shared_ptr<View> v(new View());
  v->block_size_ = layers[0].layer->block_size();
  v->size_ = layers[0].layer->virtual_size();
  v->label_ = std::move(label);
  v->reader_ = reader ? reader : DirectBlockReader::Get();
  std::vector<const Layer*> raw;
  std::vector<uint64_t> clip_blocks;
  uint64_t clip = UINT64_MAX;
  for (const LayerRef& ref : layers) {
    if (ref.layer->block_size() != v->block_size_)
      return Status::Corruption(v->label_ + ": layer " + ref.layer->location() +
                                " has block size " + std::to_string(ref.layer->block_size()) +
                                ", the view " + std::to_string(v->block_size_));
    clip = std::min(clip, ref.layer->virtual_size());
    v->clip_bytes_.push_back(clip);
    clip_blocks.push_back((clip + v->block_size_ - 1) / v->block_size_);
    raw.push_back(ref.layer.get());
  }
  v->layers_ = std::move(layers);
  v->map_ = ExtentMap::Build(raw, clip_blocks);
  return std::shared_ptr<const View>(std::move(v));
}

uint64_t View::VisibleBytes(uint32_t li, uint64_t block) const {
  uint64_t start = block * block_size_;
  uint64_t clip = clip_bytes_[li];
  return clip <= start ? 0 : std::min<uint64_t>(block_size_, clip - start);
}

template <typename Zero, typename Data>
Status View::Walk(uint64_t offset, size_t n, Zero zero, Data data) const {
  const uint64_t end = offset + n;
  const uint64_t data_end = std::min(end, size_);
  uint64_t pos = offset;
  while (pos < data_end) {
    const uint64_t block = pos / block_size_;
    const MapRun* run = map_.FindAtOrAfter(block);
    if (run == nullptr || run->first_block > block || run->is_zero()) {
      // Hole or zero run: no I/O.
      uint64_t stop = run == nullptr ? data_end
                      : run->is_zero() && run->first_block <= block
                          ? std::min(data_end, run->end() * block_size_)
                          : std::min(data_end, run->first_block * block_size_);
      zero(stop - pos);
      pos = stop;
      continue;
    }
    const uint32_t in_block = static_cast<uint32_t>(pos % block_size_);
    const uint64_t chunk = std::min<uint64_t>(block_size_ - in_block, data_end - pos);
    const uint64_t visible = VisibleBytes(run->layer, block);
    const uint64_t copy = in_block < visible ? std::min<uint64_t>(chunk, visible - in_block) : 0;
    if (copy > 0) {
      const uint64_t entry = run->first_entry + (block - run->first_block);
      Status st = data(run->layer, entry, in_block, static_cast<uint32_t>(copy));
      if (!st.ok())
        return st.Context("view " + label_ + " offset " + std::to_string(pos) +
                          " (stored by checkpoint " + layers_[run->layer].checkpoint + ")");
    }
    if (copy < chunk) zero(chunk - copy);
    pos += chunk;
  }
  if (end > data_end) zero(end - std::max(offset, data_end));
  return Status::Ok();
}

Status View::Read(uint64_t offset, size_t n, char* out) const {
  char* p = out;
  return Walk(
      offset, n,
      [&](uint64_t len) {
        std::memset(p, 0, len);
        p += len;
      },
      [&](uint32_t li, uint64_t entry, uint32_t in_block, uint32_t len) {
        Status st = reader_->ReadBlockRange(*layers_[li].layer, entry, in_block, len, p);
        p += len;
        return st;
      });
}

Status View::ReadPieces(uint64_t offset, size_t n, std::vector<ReadPiece>* out) const {
  return Walk(
      offset, n,
      [&](uint64_t len) {
        if (!out->empty() && out->back().data == nullptr)
          out->back().size += len;
        else
          out->push_back(ReadPiece{nullptr, len, nullptr});
      },
      [&](uint32_t li, uint64_t entry, uint32_t in_block, uint32_t len) -> Status {
        auto pinned = reader_->PinBlock(*layers_[li].layer, entry, in_block, len);
        if (!pinned.ok()) return pinned.status();
        const char* data = pinned.value().get() + in_block;
        out->push_back(ReadPiece{data, len, std::move(pinned).value()});
        return Status::Ok();
      });
}

void View::WillNeed(uint64_t offset, uint64_t n) const {
  if (n == 0 || offset >= size_) return;
  const uint64_t first = offset / block_size_;
  const uint64_t last = (std::min(size_, offset + n) + block_size_ - 1) / block_size_;
  // One hint per stretch of consecutive entries of a layer (a run, or runs
  // whose entries continue each other's). Entries shadowed by newer layers
  // are never asked for: in a deep chain most of an old layer's entries in a
  // window are shadowed, and reading them too (one hint from the layer's
  // first to its last entry) doubled the bytes read from disk at depth 100.
  std::vector<std::pair<uint64_t, uint64_t>> pending(layers_.size(), {0, 0});
  auto flush = [&](size_t li) {
    auto& [lo, hi] = pending[li];
    if (lo < hi) layers_[li].layer->WillNeed(lo, hi - lo);
    lo = hi = 0;
  };
  const MapRun* end = map_.runs().data() + map_.runs().size();
  for (const MapRun* r = map_.FindAtOrAfter(first); r != nullptr && r != end; ++r) {
    if (r->first_block >= last) break;
    if (r->is_zero()) continue;
    const uint64_t b = std::max(first, r->first_block);
    const uint64_t lo = r->first_entry + (b - r->first_block);
    const uint64_t hi = r->first_entry + (std::min(last, r->end()) - r->first_block);
    auto& p = pending[r->layer];
    if (p.first < p.second && p.second == lo) {
      p.second = hi;
    } else {
      flush(r->layer);
      p = {lo, hi};
    }
  }
  for (size_t li = 0; li < pending.size(); ++li) flush(li);
}

uint64_t View::SeekData(uint64_t offset) const {
  if (offset >= size_) return size_;
  uint64_t block = offset / block_size_;
  for (const MapRun* r = map_.FindAtOrAfter(block); r != nullptr; ++r) {
    if (r == map_.runs().data() + map_.runs().size()) break;
    if (r->is_zero()) continue;
    uint64_t start = std::max(offset, r->first_block * block_size_);
    return std::min(start, size_);
  }
  return size_;
}

uint64_t View::SeekHole(uint64_t offset, uint64_t limit) const {
  if (offset >= size_) return size_;
  uint64_t pos = offset;
  const MapRun* end = map_.runs().data() + map_.runs().size();
  for (const MapRun* r = map_.FindAtOrAfter(pos / block_size_); r != nullptr && r != end; ++r) {
    uint64_t rs = r->first_block * block_size_;
    if (rs > pos || r->is_zero()) return std::min(pos, size_);  // a gap or a zero run
    pos = r->end() * block_size_;  // data run: continue after it
    if (pos >= size_) return size_;
    if (pos >= limit) return pos;
  }
  return std::min(pos, size_);
}

std::optional<ContentHash> View::KnownBlockHash(uint64_t block) const {
  const MapRun* r = map_.Find(block);
  if (r == nullptr || r->is_zero()) return ZeroBlockHash(block_size_);
  const uint64_t start = block * block_size_;
  const Layer& layer = *layers_[r->layer].layer;
  // Stored blocks are zero past their layer's own virtual size, so the
  // stored hash holds if the clip cuts nothing but that zero padding.
  const uint64_t clip = clip_bytes_[r->layer];
  if (clip < std::min(start + block_size_, layer.virtual_size())) return std::nullopt;
  return layer.BlockHash(r->first_entry + (block - r->first_block));
}

uint64_t View::StoredBytes() const {
  uint64_t total = 0;
  for (const MapRun& r : map_.runs()) {
    if (r.is_zero()) continue;
    const Layer& layer = *layers_[r.layer].layer;
    for (uint64_t i = 0; i < r.block_count; ++i) total += layer.StoredLength(r.first_entry + i);
  }
  return total;
}

}  // namespace chainfs
