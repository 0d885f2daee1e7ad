// `chainfs mount REPO MOUNTPOINT [-f] [-d] [-o OPTIONS]`: serve a repository
// as a read-only FUSE filesystem (see fusefs/repository_fs.h for the tree).
//
// Order of events, so that a bad request leaves nothing behind:
//   1. parse options (unknown option: exit 2)
//   2. open and validate the repository, check the mountpoint, open the log
//      file (any failure: exit 1, nothing mounted)
//   3. mount, then daemonize unless -f/-d (the parent exits 0 once mounted)
//   4. PR_SET_IO_FLUSHER, serve on a multi-threaded loop until unmounted
//      (umount, fusermount3 -u, SIGTERM/SIGINT/SIGHUP), exit 0.
#pragma once

#include <string>
#include <vector>

#include "fusefs/cli/commands.h"

namespace chainfs {

struct MountRequest {
  std::string repo;
  std::string mountpoint;
  bool foreground = false;
  bool debug = false;                // libfuse request tracing; implies foreground
  std::vector<std::string> options;  // each -o argument
};

// Runs the mount; returns the exit code (0 after a clean unmount).
int RunMount(const MountRequest& request);

Action AddMountCommand(CLI::App& app);

}  // namespace chainfs
