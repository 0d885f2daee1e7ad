#include "chain/layer/view.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <future>

#include "chain/base/worker_pool.h"

namespace chainfs {

DirectBlockReader* DirectBlockReader::Get() {
  static DirectBlockReader reader;
  return &reader;
}

Status DirectBlockReader::ReadBlockRange(const Layer& layer, uint64_t entry, uint32_t offset,
                                         uint32_t n, char* out, const ReadOptions&) {
  if (offset == 0 && n == layer.block_size()) return layer.ReadBlock(entry, out);
  thread_local std::vector<char> scratch;
  scratch.resize(layer.block_size());
  CHAINFS_RETURN_IF_ERROR(layer.ReadBlock(entry, scratch.data()));
  std::memcpy(out, scratch.data() + offset, n);
  return Status::Ok();
}

Result<std::shared_ptr<const char>> DirectBlockReader::PinBlock(const Layer& layer,
                                                                uint64_t entry, uint32_t,
                                                                uint32_t, const ReadOptions&) {
  std::shared_ptr<char[]> block(new char[layer.block_size()]);
  char* data = block.get();
  CHAINFS_RETURN_IF_ERROR(layer.ReadBlock(entry, data));
  return std::shared_ptr<const char>(std::move(block), data);
}

Result<std::shared_ptr<View>> View::Init(std::vector<LayerRef> layers, std::string label,
                                         BlockReader* reader, std::vector<uint64_t>* clip_bytes) {
  if (layers.empty()) return Status::InvalidArgument(label + ": a view needs a layer");
  std::shared_ptr<View> v(new View());
  v->block_size_ = layers[0].layer->block_size();
  v->size_ = layers[0].layer->virtual_size();
  v->label_ = std::move(label);
  v->reader_ = reader ? reader : DirectBlockReader::Get();
  uint64_t clip = UINT64_MAX;
  for (const LayerRef& ref : layers) {
    if (!std::has_single_bit(ref.layer->block_size()))
      return Status::Corruption(v->label_ + ": layer " + ref.layer->location() +
                                " has block size " + std::to_string(ref.layer->block_size()) +
                                ", not a power of two");
    if (clip_bytes == nullptr) continue;  // a composed map: sizes not needed
    clip = std::min(clip, ref.layer->virtual_size());
    clip_bytes->push_back(clip);
  }
  v->layers_ = std::move(layers);
  return v;
}

Result<std::shared_ptr<const View>> View::Create(std::vector<LayerRef> layers, std::string label,
                                                 BlockReader* reader) {
  std::vector<uint64_t> clip_bytes;
  CHAINFS_ASSIGN_OR_RETURN(std::shared_ptr<View> v,
                           Init(std::move(layers), std::move(label), reader, &clip_bytes));
  std::vector<const Layer*> raw;
  for (const LayerRef& ref : v->layers_) raw.push_back(ref.layer.get());
  v->map_ = ExtentMap::Build(raw, clip_bytes);
  return std::shared_ptr<const View>(std::move(v));
}

Result<std::shared_ptr<const View>> View::CreateWithMap(std::vector<LayerRef> layers,
                                                        ExtentMap map, std::string label,
                                                        BlockReader* reader) {
  // No layer is asked its size: a lazy layer's is in an entry of the
  // group's that nothing else of the open touches (a cache miss each, 4,000
  // at depth 10,000).
  CHAINFS_ASSIGN_OR_RETURN(std::shared_ptr<View> v,
                           Init(std::move(layers), std::move(label), reader, nullptr));
  v->map_ = std::move(map);
  return std::shared_ptr<const View>(std::move(v));
}

template <typename Zero, typename Data>
Status View::Walk(uint64_t offset, size_t n, Zero zero, Data data) const {
  const uint64_t end = offset + n;
  const uint64_t data_end = std::min(end, size_);
  uint64_t pos = offset;
  // One lookup per request; then the runs are walked in order.
  const MapRun* run = pos < data_end ? map_.FindAtOrAfter(pos) : nullptr;
  const MapRun* const runs_end = run ? map_.runs_end() : nullptr;
  while (pos < data_end) {
    while (run != runs_end && run->end <= pos) ++run;
    if (run == runs_end || run->start > pos || run->is_zero()) {
      // Hole or zero run: no I/O.
      const uint64_t stop = run == runs_end ? data_end
                            : run->start > pos ? std::min(data_end, run->start)
                                               : std::min(data_end, run->end);
      zero(stop - pos);
      pos = stop;
      continue;
    }
    // Up to the end of the entry, the run or the request.
    const EntryPos at = run->EntryAt(pos);
    const uint64_t len =
        std::min({run->end, data_end, pos + (run->entry_size() - at.offset)}) - pos;
    // The last piece of this entry a forward pass reads: one that reaches
    // the entry's end, or the end of its run when no later run (before the
    // entry's end) maps the same entry.
    const uint64_t entry_end = pos + (run->entry_size() - at.offset);
    bool last = pos + len == entry_end;
    if (!last && pos + len == run->end) {
      last = true;
      for (const MapRun* r = run + 1; r != runs_end && r->start < entry_end; ++r)
        if (!r->is_zero() && r->layer == run->layer && r->EntryAt(r->start).entry == at.entry) {
          last = false;
          break;
        }
    }
    Status st = data(run->layer, at.entry, at.offset, static_cast<uint32_t>(len), last);
    if (!st.ok())
      return st.Context("view " + label_ + " offset " + std::to_string(pos) +
                        " (stored by checkpoint " + layers_[run->layer].checkpoint + ")");
    pos += len;
  }
  if (end > data_end) zero(end - std::max(offset, data_end));
  return Status::Ok();
}

namespace {
// The options of one piece of a read: the caller's, and whether the piece is
// the last this pass reads of its block (see ReadOptions::last_of_block).
ReadOptions PieceOptions(const ReadOptions& options, bool last) {
  ReadOptions o = options;
  o.last_of_block = last;
  return o;
}
}  // namespace

Status View::Read(uint64_t offset, size_t n, char* out, const ReadOptions& options) const {
  char* p = out;
  return Walk(
      offset, n,
      [&](uint64_t len) {
        std::memset(p, 0, len);
        p += len;
      },
      [&](uint32_t li, uint64_t entry, uint32_t in_block, uint32_t len, bool last) {
        Status st = reader_->ReadBlockRange(*layers_[li].layer, entry, in_block, len, p,
                                            PieceOptions(options, last));
        p += len;
        return st;
      });
}

Status View::ReadPieces(uint64_t offset, size_t n, std::vector<ReadPiece>* out,
                        const ReadOptions& options) const {
  return Walk(
      offset, n,
      [&](uint64_t len) {
        if (!out->empty() && out->back().data == nullptr && out->back().file == nullptr)
          out->back().size += len;
        else
          out->push_back(ReadPiece{nullptr, len, nullptr});
      },
      [&](uint32_t li, uint64_t entry, uint32_t in_block, uint32_t len, bool last) -> Status {
        if (options.file_pieces) {
          if (auto span = layers_[li].layer->RawSpan(entry, in_block, len)) {
            ReadPiece* b = out->empty() ? nullptr : &out->back();
            if (b != nullptr && b->file == span->file && b->file_offset + b->size == span->offset)
              b->size += len;  // the next bytes of the same file
            else
              out->push_back(ReadPiece{nullptr, len, nullptr, span->file, span->offset});
            return Status::Ok();
          }
        }
        // A scan of a block the layer keeps decoded (Layer::KeepsDecoded) is
        // answered from there, not from a copy in the cache; with file
        // pieces only, as the mount's readahead then leaves such blocks
        // out of the cache (ReadaheadOptions::skip_raw).
        if (options.file_pieces && options.scan && layers_[li].layer->KeepsDecoded(entry)) {
          auto decoded = layers_[li].layer->PinDecoded(entry);
          if (!decoded.ok()) return decoded.status();
          const char* data = decoded.value().get() + in_block;
          out->push_back(ReadPiece{data, len, std::move(decoded).value()});
          return Status::Ok();
        }
        auto pinned = reader_->PinBlock(*layers_[li].layer, entry, in_block, len,
                                        PieceOptions(options, last));
        if (!pinned.ok()) return pinned.status();
        const char* data = pinned.value().get() + in_block;
        out->push_back(ReadPiece{data, len, std::move(pinned).value()});
        return Status::Ok();
      });
}

namespace {

// Load() of each layer not loaded yet, up to `threads` at a time; each one's
// status. A lazily opened layer's (a view map's, chain/repo) open is a few
// reads that wait on the disk, and a deep view has hundreds: one thread
// opened a depth-1,000 view's layers in ~100 ms disk-cold, eight
// (View::kLoadThreads) in ~45.
constexpr size_t kMinParallelLoads = 16;
std::vector<Status> LoadAll(const std::vector<const Layer*>& layers,
                            unsigned threads = View::kLoadThreads) {
  std::vector<Status> out(layers.size());
  std::vector<size_t> closed;
  for (size_t i = 0; i < layers.size(); ++i)
    if (!layers[i]->Loaded()) closed.push_back(i);
  ParallelFor(closed.size(), kMinParallelLoads, threads,
              [&](size_t k) { out[closed[k]] = layers[closed[k]]->Load(); });
  return out;
}

}  // namespace

std::vector<const Layer*> View::ServingLayers() const {
  std::vector<char> serves(layers_.size(), 0);
  for (const MapRun& r : map_.runs())
    if (!r.is_zero()) serves[r.layer] = 1;
  std::vector<const Layer*> out;
  for (size_t i = 0; i < layers_.size(); ++i)
    if (serves[i]) out.push_back(layers_[i].layer.get());
  return out;
}

Status View::LoadLayers(unsigned threads) const {
  // Newest first, the first failure, as if opened one after another.
  for (const Status& st : LoadAll(ServingLayers(), threads)) CHAINFS_RETURN_IF_ERROR(st);
  return Status::Ok();
}

bool View::LayersLoaded() const {
  const std::vector<const Layer*> serving = ServingLayers();
  return std::all_of(serving.begin(), serving.end(), [](const Layer* l) { return l->Loaded(); });
}

void View::WillNeed(uint64_t offset, uint64_t n) const {
  if (n == 0 || offset >= size_) return;
  const uint64_t stop = std::min(size_, offset + n);
  // One hint per stretch of consecutive entries of a layer (a run, or runs
  // whose entries continue each other's). Entries shadowed by newer layers
  // are never asked for: in a deep chain most of an old layer's entries in a
  // window are shadowed, and reading them too (one hint from the layer's
  // first to its last entry) doubled the bytes read from disk at depth 100.
  struct Ask {
    size_t layer;
    uint64_t first, count;
  };
  std::vector<Ask> asks;
  std::vector<std::pair<uint64_t, uint64_t>> pending(layers_.size(), {0, 0});
  auto flush = [&](size_t li) {
    auto& [lo, hi] = pending[li];
    if (lo < hi) asks.push_back({li, lo, hi - lo});
    lo = hi = 0;
  };
  std::vector<size_t> rank(layers_.size(), SIZE_MAX);  // by the layer's first run
  size_t ranked = 0;
  for (const MapRun* r = map_.FindAtOrAfter(offset); r != nullptr && r != map_.runs_end(); ++r) {
    if (r->start >= stop) break;
    if (r->is_zero()) continue;
    if (rank[r->layer] == SIZE_MAX) rank[r->layer] = ranked++;
    const auto [lo, last] = r->EntriesOf(std::max(offset, r->start), std::min(stop, r->end));
    auto& p = pending[r->layer];
    if (p.first < p.second && p.first <= lo && lo <= p.second) {
      p.second = std::max(p.second, last + 1);  // continues (or shares an entry)
    } else {
      flush(r->layer);
      p = {lo, last + 1};
    }
  }
  for (size_t li = 0; li < pending.size(); ++li) flush(li);
  // Layers not opened yet are opened together first (only a hint: a layer
  // that fails to open is the read's to report).
  std::vector<const Layer*> closed;
  for (const Ask& a : asks) closed.push_back(layers_[a.layer].layer.get());
  std::sort(closed.begin(), closed.end());
  closed.erase(std::unique(closed.begin(), closed.end()), closed.end());
  (void)LoadAll(closed);  // only those not loaded yet
  // Each layer's runs together, so that it can merge them in its file; the
  // layers in the order of their first run in the window, so that what the
  // reader needs first is asked for first (by layer index, a deep native
  // chain's cold read was 10% slower: the window's first blocks were asked
  // for last).
  std::stable_sort(asks.begin(), asks.end(),
                   [&](const Ask& a, const Ask& b) { return rank[a.layer] < rank[b.layer]; });
  std::vector<Layer::EntryRun> runs;
  for (size_t i = 0; i < asks.size();) {
    const size_t li = asks[i].layer;
    runs.clear();
    for (; i < asks.size() && asks[i].layer == li; ++i) runs.push_back({asks[i].first, asks[i].count});
    layers_[li].layer->WillNeedRuns(runs);
  }
}

uint64_t View::SeekData(uint64_t offset) const {
  if (offset >= size_) return size_;
  for (const MapRun* r = map_.FindAtOrAfter(offset); r != nullptr && r != map_.runs_end(); ++r) {
    if (r->is_zero()) continue;
    return std::min(std::max(offset, r->start), size_);
  }
  return size_;
}

uint64_t View::SeekHole(uint64_t offset, uint64_t limit) const {
  if (offset >= size_) return size_;
  uint64_t pos = offset;
  for (const MapRun* r = map_.FindAtOrAfter(pos); r != nullptr && r != map_.runs_end(); ++r) {
    if (r->start > pos || r->is_zero()) return std::min(pos, size_);  // a gap or a zero run
    pos = r->end;  // data run: continue after it
    if (pos >= size_) return size_;
    if (pos >= limit) return pos;
  }
  return std::min(pos, size_);
}

bool View::ReadsZeros(const MapRun* r, uint64_t from, uint64_t to) const {
  for (; r != nullptr && r != map_.runs_end() && r->start < to; ++r)
    if (!r->is_zero() && r->end > from) return false;
  return true;
}

std::optional<View::WholeEntry> View::WholeEntryOf(uint64_t block, const MapRun* r) const {
  const uint64_t start = block * block_size_;
  if (r == nullptr || start >= size_ || r->start > start || r->is_zero() ||
      r->entry_size() != block_size_)
    return std::nullopt;
  const EntryPos at = r->EntryAt(start);
  if (at.offset != 0) return std::nullopt;
  // The view reads the entry up to r->end. That is all of it, or all that
  // its extent holds when r->end is the layer's virtual size (no extent
  // reaches past it; the entry reads zeros past its extent's end).
  const uint64_t block_end = start + block_size_;
  if (r->end < block_end && r->end != layers_[r->layer].layer->virtual_size())
    return std::nullopt;
  // The rest of the block (before the view's end) must read zeros.
  if (r->end < std::min(block_end, size_) &&
      !ReadsZeros(r + 1, r->end, std::min(block_end, size_)))
    return std::nullopt;
  return WholeEntry{r->layer, at.entry};
}

std::optional<View::WholeEntry> View::WholeEntryOf(uint64_t block) const {
  return WholeEntryOf(block, map_.FindAtOrAfter(block * block_size_));
}

std::optional<ContentHash> View::KnownBlockHash(uint64_t block) const {
  const uint64_t start = block * block_size_;
  if (start >= size_) return ZeroBlockHash(block_size_);
  const MapRun* r = map_.FindAtOrAfter(start);
  if (ReadsZeros(r, start, std::min(start + block_size_, size_)))
    return ZeroBlockHash(block_size_);
  const std::optional<WholeEntry> w = WholeEntryOf(block, r);
  if (!w) return std::nullopt;
  return layers_[w->layer].layer->BlockHash(w->entry);
}

uint64_t View::StoredBytes() const {
  uint64_t total = 0;
  // Runs of one layer split by a newer layer may share an entry: count once.
  std::vector<uint64_t> last(layers_.size(), UINT64_MAX);
  for (const MapRun& r : map_.runs()) {
    if (r.is_zero()) continue;
    const Layer& layer = *layers_[r.layer].layer;
    auto [first, last_entry] = r.EntriesOf(r.start, r.end);
    if (last[r.layer] == first) ++first;
    for (uint64_t e = first; e <= last_entry; ++e) total += layer.StoredLength(e);
    last[r.layer] = last_entry;
  }
  return total;
}

}  // namespace chainfs
