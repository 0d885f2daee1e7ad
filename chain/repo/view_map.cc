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
                          uint32_t layer_count, const ExtentMap& map,
                          const std::vector<LocatedEntry>& located) {
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
  PutFixed64(&out, located.size());
  out.reserve(out.size() + located.size() * kViewMapLocatedSize + 8);
  for (const LocatedEntry& l : located) {
    PutFixed32(&out, l.layer);
    PutFixed8(&out, l.loc.stored.codec);
    out.append(3, '\0');
    PutFixed64(&out, l.entry);
    PutFixed64(&out, l.loc.stored.block);
    PutFixed64(&out, l.loc.offset);
    PutFixed32(&out, l.loc.stored.size);
    PutFixed32(&out, 0);
    PutFixed64(&out, l.loc.stored.checksum);
    PutFixed64(&out, l.loc.stored.content.lo);
    PutFixed64(&out, l.loc.stored.content.hi);
  }
  PutFixed64(&out, Checksum64(out.data(), out.size()));
  return out;
}

Result<ViewMapFile> DecodeViewMap(std::string_view bytes, const std::string& where,
                                  const ViewMapExpect& expect) {
  auto bad = [&](const std::string& why) { return Status::Corruption(where + ": " + why); };
  if (bytes.size() < kViewMapHeaderSize + 8) return bad("truncated view map");
  if (std::memcmp(bytes.data(), kViewMapMagic, sizeof kViewMapMagic) != 0)
    return bad("not a view map (bad magic)");
  const char* p = bytes.data();
  const size_t body = bytes.size() - 8;
  if (DecodeFixed64(p + body) != Checksum64(p, body)) return bad("checksum mismatch");
  const uint32_t version = DecodeFixed32(p + 8);
  if (version != 1 && version != kViewMapVersion)
    return bad("view map version " + std::to_string(version) + " (this reads 1 to " +
               std::to_string(kViewMapVersion) + ")");
  const uint32_t block_size = DecodeFixed32(p + 12);
  const uint64_t key = DecodeFixed64(p + 16);
  const uint64_t size = DecodeFixed64(p + 24);
  const uint32_t layers = DecodeFixed32(p + 32);
  const uint64_t count = DecodeFixed64(p + 40);
  if (key != expect.key || layers != expect.layers() || expect.layers() == 0 ||
      size != expect.clip(0) || block_size != expect.block_size)
    return Status::NotFound(where + ": a view map of another chain (stale)");
  if (!std::has_single_bit(block_size)) return bad("block size not a power of two");
  // Version 1 ends with the runs; version 2 has the located entries after them.
  const uint64_t room = body - kViewMapHeaderSize;
  if (count > room / kViewMapRunSize || (version == 1 && room != count * kViewMapRunSize))
    return bad("run count " + std::to_string(count) + " does not match the file's size");
  const size_t located_at = kViewMapHeaderSize + count * kViewMapRunSize;
  uint64_t located_count = 0;
  if (version > 1) {
    if (body - located_at < 8) return bad("truncated view map (no located entry count)");
    located_count = DecodeFixed64(p + located_at);
    const uint64_t rest = body - located_at - 8;
    if (located_count != rest / kViewMapLocatedSize || rest % kViewMapLocatedSize != 0)
      return bad("located entry count " + std::to_string(located_count) +
                 " does not match the file's size");
  }
  const uint8_t shift = static_cast<uint8_t>(std::countr_zero(block_size));
  // Filled by push_back, not value-initialized first: at depth 10,000 the
  // runs and located entries are 400 KB of fresh memory, written once.
  std::vector<MapRun> runs;
  runs.reserve(count);
  uint64_t prev_end = 0;
  for (uint64_t i = 0; i < count; ++i) {
    const char* q = p + kViewMapHeaderSize + i * kViewMapRunSize;
    MapRun& r = runs.emplace_back();
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
    if (r.layer >= layers || r.entry_shift != shift || r.end > expect.clip(r.layer) ||
        r.entry_pos > UINT64_MAX - (r.end - r.start))
      return bad(at() + ": names layer " + std::to_string(r.layer) +
                 " outside the chain or past its size");
  }
  ViewMapFile out;
  out.located.reserve(located_count);
  for (uint64_t i = 0; i < located_count; ++i) {
    const char* q = p + located_at + 8 + i * kViewMapLocatedSize;
    LocatedEntry& l = out.located.emplace_back();
    l.layer = DecodeFixed32(q);
    l.loc.stored.codec = static_cast<uint8_t>(q[4]);
    l.entry = DecodeFixed64(q + 8);
    l.loc.stored.block = DecodeFixed64(q + 16);
    l.loc.offset = DecodeFixed64(q + 24);
    l.loc.stored.size = DecodeFixed32(q + 32);
    l.loc.stored.checksum = DecodeFixed64(q + 40);
    l.loc.stored.content = {DecodeFixed64(q + 48), DecodeFixed64(q + 56)};
    auto at = [i] { return "located entry " + std::to_string(i); };  // only for a message
    if (q[5] != 0 || q[6] != 0 || q[7] != 0 || DecodeFixed32(q + 36) != 0)
      return bad(at() + ": reserved bytes not zero");
    if (l.layer >= layers) return bad(at() + ": names layer " + std::to_string(l.layer) +
                                      " outside the chain");
    if (i > 0 && (l.layer < out.located[i - 1].layer ||
                  (l.layer == out.located[i - 1].layer && l.entry <= out.located[i - 1].entry)))
      return bad(at() + ": out of order");
    // The format checks the codec when it reads; here only that the length
    // is one a block can take (never more than twice a block: a native
    // writer stores a block raw when zstd does not shrink it).
    if (l.loc.stored.size == 0 || l.loc.stored.size > 2ull * block_size ||
        l.loc.offset > (uint64_t{1} << 62))
      return bad(at() + ": " + std::to_string(l.loc.stored.size) + " stored bytes at offset " +
                 std::to_string(l.loc.offset) + " is not a stored block of this chain");
  }
  out.map = ExtentMap::FromRuns(std::move(runs));
  return out;
}

}  // namespace chainfs
