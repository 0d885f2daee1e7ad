// LayerFormat: one on-disk format of deltas, as a struct of operations.
//
// The seam through which every delta is opened and every new one written
// (after nbdkit's plugins and QEMU's BlockDriver with .bdrv_probe). The core
// (repository, check, txn, consolidation, backup) holds `const LayerFormat*`
// from the registry (chain/layer/registry.h) and never names a format. A new
// format is a folder beside chain/native that defines one LayerFormat, plus
// one line in chain/layer/registry.cc.
//
// Thread-safety: the operations are free of shared state; call them from any
// thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "chain/base/env.h"
#include "chain/base/file.h"
#include "chain/base/status.h"
#include "chain/layer/layer.h"
#include "chain/layer/layer_writer.h"

namespace chainfs {

// Picks the id of a layer being opened from its fingerprint: a value that
// changes whenever the file's content could (the native index checksum). The
// repository gives a reopened, unchanged file its old id, so that blocks the
// cache holds under that id stay valid. Empty: a fresh id (NextLayerId).
using LayerIdFn = std::function<uint64_t(uint64_t fingerprint)>;

struct LayerFormat {
  // Recorded in manifests ("native"); [a-z0-9-]. Never changes once used.
  const char* name;
  // How many bytes from the start of a file probe wants to see.
  size_t probe_size;
  // True if head (n bytes, the file's first; n < probe_size only when the file
  // is shorter) is this format: magic bytes, never the file name.
  bool (*probe)(const char* head, size_t n);
  // Opens and validates file as a layer; reads no block data. A damaged or
  // foreign file is kCorruption naming it; a newer version kNotSupported.
  Result<std::shared_ptr<const Layer>> (*open)(std::unique_ptr<RandomAccessFile> file,
                                               const LayerIdFn& id_for);
  // Creates a new file at path (O_EXCL) for writing; null for a format that
  // chainfs only reads.
  Result<std::unique_ptr<LayerWriter>> (*create_writer)(Env* env, const std::string& path,
                                                        const LayerWriterOptions& opts);
  // Space a new file needs beside its stored blocks (header, index, footer),
  // and at most for one encoded block: for the free-space check before
  // writing. Null when create_writer is.
  uint64_t (*overhead_bytes)(uint64_t entries, uint64_t zero_runs);
  uint64_t (*max_stored_bytes)(uint32_t block_size);
  // Waits until no background work of the format's layers (decoding ahead
  // of readers) holds a layer any more; null for a format that does none.
  // Called before the files layers read through may go (~Repository).
  void (*quiesce)() = nullptr;
  // Reads the entry whose stored bytes lie at loc in file (Layer::Locate
  // told where), checks and decodes it into out (block_size bytes), without
  // opening the file as a layer: how a view map's located entries are read
  // (chain/repo/view_map.h). read_located_stored: the stored bytes only,
  // checked, into *buf. Null for a format whose layers locate nothing.
  Status (*read_located)(const RandomAccessFile& file, const StoredLocation& loc,
                         uint32_t block_size, char* out) = nullptr;
  Result<StoredBlock> (*read_located_stored)(const RandomAccessFile& file,
                                             const StoredLocation& loc,
                                             std::string* buf) = nullptr;
  // Opens one part of file as a layer, named by part (a DiskEntry's part: a
  // qcow2 image's internal snapshot, by id); null for a format whose files
  // are one layer each.
  Result<std::shared_ptr<const Layer>> (*open_part)(std::unique_ptr<RandomAccessFile> file,
                                                    const std::string& part) = nullptr;
};

}  // namespace chainfs
