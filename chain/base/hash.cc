#include "chain/base/hash.h"

#include <xxhash.h>

#include <map>
#include <mutex>
#include <vector>

namespace chainfs {

#if CHAINFS_HAVE_AVX2_BUILD
namespace avx2 {  // hash_avx2.cc
uint64_t Checksum64(const void* data, size_t n);
ContentHash HashContent(const void* data, size_t n);
}  // namespace avx2

namespace {
const bool kHaveAvx2 = __builtin_cpu_supports("avx2");
}  // namespace
#endif

// Every block read through a mount is hashed twice (checksum of the stored
// bytes, content hash of the decoded ones); the AVX2 build of XXH3 is about
// twice as fast as the SSE2 one the shared library uses.
uint64_t Checksum64(const void* data, size_t n) {
#if CHAINFS_HAVE_AVX2_BUILD
  if (kHaveAvx2) return avx2::Checksum64(data, n);
#endif
  return XXH3_64bits(data, n);
}

ContentHash HashContent(const void* data, size_t n) {
#if CHAINFS_HAVE_AVX2_BUILD
  if (kHaveAvx2) return avx2::HashContent(data, n);
#endif
  XXH128_hash_t h = XXH3_128bits(data, n);
  return ContentHash{h.low64, h.high64};
}

ContentHash ZeroBlockHash(uint32_t block_size) {
  static std::mutex mu;
  static std::map<uint32_t, ContentHash> memo;
  std::lock_guard<std::mutex> lock(mu);
  auto it = memo.find(block_size);
  if (it != memo.end()) return it->second;
  std::vector<char> zeros(block_size, 0);
  ContentHash h = HashContent(zeros.data(), zeros.size());
  memo.emplace(block_size, h);
  return h;
}

bool IsAllZero(const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  // Check the first 16 bytes one by one, then compare the buffer with itself
  // shifted by 16: equal only if every byte equals its neighbour 16 away.
  size_t head = n < 16 ? n : 16;
  for (size_t i = 0; i < head; ++i)
    if (p[i] != 0) return false;
  return n <= 16 || std::memcmp(p, p + 16, n - 16) == 0;
}

}  // namespace chainfs
