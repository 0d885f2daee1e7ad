// Fuzz target: view map files (DecodeViewMap, chain/repo/view_map.h), which a
// reader takes from disk and trusts only after these checks.
//
// The expected chain is taken from the input's own header (key, block size,
// view size, layer count; every layer visible up to the view's size), so
// that inputs reach the runs and located entries. A map that decodes has
// runs in order inside the view, data runs on layers of the chain, located
// entries in order on layers of the chain with a sane length; and it
// encodes to a map that decodes to the same runs and located entries.
#include <cstring>

#include "chain/base/coding.h"
#include "chain/repo/view_map.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chainfs;
  const std::string bytes = fuzz::AsString(data, size);
  if (bytes.size() < kViewMapHeaderSize) return 0;
  const char* p = bytes.data();
  ViewMapExpect expect;
  expect.key = DecodeFixed64(p + 16);
  expect.block_size = DecodeFixed32(p + 12);
  const uint64_t view_size = DecodeFixed64(p + 24);
  const uint32_t layers = DecodeFixed32(p + 32);
  if (layers > 4096) return 0;  // keeps the expectation small; the decoder checks any count
  expect.clip_bytes.assign(layers, view_size);
  Result<ViewMapFile> m = DecodeViewMap(bytes, "fuzz/map", expect);
  if (!m.ok()) return 0;
  uint64_t prev_end = 0;
  for (const MapRun& r : m->map.runs()) {
    FUZZ_CHECK(r.start < r.end && r.start >= prev_end && r.end <= view_size);
    FUZZ_CHECK(r.is_zero() || r.layer < layers);
    prev_end = r.end;
  }
  for (size_t i = 0; i < m->located.size(); ++i) {
    const LocatedEntry& l = m->located[i];
    FUZZ_CHECK(l.layer < layers);
    FUZZ_CHECK(l.loc.stored.size > 0 && l.loc.stored.size <= 2ull * expect.block_size);
    if (i > 0) {
      const LocatedEntry& b = m->located[i - 1];
      FUZZ_CHECK(b.layer < l.layer || (b.layer == l.layer && b.entry < l.entry));
    }
  }
  const std::string again_bytes =
      EncodeViewMap(expect.key, expect.block_size, view_size, layers, m->map, m->located);
  Result<ViewMapFile> again = DecodeViewMap(again_bytes, "fuzz/map again", expect);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->map.runs().size() == m->map.runs().size());
  for (size_t i = 0; i < m->map.runs().size(); ++i) {
    const MapRun& a = again->map.runs()[i];
    const MapRun& b = m->map.runs()[i];
    FUZZ_CHECK(a.start == b.start && a.end == b.end && a.layer == b.layer &&
               a.entry_pos == b.entry_pos && a.entry_shift == b.entry_shift);
  }
  FUZZ_CHECK(again->located.size() == m->located.size());
  for (size_t i = 0; i < m->located.size(); ++i) {
    const LocatedEntry& a = again->located[i];
    const LocatedEntry& b = m->located[i];
    FUZZ_CHECK(a.layer == b.layer && a.entry == b.entry && a.loc.offset == b.loc.offset &&
               a.loc.stored.size == b.loc.stored.size && a.loc.stored.codec == b.loc.stored.codec &&
               a.loc.stored.block == b.loc.stored.block &&
               a.loc.stored.checksum == b.loc.stored.checksum &&
               a.loc.stored.content == b.loc.stored.content);
  }
  return 0;
}
