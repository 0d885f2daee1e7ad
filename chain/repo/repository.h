// Repository: a directory of groups, checkpoints and delta files.
//
//   REPO/chainfs.json                               RepoConfig
//   REPO/lock                                       writers' lock (flock) + holder
//   REPO/groups/GROUP/checkpoints/CHECKPOINT.json   Checkpoint manifests
//   REPO/groups/GROUP/deltas/CHECKPOINT.DISK.<id>.delta
//
// Readers (list, export, check, mount) take no lock: they see only
// checkpoints whose manifest exists, and a manifest appears by atomic rename
// after its deltas are durable. Writers (backup, consolidate, prune) hold the
// exclusive lock; flock is released by the kernel when a holder dies, so a
// stale lock is simply taken over.
#pragma once

#include <map>
#include <unordered_map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "chain/base/env.h"
#include "chain/base/file_cache.h"
#include "chain/layer/format.h"
#include "chain/layer/view.h"
#include "chain/repo/foreign.h"
#include "chain/repo/group_state.h"
#include "chain/repo/manifest.h"

namespace chainfs {

struct ViewMapFile;  // chain/repo/view_map.h

// Holds the repository's writer lock until destroyed.
class RepoLock {
 public:
  explicit RepoLock(std::unique_ptr<FileLock> lock) : lock_(std::move(lock)) {}
  RepoLock(const RepoLock&) = delete;
  RepoLock& operator=(const RepoLock&) = delete;

 private:
  std::unique_ptr<FileLock> lock_;
};

// A fresh, unique delta file name: CHECKPOINT.DISK.<16 hex>.delta. Unique so
// that a rewrite (consolidation) never collides with a file still in use.
std::string NewDeltaFileName(const std::string& checkpoint, const std::string& disk);

// True for a temporary of a manifest in checkpoints/ (Env::WriteFileAtomic's
// NAME.json.tmp.SUFFIX), never for a manifest itself.
bool IsManifestTemporary(const std::string& file);

// What Repository::Open accepts, as a command's --help says it.
inline constexpr const char* kSourceHelp =
    "repository, a virtnbdbackup output directory (or a directory of them), or a qcow2 image (or a "
    "directory of images)";

class Repository {
 public:
  // Creates REPO (or uses an empty existing directory) with a config. env
  // null: REPO is created by Env::Default() and filled through a rooted Env
  // (NewRootedPosixEnv) as Open's.
  static Status Init(const std::string& path, const RepoConfig& config, Env* env = nullptr);
  // Opens and validates REPO/chainfs.json; reads no block data. Without
  // one, REPO may be a foreign source (OpenForeignCatalog): a repository
  // then opens read-only over it. Every
  // storage call of the repository and of what works on it goes through env,
  // which must outlive the Repository; null (the default): an Env rooted at
  // REPO that the Repository owns, so that no symbolic link planted in the
  // repository is ever followed (tests wrap one, tests/chain/test_util.h).
  static Result<std::unique_ptr<Repository>> Open(const std::string& path, Env* env = nullptr);

  // Waits for the formats' background work on this repository's layers
  // (LayerFormat::quiesce) before its files and caches go.
  ~Repository();

  const std::string& path() const { return path_; }
  // Non-null when path is another tool's backups read as a repository
  // (chain/repo/foreign.h): read-only, Lock refuses it.
  const ForeignCatalog* foreign() const { return foreign_.get(); }
  Env* env() const { return env_; }
  const RepoConfig& config() const { return config_; }
  std::string GroupDir(const std::string& group) const;
  std::string CheckpointDir(const std::string& group) const;
  std::string DeltaDir(const std::string& group) const;
  std::string DeltaPath(const std::string& group, const std::string& file) const;
  // REPO/groups/G/intent.json: the record of a writer's new deltas
  // (chain/repo/write_intent.h).
  std::string IntentPath(const std::string& group) const;

  // Groups with at least one committed checkpoint, sorted.
  Result<std::vector<std::string>> ListGroups() const;
  // Reads every manifest of a group. A manifest that cannot be read,
  // decoded or validated, or that breaks the order of sequences (two with
  // the same sequence; a parent whose sequence is not smaller: both ends are
  // refused) goes to GroupState::refused with its reason; the others are
  // served. Fails only if the group's directory cannot be listed.
  // kCatalog takes each manifest whose file is unchanged from the group's
  // manifest catalogue (chain/repo/catalog.h) instead of reading it; the
  // result is the same. kManifests reads every manifest (check).
  enum class ManifestSource { kCatalog, kManifests };
  Result<GroupState> LoadGroup(const std::string& group,
                               ManifestSource from = ManifestSource::kCatalog) const;
  // REPO/groups/G/catalog.
  std::string CatalogPath(const std::string& group) const;
  // REQUIRES: the lock; g is the group as LoadGroup read it (plus
  // checkpoints committed since, which it leaves out). Rewrites the group's
  // catalogue with g's settled manifests, unless it holds exactly those
  // already. A cache: callers log a failure and go on.
  Status WriteCatalog(const GroupState& g) const;

  // g.ResolveChain(cp, disk) (chain/repo/group_state.h).
  static Result<std::vector<ChainLink>> ResolveChain(const GroupState& g, const Checkpoint& cp,
                                                     const std::string& disk) {
    return g.ResolveChain(cp, disk);
  }

  // Opens the view of disk at checkpoint cp. Layers are shared: a delta file
  // already open in this Repository is reused (same layer id, so one cache
  // entry serves every view that reaches a block). A chain with a view map
  // (chain/repo/view_map.h) opens from it: its layers below the map open on
  // the first read that needs them, and a failure to open one (gone,
  // replaced, damaged) fails that read, naming the file. The view and its
  // layers must not outlive this Repository (they open files through it).
  Result<std::shared_ptr<const View>> OpenView(const GroupState& g, const Checkpoint& cp,
                                               const std::string& disk,
                                               BlockReader* reader = nullptr) const;
  // The same, for a snapshot the caller shares (the mount's): cp is one of
  // its checkpoints. A view opened from a view map then keeps the snapshot
  // instead of copying its chain's manifest entries (at depth 10,000, the
  // copies were 40% of a view's open), and holds only the chain's newest
  // layer and the layers that serve a byte of the view: its layers() is not
  // the whole chain (at depth 10,000, about a third of it).
  Result<std::shared_ptr<const View>> OpenView(std::shared_ptr<const GroupState> g,
                                               const Checkpoint& cp, const std::string& disk,
                                               BlockReader* reader = nullptr) const;
  // The same, loading the group first (a snapshot of its own, shared as
  // the overload above's).
  Result<std::shared_ptr<const View>> OpenView(const std::string& group,
                                               const std::string& checkpoint,
                                               const std::string& disk,
                                               BlockReader* reader = nullptr) const;
  // Opens the delta of disk entry `disk` of checkpoint `checkpoint` through
  // the format registry, in the format the entry records; shared like
  // OpenView's layers. Its block size must be the repository's, and the file
  // must be the one the entry names (chain/repo/delta_binding.h: identity,
  // id and index digest, checked on every call, cached layer or not): a
  // mismatch is kCorruption naming the manifest, the file and the fields.
  Result<std::shared_ptr<const Layer>> OpenLayer(const std::string& group,
                                                 const std::string& checkpoint,
                                                 const DiskEntry& disk) const;
  // OpenLayer of one link of a chain, refused (kCorruption) unless the
  // layer's virtual size is the one its entry records: what OpenView opens
  // per layer, and what check verifies once per entry.
  Result<std::shared_ptr<const Layer>> OpenChainLayer(const std::string& group,
                                                      const ChainLink& link) const;
  // OpenChainLayer by the entry's checkpoint name and a copy of its entry
  // (a lazily opened layer keeps these, not the snapshot they came from).
  Result<std::shared_ptr<const Layer>> OpenChainLayer(const std::string& group,
                                                      const std::string& checkpoint,
                                                      const DiskEntry& disk) const;
  // The manifest file of checkpoint in group.
  std::string ManifestPath(const std::string& group, const std::string& checkpoint) const;

  // View maps (chain/repo/view_map.h): REPO/groups/G/maps/CP.DISK.map.
  std::string MapDir(const std::string& group) const;
  std::string MapPath(const std::string& group, const std::string& checkpoint,
                      const std::string& disk) const;
  // Whether writers keep a map of the view of disk at cp: a chain at least
  // kMinViewMapDepth deep, and cp the newest checkpoint or one whose sequence
  // is a multiple of kViewMapSpacing.
  static bool WantsViewMap(const GroupState& g, const Checkpoint& cp, const std::string& disk);
  // REQUIRES: the lock. Writes the map of the view of disk at cp (opened,
  // and so composed, from the nearest older map) when WantsViewMap, unless a
  // valid one is there. Returns whether it wrote one.
  Result<bool> WriteViewMap(const GroupState& g, const Checkpoint& cp,
                            const std::string& disk) const;
  // REQUIRES: the lock; g is the group as it is now. Brings its maps up to
  // date after a writer changed it: removes every file in maps/ that is not
  // the map of a view WantsViewMap (maps of checkpoints gone, of ones no
  // longer the newest, temporaries), then writes what is missing or stale,
  // oldest first (each composed over the last). Maps are a cache: callers
  // log a failure and go on. Returns how many maps were written.
  Result<int> RefreshViewMaps(const GroupState& g) const;
  // REQUIRES: the lock; g is the group as it is now, cp its newest
  // checkpoint, just committed. RefreshViewMaps for a new checkpoint, at the
  // cost of one view open: writes cp's maps, and removes those of its
  // parent (no longer the newest) that WantsViewMap no more.
  Status UpdateViewMaps(const GroupState& g, const Checkpoint& cp) const;

  // The format new deltas are written in (the registry's write format).
  const LayerFormat& write_format() const;
  // Creates the new delta file `file` of identity.group (O_EXCL) in the write
  // format, with this repository's block size and compression, recording
  // identity with a fresh random id (LayerWriter::identity() gives it back,
  // with the index digest after Finish, for BindEntry).
  Result<std::unique_ptr<LayerWriter>> CreateDelta(const std::string& file,
                                                   LayerIdentity identity,
                                                   uint64_t virtual_size,
                                                   WriteMode mode = WriteMode::kBuffered) const;

  // Takes the exclusive writer lock, or fails with kBusy naming the holder.
  Result<std::unique_ptr<RepoLock>> Lock(const std::string& purpose) const;

  // REQUIRES: the lock. Removes what failed writers left behind in a group,
  // and only what is recorded as theirs: temporary manifests (by their
  // name, Env::WriteFileAtomic's), and the deltas an intent record lists
  // (chain/repo/write_intent.h) unless its commit happened or a manifest
  // names them; then the record. Any other delta file no manifest names is
  // left in place (Check reports it). Returns how many files were removed;
  // a file that cannot be removed (or a directory that cannot be listed, an
  // intent record that cannot be read) is an error naming it, after what was
  // removed before it is made durable.
  Result<int> CollectLeftovers(const std::string& group) const;
  // The same with the group as the caller loaded it under the lock (a
  // writer that has just read it: no second read of every manifest).
  Result<int> CollectLeftovers(const GroupState& g) const;

  // Delta files are opened through one FileCache (chain/base/file_cache.h):
  // the cache keeps at most this many of their descriptors open, whatever
  // the depth of the chains (an evicted one closes when its last read ends).
  // Open sets DefaultFileCacheCapacity() (half the soft RLIMIT_NOFILE).
  size_t open_file_limit() const { return file_cache_.capacity(); }
  void SetOpenFileLimit(size_t n) { file_cache_.SetCapacity(n); }

 private:
  // A foreign source at path (chain/repo/foreign.h) read through env (owned
  // by the repository if owned is set); not_repo if no catalogue knows it.
  static Result<std::unique_ptr<Repository>> OpenForeign(const std::string& path, Env* env,
                                                         std::unique_ptr<Env> owned,
                                                         const Status& not_repo);
  Repository(std::string path, RepoConfig config, Env* env, std::unique_ptr<Env> owned_env)
      : path_(std::move(path)),
        config_(std::move(config)),
        owned_env_(std::move(owned_env)),
        env_(env) {}
  // Chains at least this deep open their layers on kOpenThreads threads.
  static constexpr size_t kParallelOpenDepth = 64;
  static constexpr unsigned kOpenThreads = 4;
  // Groups of at least this many manifest files read them on
  // kManifestThreads threads.
  static constexpr size_t kParallelManifests = 64;
  static constexpr unsigned kManifestThreads = 8;
  // Both OpenViews: shared is g when the caller shares it, else null.
  // Which layers the view holds: those that serve it when shared (a reader's
  // view), else all of the chain's, so that its map names each by its place
  // in the chain (what a view map records); kAll asks for all with shared.
  enum class ViewLayers { kByOwner, kAll };
  Result<std::shared_ptr<const View>> OpenViewOf(const GroupState& g,
                                                 const std::shared_ptr<const GroupState>& shared,
                                                 const Checkpoint& cp, const std::string& disk,
                                                 BlockReader* reader,
                                                 ViewLayers layers = ViewLayers::kByOwner) const;
  // OpenView from a view map of the chain (the view's own, or the nearest
  // older one's with the layers above it laid over it); nullopt when there
  // is no usable map. The lazy layers point into shared's entries when it is
  // not null, else into copies of them.
  std::optional<Result<std::shared_ptr<const View>>> OpenViewFromMap(
      const GroupState& g, const std::shared_ptr<const GroupState>& shared,
      const std::vector<ChainLink>& chain, const std::string& disk, const std::string& label,
      BlockReader* reader, ViewLayers layers) const;
  // The map of the view whose newest layer is chain[i] (its key `key`;
  // chain is g's): kNotFound when there is none or it is stale,
  // kCorruption when damaged.
  Result<ViewMapFile> ReadViewMap(const GroupState& g, const std::vector<ChainLink>& chain,
                                  size_t i, uint64_t key, const std::string& disk) const;
  // The cache key of the delta at path if its index has this fingerprint
  // (the one OpenAndShare gives it when it opens the file).
  uint64_t LayerIdFor(const std::string& path, uint64_t fingerprint) const;
  // OpenLayer without the binding check: the layer at path, opened in disk's
  // format and kept in layers_ (or the one another thread kept first).
  Result<std::shared_ptr<const Layer>> OpenAndShare(const std::string& path,
                                                    const DiskEntry& disk) const;
  std::string path_;
  RepoConfig config_;
  std::unique_ptr<ForeignCatalog> foreign_;
  std::unique_ptr<Env> owned_env_;  // env_, when Open made it
  Env* env_;
  // Every delta file opened so far, by path. The id is kept after the layer
  // is closed: reopening a file with the same fingerprint (LayerIdFn; native:
  // the index checksum) gives it the same id, so blocks cached from it stay
  // valid for the next open.
  struct LayerSlot {
    std::weak_ptr<const Layer> layer;
    uint64_t id = 0;
    uint64_t fingerprint = 0;
  };
  mutable std::mutex layers_mu_;
  mutable std::unordered_map<std::string, LayerSlot> layers_;
  // Layers open their files through layer_env_: env_ with descriptors from file_cache_.
  FileCache file_cache_{DefaultFileCacheCapacity()};
  std::unique_ptr<Env> layer_env_ = NewCachingEnv(env_, &file_cache_);
};

}  // namespace chainfs
