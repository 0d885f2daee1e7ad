#include "chain/repo/check.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "chain/base/names.h"
#include "chain/base/progress.h"
#include "chain/base/worker_pool.h"
#include "chain/repo/txn.h"
#include "chain/repo/write_intent.h"

namespace chainfs {
namespace {

struct DeltaRef {
  std::string checkpoint, disk;
  const DiskEntry* entry;  // the disk entry that names the delta
};

// A run of consecutive stored entries of a layer, for verification.
struct EntryRun {
  uint64_t offset = 0;  // disk offset of first_entry's bytes
  uint64_t first_entry = 0;
  uint64_t count = 0;
};

// Every stored entry of layer, in runs of at most step entries (a long
// extent is split so that the work spreads over threads).
std::vector<EntryRun> DataRuns(const Layer& layer, uint64_t step) {
  std::vector<EntryRun> out;
  const uint64_t bs = layer.block_size();
  layer.ForEachExtent([&](const LayerExtent& e) {
    if (e.kind != LayerExtent::Kind::kData) return;
    const uint64_t entries = (e.length + bs - 1) / bs;
    for (uint64_t s = 0; s < entries; s += step)
      out.push_back({e.offset + s * bs, e.first_entry + s, std::min(step, entries - s)});
  });
  return out;
}

// Delta files of g that no manifest names and no writer's record explains
// (an intent or a journal: a writer at work, or the leftovers the next one
// removes). Garbage collection leaves them: their manifest may be missing
// only for a while. Check takes no lock, so the order matters against a
// writer at work: the files are listed first; a writer records a file
// (intent) before creating it, and its manifest or journal names it before
// the record goes; so the intent, then the journal, then the manifests are
// read after the listing, and a file gone meanwhile is not reported.
void ReportUnreferenced(const Repository& repo, const GroupState& g, CheckReport* r) {
  auto files = repo.env()->ListDir(repo.DeltaDir(g.name));
  if (!files.ok()) return;
  std::set<std::string> named;
  if (auto intent = ReadIntent(repo.env(), repo.IntentPath(g.name)); intent.ok() && *intent)
    named.insert(intent.value()->deltas.begin(), intent.value()->deltas.end());
  if (auto text = repo.env()->ReadWholeFile(TxnPath(repo, g.name)); text.ok())
    if (auto txn = Txn::Decode(text.value(), TxnPath(repo, g.name)); txn.ok())
      for (const auto* list : {&txn->new_deltas, &txn->delete_deltas})
        named.insert(list->begin(), list->end());
  auto now = repo.LoadGroup(g.name);
  for (const Checkpoint& cp : now.ok() ? now->checkpoints : g.checkpoints)
    for (const DiskEntry& d : cp.disks) named.insert(d.delta_file);
  std::sort(files.value().begin(), files.value().end());
  for (const std::string& f : files.value()) {
    const std::string path = repo.DeltaPath(g.name, f);
    if (named.count(f) || !repo.env()->FileExists(path)) continue;
    r->problems.push_back(
        {g.name, "", "", path, -1,
         path + ": not referenced by any manifest; left in place" +
             (g.refused.empty() ? std::string() : " (a refused manifest may name it)")});
  }
}

void CheckGroup(const Repository& repo, const std::string& group, const std::string& only,
                bool deep, CheckReport* r) {
  // Every manifest itself, not the catalogue: a manifest damaged in place
  // (a bad sector keeps its stamp) must show here.
  auto gs = repo.LoadGroup(group, Repository::ManifestSource::kManifests);
  if (!gs.ok()) {
    r->problems.push_back({group, "", "", "", -1, gs.status().message()});
    return;
  }
  const GroupState& g = gs.value();
  ++r->groups;
  for (const RefusedCheckpoint& rc : g.refused)
    if (only.empty() || rc.name == only)
      r->problems.push_back(
          {group, rc.name, "", rc.file, -1, std::string(rc.what) + " refused: " + rc.reason});
  if (only.empty()) ReportUnreferenced(repo, g, r);
  if (!only.empty() && g.Find(only) == nullptr && g.FindRefused(only) == nullptr) {
    r->problems.push_back({group, only, "", "", -1, "checkpoint not found"});
    return;
  }
  // Each disk entry is looked at once (linear in the group, whatever its
  // depth): its link to its base comes from the snapshot's index, its delta
  // is opened (bound, sized) once, and a view opens when its own delta does
  // and its base's view opens. The first failure newest first is the view's
  // problem, as OpenView would report it.
  // Each layer once: file, and the part of it (a qcow2 internal snapshot)
  // after a NUL -> who stores it.
  std::map<std::string, DeltaRef> deltas;
  std::set<std::string> unbound;           // files of views that opened, without identity
  std::vector<std::vector<std::optional<std::string>>> view_error(g.checkpoints.size());
  for (size_t i = 0; i < g.checkpoints.size(); ++i)
    view_error[i].resize(g.checkpoints[i].disks.size());
  // "" when the view of (checkpoint i, disk j) opens, else why not.
  // REQUIRES: its chain resolves.
  auto view_status = [&](const int32_t ci, const int32_t cj) -> const std::string& {
    int32_t i = ci, j = cj;
    std::vector<std::pair<int32_t, int32_t>> path;
    while (!view_error[i][j]) {
      path.push_back({i, j});
      const DiskChainInfo* info = g.ChainInfo(g.checkpoints[i], g.checkpoints[i].disks[j].name);
      if (info->base_checkpoint < 0) break;
      std::tie(i, j) = std::pair{info->base_checkpoint, info->base_disk};
    }
    for (auto it = path.rbegin(); it != path.rend(); ++it) {
      const auto [x, y] = *it;
      const Checkpoint& c = g.checkpoints[x];
      auto layer = repo.OpenChainLayer(group, {&c, &c.disks[y]});
      const DiskChainInfo* info = g.ChainInfo(c, c.disks[y].name);
      view_error[x][y] = !layer.ok()                  ? layer.status().message()
                         : info->base_checkpoint < 0 ? std::string()
                                                      : *view_error[info->base_checkpoint][info->base_disk];
    }
    return *view_error[ci][cj];
  };
  for (size_t i = 0; i < g.checkpoints.size(); ++i) {
    const Checkpoint& cp = g.checkpoints[i];
    if (!only.empty() && cp.name != only) continue;
    ++r->checkpoints;
    if (!cp.parent.empty() && g.Find(cp.parent) == nullptr)
      r->problems.push_back({group, cp.name, "", "", -1,
                             "parent checkpoint " + cp.parent + " does not exist"});
    for (size_t j = 0; j < cp.disks.size(); ++j) {
      const DiskEntry& d = cp.disks[j];
      const DiskChainInfo* info = g.ChainInfo(cp, d.name);
      if (!info->broken.empty()) {  // ResolveChain words it, without walking
        r->problems.push_back(
            {group, cp.name, d.name, "", -1, g.ResolveChain(cp, d.name).status().message()});
        continue;
      }
      const std::string& err = view_status(static_cast<int32_t>(i), static_cast<int32_t>(j));
      // When all checkpoints are checked, every entry of a chain is visited
      // by this loop itself; for one checkpoint, its chain is walked.
      std::vector<ChainLink> chain = {{&cp, &d}};
      if (!only.empty())
        if (auto full = g.ResolveChain(cp, d.name); full.ok()) chain = std::move(full).value();
      for (const ChainLink& l : chain) {
        deltas.emplace(l.disk->LayerKey(l.disk->delta_file),
                       DeltaRef{l.checkpoint->name, d.name, l.disk});
        // A foreign source's files record no identity by nature: not a notice.
        if (err.empty() && !l.disk->delta_id && repo.foreign() == nullptr)
          unbound.insert(l.disk->delta_file);
      }
      if (!err.empty()) r->problems.push_back({group, cp.name, d.name, "", -1, err});
    }
  }
  r->deltas += deltas.size();
  for (const std::string& file : unbound) {
    const DeltaRef& ref = deltas.at(file);
    r->notices.push_back({group, ref.checkpoint, ref.disk, repo.DeltaPath(group, file), -1,
                          "unbound delta " + repo.DeltaPath(group, file) +
                              " (written by an older chainfs): neither it nor " +
                              repo.ManifestPath(group, ref.checkpoint) +
                              " records an identity, so a mix-up of this file would not be "
                              "detected; a consolidation that rewrites it binds it"});
  }
  if (!deep) return;
  WorkerPool pool;
  std::set<std::string> verified_files;
  for (const auto& delta : deltas) {
    const auto& ref = delta.second;  // not a structured binding: clang 14 cannot capture one
    auto layer_or = repo.OpenLayer(group, ref.checkpoint, *ref.entry);
    if (!layer_or.ok()) continue;  // already reported through OpenView
    // Once per file (its parts share it).
    const std::string& file = ref.entry->delta_file;
    if (repo.foreign() != nullptr && verified_files.insert(file).second)
      if (Status st = repo.foreign()->VerifyFile(group, file); !st.ok())
        r->problems.push_back({group, ref.checkpoint, ref.disk, repo.DeltaPath(group, file), -1,
                               st.message()});
    const Layer& layer = *layer_or.value();
    constexpr uint64_t kStep = 256;  // entries a task verifies
    const std::vector<EntryRun> extents = DataRuns(layer, kStep);
    uint64_t n = 0;
    for (const EntryRun& e : extents) n += e.count;
    const uint32_t bs = layer.block_size();
    Progress progress("check " + ref.checkpoint + "/" + ref.disk, n * bs);
    std::mutex mu;
    std::set<std::string> reported;  // one damage (an lz4 frame) may span many entries
    std::vector<std::future<void>> futs;
    // A task verifies runs [x, y): about kStep entries.
    auto verify = [&](size_t x, size_t y) {
      std::vector<char> buf(bs);
      for (size_t k = x; k < y; ++k) {
        const EntryRun& e = extents[k];
        for (uint64_t i = 0; i < e.count; ++i) {
          Status st = layer.ReadBlock(e.first_entry + i, buf.data());
          std::lock_guard<std::mutex> lock(mu);
          ++r->blocks_verified;
          if (!st.ok() && reported.insert(st.message()).second) {
            int64_t off = static_cast<int64_t>(e.offset + i * bs);
            r->problems.push_back({group, ref.checkpoint, ref.disk, layer.location(), off,
                                   st.message()});
          }
        }
        progress.Add(e.count * bs);
      }
    };
    for (size_t x = 0, y = 0; x < extents.size(); x = y) {
      uint64_t blocks = 0;
      while (y < extents.size() && blocks < kStep) blocks += extents[y++].count;
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
