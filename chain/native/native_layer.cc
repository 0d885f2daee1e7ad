#include "chain/native/native_layer.h"

#include <algorithm>
#include <atomic>

namespace chainfs {

Result<std::shared_ptr<NativeLayer>> NativeLayer::Open(Env* env, const std::string& path) {
  auto file = env->NewRandomAccessFile(path);
  if (!file.ok()) return file.status();
  auto reader = DeltaReader::Open(std::move(file).value());
  if (!reader.ok()) return reader.status();
  return std::make_shared<NativeLayer>(std::move(reader).value());
}

Status NativeLayer::ReadStored(uint64_t first, uint64_t count, std::string* scratch,
                               const StoredBlockFn& fn) const {
  if (first > reader_->entries().size() || count > reader_->entries().size() - first)
    return Status::InvalidArgument(location() + ": entries " + std::to_string(first) + "+" +
                                   std::to_string(count) + " out of range");
  return reader_->ReadStoredRange(first, count, scratch, fn);
}

void NativeLayer::ForEachExtent(const std::function<void(const LayerExtent&)>& fn) const {
  // Merge the (sorted) data entries into runs of consecutive blocks, and
  // interleave the (sorted) zero runs, so that extents come in block order.
  // Extents are in bytes, block-aligned, the last one ending at the virtual
  // size (DeltaReader::Load keeps every block below it).
  const auto& entries = reader_->entries();
  const auto& zeros = reader_->zero_runs();
  const uint64_t bs = block_size(), size = virtual_size();
  auto extent = [&](uint64_t first_block, uint64_t blocks, LayerExtent::Kind kind,
                    uint64_t first_entry) {
    const uint64_t offset = first_block * bs;
    fn({offset, std::min(blocks * bs, size - offset), kind, first_entry});
  };
  size_t zi = 0;
  size_t i = 0;
  while (i < entries.size() || zi < zeros.size()) {
    if (zi < zeros.size() && (i == entries.size() || zeros[zi].first_block < entries[i].block)) {
      extent(zeros[zi].first_block, zeros[zi].block_count, LayerExtent::Kind::kZero, 0);
      ++zi;
      continue;
    }
    size_t j = i + 1;
    while (j < entries.size() && entries[j].block == entries[j - 1].block + 1 &&
           (zi == zeros.size() || zeros[zi].first_block > entries[j].block))
      ++j;
    extent(entries[i].block, j - i, LayerExtent::Kind::kData, i);
    i = j;
  }
}

}  // namespace chainfs
