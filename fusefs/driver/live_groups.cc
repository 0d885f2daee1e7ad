#include "fusefs/driver/live_groups.h"

#include <sys/vfs.h>
#include <time.h>

#include <spdlog/spdlog.h>

#include "chain/base/names.h"

namespace chainfs {

namespace {

bool SameTime(const struct timespec& a, const struct timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

// True if t is at least `by` before the realtime clock now.
bool OlderThan(const struct timespec& t, std::chrono::milliseconds by) {
  struct timespec now;
  ::clock_gettime(CLOCK_REALTIME, &now);
  const auto ns = [](const struct timespec& x) {
    return std::chrono::seconds(x.tv_sec) + std::chrono::nanoseconds(x.tv_nsec);
  };
  return ns(now) - ns(t) >= by;
}

}  // namespace

bool LiveGroups::LocalFilesystem(long f_type) {
  switch (static_cast<unsigned long>(f_type) & 0xffffffffUL) {
    case 0xEF53:      // ext2/3/4
    case 0x58465342:  // xfs
    case 0x9123683E:  // btrfs
    case 0x01021994:  // tmpfs
    case 0xF2F52010:  // f2fs
    case 0x2FC12FC1:  // zfs
    case 0x794C7630:  // overlayfs (over a local filesystem)
      return true;
    default:
      return false;
  }
}

std::chrono::milliseconds LiveGroups::SettleFor(const std::string& repo_path) {
  struct statfs st;
  if (::statfs(repo_path.c_str(), &st) != 0 || !LocalFilesystem(st.f_type))
    return std::chrono::milliseconds(0);
  return kSettle;
}

bool LiveGroups::Fresh(const Entry& e, const struct stat& st,
                       std::chrono::steady_clock::time_point now) const {
  return e.snapshot != nullptr && (e.settled || now - e.scanned < max_age_) &&
         SameTime(e.mtime, st.st_mtim) && SameTime(e.ctime, st.st_ctim);
}

LiveGroups::LiveGroups(const Repository& repo, std::chrono::milliseconds max_age,
                       std::chrono::milliseconds settle, Loader loader)
    : repo_(repo),
      max_age_(max_age),
      settle_(settle),
      loader_(loader ? std::move(loader)
                     : [&repo](const std::string& group) { return repo.LoadGroup(group); }) {}

std::shared_ptr<LiveGroups::Entry> LiveGroups::EntryOf(const std::string& group) {
  std::lock_guard<std::mutex> lock(mu_);
  std::shared_ptr<Entry>& e = entries_[group];
  if (!e) e = std::make_shared<Entry>();
  return e;
}

Result<std::shared_ptr<const GroupState>> LiveGroups::Get(const std::string& group) {
  CHAINFS_RETURN_IF_ERROR(ValidateName("group", group));
  const std::string dir = repo_.CheckpointDir(group);
  const std::shared_ptr<Entry> entry = EntryOf(group);
  Entry& e = *entry;
  std::lock_guard<std::mutex> lock(e.mu);
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    e.snapshot = nullptr;  // for a thread that still holds the entry
    std::lock_guard<std::mutex> map_lock(mu_);
    auto it = entries_.find(group);
    if (it != entries_.end() && it->second == entry) entries_.erase(it);
    return Status::NotFound("group '" + group + "' not found in " + repo_.path());
  }
  const auto now = std::chrono::steady_clock::now();
  if (Fresh(e, st, now)) return e.snapshot;
  const bool settled = settle_.count() > 0 && OlderThan(st.st_mtim, settle_) &&
                       OlderThan(st.st_ctim, settle_);
  auto loaded = loader_(group);
  e.scanned = now;  // a failed rescan is retried after max_age
  e.mtime = st.st_mtim;
  e.ctime = st.st_ctim;
  e.settled = settled && loaded.ok();
  if (!loaded.ok()) {
    if (!e.failure_logged)
      spdlog::error("rescanning group {}: {}", group, loaded.status().message());
    e.failure_logged = true;
    return e.snapshot ? Result<std::shared_ptr<const GroupState>>(e.snapshot)
                      : Result<std::shared_ptr<const GroupState>>(loaded.status());
  }
  e.failure_logged = false;
  e.snapshot = std::make_shared<const GroupState>(std::move(loaded).value());
  return e.snapshot;
}

void LiveGroups::Invalidate(const std::string& group) {
  std::shared_ptr<Entry> e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(group);
    if (it == entries_.end()) return;
    e = it->second;
  }
  std::lock_guard<std::mutex> lock(e->mu);
  e->scanned = {};
  e->settled = false;
}

}  // namespace chainfs
