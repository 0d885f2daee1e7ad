// LiveGroups: the mount's view of which checkpoints each group has now.
//
// A snapshot of a group (its manifests, as Repository::LoadGroup reads them)
// is reused while the group's checkpoints/ directory has the same mtime and
// ctime as when it was read, and either the snapshot is younger than max_age
// or it is settled. Otherwise the group is read again, so a checkpoint
// committed while mounted (its manifest renamed into place) shows up on the
// next lookup or listing, and a removed one disappears. If a rescan fails (a
// manifest being damaged meanwhile), the previous snapshot is kept and the
// failure logged once.
//
// Settled (local filesystems only, see SettleFor): the directory's times were
// at least kSettle (2 s) older than the clock when the scan began. Every
// change to a group renames or unlinks in that directory, which sets its
// times to the clock of the change; timestamps are coarse (a tick of the
// kernel's clock, more on some filesystems), so a change in the tick of a
// scan could leave the times as they were. A change after a settled scan
// cannot: the clock has moved on by more than a tick.
// Settled snapshots are never re-read while the times stay: a mount of a
// repository with hundreds of checkpoints does not re-read all their
// manifests every max_age (at depth 100 that took ~20 ms of every open()
// and lookup, a tenth of a warm re-read of a 1 GiB view).
//
// Snapshots are immutable and shared: a caller may keep one as long as it
// likes. Thread-safe. Each group has its own lock (single flight): a rescan
// of one group (its manifests over NFS can take long) makes concurrent Gets
// of that group wait for its result and read it once, while lookups in other
// groups go on.
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "chain/repo/repository.h"

namespace chainfs {

class LiveGroups {
 public:
  // Directory times at least this much older than a scan's start settle it
  // (tests pass less; zero: nothing settles, every snapshot is read again
  // after max_age).
  static constexpr std::chrono::milliseconds kSettle{2000};
  // kSettle where the repository's filesystem is local (ext4, xfs, btrfs,
  // tmpfs, f2fs, zfs, overlayfs), zero elsewhere: a network filesystem's
  // client caches directory attributes for seconds (NFS: acdirmax, up to
  // 60 s), so its times can hide a checkpoint another host committed.
  static std::chrono::milliseconds SettleFor(Env* env, const std::string& repo_path);
  // The same for repo, and zero for a foreign source whose checkpoints
  // change in place (ForeignCatalog::ChangesInPlace: qcow2 snapshots).
  static std::chrono::milliseconds SettleFor(const Repository& repo);
  static bool LocalFilesystem(long f_type);

  // How a group is read: Repository::LoadGroup, or a test's stand-in.
  using Loader = std::function<Result<GroupState>(const std::string& group)>;

  LiveGroups(const Repository& repo, std::chrono::milliseconds max_age,
             std::chrono::milliseconds settle = kSettle, Loader loader = nullptr);

  // The group's current checkpoints; kNotFound if the group does not exist.
  Result<std::shared_ptr<const GroupState>> Get(const std::string& group);

  // Makes the next Get of the group read it again, however fresh its
  // snapshot looks.
  void Invalidate(const std::string& group);

  // The names of the groups now in the repository (not cached).
  Result<std::vector<std::string>> List() const { return repo_.ListGroups(); }

 private:
  struct Entry {
    std::mutex mu;  // guards the fields below; held while the group is read
    std::shared_ptr<const GroupState> snapshot;
    std::chrono::steady_clock::time_point scanned;
    int64_t mtime_ns = 0, ctime_ns = 0;  // of the checkpoints directory at the scan
    bool settled = false;  // the times were kSettle older than the scan
    bool failure_logged = false;
  };
  bool Fresh(const Entry& e, const FileInfo& st,
             std::chrono::steady_clock::time_point now) const;

  // The group's entry, created if new.
  std::shared_ptr<Entry> EntryOf(const std::string& group);

  const Repository& repo_;
  const std::chrono::milliseconds max_age_;
  const std::chrono::milliseconds settle_;
  const Loader loader_;
  std::mutex mu_;  // guards the map entries_ only, never held during I/O
  std::map<std::string, std::shared_ptr<Entry>> entries_;
};

}  // namespace chainfs
