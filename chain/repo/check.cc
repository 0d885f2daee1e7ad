#include "chain/repo/check.h"

#include <map>
#include <set>

#include "chain/base/names.h"
#include "chain/base/progress.h"
#include "chain/base/worker_pool.h"

namespace chainfs {
namespace {

struct DeltaRef {
  std::string checkpoint, disk;
  const DiskEntry* entry;  // the disk entry that names the delta
};

// Every stored block of layer: entry and block numbers, in runs of at most
// step blocks (a long run is split so that the work spreads over threads).
std::vector<LayerExtent> DataExtents(const Layer& layer, uint64_t step) {
  std::vector<LayerExtent> out;
  layer.ForEachExtent([&](const LayerExtent& e) {
    if (e.kind != LayerExtent::Kind::kData) return;
    for (uint64_t s = 0; s < e.block_count; s += step) {
      LayerExtent piece = e;
      piece.first_block += s;
      piece.first_entry += s;
      piece.block_count = std::min(step, e.block_count - s);
      out.push_back(piece);
    }
  });
  return out;
}

void CheckGroup(const Repository& repo, const std::string& group, const std::string& only,
                bool deep, CheckReport* r) {
  auto gs = repo.LoadGroup(group);
  if (!gs.ok()) {
    r->problems.push_back({group, "", "", "", -1, gs.status().message()});
    return;
  }
  const GroupState& g = gs.value();
  ++r->groups;
  if (!only.empty() && g.Find(only) == nullptr) {
    r->problems.push_back({group, only, "", "", -1, "checkpoint not found"});
    return;
  }
  std::map<std::string, DeltaRef> deltas;  // file -> who stores it
  for (const Checkpoint& cp : g.checkpoints) {
    if (!only.empty() && cp.name != only) continue;
    ++r->checkpoints;
    if (!cp.parent.empty() && g.Find(cp.parent) == nullptr)
      r->problems.push_back({group, cp.name, "", "", -1,
                             "parent checkpoint " + cp.parent + " does not exist"});
    for (const DiskEntry& d : cp.disks) {
      auto chain = Repository::ResolveChain(g, cp, d.name);
      if (!chain.ok()) {
        r->problems.push_back({group, cp.name, d.name, "", -1, chain.status().message()});
        continue;
      }
      for (const ChainLink& l : chain.value())
        deltas.emplace(l.disk->delta_file, DeltaRef{l.checkpoint->name, d.name, l.disk});
      auto view = repo.OpenView(g, cp, d.name);
      if (!view.ok())
        r->problems.push_back({group, cp.name, d.name, "", -1, view.status().message()});
    }
  }
  r->deltas += deltas.size();
  if (!deep) return;
  WorkerPool pool;
  for (const auto& [file, ref] : deltas) {
    auto layer_or = repo.OpenLayer(group, *ref.entry);
    if (!layer_or.ok()) continue;  // already reported through OpenView
    const Layer& layer = *layer_or.value();
    constexpr uint64_t kStep = 256;  // blocks a task verifies
    const std::vector<LayerExtent> extents = DataExtents(layer, kStep);
    uint64_t n = 0;
    for (const LayerExtent& e : extents) n += e.block_count;
    const uint32_t bs = layer.block_size();
    Progress progress("check " + ref.checkpoint + "/" + ref.disk, n * bs);
    std::mutex mu;
    std::vector<std::future<void>> futs;
    // A task verifies extents [x, y): about kStep blocks.
    auto verify = [&](size_t x, size_t y) {
      std::vector<char> buf(bs);
      for (size_t k = x; k < y; ++k) {
        const LayerExtent& e = extents[k];
        for (uint64_t i = 0; i < e.block_count; ++i) {
          Status st = layer.ReadBlock(e.first_entry + i, buf.data());
          std::lock_guard<std::mutex> lock(mu);
          ++r->blocks_verified;
          if (!st.ok()) {
            int64_t off = static_cast<int64_t>((e.first_block + i) * bs);
            r->problems.push_back({group, ref.checkpoint, ref.disk, layer.location(), off,
                                   st.message()});
          }
        }
        progress.Add(e.block_count * bs);
      }
    };
    for (size_t x = 0, y = 0; x < extents.size(); x = y) {
      uint64_t blocks = 0;
      while (y < extents.size() && blocks < kStep) blocks += extents[y++].block_count;
      futs.push_back(pool.Submit([&verify, x, y] { verify(x, y); }));
    }
    for (auto& f : futs) f.get();
  }
}

}  // namespace

Result<CheckReport> Check(const Repository& repo, const std::string& group,
                          const std::string& checkpoint, bool deep) {
  CheckReport r;
  std::vector<std::string> groups;
  if (!group.empty()) {
    CHAINFS_RETURN_IF_ERROR(ValidateName("group", group));
    groups.push_back(group);
  } else {
    CHAINFS_ASSIGN_OR_RETURN(groups, repo.ListGroups());
  }
  if (!checkpoint.empty()) CHAINFS_RETURN_IF_ERROR(ValidateName("checkpoint", checkpoint));
  for (const auto& g : groups) CheckGroup(repo, g, checkpoint, deep, &r);
  return r;
}

}  // namespace chainfs
