// The statistics channel of a mount: BlockCache and Readahead counters as one
// JSON object, served by the mount as the hidden file MOUNTPOINT/.chainfs-stats
// and read back by `chainfs stats`.
//
//   {"cache": {"capacity_bytes": ..., "hits": ..., ...},
//    "readahead": {"batches": ..., ...},
//    "replies": {"spliced_replies": ..., "spliced_bytes": ..., "splice_fallbacks": ...,
//                "lookups": ..., "entries_with_attributes": ..., "listings": ...}}
//
// Field names are the member names of BlockCacheStats, ReadaheadStats and
// ReplyStats; "cache": null when the mount runs without a cache,
// "readahead": null without readahead. New fields may be added; none is
// renamed.
#pragma once

#include <atomic>
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
// How a mount answered reads (fusefs/driver/splice_reply.h) and name
// look-ups, "replies".
struct ReplyStats {
  std::atomic<uint64_t> spliced_replies{0};  // answered by splice
  std::atomic<uint64_t> spliced_bytes{0};    // their bytes
  std::atomic<uint64_t> splice_fallbacks{0};  // had file pieces, copied instead
  std::atomic<uint64_t> lookups{0};          // LOOKUP requests
  // Directory entries listed with their inode and attributes (READDIRPLUS):
  // the kernel needs no LOOKUP for them.
  std::atomic<uint64_t> entries_with_attributes{0};
  // READDIR and READDIRPLUS requests answered: a checkpoint directory
  // listed again is answered by the kernel's cache of its listing.
  std::atomic<uint64_t> listings{0};
};
nlohmann::json ReplyStatsToJson(const ReplyStats& s);
// The whole document; any pointer may be null. Ends with a newline.
std::string MountStatsJson(const BlockCache* cache, const Readahead* readahead,
                           const ReplyStats* replies = nullptr);

}  // namespace chainfs
