#include "fusefs/driver/inode_table.h"

#include <mutex>

namespace chainfs {

InodeTable::InodeTable(std::shared_ptr<const Node> root) {
  nodes_.push_back(std::move(root));
  by_key_.emplace("/", kRootIno);
}

uint64_t InodeTable::Intern(const std::string& key, const std::function<Node()>& make_node) {
  {
    std::shared_lock lock(mu_);
    auto it = by_key_.find(key);
    if (it != by_key_.end()) return it->second;
  }
  auto node = std::make_shared<Node>(make_node());
  std::unique_lock lock(mu_);
  auto [it, inserted] = by_key_.emplace(key, nodes_.size() + 1);
  if (inserted) {
    node->attr.st_ino = it->second;
    nodes_.push_back(std::move(node));
  }
  return it->second;
}

std::shared_ptr<const Node> InodeTable::Get(uint64_t ino) const {
  std::shared_lock lock(mu_);
  if (ino == 0 || ino > nodes_.size()) return nullptr;
  return nodes_[ino - 1];
}

size_t InodeTable::size() const {
  std::shared_lock lock(mu_);
  return nodes_.size();
}

std::string InodeTable::CheckpointKey(const Checkpoint& cp, const std::string& leaf) {
  // '/' cannot occur in names, so the key is unambiguous.
  std::string key = "/" + cp.group + "/" + cp.name;
  if (!leaf.empty()) key += "/" + leaf;
  return key + "#" + std::to_string(cp.sequence) + "@" + std::to_string(cp.created_unix_ns);
}

}  // namespace chainfs
