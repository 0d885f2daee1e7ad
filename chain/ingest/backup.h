// Backup: turn sources (raw images, block devices) into one new checkpoint.
//
//   Source ─► changed blocks ─► read, several ─► compressed in ─► delta file ─► fsync
//   (source.h) (changed ranges,  requests in      parallel        (one per disk)
//              or content hashes flight           (WorkerPool,
//              against the base) (SourceReader)   zstd; raw when
//                                                 it does not shrink)
//   every delta durable ─► manifest written and renamed into place (commit)
//
// Invariants: nothing visible changes before the commit rename; on any
// failure the new delta files are removed (or, after a crash, collected by
// the next writer) and no checkpoint appears; re-running succeeds.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "chain/ingest/source.h"
#include "chain/repo/repository.h"

namespace chainfs {

struct DiskSource {
  std::string disk;       // disk name in the group
  std::string path;       // raw image, block device, QEMU image or NBD URI
  std::string dirty_map;  // nbdinfo --json --map output; empty = compare hashes
  // Already opened: read this instead of opening path and dirty_map (tests,
  // callers that open sources themselves). Null: OpenSource({path, dirty_map,
  // bitmap}).
  std::shared_ptr<const Source> source;
  std::string bitmap;  // QEMU dirty bitmap of an NBD/image source; empty = none
};

// How long an NBD server may leave a backup without an answer by default:
// long enough for a busy host, short enough that a stalled server fails a
// nightly backup (and frees its repository lock) instead of hanging it.
inline constexpr std::chrono::milliseconds kDefaultNbdTimeout{300'000};

struct BackupOptions {
  std::string group;
  std::string checkpoint;
  std::vector<DiskSource> disks;
  bool full = false;        // store every disk full
  std::string since;        // differential against this older checkpoint
  std::string config_path;  // VM config (e.g. libvirt domain XML) to keep
  std::vector<ConfigFile> configs;       // more files to keep, as given
  std::optional<LibvirtRecord> libvirt;  // recorded in the manifest
  unsigned threads = 0;     // compression threads; 0 = one per core
  // NBD and image sources (SourceSpec::timeout): how long a server may
  // answer nothing before the backup fails; zero waits for ever.
  std::chrono::milliseconds nbd_timeout = kDefaultNbdTimeout;
  // Set (to a signal number) by a SIGINT/SIGTERM handler (StopSignals):
  // the backup stops reading, removes its new deltas and fails naming the
  // signal. Null: never.
  const std::atomic<int>* stop = nullptr;
  // Called once the repository lock is held, with the group as it stands
  // (empty if new), before anything is planned: may fill in disks (opened
  // sources), configs and libvirt, or refuse. A libvirt backup starts its
  // job here, so that the chain it is based on cannot change meanwhile.
  std::function<Status(const GroupState& g, BackupOptions* opts)> prepare;
};

struct DiskReport {
  std::string disk;
  DeltaKind kind = DeltaKind::kFull;
  std::string base;
  bool added_later = false;  // the base's chain had no such disk: stored full
  uint64_t virtual_size = 0;
  uint64_t blocks_read = 0;
  uint64_t blocks_stored = 0;
  uint64_t blocks_zeroed = 0;
  uint64_t stored_bytes = 0;
};

struct BackupReport {
  Checkpoint checkpoint;
  std::vector<DiskReport> disks;
  int leftovers_removed = 0;
  double seconds = 0;
};

// Takes the repository lock for its whole run.
Result<BackupReport> Backup(const Repository& repo, const BackupOptions& opts);

}  // namespace chainfs
