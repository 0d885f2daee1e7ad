#include "chain/native/native_format.h"

#include <zstd.h>

#include <cstring>

#include "chain/native/block_codec.h"
#include "chain/native/delta_format.h"
#include "chain/native/native_layer.h"

namespace chainfs {
namespace {

// LayerWriter over a DeltaWriter; blocks encoded with the native codec.
class NativeLayerWriter : public LayerWriter {
 public:
  NativeLayerWriter(std::unique_ptr<DeltaWriter> w, const LayerWriterOptions& opts)
      : w_(std::move(w)),
        block_size_(opts.block_size),
        enc_{opts.compress, opts.compression_level},
        identity_(opts.identity) {}

  const char* format() const override { return kNativeLayerFormat.name; }
  const std::string& path() const override { return w_->path(); }
  StoredBlock Encode(uint64_t block, const char* raw, const ContentHash& content,
                     std::string* buf) const override {
    return EncodeBlock(block, raw, block_size_, content, enc_, buf);
  }
  Status AddStored(const StoredBlock& s) override {
    return w_->AddBlock(IndexEntry::Of(s), s.data);
  }
  void AddZeroRun(uint64_t first_block, uint64_t block_count) override {
    w_->AddZeroRun(first_block, block_count);
  }
  Status Finish() override {
    CHAINFS_RETURN_IF_ERROR(w_->Finish());
    if (identity_) identity_->index_digest = w_->index_checksum();
    return Status::Ok();
  }
  uint64_t stored_bytes() const override { return w_->stored_bytes(); }
  const LayerIdentity* identity() const override { return identity_ ? &*identity_ : nullptr; }

 private:
  std::unique_ptr<DeltaWriter> w_;
  const uint32_t block_size_;
  const BlockEncoding enc_;
  std::optional<LayerIdentity> identity_;
};

// Every version (1: unbound, 2: with identity) starts with the magic; the
// version itself is checked by DeltaReader, which refuses a newer one.
bool Probe(const char* head, size_t n) {
  return n >= sizeof kDeltaMagic && std::memcmp(head, kDeltaMagic, sizeof kDeltaMagic) == 0;
}

Result<std::shared_ptr<const Layer>> Open(std::unique_ptr<RandomAccessFile> file,
                                          const LayerIdFn& id_for) {
  CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<DeltaReader> reader,
                           DeltaReader::Open(std::move(file)));
  const uint64_t id = id_for ? id_for(reader->footer().index_checksum) : NextLayerId();
  return std::shared_ptr<const Layer>(std::make_shared<NativeLayer>(std::move(reader), id));
}

Result<std::unique_ptr<LayerWriter>> CreateWriter(Env* env, const std::string& path,
                                                  const LayerWriterOptions& opts) {
  CHAINFS_ASSIGN_OR_RETURN(
      std::unique_ptr<DeltaWriter> w,
      DeltaWriter::Create(env, path, opts.block_size, opts.virtual_size, opts.mode,
                          opts.identity));
  return std::unique_ptr<LayerWriter>(new NativeLayerWriter(std::move(w), opts));
}

uint64_t OverheadBytes(uint64_t entries, uint64_t zero_runs) {
  return kMaxDeltaHeaderSize + kDeltaFooterSize + entries * kIndexEntrySize +
         zero_runs * kZeroRunSize;
}

uint64_t MaxStoredBytes(uint32_t block_size) { return ZSTD_compressBound(block_size); }

}  // namespace

const LayerFormat kNativeLayerFormat = {
    .name = "native",
    .probe_size = sizeof kDeltaMagic,
    .probe = Probe,
    .open = Open,
    .create_writer = CreateWriter,
    .overhead_bytes = OverheadBytes,
    .max_stored_bytes = MaxStoredBytes,
    .read_located = ReadStoredBlock,
    .read_located_stored = ReadStoredBytes,
};

}  // namespace chainfs
