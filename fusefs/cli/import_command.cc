#include "fusefs/cli/import_command.h"

#include <spdlog/spdlog.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "chain/base/progress.h"
#include "chain/base/stop_signals.h"
#include "chain/base/worker_pool.h"
#include "chain/ingest/import.h"

namespace chainfs {

using nlohmann::json;

Action AddImportCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "import", "Copy every checkpoint of a virtnbdbackup directory into a repository");
  struct Opts {
    std::string source, repo, group, from;
    unsigned threads = 0;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("SOURCE", o->source,
                  "a virtnbdbackup output directory (or a directory of them)")
      ->required();
  cmd->add_option("REPO", o->repo, "chainfs repository to import into ('chainfs init' first)")
      ->required();
  cmd->add_option("--group", o->group,
                  "group to create in REPO (default: the domain's name); with a directory of "
                  "several domains, give --from too");
  cmd->add_option("--from", o->from, "the source group (domain) to import, when SOURCE has several");
  cmd->add_option("--threads", o->threads, "compression threads, 1 to 256 (default: one per core)")
      ->check(CLI::Range(1u, WorkerPool::kMaxThreads));
  cmd->add_flag("--json", o->json, "print the result as JSON");
  cmd->footer(R"(Each checkpoint becomes one chainfs checkpoint of the same name, committed
atomically and read back against the source as it goes; the data is stored
with the repository's compression (zstd). Run it again after an interruption
(or after virtnbdbackup added incrementals): what is already imported is
skipped.

Example:
  chainfs init /backup/repo
  chainfs import /backup/vnb/vm1 /backup/repo
  chainfs mount /backup/repo /mnt/backups)");
  return [o]() -> int {
    if (o->json) Progress::SetEnabled(false);
    auto src = Repository::Open(o->source);
    if (!src.ok()) {
      spdlog::error("import: {}", src.status().message());
      return 1;
    }
    if (src.value()->foreign() == nullptr) {
      spdlog::error("import: {} is a chainfs repository already; import reads virtnbdbackup "
                    "directories", o->source);
      return 1;
    }
    auto dst = Repository::Open(o->repo);
    if (!dst.ok()) {
      spdlog::error("import: {}", dst.status().message());
      return 1;
    }
    std::vector<std::string> groups;
    if (!o->from.empty()) {
      groups.push_back(o->from);
    } else {
      auto gs = src.value()->ListGroups();
      if (!gs.ok()) {
        spdlog::error("import: {}", gs.status().message());
        return 1;
      }
      groups = gs.value();
    }
    if (groups.size() > 1 && !o->group.empty()) {
      spdlog::error("import: {} holds {} domains; --group names one: give --from DOMAIN too",
                    o->source, groups.size());
      return 2;
    }
    StopSignals stop;
    json out = json::array();
    int rc = 0;
    for (const std::string& g : groups) {
      ImportOptions opts{g, o->group, o->threads, &stop.flag()};
      auto r = Import(*src.value(), *dst.value(), opts);
      if (!r.ok() && stop.received() != 0) {
        spdlog::error("import: {}", r.status().message());
        stop.Reraise();
      }
      if (!r.ok()) {
        spdlog::error("import of {}: {}", g, r.status().message());
        out.push_back({{"group", g}, {"error", r.status().message()}});
        rc = 1;
        continue;
      }
      json jg = {{"group", r->group}, {"to_group", r->to_group}, {"checkpoints", json::array()}};
      if (!o->json) std::cout << "group " << r->group << " -> " << r->to_group << "\n";
      for (const ImportedCheckpoint& c : r->checkpoints) {
        jg["checkpoints"].push_back({{"name", c.name},
                                     {"skipped", c.skipped},
                                     {"bytes_read", c.bytes_read},
                                     {"bytes_verified", c.bytes_verified},
                                     {"stored_bytes", c.stored_bytes},
                                     {"seconds", c.seconds}});
        if (!o->json) {
          if (c.skipped)
            std::cout << "  " << c.name << ": already imported\n";
          else
            std::cout << "  " << c.name << ": imported, " << c.bytes_read << " bytes read, "
                      << c.stored_bytes << " stored, " << c.bytes_verified
                      << " verified, in " << c.seconds << " s\n";
        }
      }
      out.push_back(jg);
    }
    if (o->json) std::cout << out.dump(2) << "\n";
    return rc;
  };
}

}  // namespace chainfs
