// NativeLayer: a Layer over a chainfs delta file (DeltaReader).
#pragma once

#include <memory>

#include "chain/native/delta_format.h"
#include "chain/layer/layer.h"

namespace chainfs {

class NativeLayer : public Layer {
 public:
  // Opens and validates the delta file at path through env (no block data is read).
  static Result<std::shared_ptr<NativeLayer>> Open(Env* env, const std::string& path);
  explicit NativeLayer(std::unique_ptr<DeltaReader> reader)
      : id_(NextLayerId()), reader_(std::move(reader)) {}
  // With a given id: a file reopened with the same index keeps its cache key
  // (Repository::OpenLayer).
  NativeLayer(std::unique_ptr<DeltaReader> reader, uint64_t id)
      : id_(id), reader_(std::move(reader)) {}

  uint64_t id() const override { return id_; }
  uint32_t block_size() const override { return reader_->header().block_size; }
  uint64_t virtual_size() const override { return reader_->header().virtual_size; }
  const std::string& location() const override { return reader_->path(); }
  const LayerIdentity* identity() const override {
    const auto& id = reader_->header().identity;
    return id ? &*id : nullptr;
  }
  void ForEachExtent(const std::function<void(const LayerExtent&)>& fn) const override;
  Status ReadBlock(uint64_t entry, char* out) const override {
    return reader_->ReadBlock(entry, out);
  }
  std::optional<ContentHash> BlockHash(uint64_t entry) const override {
    if (entry >= reader_->entries().size()) return std::nullopt;
    return reader_->entries()[entry].content;
  }
  uint64_t StoredLength(uint64_t entry) const override {
    return entry < reader_->entries().size() ? reader_->entries()[entry].stored_len : 0;
  }
  std::optional<StoredLocation> Locate(uint64_t entry) const override {
    if (entry >= reader_->entries().size()) return std::nullopt;
    return reader_->entries()[entry].Location();
  }
  void WillNeed(uint64_t first, uint64_t count) const override { WillNeedRuns({{first, count}}); }
  void WillNeedRuns(const std::vector<EntryRun>& runs) const override {
    WillNeedRanges ranges;
    for (const EntryRun& r : runs) reader_->AddStoredRange(r.first, r.count, &ranges);
    reader_->WillNeed(&ranges);
  }
  Status ReadStored(uint64_t first, uint64_t count, std::string* scratch,
                    const StoredBlockFn& fn) const override;
  const DeltaReader& reader() const { return *reader_; }

 private:
  uint64_t id_;
  std::unique_ptr<DeltaReader> reader_;
};

}  // namespace chainfs
