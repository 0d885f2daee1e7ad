#include "fusefs/driver/repository_fs.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>

#include <chrono>
#include <cstring>
#include <spdlog/spdlog.h>

#include "cache/stats_json.h"
#include "chain/base/names.h"
#include "fusefs/driver/kernel_readahead.h"

namespace chainfs {

namespace {

// Views never change: the kernel may keep their entries, attributes and
// pages as long as it likes.
constexpr double kForever = 365.0 * 24 * 3600;
// Group directories, checkpoint entries in them and `latest` change when
// checkpoints are committed or removed.
constexpr double kLive = 1.0;
constexpr char kManifestName[] = "checkpoint.json";
constexpr char kLatestName[] = "latest";
constexpr char kDiskSuffix[] = ".raw";
// views_ keeps weak references; expired ones are swept past this size.
constexpr size_t kViewSweepThreshold = 256;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A stored config is shown if its file name is a plain file name that does
// not hide a generated one.
const ConfigFile* ShownConfig(const Checkpoint& cp, const std::string& name) {
  const ConfigFile* c = cp.FindConfig(name);
  if (c == nullptr || !ValidateName("config", name).ok() || name == kManifestName ||
      EndsWith(name, kDiskSuffix))
    return nullptr;
  return c;
}

// The newest checkpoint of a group for `latest`, unless a checkpoint is
// itself named "latest".
const Checkpoint* LatestOf(const GroupState& g) {
  return g.Newest() != nullptr && g.Find(kLatestName) == nullptr ? g.Newest() : nullptr;
}

Status NoEntry(const std::string& name) { return Status::NotFound("no entry " + name); }

}  // namespace

RepositoryFs::RepositoryFs(std::unique_ptr<Repository> repo, MountOptions options)
    : repo_(std::move(repo)),
      options_(std::move(options)),
      uid_(options_.uid.value_or(::getuid())),
      gid_(options_.gid.value_or(::getgid())),
      mount_time_ns_(NowNs()),
      groups_(*repo_, std::chrono::milliseconds(1000), LiveGroups::SettleFor(*repo_)),
      inodes_(std::make_shared<const Node>()) {}

void RepositoryFs::Start() {
  BlockCacheOptions cache;
  cache.capacity_bytes = options_.cache_size;
  cache_ = std::make_unique<BlockCache>(cache);
  block_reader_ = cache_.get();
  if (options_.cache_size > 0 && options_.readahead_threads > 0) {
    ReadaheadOptions ra;
    ra.min_window = options_.readahead_min;
    ra.max_window = options_.readahead_max;
    ra.threads = options_.readahead_threads;
    ra.skip_raw = SplicesReplies();
    readahead_ = std::make_unique<Readahead>(cache_.get(), ra);
  }
  // One thread, at the lowest CPU priority (nice 19, which Linux keeps per
  // thread), opening one layer at a time: it opens a deep view's serving
  // layers (3,300 files at depth 10,000) while the reader goes on. With
  // eight at normal priority on two cores, the reader's next requests
  // waited for them: a first 4 KiB read and close of the newest view took
  // 1.7-2.8 ms at depth 10,000 in half the tries, against 0.8 at depth 1.
  loader_ = std::make_unique<WorkerPool>(1);
  (void)loader_->Submit([] {
    if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 19) != 0)
      spdlog::debug("background layer loader keeps its priority: {}", std::strerror(errno));
  });
}

void RepositoryFs::SetKernelReadaheadOnce() {
  if (bdi_dir_.empty() || options_.kernel_readahead == 0) return;
  std::call_once(kernel_readahead_once_, [this] {
    Status st = SetReadAheadKb(bdi_dir_, options_.kernel_readahead);
    if (st.ok())
      spdlog::debug("kernel readahead {} KiB ({})", options_.kernel_readahead >> 10, bdi_dir_);
    else
      spdlog::info("kernel readahead left at the kernel's default: {}", st.message());
  });
}

Result<RepositoryFs::Entry> RepositoryFs::StatsChild() {
  uint64_t ino = inodes_.Intern(std::string("/") + kStatsFileName, [&] {
    Node n;
    n.kind = NodeKind::kStats;
    // Size 0: the content is made at open() and read with direct_io, so
    // the kernel neither caches it nor clips reads to the size.
    n.attr = BaseAttr(S_IFREG, mount_time_ns_);
    return n;
  });
  Entry e = Fixed(ino);
  e.entry_timeout = e.attr_timeout = kLive;
  return e;
}

struct stat RepositoryFs::BaseAttr(mode_t type, int64_t mtime_ns) const {
  struct stat st = {};
  st.st_mode = type | (type == S_IFDIR ? options_.DirMode()
                       : type == S_IFLNK ? 0777
                                         : options_.FileMode());
  st.st_nlink = type == S_IFDIR ? 2 : 1;
  st.st_uid = uid_;
  st.st_gid = gid_;
  st.st_blksize = static_cast<blksize_t>(repo_->config().block_size);
  st.st_mtim.tv_sec = mtime_ns / 1000000000;
  st.st_mtim.tv_nsec = mtime_ns % 1000000000;
  st.st_atim = st.st_ctim = st.st_mtim;
  return st;
}

Node RepositoryFs::CheckpointNode(NodeKind kind, std::shared_ptr<const Checkpoint> shared,
                                  const ConfigFile* config) const {
  const Checkpoint& cp = *shared;
  Node n;
  n.kind = kind;
  n.group = cp.group;
  n.checkpoint = std::move(shared);
  if (kind == NodeKind::kCheckpoint) {
    n.attr = BaseAttr(S_IFDIR, cp.created_unix_ns);
    return n;
  }
  n.content = kind == NodeKind::kManifest ? cp.Encode() : config->content;
  n.attr = BaseAttr(S_IFREG, cp.created_unix_ns);
  n.attr.st_size = static_cast<off_t>(n.content.size());
  n.attr.st_blocks = (n.attr.st_size + 511) / 512;
  return n;
}

Node RepositoryFs::DiskNode(const GroupState& g, std::shared_ptr<const Checkpoint> shared,
                            const std::string& disk) const {
  const Checkpoint& cp = *shared;
  Node n = CheckpointNode(NodeKind::kCheckpoint, std::move(shared));
  n.kind = NodeKind::kDisk;
  n.disk = disk;
  const DiskEntry* d = cp.FindDisk(disk);
  n.attr = BaseAttr(S_IFREG, cp.created_unix_ns);
  n.attr.st_size = static_cast<off_t>(d->virtual_size);
  // Stored bytes of the chain (without reading any delta): what du shows.
  // The snapshot's index summed it once (O(1) here: `ls -R` of a deep chain).
  uint64_t stored = d->stored_bytes;
  const Checkpoint* in_g = g.Find(cp.name);
  if (const DiskChainInfo* info = in_g ? g.ChainInfo(*in_g, disk) : nullptr;
      info != nullptr && info->broken.empty())
    stored = info->stored_bytes;
  n.attr.st_blocks = static_cast<blkcnt_t>((stored + 511) / 512);
  // Without the page cache every read is a round trip: readers that size
  // their reads by st_blksize (cat) ask for 1 MiB at a time.
  if (options_.direct_io) n.attr.st_blksize = MountOptions::kDirectIoBlksize;
  return n;
}

uint64_t RepositoryFs::GroupIno(const std::string& group) {
  return inodes_.Intern("/" + group, [&] {
    Node n;
    n.kind = NodeKind::kGroup;
    n.group = group;
    return n;
  });
}

uint64_t RepositoryFs::CheckpointIno(const std::string& group, const Checkpoint& cp) {
  (void)group;
  return inodes_.Intern(InodeTable::CheckpointKey(cp, ""), [&] {
    return CheckpointNode(NodeKind::kCheckpoint, std::make_shared<const Checkpoint>(cp));
  });
}

RepositoryFs::Entry RepositoryFs::Fixed(uint64_t ino) const {
  Entry e;
  e.ino = ino;
  e.attr = inodes_.Get(ino)->attr;
  e.entry_timeout = e.attr_timeout = kForever;
  return e;
}

Result<RepositoryFs::Entry> RepositoryFs::GroupChild(const std::string& group,
                                                     const std::string& name) {
  CHAINFS_ASSIGN_OR_RETURN(std::shared_ptr<const GroupState> g, groups_.Get(group));
  if (name == kLatestName) {
    const Checkpoint* newest = LatestOf(*g);
    if (newest == nullptr) return NoEntry(name);
    uint64_t ino = inodes_.Intern("/" + group + "/" + kLatestName, [&] {
      Node n;
      n.kind = NodeKind::kLatest;
      n.group = group;
      return n;
    });
    return Stat(ino, *inodes_.Get(ino));
  }
  const Checkpoint* cp = g->Find(name);
  if (cp == nullptr) return NoEntry(name);
  return CheckpointEntry(CheckpointIno(group, *cp));
}

RepositoryFs::Entry RepositoryFs::CheckpointEntry(uint64_t ino) const {
  Entry e = Fixed(ino);
  e.entry_timeout = kLive;  // the checkpoint may be removed by consolidation
  return e;
}

RepositoryFs::Entry RepositoryFs::PlusEntry(const Node& dir, const DirEntry& d) {
  Entry e;
  e.attr.st_ino = static_cast<ino_t>(d.ino);
  e.attr.st_mode = d.type;
  if (d.name == "." || d.name == "..") return e;
  switch (dir.kind) {
    case NodeKind::kGroup: {
      if (d.name != kLatestName) return CheckpointEntry(d.ino);
      std::shared_ptr<const Node> latest = inodes_.Get(d.ino);
      auto stat = latest ? Stat(d.ino, *latest) : Result<Entry>(NoEntry(d.name));
      return stat.ok() ? stat.value() : e;
    }
    case NodeKind::kCheckpoint:
      return Fixed(d.ino);
    default:
      return e;
  }
}

Result<RepositoryFs::Entry> RepositoryFs::CheckpointChild(const Node& cp_node,
                                                          const std::string& name) {
  const std::shared_ptr<const Checkpoint>& shared = cp_node.checkpoint;
  const Checkpoint& cp = *shared;
  if (name == kManifestName)
    return Fixed(inodes_.Intern(InodeTable::CheckpointKey(cp, name),
                                [&] { return CheckpointNode(NodeKind::kManifest, shared); }));
  if (const ConfigFile* config = ShownConfig(cp, name))
    return Fixed(inodes_.Intern(InodeTable::CheckpointKey(cp, name), [&] {
      return CheckpointNode(NodeKind::kConfig, shared, config);
    }));
  if (!EndsWith(name, kDiskSuffix)) return NoEntry(name);
  const std::string disk = name.substr(0, name.size() - std::strlen(kDiskSuffix));
  if (cp.FindDisk(disk) == nullptr) return NoEntry(name);
  const std::string key = InodeTable::CheckpointKey(cp, name);
  return Fixed(inodes_.Intern(key, [&] {
    auto g = groups_.Get(cp.group);  // for the chain's stored bytes
    GroupState fallback;
    return DiskNode(g.ok() ? *g.value() : fallback, shared, disk);
  }));
}

Result<RepositoryFs::Entry> RepositoryFs::Child(const Node& parent, const std::string& name) {
  switch (parent.kind) {
    case NodeKind::kRoot: {
      if (name == kStatsFileName) return StatsChild();
      if (!ValidateName("group", name).ok()) return NoEntry(name);
      CHAINFS_RETURN_IF_ERROR(groups_.Get(name).status());
      uint64_t ino = GroupIno(name);
      return Stat(ino, *inodes_.Get(ino));
    }
    case NodeKind::kGroup:
      if (name != kLatestName && !ValidateName("checkpoint", name).ok()) return NoEntry(name);
      return GroupChild(parent.group, name);
    case NodeKind::kCheckpoint:
      return CheckpointChild(parent, name);
    default:
      return Status::FromErrno(ENOTDIR, name);
  }
}

Result<RepositoryFs::Entry> RepositoryFs::Stat(uint64_t ino, const Node& node) {
  Entry e;
  e.ino = ino;
  e.entry_timeout = e.attr_timeout = kLive;
  switch (node.kind) {
    case NodeKind::kRoot:
      e.attr = BaseAttr(S_IFDIR, mount_time_ns_);
      break;
    case NodeKind::kGroup:
    case NodeKind::kLatest: {
      CHAINFS_ASSIGN_OR_RETURN(std::shared_ptr<const GroupState> g, groups_.Get(node.group));
      const Checkpoint* newest = g->Newest();
      e.attr = BaseAttr(node.kind == NodeKind::kGroup ? S_IFDIR : S_IFLNK,
                        newest ? newest->created_unix_ns : mount_time_ns_);
      if (node.kind == NodeKind::kLatest) {
        if (LatestOf(*g) == nullptr) return NoEntry(kLatestName);
        e.attr.st_size = static_cast<off_t>(newest->name.size());
      }
      break;
    }
    default:
      return Fixed(ino);
  }
  e.attr.st_ino = ino;
  return e;
}

Result<std::vector<RepositoryFs::DirEntry>> RepositoryFs::List(const Node& node, uint64_t ino) {
  std::vector<DirEntry> out = {{".", ino, S_IFDIR}};
  switch (node.kind) {
    case NodeKind::kRoot: {
      out.push_back({"..", ino, S_IFDIR});
      CHAINFS_ASSIGN_OR_RETURN(std::vector<std::string> groups, groups_.List());
      for (const std::string& g : groups) out.push_back({g, GroupIno(g), S_IFDIR});
      return out;
    }
    case NodeKind::kGroup: {
      out.push_back({"..", InodeTable::kRootIno, S_IFDIR});
      CHAINFS_ASSIGN_OR_RETURN(std::shared_ptr<const GroupState> g, groups_.Get(node.group));
      ForgetStaleViews(*g);
      for (const Checkpoint& cp : g->checkpoints)
        out.push_back({cp.name, CheckpointIno(node.group, cp), S_IFDIR});
      if (LatestOf(*g) != nullptr) {
        auto latest = GroupChild(node.group, kLatestName);
        if (latest.ok()) out.push_back({kLatestName, latest->ino, S_IFLNK});
      }
      return out;
    }
    case NodeKind::kCheckpoint: {
      out.push_back({"..", GroupIno(node.group), S_IFDIR});
      const Checkpoint& cp = *node.checkpoint;
      std::vector<std::string> names;
      for (const DiskEntry& d : cp.disks) names.push_back(d.name + kDiskSuffix);
      names.push_back(kManifestName);
      for (const ConfigFile& c : cp.configs)
        if (ShownConfig(cp, c.name)) names.push_back(c.name);
      for (const std::string& n : names) {
        CHAINFS_ASSIGN_OR_RETURN(Entry e, CheckpointChild(node, n));
        out.push_back({n, e.ino, S_IFREG});
      }
      return out;
    }
    default:
      return Status::FromErrno(ENOTDIR, "listing");
  }
}

void RepositoryFs::ForgetStaleViews(const GroupState& g) {
  std::vector<std::shared_ptr<const View>> dropped;  // released after the lock
  std::lock_guard<std::mutex> lock(views_mu_);
  std::erase_if(retained_, [&](RetainedView& r) {
    if (r.group != g.name) return false;
    const Checkpoint* cp = g.Find(r.checkpoint);
    const DiskChainInfo* info = cp ? g.ChainInfo(*cp, r.disk) : nullptr;
    if (info != nullptr && info->broken.empty() && info->fingerprint == r.fingerprint)
      return false;
    dropped.push_back(std::move(r.view));
    return true;
  });
}

Result<std::shared_ptr<const View>> RepositoryFs::ViewOf(uint64_t ino, const Node& node,
                                                         const View* stale) {
  {
    std::lock_guard<std::mutex> lock(views_mu_);
    if (auto v = views_[ino].lock(); v != nullptr && v.get() != stale) return v;
  }
  if (stale != nullptr) groups_.Invalidate(node.group);
  // Resolve the chain against the group as it is now: consolidation may
  // have rewritten the deltas behind an unchanged view.
  const Checkpoint& want = *node.checkpoint;
  Result<std::shared_ptr<const View>> opened = Status::NotFound("");
  uint64_t fingerprint = 0;
  // A snapshot that looks fresh may still name deltas a consolidation has
  // just replaced and removed (same bytes, new files): then read the group
  // again, once.
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (attempt > 0) groups_.Invalidate(node.group);
    CHAINFS_ASSIGN_OR_RETURN(std::shared_ptr<const GroupState> g, groups_.Get(node.group));
    const Checkpoint* cp = g->Find(want.name);
    if (cp == nullptr || cp->sequence != want.sequence ||
        cp->created_unix_ns != want.created_unix_ns)
      return Status::NotFound("checkpoint " + node.group + "/" + want.name + " was removed");
    ForgetStaleViews(*g);
    const DiskChainInfo* info = g->ChainInfo(*cp, node.disk);
    fingerprint = info != nullptr && info->broken.empty() ? info->fingerprint : 0;
    if (fingerprint != 0) {
      std::lock_guard<std::mutex> lock(views_mu_);
      for (const RetainedView& r : retained_)
        if (r.ino == ino && r.fingerprint == fingerprint && r.view.get() != stale) {
          views_[ino] = r.view;
          return r.view;
        }
    }
    opened = repo_->OpenView(g, *cp, node.disk, block_reader_);
    // kNotFound: a delta replaced meanwhile; kCorruption: possibly a chain
    // read half before and half after a consolidation's step.
    if (opened.ok() || (opened.status().code() != Status::Code::kNotFound &&
                        opened.status().code() != Status::Code::kCorruption))
      break;
  }
  CHAINFS_ASSIGN_OR_RETURN(std::shared_ptr<const View> view, std::move(opened));
  std::lock_guard<std::mutex> lock(views_mu_);
  auto& slot = views_[ino];
  if (auto existing = slot.lock(); existing != nullptr && existing.get() != stale) return existing;
  slot = view;
  if (fingerprint != 0) {
    std::erase_if(retained_, [&](const RetainedView& r) { return r.ino == ino; });
    retained_.push_front({node.group, want.name, node.disk, ino, fingerprint, view});
    if (retained_.size() > kRetainedViews) retained_.pop_back();
  }
  if (views_.size() > 2 * kViewSweepThreshold) {  // forget views no file holds
    std::erase_if(views_, [](const auto& kv) { return kv.second.expired(); });
  }
  return view;
}

}  // namespace chainfs
