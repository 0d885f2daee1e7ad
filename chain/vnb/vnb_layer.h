// VnbLayer: a virtnbdbackup sparse stream (chain/vnb/sparse_stream.h) as a
// Layer, so that its views compose flat with the same ExtentMap, View, block
// cache and readahead as native deltas.
//
// Entries are pieces of the stream's data frames (kVnbPlainBlockSize, or
// kVnbBlockSize for a compressed stream), counted from each frame's start (a
// compressed stream: from each lz4 frame's start, one LayerExtent per lz4
// frame). An uncompressed entry is one pread of the payload. A compressed
// entry lies inside an lz4 frame of up to 32 MiB whose blocks python-lz4
// links (byte X needs every byte before it): a frame of one entry (an
// incremental's extent) is decoded straight into it; a larger one is decoded
// front to back, as far as readers need, into a small process-wide cache of
// frames (kVnbFrameCacheBytes), and the frames readahead announces
// (WillNeed) are decoded ahead on two threads of their own, so a sequential
// pass decodes each frame once, on another core than the one reading. lz4
// checks its block checksums (a decoded prefix is served only once they
// hold; a frame without them only when whole, after its content checksum);
// a damaged frame is kCorruption naming the file and offset (EIO through the
// mount). Uncompressed streams carry no checksum: `check --deep` checks
// their structure and, where virtnbdbackup wrote one, the file's .chksum.
#pragma once

#include <memory>

#include "chain/layer/format.h"
#include "chain/vnb/sparse_stream.h"

namespace chainfs {

inline constexpr uint32_t kVnbBlockSize = 256u << 10;       // compressed streams
inline constexpr uint32_t kVnbPlainBlockSize = 64u << 10;   // uncompressed ones
inline constexpr uint64_t kVnbFrameCacheBytes = 96ull << 20;

// The format (registry name "virtnbdbackup"): probe, open; read-only.
extern const LayerFormat kVnbLayerFormat;

// Opens file as a layer (parses its frame structure).
Result<std::shared_ptr<const Layer>> OpenVnbLayer(std::unique_ptr<RandomAccessFile> file,
                                                  uint64_t id);

// The same for a stream already parsed.
Result<std::shared_ptr<const Layer>> OpenVnbLayerParsed(std::unique_ptr<RandomAccessFile> file,
                                                        const VnbStream& s, uint64_t id);

// Decodes every lz4 frame of a compressed stream (a no-op walk for an
// uncompressed one): what `check --deep` verifies. Calls progress(bytes) as
// it goes when given.
Status VerifyVnbLayer(const Layer& layer, const std::function<void(uint64_t)>& progress = {});

}  // namespace chainfs
