#include "fusefs/cli/commands.h"

#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cmath>

#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "chain/ingest/backup.h"
#include "chain/ingest/libvirt_backup.h"
#include "chain/repo/check.h"
#include "chain/native/delta_format.h"
#include "chain/repo/export.h"
#include "chain/base/progress.h"
#include "chain/base/worker_pool.h"
#include "chain/repo/repository.h"
#include "chain/base/stop_signals.h"

namespace chainfs {

using nlohmann::json;

bool ParseSize(const std::string& text, uint64_t* out) {
  uint64_t v = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || p == text.data()) return false;
  const std::string unit(p, end);
  int shift = 0;
  if (unit.empty() || unit == "B") shift = 0;
  else if (unit == "K" || unit == "KiB" || unit == "k") shift = 10;
  else if (unit == "M" || unit == "MiB") shift = 20;
  else if (unit == "G" || unit == "GiB") shift = 30;
  else return false;
  if (v > (UINT64_MAX >> shift)) return false;  // would wrap
  *out = v << shift;
  return true;
}

namespace {

int Fail(const char* cmd, const Status& st) {
  spdlog::error("{}: {}", cmd, st.message());
  // Usage-like mistakes (bad names, bad options) are still failures (1): the
  // command line parsed; the request was refused.
  return 1;
}

Result<std::unique_ptr<Repository>> OpenRepo(const std::string& path) {
  return Repository::Open(path);
}

}  // namespace

Action AddInitCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("init", "Create an empty repository");
  struct Opts {
    std::string repo, block_size = "64K", compression = "zstd:3";
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("REPO", o->repo, "repository directory (created, or empty)")->required();
  cmd->add_option("--block-size", o->block_size,
                  "unit of change tracking: power of two, 4K to 4M (default 64K, QEMU's "
                  "dirty-bitmap granularity)");
  cmd->add_option("--compression", o->compression, "zstd[:LEVEL] (default zstd:3) or none");
  return [o]() -> int {
    RepoConfig cfg;
    uint64_t bs = 0;
    if (!ParseSize(o->block_size, &bs) || !IsValidBlockSize(bs)) {
      spdlog::error("init: --block-size {}: must be a power of two from 4K to 4M",
                    o->block_size);
      return 2;
    }
    cfg.block_size = static_cast<uint32_t>(bs);
    if (o->compression == "none") {
      cfg.compression = "none";
      cfg.compression_level = 0;
    } else if (o->compression.rfind("zstd", 0) == 0) {
      cfg.compression = "zstd";
      if (o->compression.size() > 4) {
        if (o->compression[4] != ':') {
          spdlog::error("init: --compression {}: expected zstd[:LEVEL] or none", o->compression);
          return 2;
        }
        const std::string level = o->compression.substr(5);
        auto [p, ec] = std::from_chars(level.data(), level.data() + level.size(),
                                       cfg.compression_level);
        if (ec != std::errc() || p != level.data() + level.size() || level.empty()) {
          spdlog::error("init: --compression {}: LEVEL must be a number", o->compression);
          return 2;
        }
        if (cfg.compression_level < 1 || cfg.compression_level > 19) {
          spdlog::error("init: --compression {}: LEVEL must be 1 to 19", o->compression);
          return 2;
        }
      }
    } else {
      spdlog::error("init: --compression {}: expected zstd[:LEVEL] or none", o->compression);
      return 2;
    }
    Status st = Repository::Init(o->repo, cfg);
    if (!st.ok()) return Fail("init", st);
    std::cout << "initialized repository " << o->repo << " (block size " << cfg.block_size
              << ", compression " << cfg.compression << ")\n";
    return 0;
  };
}

Action AddBackupCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("backup", "Back up disks into a new checkpoint");
  struct Opts {
    std::string repo, group, checkpoint, since, config, domain, connect;
    std::vector<std::string> disks, dirty, bitmaps, exclude;
    bool full = false, json = false;
    unsigned threads = 0;
    double nbd_timeout = std::chrono::duration<double>(kDefaultNbdTimeout).count();
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("REPO", o->repo, "repository")->required();
  cmd->add_option("GROUP", o->group, "group (usually one VM)")->required();
  cmd->add_option("CHECKPOINT", o->checkpoint, "name of the new checkpoint")->required();
  cmd->add_option("--disk", o->disks,
                  "NAME=SOURCE: a raw image file or block device, a QEMU image (qcow2, ...: "
                  "served by a qemu-nbd of our own), or an NBD URI (nbd://HOST[:PORT]/EXPORT, "
                  "nbd+unix:///EXPORT?socket=PATH, nbds://...)");
  cmd->add_option("--domain", o->domain,
                  "back up this libvirt domain (name or UUID): all its disks, through a "
                  "pull-mode backup job with a libvirt checkpoint (instead of --disk)");
  cmd->add_option("--connect", o->connect,
                  "with --domain: libvirt connection URI (default: libvirt's default, "
                  "e.g. qemu:///system)");
  cmd->add_option("--exclude", o->exclude, "with --domain: do not back up this disk (vdb, ...)");
  cmd->add_flag("--full", o->full, "store every disk in full");
  cmd->add_option("--since", o->since, "differential: base on this older checkpoint");
  cmd->add_option("--dirty", o->dirty,
                  "NAME=MAP.json: read only the extents dirty in this map "
                  "(nbdinfo --json --map=qemu:dirty-bitmap:BITMAP)");
  cmd->add_option("--bitmap", o->bitmaps,
                  "NAME=BITMAP: read only the blocks dirty in the QEMU dirty bitmap BITMAP "
                  "(meta context qemu:dirty-bitmap:BITMAP) of that disk's NBD or image source");
  cmd->add_option("--config", o->config, "VM config to keep with the checkpoint (domain XML)");
  cmd->add_option("--threads", o->threads, "compression threads, 1 to 256 (default: one per core)")
      ->check(CLI::Range(1u, WorkerPool::kMaxThreads));
  cmd->add_option("--nbd-timeout", o->nbd_timeout,
                  "SECONDS an NBD server (or the qemu-nbd of a QEMU image, or a --domain's "
                  "backup job) may leave the backup without an answer before it fails; "
                  "0 waits for ever (default 300)")
      ->check(CLI::Range(0.0, 7 * 86400.0));
  cmd->add_flag("--json", o->json, "print the result as JSON");
  cmd->footer(R"(Examples:
  # raw files or block devices; the incremental compares every block by hash
  chainfs backup /backup/repo vm1 mon --disk vda=/dev/vg/vm1-root --config vm1.xml
  chainfs backup /backup/repo vm1 tue --disk vda=/dev/vg/vm1-root

  # a qcow2 image of a shut-off VM (chainfs starts qemu-nbd on it itself),
  # reading only what its persistent bitmap since-mon marks dirty
  chainfs backup /backup/repo vm1 tue --disk vda=vm1.qcow2 --bitmap vda=since-mon

  # qemu-nbd exporting the image and its bitmap
  qemu-nbd -r -f qcow2 -B since-mon --socket=/run/vm1.sock vm1.qcow2 &
  chainfs backup /backup/repo vm1 tue --disk vda='nbd+unix:///?socket=/run/vm1.sock' \
                 --bitmap vda=since-mon

  # two disks from one qemu-storage-daemon socket (exports vda, vdb; bitmaps.0=inc)
  chainfs backup /backup/repo vm1 tue \
    --disk vda='nbd+unix:///vda?socket=/run/vm1.sock' --bitmap vda=inc \
    --disk vdb='nbd+unix:///vdb?socket=/run/vm1.sock' --bitmap vdb=inc

  # a running (or shut-off) libvirt domain, all its disks in one consistent
  # checkpoint; incremental on the previous one, first run full
  chainfs backup /backup/repo vm1 tue --domain vm1
  chainfs backup /backup/repo vm1 wed --domain vm1 --connect qemu:///system --exclude vdc

  # libvirt pull mode by hand: backup.xml is <domainbackup mode='pull'> with
  # <incremental>mon</incremental>, <server transport='unix'
  # socket='/run/vm1-backup.sock'/> and <disk name='vda' backup='yes'
  # exportname='vda' exportbitmap='changed-vda'>; see the README
  virsh backup-begin vm1 backup.xml checkpoint.xml
  chainfs backup /backup/repo vm1 tue \
    --disk vda='nbd+unix:///vda?socket=/run/vm1-backup.sock' --bitmap vda=changed-vda
  virsh domjobabort vm1)");
  return [o]() -> int {
    BackupOptions opts;
    opts.group = o->group;
    opts.checkpoint = o->checkpoint;
    opts.full = o->full;
    opts.since = o->since;
    opts.config_path = o->config;
    opts.threads = o->threads;
    opts.nbd_timeout = std::chrono::milliseconds(std::llround(o->nbd_timeout * 1000));
    if (o->nbd_timeout > 0) opts.nbd_timeout = std::max(opts.nbd_timeout, std::chrono::milliseconds{1});
    for (const auto& d : o->disks) {
      auto eq = d.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == d.size()) {
        spdlog::error("backup: --disk {}: expected NAME=SOURCE", d);
        return 2;
      }
      opts.disks.push_back({d.substr(0, eq), d.substr(eq + 1), "", nullptr, ""});
    }
    // --dirty NAME=MAP.json and --bitmap NAME=BITMAP attach to a --disk.
    auto attach = [&](const std::vector<std::string>& given, const char* flag, const char* what,
                      std::string DiskSource::*field) {
      for (const auto& m : given) {
        auto eq = m.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == m.size()) {
          spdlog::error("backup: {} {}: expected NAME={}", flag, m, what);
          return false;
        }
        std::string name = m.substr(0, eq);
        bool found = false;
        for (auto& d : opts.disks)
          if (d.disk == name) {
            d.*field = m.substr(eq + 1);
            found = true;
          }
        if (!found) {
          spdlog::error("backup: {} {}: no --disk named {}", flag, m, name);
          return false;
        }
      }
      return true;
    };
    if (!attach(o->dirty, "--dirty", "MAP.json", &DiskSource::dirty_map) ||
        !attach(o->bitmaps, "--bitmap", "BITMAP", &DiskSource::bitmap))
      return 2;
    if (o->domain.empty() == o->disks.empty()) {
      spdlog::error("backup: give either --disk NAME=SOURCE (one or more) or --domain DOMAIN");
      return 2;
    }
    if (o->domain.empty() && (!o->connect.empty() || !o->exclude.empty())) {
      spdlog::error("backup: --connect and --exclude go with --domain");
      return 2;
    }
    if (o->json) Progress::SetEnabled(false);
    auto repo = OpenRepo(o->repo);
    if (!repo.ok()) return Fail("backup", repo.status());
    // SIGINT/SIGTERM: the backup removes what it wrote (and a libvirt
    // backup ends its job and deletes its checkpoint), then dies of it.
    StopSignals stop;
    opts.stop = &stop.flag();
    std::optional<DomainBackupReport> domain;
    Result<BackupReport> r = Status::Ok();
    if (!o->domain.empty()) {
      auto d = BackupDomain(*repo.value(), opts, {o->connect, o->domain, o->exclude, ""});
      if (d.ok()) {
        domain = std::move(d).value();
        r = domain->backup;
      } else {
        r = d.status();
      }
    } else {
      r = Backup(*repo.value(), opts);
    }
    if (!r.ok() && stop.received() != 0) {
      Fail("backup", r.status());
      stop.Reraise();
    }
    if (!r.ok()) return Fail("backup", r.status());
    const BackupReport& rep = r.value();
    if (o->json) {
      json j = {{"group", opts.group},
                {"checkpoint", opts.checkpoint},
                {"parent", rep.checkpoint.parent},
                {"seconds", rep.seconds},
                {"leftovers_removed", rep.leftovers_removed},
                {"disks", json::array()}};
      for (const auto& d : rep.disks)
        j["disks"].push_back({{"name", d.disk},
                              {"kind", DeltaKindName(d.kind)},
                              {"base", d.base},
                              {"added_later", d.added_later},
                              {"virtual_size", d.virtual_size},
                              {"blocks_read", d.blocks_read},
                              {"blocks_stored", d.blocks_stored},
                              {"blocks_zeroed", d.blocks_zeroed},
                              {"stored_bytes", d.stored_bytes}});
      if (domain) {
        j["domain"] = domain->domain;
        j["offline"] = domain->offline;
        j["libvirt_checkpoint"] = domain->libvirt_checkpoint;
        j["skipped"] = json::array();
        for (const auto& [disk, why] : domain->skipped)
          j["skipped"].push_back({{"disk", disk}, {"why", why}});
        j["notes"] = domain->notes;
      }
      std::cout << j.dump(2) << "\n";
      return 0;
    }
    std::cout << "checkpoint " << opts.group << "/" << opts.checkpoint << " committed in "
              << rep.seconds << " s\n";
    if (domain) {
      std::cout << "  domain " << domain->domain
                << (domain->offline ? " (shut off: read from its images)" : "")
                << ", libvirt checkpoint "
                << (domain->libvirt_checkpoint.empty() ? "(none)" : domain->libvirt_checkpoint)
                << "\n";
      for (const auto& [disk, why] : domain->skipped)
        std::cout << "  " << disk << ": skipped, " << why << "\n";
      for (const auto& n : domain->notes) std::cout << "  note: " << n << "\n";
    }
    for (const auto& d : rep.disks) {
      std::cout << "  " << d.disk << ": " << DeltaKindName(d.kind);
      if (!d.base.empty()) std::cout << " (base " << d.base << ")";
      if (d.added_later) std::cout << " [new disk: no earlier backup, stored full]";
      std::cout << ", " << d.virtual_size << " bytes, " << d.blocks_read << " blocks read, "
                << d.blocks_stored << " stored, " << d.blocks_zeroed << " zeroed, "
                << d.stored_bytes << " bytes written\n";
    }
    return 0;
  };
}

Action AddListCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("list", "List groups and checkpoints");
  struct Opts {
    std::string repo, group;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("REPO", o->repo, kSourceHelp)->required();
  cmd->add_option("GROUP", o->group, "only this group");
  cmd->add_flag("--json", o->json, "print as JSON");
  return [o]() -> int {
    auto repo = OpenRepo(o->repo);
    if (!repo.ok()) return Fail("list", repo.status());
    std::vector<std::string> groups;
    if (!o->group.empty()) {
      groups.push_back(o->group);
    } else {
      auto gs = repo.value()->ListGroups();
      if (!gs.ok()) return Fail("list", gs.status());
      groups = gs.value();
    }
    json out = json::array();
    bool any_refused = false;
    for (const auto& gname : groups) {
      auto g = repo.value()->LoadGroup(gname);
      if (!g.ok()) return Fail("list", g.status());
      json jg = {{"group", gname}, {"checkpoints", json::array()}};
      if (!o->json) std::cout << "group " << gname << "\n";
      for (const auto& cp : g->checkpoints) {
        json jc = {{"name", cp.name},
                   {"created", FormatTime(cp.created_unix_ns)},
                   {"parent", cp.parent},
                   {"disks", json::array()}};
        if (!cp.configs.empty()) jc["config"] = cp.configs[0].name;
        for (const auto& c : cp.configs) jc["configs"].push_back(c.name);
        if (cp.libvirt)
          jc["libvirt"] = {{"uri", cp.libvirt->uri},
                           {"domain", cp.libvirt->domain},
                           {"checkpoint", cp.libvirt->checkpoint}};
        if (!o->json)
          std::cout << "  " << cp.name << "  " << FormatTime(cp.created_unix_ns)
                    << (cp.parent.empty() ? "" : "  parent " + cp.parent) << "\n";
        for (const auto& d : cp.disks) {
          jc["disks"].push_back({{"name", d.name},
                                 {"kind", DeltaKindName(d.kind)},
                                 {"base", d.base},
                                 {"virtual_size", d.virtual_size},
                                 {"stored_bytes", d.stored_bytes}});
          if (!o->json)
            std::cout << "    " << d.name << "  " << DeltaKindName(d.kind)
                      << (d.base.empty() ? "" : " (base " + d.base + ")") << "  size "
                      << d.virtual_size << "  stored " << d.stored_bytes << "\n";
        }
        jg["checkpoints"].push_back(jc);
      }
      // Refused manifests hide only their checkpoint (and views needing it).
      jg["refused"] = json::array();
      any_refused = any_refused || !g->refused.empty();
      for (const RefusedCheckpoint& r : g->refused) {
        spdlog::warn("list: checkpoint {}/{} not shown: its {} is refused: {}", gname, r.name,
                     r.what, r.reason);
        jg["refused"].push_back({{"name", r.name}, {"file", r.file}, {"reason", r.reason}});
      }
      out.push_back(jg);
    }
    if (o->json) std::cout << out.dump(2) << "\n";
    return any_refused ? 1 : 0;  // the rest is listed; the refusal is a failure
  };
}

Action AddExportCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("export", "Write a checkpoint's disk as a raw image");
  struct Opts {
    std::string repo, group, checkpoint, disk, output, mode = "0600";
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("REPO", o->repo, kSourceHelp)->required();
  cmd->add_option("GROUP", o->group, "group")->required();
  cmd->add_option("CHECKPOINT", o->checkpoint, "checkpoint")->required();
  cmd->add_option("DISK", o->disk, "disk")->required();
  cmd->add_option("OUTPUT", o->output,
                  "output file (sparse), block or character device, FIFO, or - for stdout")
      ->required();
  cmd->add_option("--mode", o->mode, "permissions of a new output file, octal (default 0600)");
  cmd->add_flag("--json", o->json, "print the result as JSON");
  return [o]() -> int {
    if (o->json || o->output == "-") Progress::SetEnabled(false);
    ExportOptions options;
    size_t used = 0;
    unsigned long mode = 0;
    try {
      mode = std::stoul(o->mode, &used, 8);
    } catch (...) {
      used = 0;
    }
    if (used == 0 || used != o->mode.size() || mode > 07777)
      return Fail("export", Status::InvalidArgument("--mode " + o->mode +
                                                    ": expected octal permissions like 0640"));
    options.permissions = static_cast<uint32_t>(mode);
    auto repo = OpenRepo(o->repo);
    if (!repo.ok()) return Fail("export", repo.status());
    auto view = repo.value()->OpenView(o->group, o->checkpoint, o->disk);
    if (!view.ok()) return Fail("export", view.status());
    // OUTPUT is outside the repository: the plain Env, not the repository's.
    StopSignals stop;
    options.stop = &stop.flag();
    auto r = ExportView(Env::Default(), *view.value(), o->output, options);
    if (!r.ok() && stop.received() != 0) {
      Fail("export", r.status());
      stop.Reraise();
    }
    if (!r.ok()) return Fail("export", r.status());
    if (o->json)
      std::cout << json({{"bytes", r->bytes}, {"data_bytes", r->data_bytes},
                         {"seconds", r->seconds}})
                       .dump(2)
                << "\n";
    else if (o->output != "-")
      std::cout << "exported " << view.value()->label() << " to " << o->output << ": "
                << r->bytes << " bytes (" << r->data_bytes << " data) in " << r->seconds
                << " s\n";
    return 0;
  };
}

Action AddCheckCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("check", "Verify a repository's structure (and blocks)");
  struct Opts {
    std::string repo, group, checkpoint;
    bool deep = false, json = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("REPO", o->repo, kSourceHelp)->required();
  cmd->add_option("GROUP", o->group, "only this group");
  cmd->add_option("CHECKPOINT", o->checkpoint, "only this checkpoint");
  cmd->add_flag("--deep", o->deep, "also read and verify every stored block");
  cmd->add_flag("--json", o->json, "print the report as JSON");
  return [o]() -> int {
    if (o->json) Progress::SetEnabled(false);
    auto repo = OpenRepo(o->repo);
    if (!repo.ok()) return Fail("check", repo.status());
    auto r = Check(*repo.value(), o->group, o->checkpoint, o->deep);
    if (!r.ok()) return Fail("check", r.status());
    const CheckReport& rep = r.value();
    if (o->json) {
      json j = {{"ok", rep.problems.empty()},      {"groups", rep.groups},
                {"checkpoints", rep.checkpoints},  {"deltas", rep.deltas},
                {"blocks_verified", rep.blocks_verified}, {"problems", json::array()},
                {"notices", json::array()}};
      for (const auto& [key, list] : {std::pair{"problems", &rep.problems},
                                      std::pair{"notices", &rep.notices}})
        for (const auto& p : *list)
          j[key].push_back({{"group", p.group},
                            {"checkpoint", p.checkpoint},
                            {"disk", p.disk},
                            {"file", p.file},
                            {"offset", p.offset},
                            {"message", p.message}});
      std::cout << j.dump(2) << "\n";
    } else {
      for (const auto& [tag, list] : {std::pair{"NOTICE ", &rep.notices},
                                      std::pair{"PROBLEM ", &rep.problems}})
        for (const auto& p : *list) {
          std::cout << tag << p.group;
          if (!p.checkpoint.empty()) std::cout << "/" << p.checkpoint;
          if (!p.disk.empty()) std::cout << "/" << p.disk;
          if (p.offset >= 0) std::cout << " offset " << p.offset;
          std::cout << ": " << p.message << "\n";
        }
      std::cout << (rep.problems.empty() ? "OK" : "FAILED") << ": " << rep.groups
                << " group(s), " << rep.checkpoints << " checkpoint(s), " << rep.deltas
                << " delta file(s)";
      if (o->deep) std::cout << ", " << rep.blocks_verified << " block(s) verified";
      std::cout << ", " << rep.problems.size() << " problem(s)";
      if (!rep.notices.empty()) std::cout << ", " << rep.notices.size() << " unbound delta(s)";
      std::cout << "\n";
    }
    return rep.problems.empty() ? 0 : 1;
  };
}

}  // namespace chainfs
