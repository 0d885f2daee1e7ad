#include "fusefs/cli/stats_command.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cache/stats_json.h"

namespace chainfs {
namespace {

using nlohmann::json;

std::string HumanBytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

std::string Percent(uint64_t part, uint64_t whole) {
  if (whole == 0) return "-";
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * part / whole);
  return buf;
}

uint64_t U(const json& j, const char* key) { return j.value(key, uint64_t{0}); }

void Row(const std::string& name, const std::string& value) {
  std::printf("  %-22s %s\n", name.c_str(), value.c_str());
}

void PrintCache(const json& c) {
  if (c.is_null()) {
    std::printf("cache: off\n");
    return;
  }
  const uint64_t reads = U(c, "hits") + U(c, "misses") + U(c, "loads_merged");
  std::printf("cache:\n");
  Row("capacity", HumanBytes(U(c, "capacity_bytes")));
  Row("held",
      HumanBytes(U(c, "bytes_held")) + " in " + std::to_string(U(c, "blocks_held")) + " blocks");
  Row("hits", std::to_string(U(c, "hits")) + " (" + Percent(U(c, "hits"), reads) + ")");
  Row("misses", std::to_string(U(c, "misses")));
  Row("loads merged", std::to_string(U(c, "loads_merged")));
  Row("evictions", std::to_string(U(c, "evictions")));
  Row("decompression time", std::to_string(U(c, "load_ns") / 1000000) + " ms");
  Row("stored bytes read", HumanBytes(U(c, "stored_bytes_read")));
  Row("checksum failures", std::to_string(U(c, "checksum_failures")));
  Row("failed loads", std::to_string(U(c, "load_failures")));
  Row("readahead issued", std::to_string(U(c, "readahead_issued")));
  Row("readahead used", std::to_string(U(c, "readahead_used")) + " (" +
                            Percent(U(c, "readahead_used"), U(c, "readahead_issued")) + ")");
  Row("readahead wasted", std::to_string(U(c, "readahead_wasted")));
}

void PrintReadahead(const json& r) {
  if (r.is_null()) {
    std::printf("readahead: off\n");
    return;
  }
  std::printf("readahead:\n");
  Row("windows", std::to_string(U(r, "batches")));
  Row("blocks queued", std::to_string(U(r, "queued")));
  Row("dropped (queue full)", std::to_string(U(r, "dropped")));
  Row("cancelled", std::to_string(U(r, "cancelled")));
  Row("collapses", std::to_string(U(r, "collapses")));
}

void PrintReplies(const json& r) {
  if (r.is_null()) return;
  std::printf("replies:\n");
  Row("spliced", std::to_string(U(r, "spliced_replies")) + " (" +
                     std::to_string(U(r, "spliced_bytes") >> 20) + " MiB)");
  Row("copied instead", std::to_string(U(r, "splice_fallbacks")));
  Row("lookups", std::to_string(U(r, "lookups")));
  Row("listed with attributes", std::to_string(U(r, "entries_with_attributes")));
  Row("listing requests", std::to_string(U(r, "listings")));
}

}  // namespace

Action AddStatsCommand(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("stats", "Show the block cache, readahead and reply counters of a running mount");
  struct Opts {
    std::string mountpoint;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("MOUNTPOINT", o->mountpoint, "where the repository is mounted")->required();
  cmd->add_flag("--json", o->json, "print the counters as JSON");
  return [o]() -> int {
    const std::string path = o->mountpoint + "/" + kStatsFileName;
    std::ifstream in(path);
    if (!in) {
      spdlog::error("stats: cannot read {}: not a chainfs mount, or one without statistics", path);
      return 1;
    }
    std::stringstream text;
    text << in.rdbuf();
    json doc = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object()) {
      spdlog::error("stats: {}: not valid JSON", path);
      return 1;
    }
    if (o->json) {
      std::cout << doc.dump(2) << "\n";
      return 0;
    }
    PrintCache(doc.value("cache", json(nullptr)));
    PrintReadahead(doc.value("readahead", json(nullptr)));
    PrintReplies(doc.value("replies", json(nullptr)));
    return 0;
  };
}

}  // namespace chainfs
