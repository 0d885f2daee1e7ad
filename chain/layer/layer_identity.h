// LayerIdentity: what a delta file is, as its own bytes say.
//
// A delta is one disk's changes at one checkpoint of one group, applied on a
// base checkpoint (or none: full). A file that records this, plus a random
// 128-bit id and a digest of its index, can be checked against the manifest
// entry that names it, so that a mix-up (a botched copy or restore, a sync
// tool that renamed files, two files swapped) is refused instead of read as
// wrong bytes (chain/repo/delta_binding.h). XXH3 and a random id detect
// accidents, not a forger with write access.
//
//   LayerIdentity id{"vm1", "c2", "vda", DeltaKind::kIncremental, "c1", DeltaId::Random()};
//   std::string hex = id.id.Hex();          // "3f0c...", 32 hex digits
//   auto back = DeltaId::FromHex(hex);      // nullopt unless 32 hex digits
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace chainfs {

// full: no base; incremental: base = the checkpoint's parent; differential:
// base = an older ancestor.
enum class DeltaKind { kFull, kIncremental, kDifferential };
const char* DeltaKindName(DeltaKind k);

// A delta file's unique id: 16 random bytes, chosen when the file is created.
struct DeltaId {
  std::array<uint8_t, 16> bytes{};

  // Fresh random bytes (the kernel's random source).
  static DeltaId Random();
  // The bytes in order as 32 lowercase hex digits (how manifests record it).
  std::string Hex() const;
  // nullopt unless hex is exactly 32 hex digits.
  static std::optional<DeltaId> FromHex(std::string_view hex);
  bool operator==(const DeltaId&) const = default;
};

// 16 lowercase hex digits of v (how manifests record an index digest), and back.
std::string Hex64(uint64_t v);
std::optional<uint64_t> FromHex64(std::string_view hex);

struct LayerIdentity {
  std::string group;
  std::string checkpoint;
  std::string disk;
  DeltaKind kind = DeltaKind::kFull;
  std::string base;  // empty for full
  DeltaId id;
  // A digest of the file's index the format defines (native: the footer's
  // index checksum). Known once the file is finished; not part of the header.
  uint64_t index_digest = 0;
};

}  // namespace chainfs
