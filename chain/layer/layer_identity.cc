#include "chain/layer/layer_identity.h"

#include <sys/random.h>

#include <cstdio>
#include <random>

namespace chainfs {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

const char* DeltaKindName(DeltaKind k) {
  switch (k) {
    case DeltaKind::kFull: return "full";
    case DeltaKind::kIncremental: return "incremental";
    case DeltaKind::kDifferential: return "differential";
  }
  return "?";
}

DeltaId DeltaId::Random() {
  DeltaId id;
  if (getrandom(id.bytes.data(), id.bytes.size(), 0) != static_cast<ssize_t>(id.bytes.size())) {
    std::random_device rd;  // getrandom is missing or interrupted: the same source, slower
    for (uint8_t& b : id.bytes) b = static_cast<uint8_t>(rd());
  }
  return id;
}

std::string DeltaId::Hex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(32);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

std::optional<DeltaId> DeltaId::FromHex(std::string_view hex) {
  if (hex.size() != 32) return std::nullopt;
  DeltaId id;
  for (size_t i = 0; i < 16; ++i) {
    const int hi = HexDigit(hex[2 * i]), lo = HexDigit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    id.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return id;
}

std::string Hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::optional<uint64_t> FromHex64(std::string_view hex) {
  if (hex.size() != 16) return std::nullopt;
  uint64_t v = 0;
  for (char c : hex) {
    const int d = HexDigit(c);
    if (d < 0) return std::nullopt;
    v = v << 4 | static_cast<uint64_t>(d);
  }
  return v;
}

}  // namespace chainfs
