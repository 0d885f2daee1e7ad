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
};

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
        deltas.emplace(l.disk->delta_file, DeltaRef{l.checkpoint->name, d.name});
      auto view = repo.OpenView(g, cp, d.name);
      if (!view.ok())
        r->problems.push_back({group, cp.name, d.name, "", -1, view.status().message()});
    }
  }
  r->deltas += deltas.size();
  if (!deep) return;
  WorkerPool pool;
  for (const auto& [file, ref] : deltas) {
    auto layer_or = NativeLayer::Open(repo.env(), repo.DeltaPath(group, file));
    if (!layer_or.ok()) continue;  // already reported through OpenView
    const NativeLayer& layer = *layer_or.value();
    const uint64_t n = layer.reader().entries().size();
    const uint32_t bs = layer.block_size();
    Progress progress("check " + ref.checkpoint + "/" + ref.disk, n * bs);
    std::mutex mu;
    std::vector<std::future<void>> futs;
    constexpr uint64_t kStep = 256;
    for (uint64_t s = 0; s < n; s += kStep) {
      futs.push_back(pool.Submit([&, s] {
        std::vector<char> buf(bs);
        for (uint64_t i = s; i < std::min(n, s + kStep); ++i) {
          Status st = layer.ReadBlock(i, buf.data());
          std::lock_guard<std::mutex> lock(mu);
          ++r->blocks_verified;
          if (!st.ok()) {
            int64_t off = static_cast<int64_t>(layer.reader().entries()[i].block * bs);
            r->problems.push_back({group, ref.checkpoint, ref.disk, layer.location(), off,
                                   st.message()});
          }
        }
        progress.Add(std::min(n, s + kStep) * bs - s * bs);
      }));
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
