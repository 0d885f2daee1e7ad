#include "chain/repo/repository.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <boost/filesystem.hpp>
#include <chrono>
#include <cstdio>
#include <random>
#include <set>

#include "chain/base/file.h"
#include "chain/base/names.h"
#include "chain/layer/registry.h"

namespace chainfs {

namespace fs = boost::filesystem;

std::string NewDeltaFileName(const std::string& checkpoint, const std::string& disk) {
  std::random_device rd;
  uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(v));
  return checkpoint + "." + disk + "." + hex + ".delta";
}

const Checkpoint* GroupState::Find(const std::string& cp) const {
  for (const auto& c : checkpoints)
    if (c.name == cp) return &c;
  return nullptr;
}

const Checkpoint* GroupState::Newest() const {
  return checkpoints.empty() ? nullptr : &checkpoints.back();
}

bool GroupState::IsAncestor(const std::string& ancestor, const std::string& cp) const {
  const Checkpoint* c = Find(cp);
  for (size_t steps = 0; c != nullptr && steps <= checkpoints.size(); ++steps) {
    if (c->name == ancestor) return true;
    c = c->parent.empty() ? nullptr : Find(c->parent);
  }
  return false;
}

RepoLock::~RepoLock() {
  if (fd_ >= 0) {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }
}

Status Repository::Init(const std::string& path, const RepoConfig& config) {
  boost::system::error_code ec;
  if (fs::exists(path / fs::path("chainfs.json"), ec))
    return Status::AlreadyExists(path + " is already a chainfs repository");
  if (fs::exists(path, ec) && !fs::is_empty(path, ec))
    return Status::InvalidArgument(path + " exists and is not empty");
  fs::create_directories(fs::path(path) / "groups", ec);
  if (ec) return Status::FromErrno(ec.value(), "creating " + path);
  CHAINFS_RETURN_IF_ERROR(WriteFileAtomic(path + "/chainfs.json", config.Encode()));
  return SyncDir(path);
}

Result<std::unique_ptr<Repository>> Repository::Open(const std::string& path) {
  std::string cfg_path = path + "/chainfs.json";
  auto text = ReadWholeFile(cfg_path, 1 << 20);
  if (!text.ok()) {
    if (text.status().code() == Status::Code::kNotFound)
      return Status::NotFound(path + " is not a chainfs repository (no chainfs.json; "
                              "create one with 'chainfs init " + path + "')");
    return text.status();
  }
  auto cfg = RepoConfig::Decode(text.value(), cfg_path);
  if (!cfg.ok()) return cfg.status();
  return std::unique_ptr<Repository>(new Repository(path, cfg.value()));
}

std::string Repository::GroupDir(const std::string& g) const { return path_ + "/groups/" + g; }
std::string Repository::CheckpointDir(const std::string& g) const {
  return GroupDir(g) + "/checkpoints";
}
std::string Repository::DeltaDir(const std::string& g) const { return GroupDir(g) + "/deltas"; }
std::string Repository::DeltaPath(const std::string& g, const std::string& f) const {
  return DeltaDir(g) + "/" + f;
}

namespace {
// A group directory is a group once a checkpoint is committed in it: the
// directories a first backup creates before it fails or is killed are not.
bool HasManifest(const std::string& dir) {
  boost::system::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string f = it->path().filename().string();
    if (f.size() > 5 && f.compare(f.size() - 5, 5, ".json") == 0 &&
        ValidateName("checkpoint", f.substr(0, f.size() - 5)).ok())
      return true;
  }
  return false;
}
}  // namespace

Result<std::vector<std::string>> Repository::ListGroups() const {
  std::vector<std::string> out;
  boost::system::error_code ec;
  for (fs::directory_iterator it(path_ + "/groups", ec), end; !ec && it != end;
       it.increment(ec)) {
    std::string n = it->path().filename().string();
    if (ValidateName("group", n).ok() && HasManifest(it->path().string() + "/checkpoints"))
      out.push_back(n);
  }
  if (ec) return Status::FromErrno(ec.value(), "listing " + path_ + "/groups");
  std::sort(out.begin(), out.end());
  return out;
}

Result<GroupState> Repository::LoadGroup(const std::string& group) const {
  CHAINFS_RETURN_IF_ERROR(ValidateName("group", group));
  GroupState g;
  g.name = group;
  boost::system::error_code ec;
  std::string dir = CheckpointDir(group);
  if (!fs::is_directory(dir, ec))
    return Status::NotFound("group '" + group + "' not found in " + path_);
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string file = it->path().filename().string();
    if (file.size() <= 5 || file.compare(file.size() - 5, 5, ".json") != 0) continue;
    std::string name = file.substr(0, file.size() - 5);
    if (!ValidateName("checkpoint", name).ok()) continue;  // temporaries, foreign files
    std::string where = it->path().string();
    auto text = ReadWholeFile(where);
    if (!text.ok()) {
      if (text.status().code() == Status::Code::kNotFound) continue;  // removed meanwhile
      return text.status();
    }
    auto cp = Checkpoint::Decode(text.value(), where);
    if (!cp.ok()) return cp.status();
    if (cp->name != name || cp->group != group)
      return Status::Corruption(where + ": names checkpoint " + cp->group + "/" + cp->name);
    g.checkpoints.push_back(std::move(cp).value());
  }
  if (ec) return Status::FromErrno(ec.value(), "listing " + dir);
  std::sort(g.checkpoints.begin(), g.checkpoints.end(),
            [](const Checkpoint& a, const Checkpoint& b) { return a.sequence < b.sequence; });
  return g;
}

Result<std::vector<ChainLink>> Repository::ResolveChain(const GroupState& g,
                                                        const Checkpoint& cp,
                                                        const std::string& disk) {
  std::vector<ChainLink> chain;
  const Checkpoint* c = &cp;
  const DiskEntry* d = cp.FindDisk(disk);
  if (d == nullptr)
    return Status::NotFound("checkpoint " + g.name + "/" + cp.name + " has no disk '" + disk +
                            "'");
  while (true) {
    chain.push_back({c, d});
    if (d->kind == DeltaKind::kFull) return chain;
    if (chain.size() > g.checkpoints.size())
      return Status::Corruption("broken chain of " + g.name + "/" + cp.name + "/" + disk +
                                ": bases form a cycle");
    std::string where = "broken chain of " + g.name + "/" + cp.name + "/" + disk +
                        ": checkpoint " + c->name + " has base " + d->base;
    const Checkpoint* base = g.Find(d->base);
    if (base == nullptr) return Status::Corruption(where + ", which does not exist");
    if (base == c || !g.IsAncestor(base->name, c->name))
      return Status::Corruption(where + ", which is not one of its ancestors");
    const DiskEntry* bd = base->FindDisk(disk);
    if (bd == nullptr) return Status::Corruption(where + ", which has no disk " + disk);
    c = base;
    d = bd;
  }
}

Result<std::shared_ptr<const Layer>> Repository::OpenLayer(const std::string& group,
                                                           const DiskEntry& disk) const {
  std::string path = DeltaPath(group, disk.delta_file);
  {
    std::lock_guard<std::mutex> lock(layers_mu_);
    auto it = layers_.find(path);
    if (it != layers_.end())
      if (auto sp = it->second.layer.lock()) return sp;
  }
  const LayerFormat* format = FindLayerFormat(disk.format);
  if (format == nullptr)
    return Status::NotSupported(path + ": unknown delta format '" + disk.format +
                                "'; this chainfs reads " + LayerFormatNames());
  auto id_for = [&](uint64_t fingerprint) {
    std::lock_guard<std::mutex> lock(layers_mu_);
    LayerSlot& slot = layers_[path];
    if (slot.id == 0 || slot.fingerprint != fingerprint) {
      slot.id = NextLayerId();
      slot.fingerprint = fingerprint;
    }
    return slot.id;
  };
  CHAINFS_ASSIGN_OR_RETURN(std::shared_ptr<const Layer> layer,
                           OpenLayerFile(path, format, id_for));
  if (layer->block_size() != config_.block_size)
    return Status::Corruption(path + ": block size " + std::to_string(layer->block_size()) +
                              " differs from the repository's " +
                              std::to_string(config_.block_size));
  std::lock_guard<std::mutex> lock(layers_mu_);
  LayerSlot& slot = layers_[path];
  if (auto existing = slot.layer.lock()) return existing;  // another thread won
  slot.layer = layer;
  return layer;
}

const LayerFormat& Repository::write_format() const { return WriteLayerFormat(); }

Result<std::unique_ptr<LayerWriter>> Repository::CreateDelta(const std::string& group,
                                                             const std::string& file,
                                                             uint64_t virtual_size,
                                                             WriteMode mode) const {
  LayerWriterOptions opts;
  opts.block_size = config_.block_size;
  opts.virtual_size = virtual_size;
  opts.compress = config_.compression == "zstd";
  opts.compression_level = config_.compression_level;
  opts.mode = mode;
  return write_format().create_writer(DeltaPath(group, file), opts);
}

Result<std::shared_ptr<const View>> Repository::OpenView(const GroupState& g,
                                                         const Checkpoint& cp,
                                                         const std::string& disk,
                                                         BlockReader* reader) const {
  CHAINFS_ASSIGN_OR_RETURN(std::vector<ChainLink> chain, ResolveChain(g, cp, disk));
  std::vector<View::LayerRef> refs;
  for (const ChainLink& link : chain) {
    CHAINFS_ASSIGN_OR_RETURN(std::shared_ptr<const Layer> layer,
                             OpenLayer(g.name, *link.disk));
    if (layer->virtual_size() != link.disk->virtual_size)
      return Status::Corruption(layer->location() + ": virtual size " +
                                std::to_string(layer->virtual_size()) + " but manifest of " +
                                link.checkpoint->name + " says " +
                                std::to_string(link.disk->virtual_size));
    refs.push_back({std::move(layer), link.checkpoint->name});
  }
  return View::Create(std::move(refs), g.name + "/" + cp.name + "/" + disk, reader);
}

Result<std::shared_ptr<const View>> Repository::OpenView(const std::string& group,
                                                         const std::string& checkpoint,
                                                         const std::string& disk,
                                                         BlockReader* reader) const {
  CHAINFS_RETURN_IF_ERROR(ValidateName("checkpoint", checkpoint));
  CHAINFS_RETURN_IF_ERROR(ValidateName("disk", disk));
  CHAINFS_ASSIGN_OR_RETURN(GroupState g, LoadGroup(group));
  const Checkpoint* cp = g.Find(checkpoint);
  if (cp == nullptr)
    return Status::NotFound("checkpoint '" + checkpoint + "' not found in group " + group);
  return OpenView(g, *cp, disk, reader);
}

Result<std::unique_ptr<RepoLock>> Repository::Lock(const std::string& purpose) const {
  std::string path = path_ + "/lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno(errno, "opening lock " + path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    char buf[512] = {0};
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    if (e != EWOULDBLOCK) return Status::FromErrno(e, "locking " + path);
    std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "unknown";
    while (!holder.empty() && holder.back() == '\n') holder.pop_back();
    return Status::Busy("repository " + path_ + " is locked by another writer (" + holder +
                        "); wait for it to finish");
  }
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  auto now = std::chrono::system_clock::now().time_since_epoch();
  std::string info = "pid " + std::to_string(::getpid()) + " on host " + host + " since " +
                     FormatTime(std::chrono::duration_cast<std::chrono::nanoseconds>(now).count()) +
                     ": " + purpose + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, info.data(), info.size(), 0) < 0) {
    int e = errno;
    ::close(fd);
    return Status::FromErrno(e, "writing lock " + path);
  }
  return std::make_unique<RepoLock>(fd);
}

Result<int> Repository::CollectLeftovers(const std::string& group) const {
  // A committed consolidation journal names new deltas that no manifest names
  // yet: they are not leftovers. It must be rolled forward first (chain/txn.h).
  if (::access((GroupDir(group) + "/txn.json").c_str(), F_OK) == 0)
    return Status::Busy("group " + group + " has an unfinished consolidation journal " +
                        GroupDir(group) + "/txn.json; run 'chainfs consolidate' or "
                        "'chainfs prune' on the group (or any backup) to finish it first");
  CHAINFS_ASSIGN_OR_RETURN(GroupState g, LoadGroup(group));
  std::set<std::string> referenced;
  for (const auto& cp : g.checkpoints)
    for (const auto& d : cp.disks) referenced.insert(d.delta_file);
  int removed = 0;
  boost::system::error_code ec;
  for (const std::string& dir : {DeltaDir(group), CheckpointDir(group)}) {
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      std::string f = it->path().filename().string();
      bool is_tmp = f.find(".tmp.") != std::string::npos;
      bool stray_delta = dir == DeltaDir(group) && !referenced.count(f);
      if (is_tmp || stray_delta) {
        fs::remove(it->path(), ec);
        ++removed;
      }
    }
    ec.clear();
  }
  if (removed > 0) {
    CHAINFS_RETURN_IF_ERROR(SyncDir(DeltaDir(group)));
    CHAINFS_RETURN_IF_ERROR(SyncDir(CheckpointDir(group)));
  }
  return removed;
}

}  // namespace chainfs
