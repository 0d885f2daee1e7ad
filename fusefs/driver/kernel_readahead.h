// Kernel readahead of a FUSE mount: the read_ahead_kb of its backing device
// info (/sys/class/bdi/MAJ:MIN), which sizes the page-cache readahead the
// kernel sends to the daemon as FUSE_READ requests.
//
// The kernel starts every FUSE mount at 128 KiB and lets the daemon only
// lower it in FUSE_INIT, so a sequential reader (cat, dd, qemu-img convert, a
// loop device) sees requests of at most 128 KiB with about one in flight.
// Raising it lets the kernel queue more and larger requests, so decoding in
// the daemon overlaps the reader's own copying: about 20% more throughput on
// a fresh mount's sequential read (docs/ARCHITECTURE.md). Only root may write
// sysfs; for others the kernel's default stays and this is logged once.
//
// Set it after FUSE_INIT was answered (the INIT reply would take it back down
// to what the kernel offered): the mount does it at the first open of a disk.
//
//   auto bdi = BdiOfMount("/mnt/backup");          // "/sys/class/bdi/0:52"
//   Status st = SetReadAheadKb(*bdi, 1 << 20);     // writes "1024"
#pragma once

#include <cstdint>
#include <string>

#include "chain/base/status.h"

namespace chainfs {

// The sysfs directory of the bdi of the newest mount on `mountpoint` (an
// absolute path without symlinks), from /proc/self/mountinfo, or `mountinfo`
// (its text) for tests. kNotFound if nothing is mounted there.
Result<std::string> BdiOfMount(const std::string& mountpoint);
Result<std::string> BdiOfMount(const std::string& mountpoint, const std::string& mountinfo);

// Writes bytes / 1024 to BDI_DIR/read_ahead_kb.
Status SetReadAheadKb(const std::string& bdi_dir, uint64_t bytes);

}  // namespace chainfs
