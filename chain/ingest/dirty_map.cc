#include "chain/ingest/dirty_map.h"

#include <nlohmann/json.hpp>

#include "chain/base/file.h"

namespace chainfs {

Result<std::vector<ByteRange>> LoadDirtyMap(const std::string& path) {
  auto text = ReadWholeFile(path, 256 << 20);
  if (!text.ok()) return text.status().Context("dirty map");
  return ParseDirtyMap(text.value(), "dirty map " + path);
}

Result<std::vector<ByteRange>> ParseDirtyMap(const std::string& text, const std::string& map) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_array())
    return Status::InvalidArgument(map + ": not a JSON array as printed by nbdinfo --json --map");
  std::vector<ByteRange> ranges;
  for (size_t i = 0; i < j.size(); ++i) {
    const auto& e = j[i];
    std::string where = map + ": entry " + std::to_string(i);
    if (!e.is_object() || !e.contains("offset") || !e.contains("length") ||
        !e.contains("type") || !e["offset"].is_number_unsigned() ||
        !e["length"].is_number_unsigned() || !e["type"].is_number_integer())
      return Status::InvalidArgument(where +
                                     ": needs unsigned integer offset, length and type");
    uint64_t off = e["offset"].get<uint64_t>();
    uint64_t len = e["length"].get<uint64_t>();
    if (len > UINT64_MAX - off) return Status::InvalidArgument(where + ": range overflows");
    if ((e["type"].get<int64_t>() & 1) == 0 || len == 0) continue;
    ranges.push_back({off, len});
  }
  return ranges;
}

}  // namespace chainfs
