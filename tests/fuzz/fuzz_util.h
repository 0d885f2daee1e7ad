// Shared pieces of the libFuzzer targets (tests/fuzz/*_fuzz.cc).
//
// Each target defines LLVMFuzzerTestOneInput. Built with CHAINFS_FUZZ=ON
// (clang, -fsanitize=fuzzer,address,undefined) it is a libFuzzer binary;
// otherwise replay_main.cc drives it over its seed corpus as a ctest test.
// A target checks what a parse promises and calls FUZZ_CHECK, which aborts
// (a crash the fuzzer reports and the replay test fails on) when it does not
// hold.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "chain/base/file.h"

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

inline std::string AsString(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

}  // namespace chainfs::fuzz
