// View: the virtual raw disk of one disk at one checkpoint.
//
//   view(vm1, c3, vda) = blocks of c3, else of c2, else of c1, else zeros,
//                        truncated or zero-extended to c3's virtual size
//
// A View owns (shares) its layers and an ExtentMap built once; Read() splits
// a request at run boundaries and at entry boundaries of whichever layer
// serves each byte range (layers may have different block sizes), serves
// holes and zero runs with memset, and fetches data entries through a
// BlockReader: direct layer reads by default, the shared block cache in a
// mount. The view's block_size() is its newest layer's: the unit backup
// compares and stores in. Immutable after Create; all methods are thread-safe.
//
//   auto view = repo->OpenView("vm1", "c3", "vda");
//   std::vector<char> buf(4096);
//   Status st = (*view)->Read(1 << 20, buf.size(), buf.data());
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chain/layer/extent_map.h"
#include "chain/layer/layer.h"

namespace chainfs {

// How a read is to be served: the caller's policy, passed explicitly down to
// the BlockReader (leveldb's ReadOptions).
struct ReadOptions {
  // The read belongs to a sequential scan (a `cat`, `dd` or rsync pass, as
  // readahead sees it): a cache does not count it as a re-use of the blocks
  // it touches, so a one-pass read leaves them to be evicted first.
  bool scan = false;
  // Set by View per block it reads: the view reads nothing more of this
  // block in a forward pass (the rest of it is shadowed by newer layers, or
  // holds no data of this view). A scan is then done with the block, as if it
  // had read it to its end.
  bool last_of_block = false;
  // ReadPieces may answer with file pieces (ReadPiece::file) where a layer
  // stores bytes raw (Layer::RawSpan): the caller moves them with splice(2).
  bool file_pieces = false;
};

// How a view obtains decoded block bytes. Implementations must be thread-safe.
class BlockReader {
 public:
  virtual ~BlockReader() = default;
  // Copies bytes [offset, offset + n) of decoded block `entry` of layer into
  // out. REQUIRES: offset + n <= layer.block_size().
  virtual Status ReadBlockRange(const Layer& layer, uint64_t entry, uint32_t offset,
                                uint32_t n, char* out, const ReadOptions& options) = 0;
  // The decoded block `entry` of layer, kept alive (and unchanged) for as
  // long as the returned pointer is held: a reader can hand its bytes to the
  // kernel without copying them first. The caller reads [offset, offset + n)
  // of it (for the cache's accounting; the whole block is there).
  // REQUIRES: offset + n <= layer.block_size().
  virtual Result<std::shared_ptr<const char>> PinBlock(const Layer& layer, uint64_t entry,
                                                       uint32_t offset, uint32_t n,
                                                       const ReadOptions& options) = 0;
};

// Reads from the layer every time (no cache).
class DirectBlockReader : public BlockReader {
 public:
  static DirectBlockReader* Get();
  Status ReadBlockRange(const Layer& layer, uint64_t entry, uint32_t offset, uint32_t n,
                        char* out, const ReadOptions& options) override;
  Result<std::shared_ptr<const char>> PinBlock(const Layer& layer, uint64_t entry,
                                               uint32_t offset, uint32_t n,
                                               const ReadOptions& options) override;
};

// One piece of a View::ReadPieces result: `size` bytes at `data`, or `size`
// zero bytes when data is null. `hold` keeps data alive.
struct ReadPiece {
  const char* data = nullptr;
  size_t size = 0;
  std::shared_ptr<const char> hold;
  // With ReadOptions::file_pieces: `size` bytes at file_offset of file
  // (data null), which lives as long as the view.
  const RandomAccessFile* file = nullptr;
  uint64_t file_offset = 0;
};

class View {
 public:
  struct LayerRef {
    std::shared_ptr<const Layer> layer;
    std::string checkpoint;  // which checkpoint stored it, for messages
  };

  // REQUIRES: layers newest first, non-empty. A layer whose block size is not
  // a power of two is refused (kCorruption).
  // label names the view in messages ("vm1/c3/vda").
  static Result<std::shared_ptr<const View>> Create(std::vector<LayerRef> layers,
                                                    std::string label,
                                                    BlockReader* reader = nullptr);
  // A view whose map is already composed (a persisted view map, or a map
  // laid over a base view's: ExtentMap::Overlay): the layers are not asked
  // for their extents, so they may be opened lazily. REQUIRES: map is the
  // one Create would build from the view's whole chain, its runs naming
  // layers by index into `layers`: the chain's newest layer first, then any
  // of the others in order (a view may leave out layers no run names).
  static Result<std::shared_ptr<const View>> CreateWithMap(std::vector<LayerRef> layers,
                                                           ExtentMap map, std::string label,
                                                           BlockReader* reader = nullptr);

  uint64_t size() const { return size_; }
  uint32_t block_size() const { return block_size_; }
  const std::string& label() const { return label_; }
  const ExtentMap& map() const { return map_; }
  const std::vector<LayerRef>& layers() const { return layers_; }

  // Reads [offset, offset + n) into out; the part past size() is zero-filled.
  // A damaged block fails the whole read with kCorruption naming view,
  // checkpoint, layer file and offset.
  Status Read(uint64_t offset, size_t n, char* out, const ReadOptions& options = {}) const;
  // The same bytes as Read, as pieces appended to *out (in order, summing to
  // n): zeros, or ranges of decoded blocks pinned through the BlockReader,
  // so that nothing is copied. Adjacent zero pieces are merged.
  Status ReadPieces(uint64_t offset, size_t n, std::vector<ReadPiece>* out,
                    const ReadOptions& options = {}) const;

  // Load() of every layer that serves a byte of the view (a data run of its
  // map names it), newest first; the first failure. A view that holds those
  // loaded reads on from their open files even if they are removed
  // meanwhile. Layers wholly shadowed by newer ones are never read, so
  // never opened: at depth 10,000 most are (bench-scale's newest view reads
  // from about a third of its layers).
  // threads: how many open at once (kLoadThreads: a deep view's layers
  // disk-cold; 1: in the background, where it must not take the cores
  // from readers).
  static constexpr unsigned kLoadThreads = 8;
  Status LoadLayers(unsigned threads = kLoadThreads) const;
  bool LayersLoaded() const;
  // The layers LoadLayers loads, newest first.
  std::vector<const Layer*> ServingLayers() const;
  // Hints that [offset, offset + n) will be read soon: asks each layer to
  // fetch the stored bytes of the data blocks there in the background.
  void WillNeed(uint64_t offset, uint64_t n) const;

  // lseek(SEEK_DATA / SEEK_HOLE) from the map: zero runs and holes are holes.
  // SeekData returns size() when no data follows offset; SeekHole returns the
  // next hole or size() (the implicit hole at the end).
  uint64_t SeekData(uint64_t offset) const;
  // With limit, the walk stops at the first run boundary at or past limit
  // and returns it (a caller that only cares up to limit pays no more).
  uint64_t SeekHole(uint64_t offset, uint64_t limit = UINT64_MAX) const;

  // One stored entry that gives view block `block` (block_size() bytes,
  // zero-padded past size()) exactly, as is.
  struct WholeEntry {
    uint32_t layer = 0;  // index into layers()
    uint64_t entry = 0;
  };
  // The entry when one serves the whole block: of the view's block size,
  // starting at the block's start, the view reading the entry's bytes up to
  // its layer's extent end (or all of them) and zeros in the rest of the
  // block. nullopt otherwise (mixed layers, clipped, other granularity).
  std::optional<WholeEntry> WholeEntryOf(uint64_t block) const;
  // The same for a caller walking the runs in order: at is
  // map().FindAtOrAfter(block * block_size()) (saves the lookup).
  std::optional<WholeEntry> WholeEntryOf(uint64_t block, const MapRun* at) const;
  // The content hash of block `block` as this view reads it (zero-padded to a
  // whole block), when the map tells it without reading: the block reads all
  // zeros (holes, zero runs), or WholeEntryOf gives an entry whose layer
  // knows its hash. nullopt means "only reading can tell", never "same".
  std::optional<ContentHash> KnownBlockHash(uint64_t block) const;
  // Bytes stored on disk for the data entries this view reads.
  uint64_t StoredBytes() const;

 private:
  View() = default;
  // Create's checks and fields, all but the map; clip_bytes (unless null)
  // gets each layer's visible size.
  static Result<std::shared_ptr<View>> Init(std::vector<LayerRef> layers, std::string label,
                                            BlockReader* reader,
                                            std::vector<uint64_t>* clip_bytes);
  // Splits [offset, offset + n) into zero ranges, zero(length), and data
  // ranges within one entry, data(layer index, entry, offset in entry,
  // length, last: no later range of this walk's runs reads this entry);
  // returns the first error of data() with the view and position added.
  template <typename Zero, typename Data>
  Status Walk(uint64_t offset, size_t n, Zero zero, Data data) const;
  std::vector<LayerRef> layers_;
  // True when view bytes [from, to) are all holes or zero runs; r is the
  // first run that ends after from (or nullptr).
  bool ReadsZeros(const MapRun* r, uint64_t from, uint64_t to) const;
  ExtentMap map_;
  std::string label_;
  BlockReader* reader_ = nullptr;
  uint64_t size_ = 0;
  uint32_t block_size_ = 0;
};

}  // namespace chainfs
