#include "chain/layer/layer.h"

#include <atomic>

namespace chainfs {

uint64_t NextLayerId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace chainfs
