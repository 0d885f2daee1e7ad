// Checksums and content hashes of blocks (xxHash XXH3).
//
// Checksum64: XXH3-64 of the bytes as stored (compressed or raw); checked
// before anything is decompressed. ContentHash: XXH3-128 of the decompressed
// block; used to find unchanged blocks without decompressing and to verify
// decompressed output. Neither is cryptographic: they detect damage and
// change, not an adversary.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace chainfs {

struct ContentHash {
  uint64_t lo = 0;
  uint64_t hi = 0;
  bool operator==(const ContentHash&) const = default;
};

uint64_t Checksum64(const void* data, size_t n);
ContentHash HashContent(const void* data, size_t n);
// The content hash of a block of `block_size` zero bytes (memoized).
ContentHash ZeroBlockHash(uint32_t block_size);
bool IsAllZero(const void* data, size_t n);

}  // namespace chainfs
