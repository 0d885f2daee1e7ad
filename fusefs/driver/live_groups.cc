#include "fusefs/driver/live_groups.h"

#include <time.h>

#include <spdlog/spdlog.h>

#include "chain/base/names.h"
#include "chain/repo/foreign.h"

namespace chainfs {

namespace {

// True if t_ns (since the epoch) is at least `by` before the realtime clock now.
bool OlderThan(int64_t t_ns, std::chrono::milliseconds by) {
  struct timespec now;
  ::clock_gettime(CLOCK_REALTIME, &now);
  return std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec) -
             std::chrono::nanoseconds(t_ns) >=
         by;
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

std::chrono::milliseconds LiveGroups::SettleFor(Env* env, const std::string& repo_path) {
  auto fs = env->StatFs(repo_path);
  if (!fs.ok() || !LocalFilesystem(static_cast<long>(fs.value().type)))
    return std::chrono::milliseconds(0);
  return kSettle;
}

std::chrono::milliseconds LiveGroups::SettleFor(const Repository& repo) {
  if (repo.foreign() != nullptr && repo.foreign()->ChangesInPlace()) return std::chrono::milliseconds(0);
  return SettleFor(repo.env(), repo.path());
}

bool LiveGroups::Fresh(const Entry& e, const FileInfo& st,
                       std::chrono::steady_clock::time_point now) const {
  return e.snapshot != nullptr && (e.settled || now - e.scanned < max_age_) &&
         e.mtime_ns == st.mtime_ns && e.ctime_ns == st.ctime_ns;
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
  auto info = repo_.env()->Stat(dir);
  if (!info.ok() || !info.value().is_dir) {
    e.snapshot = nullptr;  // for a thread that still holds the entry
    std::lock_guard<std::mutex> map_lock(mu_);
    auto it = entries_.find(group);
    if (it != entries_.end() && it->second == entry) entries_.erase(it);
    return Status::NotFound("group '" + group + "' not found in " + repo_.path());
  }
  FileInfo st = info.value();
  const auto now = std::chrono::steady_clock::now();
  if (Fresh(e, st, now)) return e.snapshot;
  auto loaded = loader_(group);
  // A writer that changed the directory during the scan (a consolidation
  // rewriting one manifest and removing another) may have left it torn: an
  // old manifest naming a base already gone. Read again while the times move
  // (a few times: a busy group is served the last read).
  for (int again = 0; again < 3 && loaded.ok(); ++again) {
    auto after = repo_.env()->Stat(dir);
    if (!after.ok() || (after.value().mtime_ns == st.mtime_ns &&
                        after.value().ctime_ns == st.ctime_ns))
      break;
    st = after.value();
    loaded = loader_(group);
  }
  const bool settled = settle_.count() > 0 && OlderThan(st.mtime_ns, settle_) &&
                       OlderThan(st.ctime_ns, settle_);
  e.scanned = now;  // a failed rescan is retried after max_age
  e.mtime_ns = st.mtime_ns;
  e.ctime_ns = st.ctime_ns;
  e.settled = settled && loaded.ok();
  if (!loaded.ok()) {
    if (!e.failure_logged)
      spdlog::error("rescanning group {}: {}", group, loaded.status().message());
    e.failure_logged = true;
    return e.snapshot ? Result<std::shared_ptr<const GroupState>>(e.snapshot)
                      : Result<std::shared_ptr<const GroupState>>(loaded.status());
  }
  e.failure_logged = false;
  // A refused manifest hides its checkpoint only (said once per change).
  const size_t before = e.snapshot ? e.snapshot->refused.size() : 0;
  for (size_t i = before; i < loaded.value().refused.size(); ++i)
    spdlog::error("group {}: checkpoint {} not shown: its {} is refused: {}", group,
                  loaded.value().refused[i].name, loaded.value().refused[i].what,
                  loaded.value().refused[i].reason);
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
