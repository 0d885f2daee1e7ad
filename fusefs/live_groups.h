// LiveGroups: the mount's view of which checkpoints each group has now.
//
// A snapshot of a group (its manifests, as Repository::LoadGroup reads them)
// is reused while it is fresh: younger than max_age and the group's
// checkpoints/ directory has the same mtime and ctime as when it was read.
// Otherwise the group is read again, so a checkpoint committed while mounted
// (its manifest renamed into place) shows up on the next lookup or listing,
// and a removed one disappears. If a rescan fails (a manifest being damaged
// meanwhile), the previous snapshot is kept and the failure logged once.
//
// Snapshots are immutable and shared: a caller may keep one as long as it
// likes. Thread-safe.
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "chain/repository.h"

namespace chainfs {

class LiveGroups {
 public:
  LiveGroups(const Repository& repo, std::chrono::milliseconds max_age)
      : repo_(repo), max_age_(max_age) {}

  // The group's current checkpoints; kNotFound if the group does not exist.
  Result<std::shared_ptr<const GroupState>> Get(const std::string& group);

  // Makes the next Get of the group read it again, however fresh its
  // snapshot looks (directory times are coarse: a change within one tick of
  // the last scan goes unnoticed until max_age).
  void Invalidate(const std::string& group);

  // The names of the groups now in the repository (not cached).
  Result<std::vector<std::string>> List() const { return repo_.ListGroups(); }

 private:
  struct Entry {
    std::shared_ptr<const GroupState> snapshot;
    std::chrono::steady_clock::time_point scanned;
    struct timespec mtime = {}, ctime = {};
    bool failure_logged = false;
  };
  bool Fresh(const Entry& e, const struct stat& st,
             std::chrono::steady_clock::time_point now) const;

  const Repository& repo_;
  const std::chrono::milliseconds max_age_;
  std::mutex mu_;  // guards entries_; held while a group is read
  std::map<std::string, Entry> entries_;
};

}  // namespace chainfs
