#include "cache/stats_json.h"

namespace chainfs {

using nlohmann::json;

json CacheStatsToJson(const BlockCacheStats& s) {
  return json{{"capacity_bytes", s.capacity_bytes},
              {"bytes_held", s.bytes_held},
              {"blocks_held", s.blocks_held},
              {"hits", s.hits},
              {"misses", s.misses},
              {"loads_merged", s.loads_merged},
              {"evictions", s.evictions},
              {"load_ns", s.load_ns},
              {"loaded_bytes", s.loaded_bytes},
              {"stored_bytes_read", s.stored_bytes_read},
              {"checksum_failures", s.checksum_failures},
              {"load_failures", s.load_failures},
              {"readahead_issued", s.readahead_issued},
              {"readahead_used", s.readahead_used},
              {"readahead_wasted", s.readahead_wasted},
              {"readahead_skipped", s.readahead_skipped},
              {"block_memory_bytes", s.block_memory_bytes},
              {"pool_free_bytes", s.pool_free_bytes},
              {"buffers_reused", s.buffers_reused},
              {"pool_slab_bytes", s.pool_slab_bytes}};
}

json ReadaheadStatsToJson(const ReadaheadStats& s) {
  return json{{"batches", s.batches},
              {"queued", s.queued},
              {"dropped", s.dropped},
              {"cancelled", s.cancelled},
              {"collapses", s.collapses}};
}

json ReplyStatsToJson(const ReplyStats& s) {
  return json{{"spliced_replies", s.spliced_replies.load(std::memory_order_relaxed)},
              {"spliced_bytes", s.spliced_bytes.load(std::memory_order_relaxed)},
              {"splice_fallbacks", s.splice_fallbacks.load(std::memory_order_relaxed)},
              {"lookups", s.lookups.load(std::memory_order_relaxed)},
              {"entries_with_attributes", s.entries_with_attributes.load(std::memory_order_relaxed)},
              {"listings", s.listings.load(std::memory_order_relaxed)}};
}

std::string MountStatsJson(const BlockCache* cache, const Readahead* readahead,
                           const ReplyStats* replies) {
  json doc;
  doc["cache"] = cache ? CacheStatsToJson(cache->Stats()) : json(nullptr);
  doc["readahead"] = readahead ? ReadaheadStatsToJson(readahead->Stats()) : json(nullptr);
  doc["replies"] = replies ? ReplyStatsToJson(*replies) : json(nullptr);
  return doc.dump(2) + "\n";
}

}  // namespace chainfs
