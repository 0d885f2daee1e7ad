#include "chain/repo/group_state.h"

#include <string_view>
#include <unordered_map>

#include "chain/base/coding.h"
#include "chain/base/hash.h"

namespace chainfs {

// The index of one snapshot, by checkpoint position (checkpoints' order).
struct GroupIndex {
  size_t count = 0;  // checkpoints indexed (a guard against a changed state)
  std::unordered_map<std::string, int32_t> by_name;
  std::unordered_map<std::string, int32_t> refused_by_name;
  std::vector<int32_t> parent;   // position of the parent, -1 for none found
  // The first refused checkpoint on each one's line of parents, -1 for none.
  std::vector<int32_t> refused_line;
  // Entry and exit times of a depth-first walk of the parent forest: a is
  // an ancestor of c (or c) iff enter[a] <= enter[c] && leave[c] <= leave[a].
  std::vector<uint32_t> enter, leave;
  std::vector<std::vector<DiskChainInfo>> links;  // [checkpoint][disk]
  // Every disk entry's link, checkpoint-major (first[i] is checkpoint i's
  // first), with the flat position of its base (-1: a full delta or a broken
  // link): ResolveChain follows these instead of links, which at depth
  // 10,000 saves three dependent loads per link. The pointers are into the
  // indexed vector, checkpoints.data() == data; a copy of the state (whose
  // checkpoints are elsewhere) resolves by position instead.
  struct FlatLink {
    ChainLink link;
    int32_t base;
  };
  std::vector<FlatLink> flat;
  std::vector<uint32_t> first;
  const Checkpoint* data = nullptr;

  bool Ancestor(int32_t a, int32_t c) const {
    return enter[a] <= enter[c] && leave[c] <= leave[a];
  }
};

namespace {

int32_t Lookup(const std::unordered_map<std::string, int32_t>& m, const std::string& name) {
  auto it = m.find(name);
  return it == m.end() ? -1 : it->second;
}

// key: scratch for the bytes hashed (one buffer for a whole Index, not an
// allocation per link).
uint64_t ChainFingerprint(const DiskEntry& d, uint64_t base, std::string& key) {
  key.assign(d.delta_file);
  key.push_back('\0');
  key.append(d.part).push_back('\0');
  if (d.delta_id) key.append(reinterpret_cast<const char*>(d.delta_id->bytes.data()), 16);
  const uint64_t digest = d.index_digest.value_or(0);
  key.append(reinterpret_cast<const char*>(&digest), sizeof digest);
  key.append(reinterpret_cast<const char*>(&base), sizeof base);
  return Checksum64(key.data(), key.size());
}

uint64_t LinkKey(const DiskEntry& d, uint64_t below, std::string& k) {
  k.assign(d.delta_file).push_back('\0');
  k.append(d.format).push_back('\0');
  k.append(reinterpret_cast<const char*>(d.delta_id->bytes.data()), d.delta_id->bytes.size());
  PutFixed64(&k, *d.index_digest);
  PutFixed64(&k, d.virtual_size);
  PutFixed64(&k, below);
  return Checksum64(k.data(), k.size());
}

// The view map key of d's chain given below, its base chain's (0 for a full
// delta); none when d or the chain below lacks a delta id or index digest.
std::optional<uint64_t> MapKey(const DiskEntry& d, std::optional<uint64_t> below,
                               std::string& scratch) {
  if (!d.delta_id || !d.index_digest || !below) return std::nullopt;
  return LinkKey(d, *below, scratch);
}

// "checkpoint C has base B" + why the link is broken, or "" when it holds.
// The same words as the scan's (ResolveChainByScan).
std::string LinkPrefix(const Checkpoint& c, const DiskEntry& d) {
  return "checkpoint " + c.name + " has base " + d.base;
}

}  // namespace

uint64_t ViewMapLinkKey(const DiskEntry& d, uint64_t below) {
  std::string k;
  return LinkKey(d, below, k);
}

void GroupState::Index() {
  index_.reset();
  auto ix = std::make_shared<GroupIndex>();
  const int32_t n = static_cast<int32_t>(checkpoints.size());
  ix->count = checkpoints.size();
  ix->by_name.reserve(checkpoints.size());
  for (int32_t i = 0; i < n; ++i)
    if (!ix->by_name.emplace(checkpoints[i].name, i).second) return;  // duplicates: scan
  ix->refused_by_name.reserve(refused.size());
  for (int32_t i = 0; i < static_cast<int32_t>(refused.size()); ++i)
    ix->refused_by_name.emplace(refused[i].name, i);
  ix->parent.assign(n, -1);
  ix->refused_line.assign(n, -1);
  // Each checkpoint's children, in order, as one array: node p's are
  // child[child_at[p], child_at[p + 1]) (not a vector per checkpoint).
  std::vector<uint32_t> child_at(n + 1, 0);
  for (int32_t i = 0; i < n; ++i) {
    const Checkpoint& c = checkpoints[i];
    if (c.parent.empty()) continue;
    const int32_t p = Lookup(ix->by_name, c.parent);
    // LoadGroup sorts by sequence and refuses a parent whose sequence is not
    // smaller, so parents come first; anything else is left to the scan.
    if (p >= i) return;
    ix->parent[i] = p;
    if (p >= 0) {
      ++child_at[p + 1];
      ix->refused_line[i] = ix->refused_line[p];
    } else {
      ix->refused_line[i] = Lookup(ix->refused_by_name, c.parent);
    }
  }
  for (int32_t i = 0; i < n; ++i) child_at[i + 1] += child_at[i];
  std::vector<int32_t> child(child_at[n]);
  {
    std::vector<uint32_t> fill(child_at.begin(), child_at.end() - 1);
    for (int32_t i = 0; i < n; ++i)
      if (ix->parent[i] >= 0) child[fill[ix->parent[i]]++] = i;
  }
  // Iterative depth-first walk of the forest (a deep chain would overflow
  // a recursive one).
  ix->enter.assign(n, 0);
  ix->leave.assign(n, 0);
  uint32_t clock = 0;
  std::vector<std::pair<int32_t, uint32_t>> stack;  // node, its next child's place in child
  for (int32_t root = 0; root < n; ++root) {
    if (ix->parent[root] >= 0) continue;
    stack.push_back({root, child_at[root]});
    ix->enter[root] = clock++;
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      if (next < child_at[node + 1]) {
        const int32_t c = child[next++];
        ix->enter[c] = clock++;
        stack.push_back({c, child_at[c]});
      } else {
        ix->leave[node] = clock++;
        stack.pop_back();
      }
    }
  }
  ix->links.resize(n);
  std::string scratch;
  for (int32_t i = 0; i < n; ++i) {
    const Checkpoint& c = checkpoints[i];
    auto& links = ix->links[i];
    links.resize(c.disks.size());
    for (size_t j = 0; j < c.disks.size(); ++j) {
      const DiskEntry& d = c.disks[j];
      DiskChainInfo& info = links[j];
      if (d.kind == DeltaKind::kFull) {
        info.depth = 1;
        info.sizes_uniform = true;
        info.formats_uniform = true;
        info.stored_bytes = d.stored_bytes;
        info.fingerprint = ChainFingerprint(d, 0, scratch);
        info.view_map_key = MapKey(d, 0, scratch);
        continue;
      }
      const int32_t b = Lookup(ix->by_name, d.base);
      if (b < 0) {
        const int32_t r = Lookup(ix->refused_by_name, d.base);
        info.broken = LinkPrefix(c, d) + (r >= 0 ? ", whose " + std::string(refused[r].what) +
                                                       " is refused: " + refused[r].reason
                                                 : ", which does not exist");
        continue;
      }
      if (b == i || !ix->Ancestor(b, i)) {
        const int32_t r = ix->refused_line[i];
        info.broken = LinkPrefix(c, d) +
                      (r >= 0 && b != i ? ", and its line of parents passes through " +
                                              refused[r].name + ", whose " + refused[r].what +
                                              " is refused: " + refused[r].reason
                                        : ", which is not one of its ancestors");
        continue;
      }
      const DiskEntry* bd = checkpoints[b].FindDisk(d.name);
      if (bd == nullptr) {
        info.broken = LinkPrefix(c, d) + ", which has no disk " + d.name;
        continue;
      }
      const int32_t bj = static_cast<int32_t>(bd - checkpoints[b].disks.data());
      const DiskChainInfo& base = ix->links[b][bj];
      if (!base.broken.empty()) {
        info.broken = base.broken;
        continue;
      }
      info.base_checkpoint = b;
      info.base_disk = bj;
      info.depth = base.depth + 1;
      info.sizes_uniform = base.sizes_uniform && bd->virtual_size == d.virtual_size;
      info.formats_uniform = base.formats_uniform && bd->format == d.format;
      info.stored_bytes = base.stored_bytes + d.stored_bytes;
      info.fingerprint = ChainFingerprint(d, base.fingerprint, scratch);
      info.view_map_key = MapKey(d, base.view_map_key, scratch);
    }
  }
  ix->first.reserve(n);
  size_t disks = 0;
  for (const Checkpoint& c : checkpoints) disks += c.disks.size();
  ix->flat.reserve(disks);
  for (int32_t i = 0; i < n; ++i) {
    ix->first.push_back(static_cast<uint32_t>(ix->flat.size()));
    for (size_t j = 0; j < checkpoints[i].disks.size(); ++j)
      ix->flat.push_back({{&checkpoints[i], &checkpoints[i].disks[j]}, -1});
  }
  for (int32_t i = 0; i < n; ++i)
    for (size_t j = 0; j < checkpoints[i].disks.size(); ++j) {
      const DiskChainInfo& info = ix->links[i][j];
      if (info.base_checkpoint >= 0)
        ix->flat[ix->first[i] + j].base =
            static_cast<int32_t>(ix->first[info.base_checkpoint] + info.base_disk);
    }
  ix->data = checkpoints.data();
  index_ = std::move(ix);
}

int32_t GroupState::PositionOf(const Checkpoint& c) const {
  if (index_ == nullptr || index_->count != checkpoints.size() || checkpoints.empty())
    return -1;
  const Checkpoint* first = checkpoints.data();
  if (&c < first || &c >= first + checkpoints.size()) return -1;
  return static_cast<int32_t>(&c - first);
}

const Checkpoint* GroupState::Find(const std::string& cp) const {
  if (index_ != nullptr && index_->count == checkpoints.size()) {
    const int32_t i = Lookup(index_->by_name, cp);
    return i >= 0 ? &checkpoints[i] : nullptr;
  }
  for (const auto& c : checkpoints)
    if (c.name == cp) return &c;
  return nullptr;
}

const RefusedCheckpoint* GroupState::FindRefused(const std::string& cp) const {
  if (index_ != nullptr && index_->count == checkpoints.size()) {
    const int32_t i = Lookup(index_->refused_by_name, cp);
    return i >= 0 ? &refused[i] : nullptr;
  }
  for (const auto& r : refused)
    if (r.name == cp) return &r;
  return nullptr;
}

Status GroupState::RequireAllReadable(const std::string& what) const {
  if (refused.empty()) return Status::Ok();
  const RefusedCheckpoint& r = refused.front();
  return Status::Corruption(
      "group " + name + " has " + std::to_string(refused.size()) +
      " refused manifest(s), first " + r.file + " (" + r.reason + "); " + what +
      " changes nothing in a group whose manifests cannot all be read: restore the "
      "manifest or move it out of checkpoints/, then run again");
}

const Checkpoint* GroupState::Newest() const {
  return checkpoints.empty() ? nullptr : &checkpoints.back();
}

bool GroupState::IsAncestor(const std::string& ancestor, const std::string& cp) const {
  if (index_ != nullptr && index_->count == checkpoints.size()) {
    const int32_t a = Lookup(index_->by_name, ancestor), c = Lookup(index_->by_name, cp);
    return a >= 0 && c >= 0 && index_->Ancestor(a, c);
  }
  const Checkpoint* c = Find(cp);
  for (size_t steps = 0; c != nullptr && steps <= checkpoints.size(); ++steps) {
    if (c->name == ancestor) return true;
    c = c->parent.empty() ? nullptr : Find(c->parent);
  }
  return false;
}

const DiskChainInfo* GroupState::ChainInfo(const Checkpoint& cp, const std::string& disk) const {
  const int32_t i = PositionOf(cp);
  const DiskEntry* d = i < 0 ? nullptr : cp.FindDisk(disk);
  if (d == nullptr) return nullptr;
  return &index_->links[i][d - cp.disks.data()];
}

Result<std::vector<ChainLink>> GroupState::ResolveChain(const Checkpoint& cp,
                                                        const std::string& disk) const {
  const int32_t i = PositionOf(cp);
  if (i < 0) return ResolveChainByScan(cp, disk);
  const DiskEntry* d = cp.FindDisk(disk);
  if (d == nullptr)
    return Status::NotFound("checkpoint " + name + "/" + cp.name + " has no disk '" + disk + "'");
  const DiskChainInfo* info = &index_->links[i][d - cp.disks.data()];
  if (!info->broken.empty())
    return Status::Corruption("broken chain of " + name + "/" + cp.name + "/" + disk + ": " +
                              info->broken);
  std::vector<ChainLink> chain;
  chain.reserve(info->depth);
  if (index_->data == checkpoints.data()) {
    for (int32_t f = static_cast<int32_t>(index_->first[i] + (d - cp.disks.data())); f >= 0;
         f = index_->flat[f].base)
      chain.push_back(index_->flat[f].link);
    return chain;
  }
  int32_t c = i;
  while (true) {
    chain.push_back({&checkpoints[c], d});
    if (info->base_checkpoint < 0) return chain;
    c = info->base_checkpoint;
    d = &checkpoints[c].disks[info->base_disk];
    info = &index_->links[c][info->base_disk];
  }
}

namespace {

// The refused checkpoint that cuts cp's line of parents, if one does.
const RefusedCheckpoint* RefusedOnParentLine(const GroupState& g, const Checkpoint& cp) {
  const Checkpoint* c = &cp;
  for (size_t steps = 0; c != nullptr && steps <= g.checkpoints.size(); ++steps) {
    if (c->parent.empty()) return nullptr;
    if (const RefusedCheckpoint* r = g.FindRefused(c->parent)) return r;
    c = g.Find(c->parent);
  }
  return nullptr;
}

}  // namespace

Result<std::vector<ChainLink>> GroupState::ResolveChainByScan(const Checkpoint& cp,
                                                              const std::string& disk) const {
  const GroupState& g = *this;
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
    std::string where = "broken chain of " + g.name + "/" + cp.name + "/" + disk + ": " +
                        LinkPrefix(*c, *d);
    const Checkpoint* base = g.Find(d->base);
    if (const RefusedCheckpoint* r = g.FindRefused(d->base); base == nullptr && r != nullptr)
      return Status::Corruption(where + ", whose " + r->what + " is refused: " + r->reason);
    if (base == nullptr) return Status::Corruption(where + ", which does not exist");
    if (base == c || !g.IsAncestor(base->name, c->name)) {
      if (const RefusedCheckpoint* r = RefusedOnParentLine(g, *c); r != nullptr && base != c)
        return Status::Corruption(where + ", and its line of parents passes through " +
                                  r->name + ", whose " + r->what + " is refused: " + r->reason);
      return Status::Corruption(where + ", which is not one of its ancestors");
    }
    const DiskEntry* bd = base->FindDisk(disk);
    if (bd == nullptr) return Status::Corruption(where + ", which has no disk " + disk);
    c = base;
    d = bd;
  }
}

}  // namespace chainfs
