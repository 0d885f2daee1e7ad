// FrameBuffer: memory for one decoded lz4 frame of a virtnbdbackup stream
// (chain/vnb/vnb_layer.cc), recycled through a few process-wide spares.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "chain/base/huge_map.h"

namespace chainfs {

// Memory for one decoded frame, recycled. A fresh buffer per frame (up to
// 32 MiB: glibc maps and unmaps each one) cost a page fault and the kernel's
// zeroing of each of its pages, and a zero fill of all of it again
// (std::string): a quarter of the daemon's CPU in a cold sequential read of
// an lz4 view (perf). Frames differ in size (one per extent of the stream,
// big extents cut at 32 MiB), so a spare serves any frame it can hold: the
// smallest that fits is taken. Buffers are huge-page mappings
// (chain/base/huge_map.h), their capacity a multiple of 2 MiB. Up to
// kSpare buffers are kept, the largest; bytes are never read before they are
// decoded.
class FrameBuffer {
 public:
  explicit FrameBuffer(size_t n) : n_(n) {
    {
      Spares& s = Get();
      std::lock_guard<std::mutex> l(s.mu);
      auto best = s.free.end();
      for (auto it = s.free.begin(); it != s.free.end(); ++it)
        if (it->first >= n && (best == s.free.end() || it->first < best->first)) best = it;
      if (best != s.free.end()) {
        cap_ = best->first;
        p_ = std::move(best->second);
        s.free.erase(best);
        return;
      }
    }
    cap_ = std::max<size_t>(1, (n + kHugePageBytes - 1) / kHugePageBytes) * kHugePageBytes;
    p_ = Memory(MapHugeAligned(cap_), Unmap{cap_});
  }
  ~FrameBuffer() {
    Spares& s = Get();
    std::lock_guard<std::mutex> l(s.mu);
    s.free.emplace_back(cap_, std::move(p_));
    if (s.free.size() > kSpare)  // drop the smallest
      s.free.erase(std::min_element(s.free.begin(), s.free.end(),
                                    [](const auto& a, const auto& b) { return a.first < b.first; }));
  }
  FrameBuffer(const FrameBuffer&) = delete;
  FrameBuffer& operator=(const FrameBuffer&) = delete;
  char* data() { return p_.get(); }
  const char* data() const { return p_.get(); }
  size_t size() const { return n_; }
  size_t capacity() const { return cap_; }

  static constexpr size_t kSpare = 3;

 private:
  struct Unmap {
    size_t bytes;
    void operator()(char* p) const { UnmapHuge(p, bytes); }
  };
  using Memory = std::unique_ptr<char, Unmap>;
  struct Spares {
    std::mutex mu;
    std::vector<std::pair<size_t, Memory>> free;
  };
  static Spares& Get() {
    static Spares* s = new Spares();  // never destroyed: frames may outlive statics
    return *s;
  }
  const size_t n_;
  size_t cap_ = 0;
  Memory p_{nullptr, Unmap{0}};
};

}  // namespace chainfs
