// Dirty maps: which byte ranges of a disk changed since a QEMU dirty bitmap
// was started, in the JSON printed by
//   nbdinfo --json --map=qemu:dirty-bitmap:BITMAP nbd://...
// (an array of {"offset", "length", "type", "description"}; type bit 0 set =
// dirty), as exported by `qemu-nbd -B BITMAP`. The file source's changed
// ranges (chain/ingest/file_source.h).
#pragma once

#include <string>
#include <vector>

#include "chain/base/status.h"
#include "chain/ingest/source.h"

namespace chainfs {

// Parses the map at path and returns its dirty byte ranges as listed (in
// file order, at the bitmap's granularity; BlocksTouched makes blocks of
// them). A malformed map fails naming the file and the entry.
Result<std::vector<ByteRange>> LoadDirtyMap(const std::string& path);
// The same for a map's text; map names it in messages ("dirty map PATH").
Result<std::vector<ByteRange>> ParseDirtyMap(const std::string& text, const std::string& map);

}  // namespace chainfs
