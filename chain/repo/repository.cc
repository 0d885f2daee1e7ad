#include "chain/repo/repository.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include <spdlog/spdlog.h>

#include "chain/base/names.h"
#include "chain/base/worker_pool.h"
#include "chain/layer/registry.h"
#include "chain/repo/catalog.h"
#include "chain/repo/delta_binding.h"
#include "chain/repo/view_map.h"
#include "chain/repo/write_intent.h"

namespace chainfs {

std::string NewDeltaFileName(const std::string& checkpoint, const std::string& disk) {
  return checkpoint + "." + disk + "." + UnpredictableSuffix() + ".delta";
}

Status Repository::Init(const std::string& path, const RepoConfig& config, Env* env) {
  std::unique_ptr<Env> rooted;
  if (env == nullptr) {
    CHAINFS_RETURN_IF_ERROR(Env::Default()->CreateDirs(path));
    CHAINFS_ASSIGN_OR_RETURN(rooted, NewRootedPosixEnv(path));
    env = rooted.get();
  }
  if (env->FileExists(path + "/chainfs.json"))
    return Status::AlreadyExists(path + " is already a chainfs repository");
  if (auto names = env->ListDir(path); names.ok() && !names.value().empty())
    return Status::InvalidArgument(path + " exists and is not empty");
  CHAINFS_RETURN_IF_ERROR(env->CreateDirs(path + "/groups"));
  CHAINFS_RETURN_IF_ERROR(env->WriteFileAtomic(path + "/chainfs.json", config.Encode()));
  return env->SyncDir(path);
}

Result<std::unique_ptr<Repository>> Repository::OpenForeign(const std::string& path, Env* env,
                                                            std::unique_ptr<Env> owned,
                                                            const Status& not_repo) {
  auto foreign = OpenForeignCatalog(env, path);
  if (!foreign.ok()) return foreign.status().code() == Status::Code::kNotFound ? not_repo : foreign.status();
  RepoConfig cfg;
  cfg.block_size = foreign.value()->block_size();
  cfg.compression = "none";
  std::unique_ptr<Repository> repo(new Repository(path, cfg, env, std::move(owned)));
  repo->foreign_ = std::move(foreign).value();
  return repo;
}

Result<std::unique_ptr<Repository>> Repository::Open(const std::string& path, Env* env) {
  const Status not_repo = Status::NotFound(path + " is not a chainfs repository (no chainfs.json; "
                                           "create one with 'chainfs init " + path + "')");
  std::unique_ptr<Env> rooted;
  if (env == nullptr) {
    // A file (a qcow2 image given as SOURCE) is read as a foreign source
    // through the plain Env: only a directory can be a root.
    if (auto st = Env::Default()->Stat(path); st.ok() && !st.value().is_dir)
      return OpenForeign(path, Env::Default(), nullptr, not_repo);
    auto r = NewRootedPosixEnv(path);
    if (!r.ok()) return r.status().code() == Status::Code::kNotFound ? not_repo : r.status();
    rooted = std::move(r).value();
    env = rooted.get();
  }
  std::string cfg_path = path + "/chainfs.json";
  auto text = env->ReadWholeFile(cfg_path, 1 << 20);
  if (!text.ok()) {
    if (text.status().code() != Status::Code::kNotFound) return text.status();
    return OpenForeign(path, env, std::move(rooted), not_repo);
  }
  auto cfg = RepoConfig::Decode(text.value(), cfg_path);
  if (!cfg.ok()) return cfg.status();
  return std::unique_ptr<Repository>(new Repository(path, cfg.value(), env, std::move(rooted)));
}

Repository::~Repository() {
  for (const LayerFormat* f : LayerFormats())
    if (f->quiesce != nullptr) f->quiesce();
}

std::string Repository::GroupDir(const std::string& g) const {
  return foreign_ ? foreign_->GroupDir(g) : path_ + "/groups/" + g;
}
std::string Repository::CheckpointDir(const std::string& g) const {
  return foreign_ ? foreign_->GroupDir(g) : GroupDir(g) + "/checkpoints";
}
std::string Repository::DeltaDir(const std::string& g) const { return GroupDir(g) + "/deltas"; }
std::string Repository::DeltaPath(const std::string& g, const std::string& f) const {
  return foreign_ ? foreign_->DeltaPath(g, f) : DeltaDir(g) + "/" + f;
}
std::string Repository::IntentPath(const std::string& g) const {
  return GroupDir(g) + "/intent.json";
}

bool IsManifestTemporary(const std::string& file) {
  const std::string_view f = file;
  return f.find(".json.tmp.") != std::string_view::npos &&
         !(f.size() > 5 && f.substr(f.size() - 5) == ".json");
}

namespace {
// A group directory is a group once a checkpoint is committed in it: the
// directories a first backup creates before it fails or is killed are not.
bool HasManifest(Env* env, const std::string& dir) {
  auto names = env->ListDir(dir);
  if (!names.ok()) return false;
  for (const std::string& f : names.value()) {
    if (f.size() > 5 && f.compare(f.size() - 5, 5, ".json") == 0 &&
        ValidateName("checkpoint", f.substr(0, f.size() - 5)).ok())
      return true;
  }
  return false;
}
}  // namespace

Result<std::vector<std::string>> Repository::ListGroups() const {
  if (foreign_) return foreign_->ListGroups();
  std::vector<std::string> out;
  CHAINFS_ASSIGN_OR_RETURN(std::vector<std::string> names, env_->ListDir(path_ + "/groups"));
  for (const std::string& n : names) {
    if (ValidateName("group", n).ok() && HasManifest(env_, GroupDir(n) + "/checkpoints"))
      out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

// Refuses, in g, the checkpoints whose sequence breaks the group's order:
// two with one sequence (all of them), or a parent whose sequence is not
// smaller than its child's (both: which digit flipped cannot be told).
// REQUIRES: g's checkpoints ordered by sequence (equal ones are neighbours).
void RefuseDisorder(const std::string& dir, GroupState* g) {
  std::map<std::string, std::string> why;  // name -> reason
  const std::vector<Checkpoint>& all = g->checkpoints;
  for (size_t i = 0, j; i < all.size(); i = j) {
    for (j = i + 1; j < all.size() && all[j].sequence == all[i].sequence;) ++j;
    for (size_t k = i; j - i > 1 && k < j; ++k)
      why.emplace(all[k].name, dir + "/" + all[k].name + ".json: field 'sequence' " +
                                   std::to_string(all[k].sequence) + " is also the sequence of " +
                                   all[k + 1 < j ? k + 1 : i].name + ".json");
  }
  std::unordered_map<std::string_view, const Checkpoint*> by_name;  // unindexed yet
  for (const Checkpoint& c : g->checkpoints) by_name.emplace(c.name, &c);
  for (const Checkpoint& c : g->checkpoints) {
    auto found = c.parent.empty() ? by_name.end() : by_name.find(c.parent);
    const Checkpoint* p = found == by_name.end() ? nullptr : found->second;
    if (p == nullptr || p->sequence < c.sequence) continue;
    const std::string reason = dir + "/" + c.name + ".json: field 'parent' names " + p->name +
                               ", whose sequence " + std::to_string(p->sequence) +
                               " is not smaller than this checkpoint's " +
                               std::to_string(c.sequence);
    why.emplace(c.name, reason);
    why.emplace(p->name, reason);
  }
  if (why.empty()) return;
  std::vector<Checkpoint> kept;
  for (Checkpoint& c : g->checkpoints) {
    auto it = why.find(c.name);
    if (it == why.end()) kept.push_back(std::move(c));
    else g->refused.push_back({c.name, dir + "/" + c.name + ".json", it->second});
  }
  g->checkpoints = std::move(kept);
}

}  // namespace

Result<GroupState> Repository::LoadGroup(const std::string& group, ManifestSource from) const {
  if (foreign_) return foreign_->LoadGroup(group);
  CHAINFS_RETURN_IF_ERROR(ValidateName("group", group));
  GroupState g;
  g.name = group;
  std::string dir = CheckpointDir(group);
  auto info = env_->Stat(dir);
  if (!info.ok() && info.status().code() != Status::Code::kNotFound)
    return info.status();  // e.g. a link where the layout has a directory
  if (!info.ok() || !info.value().is_dir)
    return Status::NotFound("group '" + group + "' not found in " + path_);
  // Stamps that changed before this instant minus kCatalogSettleNs are
  // recorded (catalog.h): taken before the listing that gives them.
  const int64_t settled_before =
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::system_clock::now().time_since_epoch()).count() - kCatalogSettleNs;
  // The listing (an lstat per manifest) and the catalogue's decoding, side
  // by side: each was about a third of a deep group's load.
  Result<std::vector<DirEntryInfo>> listed = Status::NotFound("");
  Catalog catalog;
  ParallelFor(2, 2, 2, [&](size_t i) {
    if (i == 0) {
      listed = env_->ListDirInfo(dir);
      return;
    }
    if (from != ManifestSource::kCatalog) return;
    const std::string where = CatalogPath(group);
    // Mapped, not copied (as a view map): 1.9 MB at depth 10,000 that a
    // copy faulted in fresh, a tenth of a backup's page faults there.
    // Writers replace the catalogue by rename, never in place.
    auto bytes = env_->ReadWholeFileBytes(where, kMaxCatalogBytes);
    auto decoded = bytes.ok() ? DecodeCatalog(bytes.value()->bytes(), where, group)
                              : Result<Catalog>(bytes.status());
    if (decoded.ok()) catalog = std::move(decoded).value();
    else if (decoded.status().code() != Status::Code::kNotFound)
      spdlog::info("manifest catalogue not used: {}", decoded.status().message());
  });
  CHAINFS_RETURN_IF_ERROR(listed.status());
  std::vector<DirEntryInfo>& files = listed.value();
  // A manifest whose file still has the catalogue's stamp is taken from
  // it, in place: at depth 10,000 a record per file with its own copy of
  // the checkpoint, moved twice more, was a third of the load.
  std::unordered_map<std::string_view, uint32_t> cached;
  cached.reserve(catalog.size());
  for (uint32_t i = 0; i < catalog.size(); ++i) cached.emplace(catalog.checkpoints[i].name, i);
  const size_t cataloged = catalog.size();
  std::vector<uint8_t> hit(cataloged, 0);
  size_t hits = 0;
  // Manifests not in the catalogue are read on several threads in a deep
  // group: reading 1,000 one after another, disk-cold, took ~170 ms of a
  // fresh mount's first lookup (depth 1: under 1 ms).
  struct Read {
    std::string name, where;
    std::optional<ManifestStamp> stamp;
    Result<Checkpoint> cp = Status::NotFound("");
    bool skip = false;
  };
  std::vector<Read> reads;
  for (DirEntryInfo& f : files) {
    const std::string& file = f.name;
    if (IsManifestTemporary(file)) g.manifest_temporaries.push_back(file);
    if (file.size() <= 5 || file.compare(file.size() - 5, 5, ".json") != 0) continue;
    const std::string_view name(file.data(), file.size() - 5);
    const std::optional<ManifestStamp> stamp = StampOf(f.info);
    // A catalogue entry's name is valid (DecodeCatalog checks it).
    if (auto it = cached.find(name);
        stamp && it != cached.end() && catalog.stamps[it->second] == *stamp) {
      hit[it->second] = 1;
      ++hits;
      continue;
    }
    Read r;
    r.name = std::string(name);
    if (!ValidateName("checkpoint", r.name).ok()) continue;  // temporaries, foreign files
    r.where = dir + "/" + file;
    r.stamp = stamp;
    reads.push_back(std::move(r));
  }
  ParallelFor(reads.size(), kParallelManifests, kManifestThreads, [&](size_t i) {
    Read& r = reads[i];
    auto text = env_->ReadWholeFile(r.where, kMaxManifestBytes);
    if (!text.ok() && text.status().code() == Status::Code::kNotFound) {
      r.skip = true;  // removed meanwhile
      return;
    }
    r.cp = text.ok() ? Checkpoint::Decode(text.value(), r.where) : Result<Checkpoint>(text.status());
    if (r.cp.ok() && (r.cp->name != r.name || r.cp->group != group))
      r.cp = Status::Corruption(r.where + ": names checkpoint " + r.cp->group + "/" + r.cp->name);
  });
  // The checkpoints: the catalogue's that were hit, where they lie, then
  // those read. Their settled stamps go to the next catalogue.
  auto settled = [&](const std::optional<ManifestStamp>& st) {
    return st && st->ctime_ns < settled_before;
  };
  g.manifest_stamps.reserve(hits + reads.size());
  std::vector<Checkpoint> all = std::move(catalog.checkpoints);
  size_t kept = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    if (!hit[i]) continue;  // dropped: its manifest changed or went
    if (settled(catalog.stamps[i])) g.manifest_stamps.emplace(all[i].name, catalog.stamps[i]);
    if (kept != i) all[kept] = std::move(all[i]);
    ++kept;
  }
  all.resize(kept);
  for (Read& r : reads) {
    if (r.skip) continue;
    if (!r.cp.ok()) {
      g.refused.push_back({r.name, r.where, r.cp.status().message()});
      continue;
    }
    if (settled(r.stamp)) g.manifest_stamps.emplace(r.name, *r.stamp);
    all.push_back(std::move(r.cp).value());
  }
  // Ordered by sequence (then name: equal ones are refused, in a stable
  // order). The catalogue's are in order already; otherwise each
  // checkpoint is moved once, through a sorted index (sorting the
  // checkpoints themselves moved each ~14 times at depth 10,000).
  auto before = [](const Checkpoint& a, const Checkpoint& b) {
    return a.sequence != b.sequence ? a.sequence < b.sequence : a.name < b.name;
  };
  if (!std::is_sorted(all.begin(), all.end(), before)) {
    std::vector<uint32_t> order(all.size());
    for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](uint32_t a, uint32_t b) { return before(all[a], all[b]); });
    std::vector<Checkpoint> sorted;
    sorted.reserve(all.size() + 1);
    for (uint32_t i : order) sorted.push_back(std::move(all[i]));
    all = std::move(sorted);
  }
  if (all.capacity() < all.size() + 1) all.reserve(all.size() + 1);  // a backup appends its new one
  g.checkpoints = std::move(all);
  g.catalog_current = hits == cataloged && hits == g.manifest_stamps.size();
  RefuseDisorder(dir, &g);
  std::sort(g.refused.begin(), g.refused.end(),
            [](const RefusedCheckpoint& a, const RefusedCheckpoint& b) { return a.name < b.name; });
  g.Index();
  return g;
}

std::string Repository::CatalogPath(const std::string& group) const {
  return GroupDir(group) + "/catalog";
}

Status Repository::WriteCatalog(const GroupState& g) const {
  if (foreign_ || g.catalog_current) return Status::Ok();
  std::vector<std::pair<ManifestStamp, const Checkpoint*>> entries;
  for (const Checkpoint& c : g.checkpoints)
    if (auto it = g.manifest_stamps.find(c.name); it != g.manifest_stamps.end())
      entries.push_back({it->second, &c});
  // No fsync of its own: a catalogue torn by a crash fails its checksum and
  // is ignored; the rename makes a whole one visible at once.
  return env_->WriteFileAtomicNoSync(CatalogPath(g.name), EncodeCatalog(g.name, entries));
}

std::string Repository::ManifestPath(const std::string& group,
                                     const std::string& checkpoint) const {
  if (foreign_) return foreign_->ManifestPath(group, checkpoint);
  return CheckpointDir(group) + "/" + checkpoint + ".json";
}

Result<std::shared_ptr<const Layer>> Repository::OpenLayer(const std::string& group,
                                                           const std::string& checkpoint,
                                                           const DiskEntry& disk) const {
  const std::string path = DeltaPath(group, disk.delta_file);
  std::shared_ptr<const Layer> layer;
  {
    std::lock_guard<std::mutex> lock(layers_mu_);
    auto it = layers_.find(disk.LayerKey(path));
    if (it != layers_.end()) layer = it->second.layer.lock();
  }
  if (layer == nullptr) {
    CHAINFS_ASSIGN_OR_RETURN(layer, OpenAndShare(path, disk));
  }
  // Once per open, cached or not: another manifest entry may name the file.
  CHAINFS_RETURN_IF_ERROR(
      VerifyBinding(*layer, ManifestPath(group, checkpoint), group, checkpoint, disk).status());
  return layer;
}

Result<std::shared_ptr<const Layer>> Repository::OpenAndShare(const std::string& path,
                                                              const DiskEntry& disk) const {
  const LayerFormat* format = FindLayerFormat(disk.format);
  if (format == nullptr)
    return Status::NotSupported(path + ": unknown delta format '" + disk.format +
                                "'; this chainfs reads " + LayerFormatNames());
  auto id_for = [&](uint64_t fingerprint) { return LayerIdFor(path, fingerprint); };
  std::shared_ptr<const Layer> layer;
  if (disk.part.empty()) {
    CHAINFS_ASSIGN_OR_RETURN(layer, OpenLayerFile(layer_env_.get(), path, format, id_for));
  } else {
    if (format->open_part == nullptr)
      return Status::NotSupported(path + ": format '" + disk.format + "' has no parts (asked for '" +
                                  disk.part + "')");
    CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file, layer_env_->NewRandomAccessFile(path));
    CHAINFS_ASSIGN_OR_RETURN(layer, format->open_part(std::move(file), disk.part));
  }
  if (!foreign_ && layer->block_size() != config_.block_size)
    return Status::Corruption(path + ": block size " + std::to_string(layer->block_size()) +
                              " differs from the repository's " +
                              std::to_string(config_.block_size));
  if (layer->virtual_size() > kMaxVirtualSize)  // the format's own check may be laxer
    return Status::Corruption(path + ": virtual size " + std::to_string(layer->virtual_size()) +
                              " is above the largest chainfs accepts (2^56 bytes, 64 PiB)");
  std::lock_guard<std::mutex> lock(layers_mu_);
  LayerSlot& slot = layers_[disk.LayerKey(path)];
  if (auto existing = slot.layer.lock()) return existing;  // another thread won
  slot.layer = layer;
  return layer;
}

const LayerFormat& Repository::write_format() const { return WriteLayerFormat(); }

Result<std::unique_ptr<LayerWriter>> Repository::CreateDelta(const std::string& file,
                                                             LayerIdentity identity,
                                                             uint64_t virtual_size,
                                                             WriteMode mode) const {
  const std::string path = DeltaPath(identity.group, file);
  identity.id = DeltaId::Random();
  LayerWriterOptions opts;
  opts.block_size = config_.block_size;
  opts.virtual_size = virtual_size;
  opts.compress = config_.compression == "zstd";
  opts.compression_level = config_.compression_level;
  opts.mode = mode;
  opts.identity = std::move(identity);
  return write_format().create_writer(env_, path, opts);
}

Result<std::shared_ptr<const Layer>> Repository::OpenChainLayer(const std::string& group,
                                                                const ChainLink& link) const {
  return OpenChainLayer(group, link.checkpoint->name, *link.disk);
}

Result<std::shared_ptr<const Layer>> Repository::OpenChainLayer(const std::string& group,
                                                                const std::string& checkpoint,
                                                                const DiskEntry& disk) const {
  CHAINFS_ASSIGN_OR_RETURN(std::shared_ptr<const Layer> layer, OpenLayer(group, checkpoint, disk));
  if (layer->virtual_size() != disk.virtual_size)
    return Status::Corruption(layer->location() + ": virtual size " +
                              std::to_string(layer->virtual_size()) + " but manifest of " +
                              checkpoint + " says " + std::to_string(disk.virtual_size));
  return layer;
}

namespace {

// What the lazy layers of one view share: how to take a layer's id, find its
// file and open a link, and the links' manifest entries.
struct LazyChain {
  // The layer table's id of (location, fingerprint): Repository::LayerIdFor.
  std::function<uint64_t(const std::string&, uint64_t)> id_for;
  // The path of a delta file: Repository::DeltaPath.
  std::function<std::string(const std::string&)> delta_path;
  // Repository::OpenChainLayer of (checkpoint, entry).
  std::function<Result<std::shared_ptr<const Layer>>(const std::string&, const DiskEntry&)> open;
  // Opens a delta file to read located entries from (through the
  // repository's descriptor cache), without opening it as a layer.
  std::function<Result<std::unique_ptr<RandomAccessFile>>(const std::string&)> open_file;
  // The view's group snapshot, when shared, which links point into; else
  // copies of the entries (the snapshot the view came from may go first).
  std::shared_ptr<const GroupState> snapshot;
  std::vector<std::pair<std::string, DiskEntry>> copies;
  std::vector<std::pair<const std::string*, const DiskEntry*>> links;  // (checkpoint, entry)
};

// A layer of a view opened from a view map: what the map and the manifest
// entry tell (block size, virtual size) is known without the file; its path
// is made on the first call of location() and its id asked of the
// repository's layer table on the first call of id() (most layers of a deep
// view are shadowed whole and never asked: at depth 10,000, taking 10,000
// ids was a third of a view's open); the file is opened, bound to its entry
// and checked (Repository::OpenChainLayer) on the first call that needs its
// contents. A failed open is not kept: the next call tries again. A call
// that cannot return an error (ForEachExtent, BlockHash, StoredLength,
// WillNeed, identity) gets nothing from a layer that cannot be opened, and
// the failure is logged; View never asks a mapped view's layers for their
// extents, and its reads (ReadBlock) report the error.
//
// A layer whose entries the map located (LocatedEntry: the small deltas of a
// deep chain) serves those entries from its file alone, without reading its
// header or index: reads, hashes, stored lengths and hints go to the stored
// bytes where the map says, checked by the map's checksums
// (format->read_located), and Load() opens only the file (through the
// descriptor cache, as a layer would: an open view keeps reading a file a
// consolidation removes). Anything else opens it whole, as above.
class LazyLayer : public Layer {
 public:
  // Link `link` of chain, whose entry has an index digest; chain outlives it.
  // located: its entries the map located, by entry (format: how to read them;
  // null when there are none).
  LazyLayer(const LazyChain* chain, size_t link, uint32_t block_size,
            const LayerFormat* format = nullptr, const LocatedEntry* located = nullptr,
            size_t located_count = 0)
      : chain_(chain),
        format_(format),
        located_(located),
        link_(static_cast<uint32_t>(link)),
        located_count_(format != nullptr ? static_cast<uint32_t>(located_count) : 0),
        block_size_(block_size) {}
  ~LazyLayer() override { delete slow_.load(std::memory_order_acquire); }
  LazyLayer(const LazyLayer&) = delete;
  LazyLayer& operator=(const LazyLayer&) = delete;

  // Taken once and kept: ids are never reused, so even two threads that
  // got different ones (the table's slot changed between their calls)
  // would both name this layer's bytes; the first one stored stays.
  uint64_t id() const override {
    uint64_t id = id_.load(std::memory_order_acquire);
    if (id != 0) return id;
    uint64_t mine = chain_->id_for(location(), *entry().index_digest);
    if (id_.compare_exchange_strong(id, mine, std::memory_order_acq_rel)) return mine;
    return id;
  }
  uint64_t virtual_size() const override { return entry().virtual_size; }
  uint32_t block_size() const override { return block_size_; }
  // Made on first use: most layers of a deep view are never asked.
  const std::string& location() const override {
    Slow& slow = Lazy();
    std::call_once(slow.location_once, [&] { slow.location = chain_->delta_path(entry().delta_file); });
    return slow.location;
  }
  const LayerIdentity* identity() const override {
    const Layer* l = Logged();
    return l ? l->identity() : nullptr;
  }
  void ForEachExtent(const std::function<void(const LayerExtent&)>& fn) const override {
    if (const Layer* l = Logged()) l->ForEachExtent(fn);
  }
  Status ReadBlock(uint64_t entry, char* out) const override {
    if (const LocatedEntry* at = Located(entry)) {
      CHAINFS_ASSIGN_OR_RETURN(const RandomAccessFile* f, File());
      return format_->read_located(*f, at->loc, block_size_, out);
    }
    CHAINFS_ASSIGN_OR_RETURN(const Layer* l, Get());
    return l->ReadBlock(entry, out);
  }
  std::optional<ContentHash> BlockHash(uint64_t entry) const override {
    if (const LocatedEntry* at = Located(entry)) return at->loc.stored.content;
    const Layer* l = Logged();
    return l ? l->BlockHash(entry) : std::nullopt;
  }
  uint64_t StoredLength(uint64_t entry) const override {
    if (const LocatedEntry* at = Located(entry)) return at->loc.stored.size;
    const Layer* l = Logged();
    return l ? l->StoredLength(entry) : 0;
  }
  std::optional<StoredLocation> Locate(uint64_t entry) const override {
    if (const LocatedEntry* at = Located(entry)) return at->loc;
    const Layer* l = Logged();
    return l ? l->Locate(entry) : std::nullopt;
  }
  Status Load() const override {
    if (located_count_ > 0) return File().status();
    return Get().status();
  }
  bool Loaded() const override {
    return opened_.load(std::memory_order_acquire) != nullptr ||
           file_.load(std::memory_order_acquire) != nullptr;
  }
  void WillNeed(uint64_t first, uint64_t count) const override {
    WillNeedRuns({{first, count}});
  }
  void WillNeedRuns(const std::vector<EntryRun>& runs) const override {
    // Only a hint: a layer that cannot be opened is the read's to report.
    if (AllLocated(runs)) {
      auto f = File();
      if (!f.ok()) return;
      WillNeedRanges ranges;
      for (const EntryRun& r : runs)
        for (uint64_t e = r.first; e < r.first + r.count; ++e) {
          const StoredLocation& loc = Located(e)->loc;
          ranges.Add(loc.offset, loc.stored.size);
        }
      ranges.Issue(*f.value(), kWillNeedMaxGap);
      return;
    }
    if (auto l = Get(); l.ok()) l.value()->WillNeedRuns(runs);
  }
  std::optional<FileSpan> RawSpan(uint64_t entry, uint32_t offset, uint32_t n) const override {
    // A located entry is checked and decoded: it has no span.
    if (Located(entry) != nullptr) return std::nullopt;
    // A layer that cannot be opened has no span: ReadBlock reports why.
    if (auto l = Get(); l.ok()) return l.value()->RawSpan(entry, offset, n);
    return std::nullopt;
  }
  Status ReadStored(uint64_t first, uint64_t count, std::string* scratch,
                    const StoredBlockFn& fn) const override {
    if (count > 0 && AllLocated({{first, count}})) {
      CHAINFS_ASSIGN_OR_RETURN(const RandomAccessFile* f, File());
      for (uint64_t e = first; e < first + count; ++e) {
        CHAINFS_ASSIGN_OR_RETURN(StoredBlock s,
                                 format_->read_located_stored(*f, Located(e)->loc, scratch));
        CHAINFS_RETURN_IF_ERROR(fn(s));
      }
      return Status::Ok();
    }
    CHAINFS_ASSIGN_OR_RETURN(const Layer* l, Get());
    return l->ReadStored(first, count, scratch, fn);
  }

 private:
  // The map's location of entry, if it has one (then it is read from there
  // even once the layer is open whole).
  const LocatedEntry* Located(uint64_t entry) const {
    if (located_count_ == 0) return nullptr;
    const LocatedEntry* end = located_ + located_count_;
    const LocatedEntry* at = std::lower_bound(
        located_, end, entry, [](const LocatedEntry& l, uint64_t e) { return l.entry < e; });
    return at != end && at->entry == entry ? at : nullptr;
  }
  bool AllLocated(const std::vector<EntryRun>& runs) const {
    if (located_count_ == 0) return false;
    for (const EntryRun& r : runs)
      for (uint64_t e = r.first; e < r.first + r.count; ++e)
        if (Located(e) == nullptr) return false;
    return true;
  }
  // The file located entries are read from, opened on first use.
  Result<const RandomAccessFile*> File() const {
    if (const RandomAccessFile* f = file_.load(std::memory_order_acquire)) return f;
    Slow& slow = Lazy();
    std::lock_guard<std::mutex> lock(slow.mu);
    if (slow.file == nullptr) {
      CHAINFS_ASSIGN_OR_RETURN(slow.file, chain_->open_file(location()));
      file_.store(slow.file.get(), std::memory_order_release);
    }
    return slow.file.get();
  }

  Result<const Layer*> Get() const {
    if (const Layer* l = opened_.load(std::memory_order_acquire)) return l;
    Slow& slow = Lazy();
    std::lock_guard<std::mutex> lock(slow.mu);
    if (slow.layer == nullptr) {
      CHAINFS_ASSIGN_OR_RETURN(slow.layer, chain_->open(*chain_->links[link_].first, entry()));
      if (slow.layer->id() != id() || slow.layer->block_size() != block_size_) {
        Status st = Status::Corruption(location() + ": opened as another layer than its view map names");
        slow.layer.reset();
        return st;
      }
      opened_.store(slow.layer.get(), std::memory_order_release);
    }
    return slow.layer.get();
  }
  const Layer* Logged() const {
    auto l = Get();
    if (!l.ok()) {
      spdlog::error("{}", l.status().message());
      return nullptr;
    }
    return l.value();
  }

  const DiskEntry& entry() const { return *chain_->links[link_].second; }

  // What only a layer that is asked for its path or contents needs, made
  // then: most of a deep view's thousands of layers never are, and this
  // was most of their size (a view's open writes them all to fresh memory).
  struct Slow {
    std::once_flag location_once;
    std::string location;  // set once, under location_once
    std::mutex mu;
    std::unique_ptr<RandomAccessFile> file;  // guarded by mu
    std::shared_ptr<const Layer> layer;      // guarded by mu
  };
  Slow& Lazy() const {
    if (Slow* s = slow_.load(std::memory_order_acquire)) return *s;
    auto made = std::make_unique<Slow>();
    Slow* expected = nullptr;
    if (slow_.compare_exchange_strong(expected, made.get(), std::memory_order_acq_rel))
      return *made.release();
    return *expected;  // another thread's, made meanwhile
  }

  const LazyChain* const chain_;
  const LayerFormat* const format_;    // reads located entries
  const LocatedEntry* const located_;  // by entry; owned by LazyLayers
  const uint32_t link_;
  const uint32_t located_count_;
  const uint32_t block_size_;
  mutable std::atomic<uint64_t> id_{0};  // 0: not taken yet
  mutable std::atomic<Slow*> slow_{nullptr};  // owned
  mutable std::atomic<const RandomAccessFile*> file_{nullptr};  // slow_->file's
  mutable std::atomic<const Layer*> opened_{nullptr};           // slow_->layer's
};

// A view's lazy layers, made together (one allocation, not one per link)
// and kept alive together: the view holds each through a shared_ptr that
// shares this one's ownership.
struct LazyLayers {
  LazyChain chain;
  std::vector<LocatedEntry> located;             // the map's, by layer then entry
  std::vector<std::optional<LazyLayer>> layers;  // by link; built in place
};

// The located entries of a map of view (whose layers are its chain's, by
// place): every entry of each layer that serves at most kMaxLocatedPerLayer
// entries of the view, when the layer tells where each one lies.
std::vector<LocatedEntry> LocateSmallLayers(const View& view) {
  const size_t n = view.layers().size();
  std::vector<std::vector<uint64_t>> served(n);
  std::vector<char> too_many(n, 0);
  for (const MapRun& r : view.map().runs()) {
    if (r.is_zero() || too_many[r.layer]) continue;
    const auto [lo, last] = r.EntriesOf(r.start, r.end);
    std::vector<uint64_t>& v = served[r.layer];
    if (v.size() + (last - lo + 1) > kMaxLocatedPerLayer) {
      too_many[r.layer] = 1;
      v.clear();
      continue;
    }
    for (uint64_t e = lo; e <= last; ++e) v.push_back(e);
  }
  std::vector<LocatedEntry> out;
  for (size_t li = 0; li < n; ++li) {
    std::vector<uint64_t>& v = served[li];
    if (v.empty()) continue;
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    const size_t mark = out.size();
    for (uint64_t e : v) {
      std::optional<StoredLocation> loc = view.layers()[li].layer->Locate(e);
      if (!loc) {  // a format that locates nothing: the layer is opened when read
        out.resize(mark);
        break;
      }
      out.push_back({static_cast<uint32_t>(li), e, *loc});
    }
  }
  return out;
}

// The view map key of cp's chain of disk (GroupState::Index took it).
std::optional<uint64_t> MapKeyOf(const GroupState& g, const Checkpoint& cp,
                                 const std::string& disk) {
  const DiskChainInfo* info = g.ChainInfo(cp, disk);
  return info != nullptr ? info->view_map_key : std::nullopt;
}

// The largest map file read or written (a disk's map is 32 bytes a run).
constexpr size_t kMaxViewMapBytes = 64 << 20;

}  // namespace

uint64_t Repository::LayerIdFor(const std::string& path, uint64_t fingerprint) const {
  std::lock_guard<std::mutex> lock(layers_mu_);
  LayerSlot& slot = layers_[path];
  if (slot.id == 0 || slot.fingerprint != fingerprint) {
    slot.id = NextLayerId();
    slot.fingerprint = fingerprint;
  }
  return slot.id;
}

std::string Repository::MapDir(const std::string& group) const { return GroupDir(group) + "/maps"; }

std::string Repository::MapPath(const std::string& group, const std::string& checkpoint,
                                const std::string& disk) const {
  return MapDir(group) + "/" + checkpoint + "." + disk + ".map";
}

bool Repository::WantsViewMap(const GroupState& g, const Checkpoint& cp, const std::string& disk) {
  const DiskChainInfo* info = g.ChainInfo(cp, disk);
  if (info == nullptr || !info->broken.empty() || info->depth < kMinViewMapDepth) return false;
  return &cp == g.Newest() || cp.sequence % kViewMapSpacing == 0;
}

Result<ViewMapFile> Repository::ReadViewMap(const GroupState& g,
                                            const std::vector<ChainLink>& chain, size_t i,
                                            uint64_t key, const std::string& disk) const {
  const Checkpoint& at = *chain[i].checkpoint;
  const std::string path = MapPath(g.name, at.name, disk);
  // Mapped, not copied: the bytes are decoded here and dropped.
  CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<const FileBytes> bytes,
                           env_->ReadWholeFileBytes(path, kMaxViewMapBytes));
  ViewMapExpect expect{key, config_.block_size, {}};
  // A chain of one size (the common case) needs no walk of its 10,000 links.
  if (const DiskChainInfo* info = g.ChainInfo(at, disk); info != nullptr && info->sizes_uniform) {
    expect.uniform_layers = static_cast<uint32_t>(chain.size() - i);
    expect.uniform_size = chain[i].disk->virtual_size;
  } else {
    uint64_t clip = UINT64_MAX;
    for (size_t j = i; j < chain.size(); ++j)
      expect.clip_bytes.push_back(clip = std::min(clip, chain[j].disk->virtual_size));
  }
  return DecodeViewMap(bytes->bytes(), path, expect);
}

std::optional<Result<std::shared_ptr<const View>>> Repository::OpenViewFromMap(
    const GroupState& g, const std::shared_ptr<const GroupState>& shared,
    const std::vector<ChainLink>& chain, const std::string& disk, const std::string& label,
    BlockReader* reader, ViewLayers layers) const {
  const bool serving_only = shared != nullptr && layers == ViewLayers::kByOwner;
  for (size_t i = 0; i + kMinViewMapDepth <= chain.size(); ++i) {
    const Checkpoint& at = *chain[i].checkpoint;
    if (i > 0 && at.sequence % kViewMapSpacing != 0) continue;
    const std::optional<uint64_t> key = MapKeyOf(g, at, disk);
    if (!key) continue;  // a link without its delta id or index digest: no map
    Result<ViewMapFile> map = ReadViewMap(g, chain, i, *key, disk);
    if (!map.ok()) {
      if (map.status().code() != Status::Code::kNotFound)  // absent or stale: quietly
        spdlog::warn("view map not used (the view is composed from its layers): {}",
                     map.status().message());
      continue;
    }
    // The layers above the map's view are opened now (as OpenView's), the
    // map's own when a read needs them.
    std::vector<std::shared_ptr<const Layer>> above_refs;
    std::vector<const Layer*> above;
    std::vector<uint64_t> above_clip;
    uint64_t clip = UINT64_MAX;
    for (size_t j = 0; j < i; ++j) {
      auto layer = OpenChainLayer(g.name, chain[j]);
      if (!layer.ok()) return Result<std::shared_ptr<const View>>(layer.status());
      above.push_back(layer.value().get());
      above_clip.push_back(clip = std::min(clip, chain[j].disk->virtual_size));
      above_refs.push_back(std::move(layer).value());
    }
    ExtentMap composed =
        i == 0 ? std::move(map.value().map)
               : ExtentMap::Overlay(above, above_clip, map.value().map, above_clip.back());
    // index[j]: the view's layer index of chain[j], kDropped for a layer left
    // out. A view from a shared snapshot (the mount's, export's, a backup's
    // base: they only read it) holds its newest layer (its size and block size) and the layers a data
    // run names: at depth 10,000 most are shadowed whole, and building their
    // lazy layers was most of the view's open.
    constexpr uint32_t kDropped = UINT32_MAX;
    std::vector<uint32_t> index(chain.size(), serving_only ? kDropped : 0);
    if (serving_only) {
      index[0] = 0;
      for (const MapRun& r : composed.runs())
        if (!r.is_zero()) index[r.layer] = 0;
    }
    uint32_t kept = 0;
    for (uint32_t& x : index)
      if (x != kDropped) x = kept++;
    if (kept < chain.size()) composed.RenumberLayers(index);
    std::vector<View::LayerRef> refs;
    refs.reserve(kept);
    for (size_t j = 0; j < i; ++j)
      if (index[j] != kDropped)
        refs.push_back({std::move(above_refs[j]), chain[j].checkpoint->name});
    const size_t lazy_count = kept - refs.size();
    auto lazy = std::make_shared<LazyLayers>();
    lazy->chain.id_for = [this](const std::string& path, uint64_t fingerprint) {
      return LayerIdFor(path, fingerprint);
    };
    lazy->chain.delta_path = [this, group = g.name](const std::string& file) {
      return DeltaPath(group, file);
    };
    lazy->chain.open = [this, group = g.name](const std::string& cp, const DiskEntry& entry) {
      return OpenChainLayer(group, cp, entry);
    };
    lazy->chain.open_file = [this](const std::string& path) {
      return layer_env_->NewRandomAccessFile(path);
    };
    lazy->located = std::move(map.value().located);
    LazyChain& lc = lazy->chain;
    lc.links.reserve(lazy_count);
    std::vector<size_t> link_at;  // the chain index of each link
    link_at.reserve(lazy_count);
    if (shared != nullptr) {  // links point into it
      lc.snapshot = shared;
      for (size_t j = i; j < chain.size(); ++j)
        if (index[j] != kDropped) {
          lc.links.emplace_back(&chain[j].checkpoint->name, chain[j].disk);
          link_at.push_back(j);
        }
    } else {
      lc.copies.reserve(lazy_count);
      for (size_t j = i; j < chain.size(); ++j) {
        lc.copies.emplace_back(chain[j].checkpoint->name, *chain[j].disk);
        lc.links.emplace_back(&lc.copies.back().first, &lc.copies.back().second);
        link_at.push_back(j);
      }
    }
    lazy->layers = std::vector<std::optional<LazyLayer>>(lazy_count);
    const std::vector<LocatedEntry>& located = lazy->located;
    // Links and located entries are both in layer order: one cursor.
    auto first = located.begin();
    // A chain of one format (the common case) has it looked up once: each
    // link's entry is elsewhere in memory, a cache miss each at depth 10,000.
    const DiskChainInfo* top_info = g.ChainInfo(*chain[i].checkpoint, disk);
    const LayerFormat* uniform_format = top_info != nullptr && top_info->formats_uniform
                                            ? FindLayerFormat(chain[i].disk->format)
                                            : nullptr;
    for (size_t k = 0; k < lazy_count; ++k) {
      // The map's located entries of this link (the map's layer j - i), if
      // its format reads located entries.
      const uint32_t m = static_cast<uint32_t>(link_at[k] - i);
      while (first != located.end() && first->layer < m) ++first;
      auto last = first;
      while (last != located.end() && last->layer == m) ++last;
      const LayerFormat* format = nullptr;
      if (first != last)
        format = uniform_format != nullptr ? uniform_format
                                           : FindLayerFormat(lc.links[k].second->format);
      if (format != nullptr && format->read_located == nullptr) format = nullptr;
      std::optional<LazyLayer>& slot = lazy->layers[k];
      slot.emplace(&lazy->chain, k, config_.block_size, format,
                   located.data() + (first - located.begin()), static_cast<size_t>(last - first));
      first = last;
      refs.push_back({std::shared_ptr<const Layer>(lazy, &*slot), *lc.links[k].first});
    }
    return View::CreateWithMap(std::move(refs), std::move(composed), label, reader);
  }
  return std::nullopt;
}

Result<bool> Repository::WriteViewMap(const GroupState& g, const Checkpoint& cp,
                                      const std::string& disk) const {
  if (!WantsViewMap(g, cp, disk)) return false;
  CHAINFS_ASSIGN_OR_RETURN(std::vector<ChainLink> chain, ResolveChain(g, cp, disk));
  const std::optional<uint64_t> key = MapKeyOf(g, cp, disk);
  if (!key) return false;
  const std::string path = MapPath(g.name, cp.name, disk);
  // A view that holds every layer of the chain, so that the runs written
  // name layers by their place in it. Its lazy layers point into g, which
  // outlives it (a pointer that owns nothing): copying the chain's entries
  // instead, 10,000 at depth 10,000, was most of a deep backup's map.
  const std::shared_ptr<const GroupState> borrowed(std::shared_ptr<const GroupState>(), &g);
  CHAINFS_ASSIGN_OR_RETURN(std::shared_ptr<const View> view,
                           OpenViewOf(g, borrowed, cp, disk, nullptr, ViewLayers::kAll));
  const std::vector<LocatedEntry> located = LocateSmallLayers(*view);
  const size_t bytes = kViewMapHeaderSize + 16 + view->map().runs().size() * kViewMapRunSize +
                       located.size() * kViewMapLocatedSize;
  if (bytes > kMaxViewMapBytes) return false;  // too fragmented to be worth it
  CHAINFS_RETURN_IF_ERROR(env_->CreateDirs(MapDir(g.name)));
  CHAINFS_RETURN_IF_ERROR(env_->WriteFileAtomicNoDirSync(
      path, EncodeViewMap(*key, config_.block_size, view->size(),
                          static_cast<uint32_t>(chain.size()), view->map(), located)));
  return true;
}

Status Repository::UpdateViewMaps(const GroupState& g, const Checkpoint& cp) const {
  for (const DiskEntry& d : cp.disks) CHAINFS_RETURN_IF_ERROR(WriteViewMap(g, cp, d.name).status());
  if (const Checkpoint* parent = g.Find(cp.parent))
    for (const DiskEntry& d : parent->disks)
      if (!WantsViewMap(g, *parent, d.name))
        if (Status st = env_->RemoveFile(MapPath(g.name, parent->name, d.name));
            !st.ok() && st.code() != Status::Code::kNotFound)
          return st;
  return Status::Ok();
}

Result<int> Repository::RefreshViewMaps(const GroupState& g) const {
  std::set<std::string> wanted;
  std::vector<std::pair<const Checkpoint*, const DiskEntry*>> todo;
  for (const Checkpoint& cp : g.checkpoints)  // oldest first
    for (const DiskEntry& d : cp.disks)
      if (WantsViewMap(g, cp, d.name)) {
        wanted.insert(cp.name + "." + d.name + ".map");
        todo.push_back({&cp, &d});
      }
  auto names = env_->ListDir(MapDir(g.name));
  if (!names.ok() && names.status().code() != Status::Code::kNotFound) return names.status();
  bool removed = false;
  if (names.ok())
    for (const std::string& f : names.value())
      if (!wanted.count(f)) {
        Status st = env_->RemoveFile(MapDir(g.name) + "/" + f);
        if (!st.ok() && st.code() != Status::Code::kNotFound) return st;
        removed = true;
      }
  int written = 0;
  for (const auto& [cp, d] : todo) {
    // Opening the view reads its own map when it is valid: then nothing to do.
    CHAINFS_ASSIGN_OR_RETURN(std::vector<ChainLink> chain, ResolveChain(g, *cp, d->name));
    const std::optional<uint64_t> key = MapKeyOf(g, *cp, d->name);
    if (!key) continue;
    if (ReadViewMap(g, chain, 0, *key, d->name).ok()) continue;
    CHAINFS_ASSIGN_OR_RETURN(bool wrote, WriteViewMap(g, *cp, d->name));
    written += wrote ? 1 : 0;
  }
  if (removed || written > 0) CHAINFS_RETURN_IF_ERROR(env_->SyncDir(MapDir(g.name)));
  return written;
}

Result<std::shared_ptr<const View>> Repository::OpenView(const GroupState& g,
                                                         const Checkpoint& cp,
                                                         const std::string& disk,
                                                         BlockReader* reader) const {
  return OpenViewOf(g, nullptr, cp, disk, reader);
}

Result<std::shared_ptr<const View>> Repository::OpenView(std::shared_ptr<const GroupState> g,
                                                         const Checkpoint& cp,
                                                         const std::string& disk,
                                                         BlockReader* reader) const {
  return OpenViewOf(*g, g, cp, disk, reader);  // g lives on while OpenViewOf runs
}

Result<std::shared_ptr<const View>> Repository::OpenViewOf(const GroupState& g,
                                                           const std::shared_ptr<const GroupState>& shared,
                                                           const Checkpoint& cp,
                                                           const std::string& disk,
                                                           BlockReader* reader,
                                                           ViewLayers layers) const {
  CHAINFS_ASSIGN_OR_RETURN(std::vector<ChainLink> chain, ResolveChain(g, cp, disk));
  const std::string label = g.name + "/" + cp.name + "/" + disk;
  if (chain.size() >= kMinViewMapDepth)
    if (auto mapped = OpenViewFromMap(g, shared, chain, disk, label, reader, layers))
      return std::move(*mapped);
  // Opening a layer is a few system calls (open, fstat, header, footer and
  // index reads) that wait on the kernel more than on a core: a deep chain's
  // are opened by several threads at once. The first failure newest first
  // is the one reported, as if they were opened in order.
  std::vector<Result<std::shared_ptr<const Layer>>> opened(chain.size(),
                                                           Status::NotFound("not opened"));
  ParallelFor(chain.size(), kParallelOpenDepth, kOpenThreads,
              [&](size_t i) { opened[i] = OpenChainLayer(g.name, chain[i]); });
  std::vector<View::LayerRef> refs;
  refs.reserve(chain.size());
  for (size_t i = 0; i < chain.size(); ++i) {
    if (!opened[i].ok()) return opened[i].status();
    refs.push_back({std::move(opened[i]).value(), chain[i].checkpoint->name});
  }
  return View::Create(std::move(refs), label, reader);
}

Result<std::shared_ptr<const View>> Repository::OpenView(const std::string& group,
                                                         const std::string& checkpoint,
                                                         const std::string& disk,
                                                         BlockReader* reader) const {
  CHAINFS_RETURN_IF_ERROR(ValidateName("checkpoint", checkpoint));
  CHAINFS_RETURN_IF_ERROR(ValidateName("disk", disk));
  CHAINFS_ASSIGN_OR_RETURN(GroupState loaded, LoadGroup(group));
  // Nobody else has this snapshot: the view may keep it (and hold only the
  // layers that serve it) instead of copying the chain's entries.
  auto g = std::make_shared<const GroupState>(std::move(loaded));
  const Checkpoint* cp = g->Find(checkpoint);
  if (const RefusedCheckpoint* r = g->FindRefused(checkpoint); cp == nullptr && r != nullptr)
    return Status::Corruption("checkpoint " + group + "/" + checkpoint +
                              ": its " + r->what + " is refused: " + r->reason);
  if (cp == nullptr)
    return Status::NotFound("checkpoint '" + checkpoint + "' not found in group " + group);
  return OpenView(std::move(g), *cp, disk, reader);
}

Result<std::unique_ptr<RepoLock>> Repository::Lock(const std::string& purpose) const {
  if (foreign_)
    return Status::NotSupported(path_ + " is a " + foreign_->kind() +
                                ", which chainfs only reads (" + purpose +
                                " needs a chainfs repository; 'chainfs import' makes one)");
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  auto now = std::chrono::system_clock::now().time_since_epoch();
  std::string info = "pid " + std::to_string(::getpid()) + " on host " + host + " since " +
                     FormatTime(std::chrono::duration_cast<std::chrono::nanoseconds>(now).count()) +
                     ": " + purpose + "\n";
  std::string holder;
  auto lock = env_->LockFile(path_ + "/lock", info, &holder);
  if (!lock.ok()) {
    if (lock.status().code() != Status::Code::kBusy) return lock.status();
    return Status::Busy("repository " + path_ + " is locked by another writer (" + holder +
                        "); wait for it to finish");
  }
  return std::make_unique<RepoLock>(std::move(lock).value());
}

Result<int> Repository::CollectLeftovers(const std::string& group) const {
  auto g = LoadGroup(group);
  if (!g.ok()) return g.status();
  return CollectLeftovers(g.value());
}

Result<int> Repository::CollectLeftovers(const GroupState& g) const {
  const std::string& group = g.name;
  // A committed consolidation journal names new deltas that no manifest names
  // yet: they are not leftovers. It must be rolled forward first (chain/txn.h).
  CHAINFS_ASSIGN_OR_RETURN(bool journal, env_->Exists(GroupDir(group) + "/txn.json"));
  if (journal)
    return Status::Busy("group " + group + " has an unfinished consolidation journal " +
                        GroupDir(group) + "/txn.json; run 'chainfs consolidate' or "
                        "'chainfs prune' on the group (or any backup) to finish it first");
  CHAINFS_ASSIGN_OR_RETURN(std::optional<WriteIntent> intent,
                           ReadIntent(env_, IntentPath(group)));
  // The intent's deltas are leftovers unless its commit happened: then its
  // manifest names them, even if that manifest cannot be read right now.
  std::vector<std::string> doomed;
  if (intent && (intent->commits.empty() ||
                 !env_->FileExists(CheckpointDir(group) + "/" + intent->commits + ".json"))) {
    // Only with an intent to check against: a deep group names thousands.
    std::unordered_set<std::string_view> referenced;
    for (const auto& cp : g.checkpoints)
      for (const auto& d : cp.disks) referenced.insert(d.delta_file);
    for (const std::string& f : intent->deltas)
      if (!referenced.count(f)) doomed.push_back(DeltaPath(group, f));
  }
  if (auto names = env_->ListDir(GroupDir(group)); names.ok())
    for (const std::string& f : names.value())
      if (f.rfind("intent.json.tmp.", 0) == 0 || f.rfind("catalog.tmp.", 0) == 0)
        doomed.push_back(GroupDir(group) + "/" + f);
  if (auto names = env_->ListDir(MapDir(group)); names.ok())
    for (const std::string& f : names.value())
      if (f.find(".map.tmp.") != std::string::npos) doomed.push_back(MapDir(group) + "/" + f);
  for (const std::string& f : g.manifest_temporaries)  // as listed under the lock
    doomed.push_back(CheckpointDir(group) + "/" + f);
  int removed = 0;
  Status failed;  // the first failure; what was removed before it is still synced
  for (const std::string& path : doomed) {
    Status st = env_->RemoveFile(path);
    if (st.ok()) ++removed;
    else if (st.code() != Status::Code::kNotFound) failed = st;  // kNotFound: gone meanwhile
    if (!failed.ok()) break;
  }
  if (removed > 0) {
    CHAINFS_RETURN_IF_ERROR(env_->SyncDir(DeltaDir(group)));
    CHAINFS_RETURN_IF_ERROR(env_->SyncDir(CheckpointDir(group)));
  }
  if (failed.ok() && intent) failed = ClearIntent(env_, IntentPath(group));
  if (!failed.ok())
    return failed.Context("removing leftovers of failed writers in group " + group);
  return removed;
}

}  // namespace chainfs
