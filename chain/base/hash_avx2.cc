// XXH3 built for AVX2 (this file alone is compiled with -mavx2; hash.cc calls
// it only on CPUs that have AVX2). XXH3's result does not depend on the
// vector unit, so both builds give the same hashes.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "chain/base/hash.h"

namespace chainfs::avx2 {

uint64_t Checksum64(const void* data, size_t n) { return XXH3_64bits(data, n); }

ContentHash HashContent(const void* data, size_t n) {
  XXH128_hash_t h = XXH3_128bits(data, n);
  return ContentHash{h.low64, h.high64};
}

}  // namespace chainfs::avx2
