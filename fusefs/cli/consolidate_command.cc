#include "fusefs/cli/consolidate_command.h"

#include <spdlog/spdlog.h>

#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "chain/repo/consolidate.h"
#include "chain/ingest/libvirt_backup.h"
#include "chain/base/progress.h"

namespace chainfs {
namespace {

using nlohmann::json;

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

// Join for a terminal: a list of thousands (a prune of a deep chain) is
// shortened to its ends and its count; --json has every name.
std::string JoinShort(const std::vector<std::string>& v) {
  constexpr size_t kHead = 3, kTail = 2;
  if (v.size() <= kHead + kTail + 3) return Join(v);
  std::vector<std::string> ends(v.begin(), v.begin() + kHead);
  ends.push_back("...");
  ends.insert(ends.end(), v.end() - kTail, v.end());
  return Join(ends) + " (" + std::to_string(v.size()) + " checkpoints)";
}

std::vector<std::string> SplitCommas(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (const auto& a : args) {
    std::stringstream ss(a);
    std::string item;
    while (std::getline(ss, item, ','))
      if (!item.empty()) out.push_back(item);
  }
  return out;
}

json ReportJson(const ConsolidateReport& r) {
  json j = {{"group", r.group},
            {"dry_run", r.dry_run},
            {"nothing_to_do", r.nothing_to_do},
            {"finished_interrupted", r.finished_interrupted},
            {"leftovers_removed", r.leftovers_removed},
            {"dropped", r.dropped},
            {"kept", r.kept},
            {"bytes_needed", r.bytes_needed},
            {"bytes_free", r.bytes_free},
            {"bytes_released", r.bytes_released},
            {"seconds", r.seconds},
            {"write_seconds", r.write_seconds},
            {"switch_seconds", r.switch_seconds},
            {"relinked", json::array()},
            {"rewrites", json::array()}};
  for (const auto& [cp, parent] : r.relinked)
    j["relinked"].push_back({{"checkpoint", cp}, {"parent", parent}});
  for (const DiskRewrite& w : r.rewrites)
    j["rewrites"].push_back({{"checkpoint", w.checkpoint},
                             {"disk", w.disk},
                             {"kind", DeltaKindName(w.kind)},
                             {"base", w.base},
                             {"merged", w.merged},
                             {"old_delta", w.old_file},
                             {"new_delta", w.new_file},
                             {"virtual_size", w.virtual_size},
                             {"blocks_copied", w.blocks_copied},
                             {"blocks_reencoded", w.blocks_reencoded},
                             {"zero_blocks", w.zero_blocks},
                             {"stored_bytes", w.stored_bytes}});
  if (!r.retention.empty()) {
    j["retention"] = json::array();
    for (const RetentionDecision& d : r.retention)
      j["retention"].push_back({{"checkpoint", d.checkpoint},
                                {"keep", d.keep},
                                {"reasons", d.reasons}});
  }
  return j;
}

void PrintReport(const ConsolidateReport& r) {
  if (r.finished_interrupted)
    std::cout << "finished an interrupted consolidation of group " << r.group
              << "\n";
  for (const RetentionDecision& d : r.retention)
    std::cout << (d.keep ? "  keep  " : "  drop  ") << d.checkpoint
              << (d.reasons.empty() ? "" : "  (" + Join(d.reasons) + ")")
              << "\n";
  if (r.nothing_to_do) {
    std::cout << "group " << r.group << ": nothing to do\n";
    return;
  }
  const char* verb = r.dry_run ? "would " : "";
  std::cout << (r.dry_run ? "plan for group " : "group ") << r.group << ":\n";
  if (!r.dropped.empty())
    std::cout << "  " << verb << "drop " << JoinShort(r.dropped) << "\n";
  for (const auto& [cp, parent] : r.relinked)
    std::cout << "  " << verb << "relink " << cp << " to parent "
              << (parent.empty() ? "(none)" : parent) << "\n";
  for (const DiskRewrite& w : r.rewrites) {
    std::cout << "  " << verb << "rewrite " << w.checkpoint << "/" << w.disk
              << " as " << DeltaKindName(w.kind)
              << (w.base.empty() ? "" : " (base " + w.base + ")");
    if (!w.merged.empty()) std::cout << ", merging " << JoinShort(w.merged);
    std::cout << ": " << w.blocks_copied << " blocks copied, "
              << w.blocks_reencoded << " re-encoded, " << w.zero_blocks
              << " zero blocks";
    if (!r.dry_run) std::cout << ", " << w.stored_bytes << " bytes written";
    std::cout << "\n";
  }
  std::cout << "  new deltas " << (r.dry_run ? "need about " : "estimated at ")
            << r.bytes_needed << " bytes; old deltas of " << r.bytes_released
            << " bytes " << (r.dry_run ? "would be " : "") << "released";
  if (!r.dry_run) std::cout << "; done in " << r.seconds << " s";
  std::cout << "\n";
}

int RunConsolidation(const char* cmd, const std::string& repo_path,
                     const ConsolidateOptions& opts, bool as_json) {
  if (as_json) Progress::SetEnabled(false);
  auto repo = Repository::Open(repo_path);
  if (!repo.ok()) {
    spdlog::error("{}: {}", cmd, repo.status().message());
    return 1;
  }
  // The group as it was: the dropped checkpoints' libvirt checkpoints go
  // with them (chain/ingest/libvirt_backup.h).
  auto before = repo.value()->LoadGroup(opts.group);
  auto r = Consolidate(*repo.value(), opts);
  if (!r.ok()) {
    spdlog::error("{}: {}", cmd, r.status().message());
    return 1;
  }
  ForgetReport forgot;
  if (before.ok() && !r->dry_run && !r->dropped.empty())
    forgot = ForgetLibvirtCheckpoints(before.value(), r->dropped);
  for (const auto& w : forgot.warnings) spdlog::warn("{}: {}", cmd, w);
  if (as_json) {
    json j = ReportJson(r.value());
    j["libvirt_checkpoints_deleted"] = forgot.deleted;
    std::cout << j.dump(2) << "\n";
  } else {
    PrintReport(r.value());
    for (const auto& d : forgot.deleted) std::cout << "  deleted libvirt checkpoint " << d << "\n";
  }
  return 0;
}

}  // namespace

Action AddConsolidateCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("consolidate",
                                 "Drop checkpoints or fold history into a "
                                 "synthetic full; every surviving checkpoint "
                                 "keeps reading the same bytes");
  struct Opts {
    std::string repo, group, full_at;
    std::vector<std::string> drop;
    bool dry_run = false, json = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("REPO", o->repo, "repository")->required();
  cmd->add_option("GROUP", o->group, "group")->required();
  auto* drop = cmd->add_option(
      "--drop", o->drop,
      "CHECKPOINT[,CHECKPOINT...]: remove these; their deltas are "
      "merged into the checkpoints that depend on them");
  auto* full = cmd->add_option(
      "--full-at", o->full_at,
      "CHECKPOINT: rewrite it as a full backup and drop every older "
      "checkpoint");
  drop->excludes(full);
  full->excludes(drop);
  cmd->add_flag("--dry-run", o->dry_run,
                "print what would happen; change nothing");
  cmd->add_flag("--json", o->json, "print the result as JSON");
  return [o]() -> int {
    ConsolidateOptions opts;
    opts.group = o->group;
    opts.drop = SplitCommas(o->drop);
    opts.full_at = o->full_at;
    opts.dry_run = o->dry_run;
    if (opts.drop.empty() && opts.full_at.empty()) {
      spdlog::error(
          "consolidate: give --drop CHECKPOINT[,...] or --full-at CHECKPOINT");
      return 2;
    }
    return RunConsolidation("consolidate", o->repo, opts, o->json);
  };
}

Action AddPruneCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "prune",
      "Keep checkpoints by policy (newest in each hour/day/week/month, UTC; "
      "the newest "
      "checkpoint always) and drop the rest in one consolidation");
  struct Opts {
    std::string repo, group;
    RetentionPolicy policy;
    bool dry_run = false, json = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("REPO", o->repo, "repository")->required();
  cmd->add_option("GROUP", o->group, "group")->required();
  cmd->add_option("--keep-last", o->policy.keep_last,
                  "keep the N newest checkpoints")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option(
         "--keep-hourly", o->policy.keep_hourly,
         "keep the newest checkpoint of each of the last N hours that have one")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--keep-daily", o->policy.keep_daily,
                  "... of the last N days")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--keep-weekly", o->policy.keep_weekly,
                  "... of the last N ISO weeks")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--keep-monthly", o->policy.keep_monthly,
                  "... of the last N months")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--dry-run", o->dry_run,
                "print what would be kept and dropped; change nothing");
  cmd->add_flag("--json", o->json, "print the result as JSON");
  return [o]() -> int {
    if (o->policy.empty()) {
      spdlog::error(
          "prune: give at least one of --keep-last, --keep-hourly, "
          "--keep-daily, "
          "--keep-weekly, --keep-monthly");
      return 2;
    }
    ConsolidateOptions opts;
    opts.group = o->group;
    opts.policy = o->policy;
    opts.dry_run = o->dry_run;
    return RunConsolidation("prune", o->repo, opts, o->json);
  };
}

}  // namespace chainfs
