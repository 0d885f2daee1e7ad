// The statistics channel of a mount: BlockCache and Readahead counters as one
// JSON object, served by the mount as the hidden file MOUNTPOINT/.chainfs-stats
// and read back by `chainfs stats`.
//
//   {"cache": {"capacity_bytes": ..., "hits": ..., ...},
//    "readahead": {"batches": ..., ...}}
//
// Field names are the member names of BlockCacheStats and ReadaheadStats;
// "cache": null when the mount runs without a cache, "readahead": null
// without readahead. New fields may be added; none is renamed.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "cache/block_cache.h"
#include "cache/readahead.h"

namespace chainfs {

// The name of the hidden statistics file at the mount's root. A leading dot
// cannot clash with a group name.
inline constexpr char kStatsFileName[] = ".chainfs-stats";

nlohmann::json CacheStatsToJson(const BlockCacheStats& s);
nlohmann::json ReadaheadStatsToJson(const ReadaheadStats& s);
// The whole document; either pointer may be null. Ends with a newline.
std::string MountStatsJson(const BlockCache* cache, const Readahead* readahead);

}  // namespace chainfs
