// GroupState: one snapshot of a group's manifests, indexed once.
//
// Repository::LoadGroup reads every manifest of a group and indexes the
// result (Index()): lookups by name, ancestry and every disk entry's link to
// its base are then O(1), and a chain is resolved by following precomputed
// links, so that a group of 10,000 checkpoints costs the same per lookup as
// a group of ten (issue 14: `ls -R`, check and view opens were quadratic).
//
// Immutable once indexed; safe to share between threads (the mount shares
// one snapshot per group, fusefs/driver/live_groups.h). Copies share the
// index: it refers to checkpoints by position, which a copy keeps, and
// resolves chains through pointers only in the state it indexed (or one
// moved from it).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "chain/base/status.h"
#include "chain/repo/catalog.h"
#include "chain/repo/manifest.h"

namespace chainfs {

// A checkpoint whose manifest LoadGroup refused: unreadable, invalid, or
// inconsistent with the others (sequence order). Nothing of it is trusted.
// Foreign sources refuse what stands for a manifest there, and say so in
// `what`: a qcow2 image ("image"), a virtnbdbackup checkpoint's files
// ("backup"; `file` is then its checkpoint list or directory).
struct RefusedCheckpoint {
  std::string name;    // from the manifest's file name
  std::string file;    // the manifest's path
  std::string reason;  // the error, naming file and field
  const char* what = "manifest";  // for messages: "its <what> is refused"
};

// One step of a disk's chain: the checkpoint and its entry for the disk.
struct ChainLink {
  const Checkpoint* checkpoint;
  const DiskEntry* disk;
};

// What the index knows of one disk entry's chain (the entry's position in
// its checkpoint's disks is the position here).
struct DiskChainInfo {
  // The base's checkpoint and disk positions; -1 for a full delta or a
  // broken link.
  int32_t base_checkpoint = -1;
  int32_t base_disk = -1;
  // Empty when the chain down to its full delta resolves; else why not, as
  // "checkpoint C has base B, which ..." (the newest broken link).
  std::string broken;
  uint32_t depth = 0;          // layers in the chain (1 for a full delta)
  // Every layer of the chain has this entry's virtual size: each layer's
  // visible size is the view's (ReadViewMap need not walk the chain).
  bool sizes_uniform = false;
  // Every layer of the chain has this entry's format (a view of it looks the
  // format up once, not in each of 10,000 entries).
  bool formats_uniform = false;
  uint64_t stored_bytes = 0;   // the chain's stored bytes (sum of its entries')
  // A digest of the chain's delta files, ids and index digests, newest
  // first: equal fingerprints name the same layers (the mount's key for
  // views it keeps after their files are closed).
  uint64_t fingerprint = 0;
  // The view map key of the chain (chain/repo/view_map.h, ViewMapKeys):
  // taken once here, not by every open of a deep view. None when a link has
  // no delta id or index digest.
  std::optional<uint64_t> view_map_key;
};

// ViewMapKeys' key of the chain whose newest link is d and whose older links'
// key is below (0 for none); d must have its delta id and index digest.
uint64_t ViewMapLinkKey(const DiskEntry& d, uint64_t below);

struct GroupIndex;

// The checkpoints of one group, ordered by sequence (oldest first), and
// those whose manifest was refused. A view whose chain needs a refused
// checkpoint cannot be opened (ResolveChain names it); the rest are served.
struct GroupState {
  std::string name;
  std::vector<Checkpoint> checkpoints;
  std::vector<RefusedCheckpoint> refused;  // by name
  // The stamps of the manifests LoadGroup read or took from the catalogue
  // that had settled (chain/repo/catalog.h), by checkpoint name: what
  // Repository::WriteCatalog records. catalog_current: the catalogue read
  // held exactly these, unchanged.
  std::unordered_map<std::string, ManifestStamp> manifest_stamps;
  bool catalog_current = false;
  // The temporary manifests (a failed writer's) LoadGroup's listing saw:
  // what Repository::CollectLeftovers removes, without listing again.
  std::vector<std::string> manifest_temporaries;

  // Builds the index; LoadGroup calls it once checkpoints and refused are
  // final. A GroupState changed afterwards must be indexed again. Without
  // an index every query still works, by scanning (slowly).
  void Index();

  const Checkpoint* Find(const std::string& checkpoint) const;
  const RefusedCheckpoint* FindRefused(const std::string& checkpoint) const;
  const Checkpoint* Newest() const;
  // True if `ancestor` is reachable from `cp` through parent links (or is cp).
  bool IsAncestor(const std::string& ancestor, const std::string& cp) const;
  // OK if no manifest was refused; else an error naming the first refused
  // one and its reason, for writers that must see the whole group.
  Status RequireAllReadable(const std::string& what) const;

  // The chain of `disk` at checkpoint cp, newest first, ending at a full
  // delta. Fails naming the break: a missing base, a base that is not an
  // ancestor, a base without the disk, a cycle, a refused checkpoint on the
  // way (named with its manifest's reason). O(chain length) when cp is one
  // of this (indexed) snapshot's checkpoints.
  Result<std::vector<ChainLink>> ResolveChain(const Checkpoint& cp, const std::string& disk) const;
  // The index's record of cp's entry for disk; null when cp is not one of
  // this snapshot's checkpoints, the snapshot is not indexed, or cp has no
  // such disk.
  const DiskChainInfo* ChainInfo(const Checkpoint& cp, const std::string& disk) const;

 private:
  // The unindexed resolution (also the reference the index is tested
  // against: tests/chain/repo/group_state_test.cc).
  Result<std::vector<ChainLink>> ResolveChainByScan(const Checkpoint& cp,
                                                    const std::string& disk) const;
  // Position of c in checkpoints, or -1.
  int32_t PositionOf(const Checkpoint& c) const;
  std::shared_ptr<const GroupIndex> index_;
  friend class GroupStateTestPeer;
};

}  // namespace chainfs
