// Anonymous memory for big, long-lived buffers (the block cache's slabs,
// decoded lz4 frames), mapped 2 MiB-aligned and offered to the kernel as
// transparent huge pages (MADV_HUGEPAGE: these machines' THP mode is
// "madvise"). One page fault then maps 2 MiB instead of 4 KiB: a first pass
// over 256 MiB of fresh buffers takes 128 faults, not 65,536 (each a trap
// into a virtualised kernel).
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <type_traits>
#include <utility>
#include <vector>

namespace chainfs {

inline constexpr size_t kHugePageBytes = 2u << 20;

// Maps `bytes` (a multiple of kHugePageBytes) aligned to kHugePageBytes.
// Throws std::bad_alloc when the kernel refuses.
char* MapHugeAligned(size_t bytes);

// Unmaps what MapHugeAligned returned.
void UnmapHuge(char* p, size_t bytes);

// Buffers of power-of-two sizes carved out of huge-page mappings, handed
// back with Free and reused: for many small buffers made in bursts (qcow2 L2
// tables: opening a view of a depth-100 chain decodes 202 tables of 64 KiB;
// from malloc, their 3,200 page faults were half of the open's time). What
// is mapped is kept for reuse, never unmapped: memory is the peak in use,
// rounded up to 2 MiB per size. Thread-safe.
class HugeSlots {
 public:
  static HugeSlots& Get();  // the process's (never destroyed)
  HugeSlots() = default;
  HugeSlots(const HugeSlots&) = delete;
  HugeSlots& operator=(const HugeSlots&) = delete;
  ~HugeSlots();  // unmaps everything: no buffer may be in use
  // An uninitialised buffer of `bytes` (a power of two, at most 2^40),
  // aligned to min(bytes, 2 MiB). Throws std::bad_alloc when the kernel
  // refuses.
  char* Alloc(size_t bytes);
  // Returns what Alloc(bytes) gave.
  void Free(char* p, size_t bytes);
  // Bytes mapped so far.
  size_t MappedBytes();
  // Whether p lies in memory this mapped (for tests).
  bool Owns(const void* p);

 private:
  std::mutex mu_;
  std::array<std::vector<char*>, 41> free_;  // by log2(bytes)
  std::vector<std::pair<char*, size_t>> chunks_;  // what was mapped
  size_t mapped_ = 0;
};

// A growable array of trivially copyable T for scratch arrays built on a
// hot path, in HugeSlots memory once big: a view's extent map at open
// collects tens of thousands of runs, and std::vector's doublings into fresh
// malloc memory faulted 4 KiB at a time were a fifth of a depth-100 open
// (perf). Up to kHeapBytes it lives in ordinary heap memory instead: a huge
// page is zeroed whole at its first touch, 2 MiB for what may be a few KiB,
// and that first touch cost 1.1-1.4 ms per MiB in a fresh process on these
// VMs most of the time (0.05 at best), against 0.35-0.45 for 4 KiB pages,
// which only fault where they are used. Two huge pages made a fifth of a
// depth-1 backup's time, and two more a tenth of one at depth 10,000 (its
// new view map laid over its parent's, ~8,000 runs). Capacity starts at
// first_bytes, rounded up to a power of two (callers size it to what they
// expect), and doubles.
template <typename T>
class SlotArray {
  static_assert(std::is_trivially_copyable_v<T>);
  static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);  // heap memory below kHeapBytes

 public:
  static constexpr size_t kHeapBytes = 4u << 20;
  explicit SlotArray(size_t first_bytes = 1u << 20)
      : first_bytes_(std::bit_ceil(std::max(first_bytes, sizeof(T)))) {}
  ~SlotArray() { Release(data_, bytes_); }
  SlotArray(const SlotArray&) = delete;
  SlotArray& operator=(const SlotArray&) = delete;

  void push_back(const T& v) {
    if (size_ == bytes_ / sizeof(T)) Grow();
    data_[size_++] = v;
  }
  // Drops the elements from n on. REQUIRES: n <= size().
  void truncate(size_t n) { size_ = n; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  T& back() { return data_[size_ - 1]; }

 private:
  void Grow() {
    const size_t bytes = data_ == nullptr ? first_bytes_ : bytes_ * 2;
    T* p = bytes <= kHeapBytes ? static_cast<T*>(::operator new(bytes))
                               : reinterpret_cast<T*>(HugeSlots::Get().Alloc(bytes));
    if (size_ > 0) std::memcpy(static_cast<void*>(p), data_, size_ * sizeof(T));
    Release(data_, bytes_);
    data_ = p;
    bytes_ = bytes;
  }
  static void Release(T* p, size_t bytes) {
    if (p == nullptr) return;
    if (bytes <= kHeapBytes)
      ::operator delete(p);
    else
      HugeSlots::Get().Free(reinterpret_cast<char*>(p), bytes);
  }
  const size_t first_bytes_;
  T* data_ = nullptr;
  size_t size_ = 0;
  size_t bytes_ = 0;
};

// An uninitialised buffer of at least `bytes` (rounded up to a power of two)
// from HugeSlots::Get(), given back when destroyed: for the big working
// buffers a command makes again and again (export's chunks, backup's
// batches), whose fresh pages from malloc were most of a small command's
// page faults. Throws std::bad_alloc when the kernel refuses.
class HugeBuffer {
 public:
  explicit HugeBuffer(size_t bytes)
      : capacity_(std::bit_ceil(std::max<size_t>(bytes, 1))),
        p_(HugeSlots::Get().Alloc(capacity_)) {}
  ~HugeBuffer() { HugeSlots::Get().Free(p_, capacity_); }
  HugeBuffer(const HugeBuffer&) = delete;
  HugeBuffer& operator=(const HugeBuffer&) = delete;
  char* data() const { return p_; }

 private:
  const size_t capacity_;
  char* const p_;
};

}  // namespace chainfs
