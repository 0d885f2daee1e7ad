// Little-endian fixed-width encoding: every on-disk integer goes through here.
//
//   std::string buf;
//   PutFixed64(&buf, 42);
//   uint64_t v = DecodeFixed64(buf.data());
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>

namespace chainfs {

// On a little-endian host these are one load or store (GCC 12 does not
// merge the byte loops: decoding a depth-10,000 view map spent most of its
// time in them); elsewhere, byte by byte.
inline void EncodeFixed32(char* dst, uint32_t v) {
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(dst, &v, 4);
  } else {
    for (int i = 0; i < 4; ++i) dst[i] = static_cast<char>(v >> (8 * i));
  }
}
inline void EncodeFixed64(char* dst, uint64_t v) {
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(dst, &v, 8);
  } else {
    for (int i = 0; i < 8; ++i) dst[i] = static_cast<char>(v >> (8 * i));
  }
}
inline uint32_t DecodeFixed32(const char* p) {
  uint32_t v = 0;
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(&v, p, 4);
  } else {
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  }
  return v;
}
inline uint64_t DecodeFixed64(const char* p) {
  uint64_t v = 0;
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(&v, p, 8);
  } else {
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  }
  return v;
}
inline void PutFixed8(std::string* dst, uint8_t v) { dst->push_back(static_cast<char>(v)); }
inline void PutFixed32(std::string* dst, uint32_t v) {
  char b[4];
  EncodeFixed32(b, v);
  dst->append(b, 4);
}
inline void PutFixed64(std::string* dst, uint64_t v) {
  char b[8];
  EncodeFixed64(b, v);
  dst->append(b, 8);
}
inline void PutBytes(std::string* dst, const void* p, size_t n) {
  dst->append(static_cast<const char*>(p), n);
}

// Sequential decoder over a byte range; every Get checks bounds and sets
// ok()=false instead of reading past the end.
class Decoder {
 public:
  Decoder(const char* p, size_t n) : p_(p), end_(p + n) {}
  bool ok() const { return ok_; }
  size_t remaining() const { return static_cast<size_t>(end_ - p_); }
  uint8_t Get8() {
    if (!Need(1)) return 0;
    return static_cast<uint8_t>(*p_++);
  }
  uint32_t Get32() {
    if (!Need(4)) return 0;
    uint32_t v = DecodeFixed32(p_);
    p_ += 4;
    return v;
  }
  uint64_t Get64() {
    if (!Need(8)) return 0;
    uint64_t v = DecodeFixed64(p_);
    p_ += 8;
    return v;
  }
  void GetBytes(void* out, size_t n) {
    if (!Need(n)) return;
    std::memcpy(out, p_, n);
    p_ += n;
  }
  void Skip(size_t n) {
    if (Need(n)) p_ += n;
  }

 private:
  bool Need(size_t n) {
    if (!ok_ || remaining() < n) ok_ = false;
    return ok_;
  }
  const char* p_;
  const char* end_;
  bool ok_ = true;
};

}  // namespace chainfs
