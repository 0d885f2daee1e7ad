#include "chain/native/native_layer.h"

#include <atomic>

namespace chainfs {

uint64_t NextLayerId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

Result<std::shared_ptr<NativeLayer>> NativeLayer::Open(Env* env, const std::string& path) {
  auto file = env->NewRandomAccessFile(path);
  if (!file.ok()) return file.status();
  auto reader = DeltaReader::Open(std::move(file).value());
  if (!reader.ok()) return reader.status();
  return std::make_shared<NativeLayer>(std::move(reader).value());
}

void NativeLayer::ForEachExtent(const std::function<void(const LayerExtent&)>& fn) const {
  // Merge the (sorted) data entries into runs of consecutive blocks, and
  // interleave the (sorted) zero runs, so that extents come in block order.
  const auto& entries = reader_->entries();
  const auto& zeros = reader_->zero_runs();
  size_t zi = 0;
  size_t i = 0;
  while (i < entries.size() || zi < zeros.size()) {
    if (zi < zeros.size() && (i == entries.size() || zeros[zi].first_block < entries[i].block)) {
      fn({zeros[zi].first_block, zeros[zi].block_count, LayerExtent::Kind::kZero, 0});
      ++zi;
      continue;
    }
    size_t j = i + 1;
    while (j < entries.size() && entries[j].block == entries[j - 1].block + 1 &&
           (zi == zeros.size() || zeros[zi].first_block > entries[j].block))
      ++j;
    fn({entries[i].block, j - i, LayerExtent::Kind::kData, i});
    i = j;
  }
}

}  // namespace chainfs
