#include "chain/base/huge_map.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>
#include <set>
#include <vector>

namespace chainfs {
namespace {

bool AlignedTo(const char* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

// Slots of one size come from one 2 MiB mapping until it is used up, do not
// overlap, and are reused after Free before anything new is mapped.
TEST(HugeSlots, SlotsOfASizeShareAHugePageAndAreReused) {
  HugeSlots slots;
  constexpr size_t kSlot = 64 << 10;
  constexpr size_t kPerChunk = kHugePageBytes / kSlot;  // 32
  std::vector<char*> got;
  std::set<uintptr_t> pages;
  for (size_t i = 0; i < kPerChunk; ++i) {
    char* p = slots.Alloc(kSlot);
    ASSERT_TRUE(AlignedTo(p, kSlot));
    std::memset(p, static_cast<int>(i), kSlot);  // writable, all of it
    pages.insert(reinterpret_cast<uintptr_t>(p) / kHugePageBytes);
    got.push_back(p);
  }
  EXPECT_EQ(slots.MappedBytes(), kHugePageBytes);
  EXPECT_EQ(pages.size(), 1u) << "32 slots of 64 KiB lie in one aligned 2 MiB page";
  for (size_t i = 0; i < kPerChunk; ++i) EXPECT_EQ(got[i][kSlot - 1], static_cast<char>(i)) << i;

  // Freed slots come back before a new mapping is made.
  slots.Free(got[5], kSlot);
  slots.Free(got[9], kSlot);
  std::set<char*> again{slots.Alloc(kSlot), slots.Alloc(kSlot)};
  EXPECT_EQ(again, (std::set<char*>{got[5], got[9]}));
  EXPECT_EQ(slots.MappedBytes(), kHugePageBytes);

  // The next one needs a new mapping.
  char* more = slots.Alloc(kSlot);
  EXPECT_EQ(slots.MappedBytes(), 2 * kHugePageBytes);
  EXPECT_EQ(std::count(got.begin(), got.end(), more), 0);
}

// Other sizes have slots of their own; sizes above 2 MiB are whole,
// 2 MiB-aligned mappings; what is not a power of two is refused.
TEST(HugeSlots, SizesKeepTheirOwnSlotsAndOddSizesAreRefused) {
  HugeSlots slots;
  char* small = slots.Alloc(512);
  EXPECT_TRUE(AlignedTo(small, 512));
  slots.Free(small, 512);
  char* other = slots.Alloc(4096);
  EXPECT_EQ(slots.MappedBytes(), 2 * kHugePageBytes);
  EXPECT_TRUE(AlignedTo(other, 4096));
  EXPECT_EQ(slots.Alloc(512), small);

  char* big = slots.Alloc(4 * kHugePageBytes);
  EXPECT_TRUE(AlignedTo(big, kHugePageBytes));
  std::memset(big, 7, 4 * kHugePageBytes);
  EXPECT_EQ(slots.MappedBytes(), 6 * kHugePageBytes);
  slots.Free(big, 4 * kHugePageBytes);
  EXPECT_EQ(slots.Alloc(4 * kHugePageBytes), big);

  EXPECT_THROW(slots.Alloc(3000), std::bad_alloc);
  EXPECT_THROW(slots.Alloc(0), std::bad_alloc);
}

// SlotArray keeps its elements across doublings, from heap memory into
// huge-page slots, and a second array of the same sizes reuses the process's
// slots instead of mapping more.
TEST(SlotArray, GrowsKeepingItsElementsAndReusesSlots) {
  auto fill = [](size_t n) {
    SlotArray<uint64_t> a(4096);
    for (uint64_t i = 0; i < n; ++i) a.push_back(i * 0x9e3779b97f4a7c15ull);
    EXPECT_EQ(a.size(), n);
    for (uint64_t i = 0; i < n; ++i) ASSERT_EQ(a[i], i * 0x9e3779b97f4a7c15ull) << i;
    a.truncate(3);
    EXPECT_EQ(a.size(), 3u);
    EXPECT_EQ(a.back(), 2 * 0x9e3779b97f4a7c15ull);
  };
  // 4 KiB doubled to twice kHeapBytes: past it, into slots
  const size_t n = SlotArray<uint64_t>::kHeapBytes / sizeof(uint64_t) + 1000;
  const size_t before = HugeSlots::Get().MappedBytes();
  fill(n);
  const size_t mapped = HugeSlots::Get().MappedBytes();
  EXPECT_GT(mapped, before);
  fill(n);
  EXPECT_EQ(HugeSlots::Get().MappedBytes(), mapped);
  SlotArray<uint64_t> none;
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(none.begin(), none.end());
}

// An array that stays within kHeapBytes is in heap memory, never in a
// huge-page slot (each huge page is zeroed whole at its first touch); its
// next doubling moves it into a slot, and one that starts bigger is in a
// slot, aligned to it, from the start.
TEST(SlotArray, SmallArraysStayInHeapMemory) {
  HugeSlots& slots = HugeSlots::Get();
  SlotArray<uint64_t> small(4096);
  for (uint64_t i = 0; i < SlotArray<uint64_t>::kHeapBytes / sizeof(uint64_t); ++i) {
    small.push_back(i);
    if ((i & (i + 1)) == 0) {  // at each doubling
      ASSERT_FALSE(slots.Owns(small.begin())) << i;
    }
  }
  EXPECT_FALSE(slots.Owns(small.begin()));
  small.push_back(1);  // one more: the next doubling is a slot
  EXPECT_TRUE(slots.Owns(small.begin()));
  EXPECT_TRUE(AlignedTo(reinterpret_cast<char*>(small.begin()),
                        std::min(2 * SlotArray<uint64_t>::kHeapBytes, kHugePageBytes)));
  EXPECT_EQ(small[12345], 12345u);
  SlotArray<uint64_t> big(2 * SlotArray<uint64_t>::kHeapBytes);
  big.push_back(7);
  EXPECT_TRUE(slots.Owns(big.begin()));
  EXPECT_TRUE(AlignedTo(reinterpret_cast<char*>(big.begin()), kHugePageBytes));
  EXPECT_EQ(big.back(), 7u);
}

}  // namespace
}  // namespace chainfs
