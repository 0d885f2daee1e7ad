// MountOptions: the `-o` options of `chainfs mount`, parsed in one place.
//
// Options come from the command line (`-o a,b -o c`), from mount(8) through
// the mount.chainfs helper, or from an /etc/fstab line, so the parser accepts
// three kinds:
//
//   ours         uid=, gid=, umask=, log=PATH, direct_io, and the block
//                cache's cache_size=, readahead_min=, readahead_max=,
//                readahead_threads=, kernel_readahead=
//   kernel       passed on to libfuse / the kernel: allow_other, allow_root,
//                auto_unmount, fsname=, subtype=, nodev, nosuid, noexec, ...
//   mount(8)     fstab bookkeeping with no meaning for the filesystem:
//                defaults, auto, noauto, user, users, nouser, nofail,
//                _netdev, rw, ro, relatime & co., x-*, comment=  (ignored)
//
// Anything else is refused with a message naming it (exit 2). The mount is
// always read-only ("ro" is always passed) and always uses the kernel's
// permission checks (default_permissions) against the mode bits below.
//
//   Result<MountOptions> o = MountOptions::Parse({"allow_other,umask=022"});
//   o->FileMode();  // 0444
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "chain/base/status.h"

namespace chainfs {

struct MountOptions {
  std::optional<uid_t> uid;  // owner of every node; default: the mounting user
  std::optional<gid_t> gid;  // group of every node; default: the mounting group
  // Bits removed from 0555 (dirs) and 0444 (files). Default 0077: only the
  // owner may read, because backups hold secrets.
  mode_t umask = 0077;
  std::string log_path;  // spdlog file sink; empty: stderr (foreground only)
  // Block cache and readahead (cache/block_cache.h, cache/readahead.h).
  uint64_t cache_size = 256ull << 20;        // cache_size=SIZE; 0: no caching
  uint64_t readahead_min = 256ull << 10;     // readahead_min=SIZE
  uint64_t readahead_max = 16ull << 20;      // readahead_max=SIZE
  unsigned readahead_threads = 2;            // readahead_threads=N; 0: off
  // The kernel's page-cache readahead for this mount (fusefs/kernel_readahead.h);
  // kernel_readahead=SIZE, 0: the kernel's default (128K).
  uint64_t kernel_readahead = 1ull << 20;
  // direct_io: disk views bypass the kernel's page cache (FOPEN_DIRECT_IO):
  // every read reaches the daemon and is answered from the block cache, and
  // views advertise kDirectIoBlksize as their preferred I/O size (st_blksize,
  // what cat sizes its reads by). Faster for whole-disk reads in large
  // pieces (dd bs=1M, cat); slower under a loop mount or cp, whose smaller
  // reads each make a round trip where the page cache's readahead batched
  // them; re-reads beyond cache_size decode again; MAP_SHARED mmap of a view
  // fails (ENODEV). README, "Streaming a whole disk out".
  bool direct_io = false;
  // Stored raw bytes (a qcow2 image's uncompressed clusters, an uncompressed
  // virtnbdbackup stream) are spliced from their file's page cache into the
  // reply, not copied through the daemon (fusefs/driver/splice_reply.h);
  // nosplice copies them as other bytes are.
  bool splice = true;
  static constexpr uint64_t kDirectIoBlksize = 1ull << 20;
  bool allow_other = false;
  std::string fsname;   // default "chainfs:REPO" (set by the caller)
  std::string subtype = "chainfs";
  // Kernel/libfuse options passed through unchanged (after allow_other).
  std::vector<std::string> kernel;

  // Parses a list of comma-separated option strings (each `-o` argument).
  // Fails with kInvalidArgument naming the first bad option.
  static Result<MountOptions> Parse(const std::vector<std::string>& args);

  mode_t FileMode() const { return 0444 & ~umask; }
  mode_t DirMode() const { return 0555 & ~umask; }

  // The option string for libfuse's "-o": always ro and default_permissions,
  // then fsname, subtype, allow_other and the kernel pass-through options.
  std::string FuseOptionString() const;

  // Help text listing every option, for `chainfs mount --help`.
  static const char* Help();
};

}  // namespace chainfs
