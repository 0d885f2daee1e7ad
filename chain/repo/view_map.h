// View maps: a view's composed ExtentMap kept in a file, so that opening a
// view of a deep chain reads one small file instead of every layer's index
// (issue 14: time to first byte and backup independent of depth).
//
//   REPO/groups/GROUP/maps/CHECKPOINT.DISK.map
//
// A map is a cache, never the truth: it is used only when its checksum holds
// and it was composed from exactly the chain the manifests name now (its key,
// ViewMapKey, digests every link's file, format, id, index digest and
// virtual size, newest first). A missing, damaged or stale map is ignored
// and the view composed from its layers; the layers a map names are still
// bound to their manifest entries when they are opened (lazily, on the first
// read that needs them), so a map can make a read fail, never return other
// bytes. A map also locates the entries of the small layers it names
// (LocatedEntry), which are then read without opening their layers. Writers keep maps (Repository::RefreshViewMaps): the newest
// checkpoint's, and every checkpoint's whose sequence is a multiple of
// kViewMapSpacing, for chains at least kMinViewMapDepth deep; a view
// without a map of its own is composed from the nearest older one that has
// one plus at most kViewMapSpacing layers. Bytes in docs/FORMAT.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chain/base/status.h"
#include "chain/layer/extent_map.h"
#include "chain/layer/stored_block.h"
#include "chain/repo/group_state.h"

namespace chainfs {

inline constexpr char kViewMapMagic[8] = {'c', 'h', 'a', 'i', 'n', 'f', 's', 'M'};
// Version 2 adds located entries; version 1 (runs only) is still read.
inline constexpr uint32_t kViewMapVersion = 2;
inline constexpr size_t kViewMapHeaderSize = 48;
inline constexpr size_t kViewMapRunSize = 32;
inline constexpr size_t kViewMapLocatedSize = 64;
// A writer locates the entries of each layer that serves at most this many
// entries of the view (the small deltas of a deep chain; a layer serving
// more is opened once and read like any other).
inline constexpr uint64_t kMaxLocatedPerLayer = 64;
// Maps are kept for chains at least this deep (a shallower chain opens fast).
inline constexpr uint32_t kMinViewMapDepth = 8;
// Besides the newest checkpoint's, maps of checkpoints whose sequence is a
// multiple of this are kept.
inline constexpr uint64_t kViewMapSpacing = 64;

// The keys of chain[i..] for every i (keys[i] names the view whose newest
// layer is chain[i]); nullopt when a link lacks its delta id or index digest
// (an entry written before deltas were bound: such chains get no map).
std::optional<std::vector<uint64_t>> ViewMapKeys(const std::vector<ChainLink>& chain);

// What a map must match to be used.
struct ViewMapExpect {
  uint64_t key = 0;
  uint32_t block_size = 0;  // every layer's (the repository's)
  // The visible size of each layer of the chain, newest first: the smallest
  // virtual size among it and the newer ones (clip_bytes[0] is the view's size).
  std::vector<uint64_t> clip_bytes;
  // Instead of clip_bytes (left empty), for a chain of one size (the common
  // case: no 10,000-entry vector at depth 10,000): its layer count, every
  // layer visible up to uniform_size.
  uint32_t uniform_layers = 0;
  uint64_t uniform_size = 0;

  size_t layers() const { return clip_bytes.empty() ? uniform_layers : clip_bytes.size(); }
  uint64_t clip(size_t layer) const { return clip_bytes.empty() ? uniform_size : clip_bytes[layer]; }
};

// A located entry: where entry `entry` of the chain's layer `layer` (newest
// first, as in the runs) keeps its stored bytes, and what checks them (the
// native index entry). A view opened from the map reads it without opening
// that layer: no header or index read, which at depth 10,000 was two of a
// small delta's three disk reads. Its stored checksum and content hash came
// from the layer's index when the map was written, from a chain whose delta
// ids and index digests the map's key binds: a file that is not that delta
// any more fails the checksum (EIO naming it), never gives other bytes.
struct LocatedEntry {
  uint32_t layer = 0;
  uint64_t entry = 0;
  StoredLocation loc;
};

struct ViewMapFile {
  ExtentMap map;
  std::vector<LocatedEntry> located;  // by layer, then entry, strictly increasing
};

// located: sorted by (layer, entry), no two alike.
std::string EncodeViewMap(uint64_t key, uint32_t block_size, uint64_t view_size,
                          uint32_t layer_count, const ExtentMap& map,
                          const std::vector<LocatedEntry>& located = {});
// Decodes and checks a map file's bytes (`where` names it in messages):
// magic, version, checksum, that it is the map of expect's chain, that
// every run lies in the view, in order, on a layer of the chain within that
// layer's visible size, and that located entries are in order, on layers of
// the chain, with a known codec and a sane length. kCorruption for a damaged
// file, kNotFound for a well-formed map of another chain (stale).
Result<ViewMapFile> DecodeViewMap(std::string_view bytes, const std::string& where,
                                  const ViewMapExpect& expect);

}  // namespace chainfs
