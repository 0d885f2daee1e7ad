#include "chain/repo/view_map.h"

#include <bit>
#include <cstring>

#include "chain/base/coding.h"
#include "chain/base/hash.h"

namespace chainfs {

std::optional<std::vector<uint64_t>> ViewMapKeys(const std::vector<ChainLink>& chain) {
  std::vector<uint64_t> keys(chain.size());
  uint64_t below = 0;
  for (size_t i = chain.size(); i-- > 0;) {
    const DiskEntry& d = *chain[i].disk;
    if (!d.delta_id || !d.index_digest) return std::nullopt;
    below = keys[i] = ViewMapLinkKey(d, below);
  }
  return keys;
}

std::string EncodeViewMap(uint64_t key, uint32_t block_size, uint64_t view_size,
                          uint32_t layer_count, const ExtentMap& map) {
  std::string out(kViewMapMagic, sizeof kViewMapMagic);
  PutFixed32(&out, kViewMapVersion);
  PutFixed32(&out, block_size);
  PutFixed64(&out, key);
  PutFixed64(&out, view_size);
  PutFixed32(&out, layer_count);
  PutFixed32(&out, 0);
  PutFixed64(&out, map.runs().size());
  out.reserve(out.size() + map.runs().size() * kViewMapRunSize + 8);
  for (const MapRun& r : map.runs()) {
    PutFixed64(&out, r.start);
    PutFixed64(&out, r.end);
    PutFixed64(&out, r.entry_pos);
    PutFixed32(&out, r.layer);
    PutFixed8(&out, r.entry_shift);
    out.append(3, '\0');
  }
  PutFixed64(&out, Checksum64(out.data(), out.size()));
  return out;
}

Result<ExtentMap> DecodeViewMap(const std::string& bytes, const std::string& where,
                                const ViewMapExpect& expect) {
  auto bad = [&](const std::string& why) { return Status::Corruption(where + ": " + why); };
  if (bytes.size() < kViewMapHeaderSize + 8) return bad("truncated view map");
  if (std::memcmp(bytes.data(), kViewMapMagic, sizeof kViewMapMagic) != 0)
    return bad("not a view map (bad magic)");
  const char* p = bytes.data();
  const size_t body = bytes.size() - 8;
  if (DecodeFixed64(p + body) != Checksum64(p, body)) return bad("checksum mismatch");
  if (DecodeFixed32(p + 8) != kViewMapVersion)
    return bad("view map version " + std::to_string(DecodeFixed32(p + 8)) + " (this reads " +
               std::to_string(kViewMapVersion) + ")");
  const uint32_t block_size = DecodeFixed32(p + 12);
  const uint64_t key = DecodeFixed64(p + 16);
  const uint64_t size = DecodeFixed64(p + 24);
  const uint32_t layers = DecodeFixed32(p + 32);
  const uint64_t count = DecodeFixed64(p + 40);
  if (key != expect.key || layers != expect.clip_bytes.size() || expect.clip_bytes.empty() ||
      size != expect.clip_bytes[0] || block_size != expect.block_size)
    return Status::NotFound(where + ": a view map of another chain (stale)");
  if (!std::has_single_bit(block_size)) return bad("block size not a power of two");
  if (count != (body - kViewMapHeaderSize) / kViewMapRunSize ||
      (body - kViewMapHeaderSize) % kViewMapRunSize != 0)
    return bad("run count " + std::to_string(count) + " does not match the file's size");
  const uint8_t shift = static_cast<uint8_t>(std::countr_zero(block_size));
  std::vector<MapRun> runs(count);
  uint64_t prev_end = 0;
  for (uint64_t i = 0; i < count; ++i) {
    const char* q = p + kViewMapHeaderSize + i * kViewMapRunSize;
    MapRun& r = runs[i];
    r.start = DecodeFixed64(q);
    r.end = DecodeFixed64(q + 8);
    r.entry_pos = DecodeFixed64(q + 16);
    r.layer = DecodeFixed32(q + 24);
    r.entry_shift = static_cast<uint8_t>(q[28]);
    auto at = [i] { return "run " + std::to_string(i); };  // only for a message
    if (r.start >= r.end || r.start < prev_end || r.end > size)
      return bad(at() + " [" + std::to_string(r.start) + ", " + std::to_string(r.end) +
                 ") is out of order or outside the view");
    prev_end = r.end;
    if (r.is_zero()) {
      if (r.entry_pos != 0 || r.entry_shift != 0) return bad(at() + ": a zero run with data fields");
      continue;
    }
    if (r.layer >= layers || r.entry_shift != shift || r.end > expect.clip_bytes[r.layer] ||
        r.entry_pos > UINT64_MAX - (r.end - r.start))
      return bad(at() + ": names layer " + std::to_string(r.layer) +
                 " outside the chain or past its size");
  }
  return ExtentMap::FromRuns(std::move(runs));
}

}  // namespace chainfs
