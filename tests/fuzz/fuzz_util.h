// Shared pieces of the libFuzzer targets (tests/fuzz/*_fuzz.cc).
//
// Each target defines LLVMFuzzerTestOneInput. Built with CHAINFS_FUZZ=ON
// (clang, -fsanitize=fuzzer,address,undefined) it is a libFuzzer binary;
// otherwise replay_main.cc drives it over its seed corpus as a ctest test.
// A target checks what a parse promises and calls FUZZ_CHECK, which aborts
// (a crash the fuzzer reports and the replay test fails on) when it does not
// hold.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chain/base/file.h"
#include "chain/layer/view.h"

#define FUZZ_CHECK(cond)                                                          \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed\n", __FILE__, __LINE__, \
                   #cond);                                                        \
      std::abort();                                                               \
    }                                                                             \
  } while (0)

namespace chainfs::fuzz {

// The fuzz input as a file: a RandomAccessFile over bytes in memory.
class MemoryFile : public RandomAccessFile {
 public:
  MemoryFile(std::string bytes, std::string path)
      : bytes_(std::move(bytes)), path_(std::move(path)) {}
  Status ReadAt(uint64_t offset, size_t n, void* buf) const override {
    if (offset > bytes_.size() || n > bytes_.size() - offset)
      return Status::Corruption(path_ + ": truncated");
    if (n > 0) bytes_.copy(static_cast<char*>(buf), n, offset);
    return Status::Ok();
  }
  uint64_t Size() const override { return bytes_.size(); }
  const std::string& Path() const override { return path_; }

 private:
  const std::string bytes_;
  const std::string path_;
};

// Encoding a decoded record and decoding that again gives the same text
// (and so the same record): what every JSON parser's target checks after
// its own invariants. Returns the record decoded again.
template <typename T>
T DecodeAgainStable(const T& decoded, const std::string& where) {
  const std::string once = decoded.Encode();
  Result<T> again = T::Decode(once, where + " (encoded again)");
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->Encode() == once);
  return std::move(again).value();
}

// What a layer that opened must keep (chain/layer/layer.h), checked on a
// fuzzed one: extents in order, disjoint, inside the virtual size; every
// data entry reads or fails as corruption (never crashes); a View over the
// layer reads each zero extent as zeros. At most max_bytes are read, and
// the first max_extents extents looked at.
inline void CheckLayerContract(const std::shared_ptr<const Layer>& layer, uint64_t max_bytes,
                               size_t max_extents = SIZE_MAX) {
  const Layer& l = *layer;
  const uint32_t bs = l.block_size();
  FUZZ_CHECK(bs > 0 && (bs & (bs - 1)) == 0);
  std::vector<LayerExtent> extents;
  l.ForEachExtent([&](const LayerExtent& e) {
    if (extents.size() < max_extents) extents.push_back(e);
  });
  uint64_t prev = 0;
  for (const LayerExtent& e : extents) {
    FUZZ_CHECK(e.length > 0 && e.offset >= prev && e.end() <= l.virtual_size());
    prev = e.end();
  }
  std::vector<char> buf(bs);
  uint64_t read = 0;
  for (const LayerExtent& e : extents) {
    if (e.kind != LayerExtent::Kind::kData) continue;
    const uint64_t entries = (e.length + bs - 1) / bs;
    for (uint64_t i = 0; i < entries && read < max_bytes; ++i, read += bs) {
      Status st = l.ReadBlock(e.first_entry + i, buf.data());
      FUZZ_CHECK(st.ok() || st.code() == Status::Code::kCorruption);
    }
  }
  auto view = View::Create({{layer, "fuzz"}}, "fuzz");
  FUZZ_CHECK(view.ok());
  for (const LayerExtent& e : extents) {
    if (e.kind != LayerExtent::Kind::kZero || read >= max_bytes) continue;
    const uint64_t n = std::min<uint64_t>(e.length, 1 << 16);
    std::string z(n, 'x');
    FUZZ_CHECK(view.value()->Read(e.offset, n, z.data()).ok());
    FUZZ_CHECK(z.find_first_not_of('\0') == std::string::npos);
    read += n;
  }
}

inline std::string AsString(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

}  // namespace chainfs::fuzz
