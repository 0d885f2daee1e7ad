// LayerWriter: writes one new delta file in some layer format.
//
// Backup and consolidation write through this interface and never name a
// format; the registry (chain/layer/registry.h) gives the writer of the
// repository's write format. A file is written front to back:
//
//   auto w = repo.CreateDelta(file, identity, virtual_size);
//   StoredBlock s = (*w)->Encode(block, raw, HashContent(raw, bs), &buf);  // any thread
//   (*w)->AddStored(s);          // blocks increasing
//   (*w)->AddZeroRun(9, 3);
//   (*w)->Finish();              // index, footer, fsync: durable
//   BindEntry(*(*w)->identity(), &disk_entry);  // id and index digest to the manifest
//
// Thread-safety: Encode is const and may run on many threads at once (backup
// encodes on its workers); everything else is one caller at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "chain/base/file.h"
#include "chain/base/hash.h"
#include "chain/base/status.h"
#include "chain/layer/layer_identity.h"
#include "chain/layer/stored_block.h"

namespace chainfs {

struct LayerWriterOptions {
  uint32_t block_size = 0;
  uint64_t virtual_size = 0;
  bool compress = true;       // the repository's compression is not "none"
  int compression_level = 3;
  WriteMode mode = WriteMode::kBuffered;  // how the file reaches the disk
  // What the file is, recorded in it (index_digest ignored). Every delta a
  // repository writes has one (Repository::CreateDelta); without, a format
  // writes its oldest, unbound version (tests of compatibility).
  std::optional<LayerIdentity> identity;
};

class LayerWriter {
 public:
  virtual ~LayerWriter() = default;
  // The format's registry name, to record in the manifest ("native").
  virtual const char* format() const = 0;
  virtual const std::string& path() const = 0;
  // Encodes raw (block_size bytes) as block `block` into this format's stored
  // form. content: HashContent(raw). The stored bytes go to *buf; the result
  // points into it.
  virtual StoredBlock Encode(uint64_t block, const char* raw, const ContentHash& content,
                             std::string* buf) const = 0;
  // Appends a stored block: from Encode, or copied as is from a layer of this
  // same format (Layer::ReadStored). REQUIRES: blocks strictly increasing
  // across calls, and none inside a zero run.
  virtual Status AddStored(const StoredBlock& s) = 0;
  // Blocks that read as zeros. REQUIRES: runs increasing and disjoint.
  virtual void AddZeroRun(uint64_t first_block, uint64_t block_count) = 0;
  // Writes the index and makes the file durable (fsync). Nothing after it.
  virtual Status Finish() = 0;
  // Sum of the stored blocks' sizes so far.
  virtual uint64_t stored_bytes() const = 0;
  // The identity the file records, with index_digest valid after Finish
  // (what the manifest entry records); null when it records none.
  virtual const LayerIdentity* identity() const = 0;
};

}  // namespace chainfs
