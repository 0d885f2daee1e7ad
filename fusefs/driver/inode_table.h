// InodeTable: stable inode numbers for the nodes of a mounted repository.
//
// The tree is MOUNTPOINT/GROUP/CHECKPOINT/{DISK.raw,checkpoint.json,CONFIG}
// plus MOUNTPOINT/GROUP/latest. The kernel caches entries and attributes of
// checkpoint nodes for a long time (views never change), so an inode number
// must never name different content: a node's key is its path plus an
// identity of what it shows (for checkpoint nodes: sequence and creation
// time), and numbers are handed out once, in increasing order, never reused.
// A checkpoint removed and later re-created under the same name with other
// content gets new numbers.
//
// Entries are kept for the life of the mount (forget is not tracked): memory
// grows with the number of distinct nodes ever looked up, a few hundred bytes
// each plus the manifest text.
//
// Thread-safe.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "chain/repo/manifest.h"

namespace chainfs {

// kStats: the hidden MOUNTPOINT/.chainfs-stats (cache/stats_json.h).
enum class NodeKind { kRoot, kGroup, kCheckpoint, kDisk, kManifest, kConfig, kLatest, kStats };

// What one inode shows. Immutable once interned.
struct Node {
  NodeKind kind = NodeKind::kRoot;
  std::string group;
  // Checkpoint-level nodes (kCheckpoint, kDisk, kManifest, kConfig): the
  // checkpoint as it was when the node was created.
  std::shared_ptr<const Checkpoint> checkpoint;
  std::string disk;      // kDisk: the disk name (file name minus ".raw")
  std::string content;   // kManifest, kConfig: the file's bytes
  // Checkpoint-level nodes: fixed attributes (st_ino filled by the table).
  struct stat attr = {};
};

class InodeTable {
 public:
  static constexpr uint64_t kRootIno = 1;

  // The table starts with the root node (kRootIno).
  explicit InodeTable(std::shared_ptr<const Node> root);

  // The inode number of `key`, assigning the next number and storing
  // make_node() (with attr.st_ino set) if the key is new. make_node runs
  // outside the table's lock; if two threads race, one node wins.
  uint64_t Intern(const std::string& key, const std::function<Node()>& make_node);

  // The node of ino, or nullptr if no such number was handed out.
  std::shared_ptr<const Node> Get(uint64_t ino) const;

  size_t size() const;

  // The key of a checkpoint-level node: path plus identity.
  static std::string CheckpointKey(const Checkpoint& cp, const std::string& leaf);

 private:
  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, uint64_t> by_key_;
  std::vector<std::shared_ptr<const Node>> nodes_;  // index ino - 1
};

}  // namespace chainfs
