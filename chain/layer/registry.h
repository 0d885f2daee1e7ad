// The layer format registry: the formats this chainfs reads and writes.
//
// One explicit table in registry.cc (a static initialiser that registers
// itself would be dropped by the linker from a static library): adding a
// format is one line there. Lookups by the name a manifest records, or by
// content (each format's probe of the first bytes), never by file name.
//
//   const LayerFormat* f = FindLayerFormat(disk.format);     // from a manifest
//   auto layer = OpenLayerFile(env, path, f);                    // f null: probe
//
// Thread-safety: the table is constant; everything here is thread-safe.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "chain/layer/format.h"

namespace chainfs {

// Every known format, in probe order.
const std::vector<const LayerFormat*>& LayerFormats();
// The format named `name`, or null.
const LayerFormat* FindLayerFormat(std::string_view name);
// "native, ..." for messages that list what is known.
std::string LayerFormatNames();
// The format new deltas are written in (a repository writes one format).
const LayerFormat& WriteLayerFormat();
// The first format whose probe accepts the head of file; kCorruption naming
// the file when none does.
Result<const LayerFormat*> ProbeLayerFormat(const RandomAccessFile& file);
// Opens path as a layer of format (null: probe its content). With id_for,
// see LayerIdFn.
Result<std::shared_ptr<const Layer>> OpenLayerFile(Env* env, const std::string& path,
                                                   const LayerFormat* format,
                                                   const LayerIdFn& id_for = {});

}  // namespace chainfs
