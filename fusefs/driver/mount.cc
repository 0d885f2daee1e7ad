#include "fusefs/driver/mount.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <csignal>
#include <memory>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>

#include "chain/base/file_cache.h"
#include "fusefs/driver/kernel_readahead.h"
#include "fusefs/driver/repository_fs.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

namespace chainfs {

namespace {

constexpr unsigned kMaxThreads = 8;
constexpr unsigned kIdleThreads = 8;  // = kMaxThreads: no thread churn under load

Result<std::string> RealPath(const std::string& path, const std::string& what) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) return Status::FromErrno(errno, what + " " + path);
  return std::string(buf);
}

// Everything that can fail before mounting. Returns the repository.
Result<std::unique_ptr<Repository>> Validate(const MountRequest& r, std::string* mountpoint) {
  CHAINFS_ASSIGN_OR_RETURN(std::string repo_path, RealPath(r.repo, "repository"));
  CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<Repository> repo, Repository::Open(repo_path));
  // The groups directory must list; the groups' manifests are read when
  // first looked up, not here (a host with 1,000 groups mounts at once).
  CHAINFS_RETURN_IF_ERROR(repo->ListGroups().status());
  CHAINFS_ASSIGN_OR_RETURN(*mountpoint, RealPath(r.mountpoint, "mountpoint"));
  struct stat st;
  if (::stat(mountpoint->c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return Status::InvalidArgument("mountpoint " + *mountpoint + " is not a directory");
  return repo;
}

// Replaces the default logger's sinks with an appending file sink.
Status LogToFile(const std::string& path) {
  try {
    auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path);
    auto logger = std::make_shared<spdlog::logger>("chainfs", sink);
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l [%t] %v");
    logger->set_level(spdlog::get_level());
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(logger);
  } catch (const spdlog::spdlog_ex& e) {
    return Status::InvalidArgument("log=" + path + ": " + e.what());
  }
  return Status::Ok();
}

void SetIoFlusher() {
  // A loop device served from this process must not wait on writeback
  // that waits on this process.
  if (::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0)
    spdlog::debug("PR_SET_IO_FLUSHER not set: {}", std::strerror(errno));
  else
    spdlog::debug("PR_SET_IO_FLUSHER set");
}

// Serves until unmounted; returns the loop's result.
int Serve(fuse_session* se) {
  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(cfg, kMaxThreads);
  fuse_loop_cfg_set_idle_threads(cfg, kIdleThreads);
  fuse_loop_cfg_set_clone_fd(cfg, 0);
  int rc = fuse_session_loop_mt(se, cfg);
  fuse_loop_cfg_destroy(cfg);
  return rc;
}

}  // namespace

int RunMount(const MountRequest& r) {
  auto options = MountOptions::Parse(r.options);
  if (!options.ok()) {
    spdlog::error("mount: {}", options.status().message());
    return 2;
  }
  std::string mountpoint;
  auto repo = Validate(r, &mountpoint);
  if (!repo.ok()) {
    spdlog::error("mount: {}", repo.status().message());
    return 1;
  }
  if (options->fsname.empty()) options->fsname = "chainfs:" + repo.value()->path();
  if (!options->log_path.empty()) {
    Status st = LogToFile(options->log_path);
    if (!st.ok()) {
      spdlog::error("mount: {}", st.message());
      return 1;
    }
  }
  const bool foreground = r.foreground || r.debug;
  const std::string fuse_opts = options->FuseOptionString();
  std::vector<const char*> argv = {"chainfs", "-o", fuse_opts.c_str()};
  if (r.debug) argv.push_back("-d");
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), const_cast<char**>(argv.data()));
  RepositoryFs fs(std::move(repo).value(), options.value());
  const fuse_lowlevel_ops& ops = RepositoryFs::Ops();
  fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, &fs);
  fuse_opt_free_args(&args);
  if (se == nullptr) {
    spdlog::error("mount: cannot start a FUSE session (options {})", fuse_opts);
    return 1;
  }
  int rc = 1;
  if (fuse_set_signal_handlers(se) == 0) {
    if (fuse_session_mount(se, mountpoint.c_str()) == 0) {
      spdlog::debug("mounted {} on {}", fs.repository().path(), mountpoint);
      if (auto bdi = BdiOfMount(mountpoint); bdi.ok())
        fs.SetBdi(bdi.value());
      else
        spdlog::info("kernel readahead left at the kernel's default: {}", bdi.status().message());
      if (fuse_daemonize(foreground ? 1 : 0) == 0) {
        SetIoFlusher();  // before Start: threads inherit the flag
        // The fork left a table sized to the descriptors open then; grown
        // before Start's threads, as the CLI's (chain/base/file_cache.h).
        if (auto table = ReserveDescriptorTable(DescriptorsToReserve()); !table.ok())
          spdlog::debug("descriptor table not grown: {}", table.status().ToString());
        fs.Start();
        // libfuse ends the loop with the signal's number after SIGTERM,
        // SIGINT or SIGHUP: a requested stop, not a failure.
        const int loop = Serve(se);
        rc = loop == 0 || loop == SIGTERM || loop == SIGINT || loop == SIGHUP ? 0 : 1;
      }
      fuse_session_unmount(se);
      spdlog::debug("unmounted {}", mountpoint);
    } else {
      spdlog::error("mount: cannot mount on {}", mountpoint);
    }
    fuse_remove_signal_handlers(se);
  }
  fuse_session_destroy(se);
  return rc;
}

Action AddMountCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "mount",
      "Mount a repository read-only: MOUNTPOINT/GROUP/CHECKPOINT/DISK.raw for every "
      "checkpoint, plus checkpoint.json, the VM config and GROUP/latest");
  cmd->footer(MountOptions::Help());
  auto r = std::make_shared<MountRequest>();
  cmd->add_option("REPO", r->repo, kSourceHelp)->required();
  cmd->add_option("MOUNTPOINT", r->mountpoint, "an existing directory")->required();
  cmd->add_flag("-f,--foreground", r->foreground, "stay in the foreground (default: daemonize)");
  cmd->add_flag("-d,--debug", r->debug, "trace FUSE requests on stderr (implies -f)");
  cmd->add_option("-o", r->options, "mount options, comma-separated (see below)");
  return [r]() -> int {
    if (r->debug) spdlog::set_level(spdlog::level::debug);
    return RunMount(*r);
  };
}

}  // namespace chainfs
