// Helpers for chainfs unit tests: temporary directories, files, and a
// RandomAccessFile wrapper that injects faults.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <boost/filesystem.hpp>
#include <fstream>
#include <random>
#include <string>

#include "chain/base/file.h"

namespace chainfs::testing {

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("CHAINFS_TEST_TMP");
    std::string root = base ? base : "/tmp";
    boost::filesystem::create_directories(root);
    std::string templ = root + "/chainfs-test-XXXXXX";
    char* p = ::mkdtemp(templ.data());
    EXPECT_NE(p, nullptr);
    path_ = templ;
  }
  ~TempDir() { boost::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(f.good()) << path;
}

// n pseudo-random bytes, the same for the same seed.
inline std::string RandomBytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

inline std::string ReadFile(const std::string& path) {
  auto r = ReadWholeFile(path, 1u << 30);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r.value() : std::string();
}

// Wraps a RandomAccessFile; can fail reads in a byte range with EIO, cut the
// file short, or flip one bit of what is read.
class FaultyFile : public RandomAccessFile {
 public:
  explicit FaultyFile(std::unique_ptr<RandomAccessFile> base) : base_(std::move(base)) {}
  uint64_t eio_from = UINT64_MAX, eio_to = 0;  // fail reads touching [from, to)
  uint64_t flip_at = UINT64_MAX;               // flip the low bit of this byte
  uint64_t truncate_at = UINT64_MAX;           // pretend the file ends here

  Status ReadAt(uint64_t off, size_t n, void* buf) const override {
    if (off < eio_to && off + n > eio_from) return Status::FromErrno(EIO, "injected");
    if (off + n > truncate_at) return Status::Corruption(Path() + ": truncated (injected)");
    CHAINFS_RETURN_IF_ERROR(base_->ReadAt(off, n, buf));
    if (flip_at >= off && flip_at < off + n) static_cast<char*>(buf)[flip_at - off] ^= 1;
    return Status::Ok();
  }
  uint64_t Size() const override { return std::min(base_->Size(), truncate_at); }
  const std::string& Path() const override { return base_->Path(); }

 private:
  std::unique_ptr<RandomAccessFile> base_;
};

}  // namespace chainfs::testing
