#include "chain/repo/consolidate.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <set>

#include "chain/base/failpoint.h"
#include "chain/base/file.h"
#include "chain/base/names.h"
#include "chain/base/progress.h"
#include "chain/repo/delta_binding.h"
#include "chain/repo/txn.h"
#include "chain/repo/write_intent.h"

namespace chainfs {
namespace {

// What the new delta holds for a run of blocks, in block order.
struct OpRun {
  enum class Kind : uint8_t { kCopy, kZero, kReencode };
  Kind kind = Kind::kCopy;
  uint64_t first_block = 0;
  uint64_t block_count = 0;
  uint32_t layer = 0;        // kCopy: index into the merged view's layers
  uint64_t first_entry = 0;  // kCopy: entry of first_block in that layer
};

struct RewritePlan {
  DiskRewrite info;
  std::vector<View::LayerRef> chain;   // the whole old chain, newest first
  std::shared_ptr<const View> merged;  // view over the merged layers only
  std::shared_ptr<const View> old;     // the whole old view, made when needed
  std::vector<OpRun> ops;
  uint64_t bytes_needed = 0;
  std::optional<LayerIdentity> identity;  // what the new delta records, once written
};

uint64_t CeilDiv(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

// Builds the op runs of a merged delta (see the design note in the header).
// has_base: the new delta keeps a base whose view has size base_size.
class OpBuilder {
 public:
  OpBuilder(const View& merged, bool has_base, uint64_t base_size)
      : v_(merged), has_base_(has_base), bs_(merged.block_size()) {
    cut_ = UINT64_MAX;
    for (const auto& ref : merged.layers())
      cut_ = std::min(cut_, ref.layer->virtual_size());
    zero_end_ = has_base ? std::min(base_size, merged.size()) : 0;
  }

  // Classifies the view's blocks in order, a stretch at a time where no run
  // or one zero run covers them, else block by block.
  std::vector<OpRun> Build() {
    const uint64_t nblocks = CeilDiv(v_.size(), bs_);
    const MapRun* r = v_.map().runs().data();
    const MapRun* const runs_end = v_.map().runs_end();
    for (uint64_t b = 0; b < nblocks;) {
      const uint64_t start = b * bs_, stop = std::min(start + bs_, v_.size());
      while (r != runs_end && r->end <= start) ++r;
      if (r == runs_end || r->start >= stop) {
        // No merged layer touches blocks [b, next).
        const uint64_t next = r == runs_end ? nblocks : r->start / bs_;
        Gap(b, next);
        b = next;
      } else if (r->is_zero() && r->start <= start && r->end >= stop) {
        // Whole blocks of one zero run.
        const uint64_t next = r->end >= v_.size() ? nblocks : r->end / bs_;
        if (has_base_) Push({OpRun::Kind::kZero, b, next - b});
        b = next;
      } else {
        Data(b++, r);
      }
    }
    return std::move(ops_);
  }

 private:
  void Push(OpRun op) {
    if (op.block_count == 0) return;
    if (!ops_.empty()) {
      OpRun& last = ops_.back();
      bool joins = last.kind == op.kind &&
                   last.first_block + last.block_count == op.first_block;
      if (joins && op.kind == OpRun::Kind::kCopy)
        joins = last.layer == op.layer &&
                last.first_entry + last.block_count == op.first_entry;
      if (joins && op.kind != OpRun::Kind::kReencode) {
        last.block_count += op.block_count;
        return;
      }
    }
    ops_.push_back(op);
  }

  // Blocks [s, e) no merged layer covers: the base shows through, except
  // where a dropped smaller size hid it (zeros) or cut a block in the middle.
  void Gap(uint64_t s, uint64_t e) {
    if (!has_base_ || s >= e || cut_ >= v_.size()) return;
    const uint64_t zs = std::max(s, CeilDiv(cut_, bs_));
    const uint64_t ze = std::min(e, CeilDiv(zero_end_, bs_));
    const uint64_t cut_block = cut_ / bs_;
    if (cut_ % bs_ != 0 && cut_block >= s && cut_block < e &&
        cut_block * bs_ < zero_end_)
      Push({OpRun::Kind::kReencode, cut_block, 1});
    if (zs < ze) Push({OpRun::Kind::kZero, zs, ze - zs});
  }

  // A stored block may be copied if it gives the old view's block as is
  // (View::WholeEntryOf); a block of mixed or clipped sources is re-encoded
  // from the old view.
  void Data(uint64_t b, const MapRun* at) {
    if (const std::optional<View::WholeEntry> w = v_.WholeEntryOf(b, at))
      Push({OpRun::Kind::kCopy, b, 1, w->layer, w->entry});
    else
      Push({OpRun::Kind::kReencode, b, 1});
  }

  const View& v_;
  const bool has_base_;
  const uint32_t bs_;
  uint64_t cut_;       // smallest virtual size among the merged layers
  uint64_t zero_end_;  // past this the base reads zeros anyway
  std::vector<OpRun> ops_;
};

class Consolidation {
 public:
  Consolidation(const Repository& repo, const ConsolidateOptions& opts)
      : repo_(repo), opts_(opts) {}
  Result<ConsolidateReport> Run();

 private:
  Status ValidateOptions() const;
  Status SelectDrops(const GroupState& g, const std::optional<Txn>& finished);
  Status Plan(const GroupState& g);
  Status PlanDisk(const GroupState& g, const Checkpoint& cp, const DiskEntry& d,
                  const std::vector<ChainLink>& chain, size_t depth,
                  DiskEntry* out);
  Status CheckSpace();
  Status WriteAll();
  // Refuses a plan that copies from a layer that cannot give its stored
  // blocks as is in the write format.
  Status CheckCopyable(const RewritePlan& p,
                       const std::vector<ChainLink>& chain) const;
  Status WriteDelta(RewritePlan& p, Progress& progress);
  // Copies the stored blocks of entries [first, first + count) of layer into
  // w as they are, each block's checksum verified first.
  Status CopyStored(const Layer& layer, uint64_t first, uint64_t count,
                    LayerWriter& w, Progress& progress);
  Status EncodeFromView(RewritePlan& p, uint64_t block, LayerWriter& w);
  Txn BuildTxn(const GroupState& g);
  // Whether the journal may apply its writes first, then its removals, with
  // one fsync each (ManifestSync::kPerPhase, chain/repo/txn.h).
  bool PhasesKeepChainsValid(const GroupState& g) const;
  void RemoveWritten();

  const Repository& repo_;
  const ConsolidateOptions& opts_;
  ConsolidateReport report_;
  std::set<std::string> drop_;
  std::vector<RewritePlan> plans_;
  std::vector<Checkpoint> survivors_;  // new manifests, oldest first
  std::set<std::string> changed_;      // survivors whose manifest changes
  std::vector<std::string> written_;   // paths of new deltas
  std::string copy_buf_;    // CopyStored's read buffer
  std::string encode_buf_;  // EncodeFromView's stored bytes
};

Status Consolidation::ValidateOptions() const {
  CHAINFS_RETURN_IF_ERROR(ValidateName("group", opts_.group));
  int modes =
      !opts_.drop.empty() + !opts_.full_at.empty() + opts_.policy.has_value();
  if (modes != 1)
    return Status::InvalidArgument(
        "give exactly one of --drop, --full-at or a retention policy");
  for (const auto& n : opts_.drop)
    CHAINFS_RETURN_IF_ERROR(ValidateName("checkpoint", n));
  if (!opts_.full_at.empty())
    CHAINFS_RETURN_IF_ERROR(ValidateName("checkpoint", opts_.full_at));
  if (opts_.policy && opts_.policy->empty())
    return Status::InvalidArgument(
        "no --keep-* rule given: prune would keep only the newest checkpoint; "
        "give at least "
        "one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, "
        "--keep-monthly");
  return Status::Ok();
}

Status Consolidation::SelectDrops(const GroupState& g,
                                  const std::optional<Txn>& finished) {
  for (const std::string& n : opts_.drop) {
    if (g.Find(n)) {
      drop_.insert(n);
      continue;
    }
    bool done_before = finished && finished->Drops(n);
    if (!done_before)
      return Status::NotFound("--drop " + n + ": no such checkpoint in group " +
                              g.name);
  }
  if (!opts_.full_at.empty()) {
    const Checkpoint* c = g.Find(opts_.full_at);
    if (!c)
      return Status::NotFound("--full-at " + opts_.full_at +
                              ": no such checkpoint in group " + g.name);
    for (const Checkpoint& cp : g.checkpoints)
      if (cp.sequence < c->sequence) drop_.insert(cp.name);
  }
  if (opts_.policy) {
    report_.retention = SelectRetained(g.checkpoints, *opts_.policy);
    for (const RetentionDecision& d : report_.retention)
      if (!d.keep) drop_.insert(d.checkpoint);
  }
  if (!g.checkpoints.empty() && drop_.size() == g.checkpoints.size())
    return Status::InvalidArgument(
        "this would drop every checkpoint of group " + g.name +
        "; keep at least one");
  return Status::Ok();
}

Status Consolidation::Plan(const GroupState& g) {
  for (const Checkpoint& cp : g.checkpoints) {
    if (drop_.count(cp.name)) {
      report_.dropped.push_back(cp.name);
      continue;
    }
    report_.kept.push_back(cp.name);
    Checkpoint next = cp;
    const Checkpoint* p = cp.parent.empty() ? nullptr : g.Find(cp.parent);
    for (size_t steps = 0;
         p && drop_.count(p->name) && steps <= g.checkpoints.size(); ++steps)
      p = p->parent.empty() ? nullptr : g.Find(p->parent);
    next.parent = p ? p->name : "";
    if (next.parent != cp.parent)
      report_.relinked.push_back({cp.name, next.parent});
    const bool make_full = cp.name == opts_.full_at;
    for (size_t i = 0; i < cp.disks.size(); ++i) {
      const DiskEntry& d = cp.disks[i];
      CHAINFS_ASSIGN_OR_RETURN(std::vector<ChainLink> chain,
                               Repository::ResolveChain(g, cp, d.name));
      size_t depth = 1;  // how many deltas of the chain the new one merges
      while (depth < chain.size() &&
             (make_full || drop_.count(chain[depth].checkpoint->name)))
        ++depth;
      DiskEntry& nd = next.disks[i];
      if (depth > 1)
        CHAINFS_RETURN_IF_ERROR(PlanDisk(g, cp, d, chain, depth, &nd));
      if (!nd.base.empty())
        nd.kind = nd.base == next.parent ? DeltaKind::kIncremental
                                         : DeltaKind::kDifferential;
      if (depth > 1) plans_.back().info.kind = nd.kind;  // recorded in the new delta
    }
    if (next.Encode() != cp.Encode()) changed_.insert(cp.name);
    survivors_.push_back(std::move(next));
  }
  return Status::Ok();
}

Status Consolidation::PlanDisk(const GroupState& g, const Checkpoint& cp,
                               const DiskEntry& d,
                               const std::vector<ChainLink>& chain,
                               size_t depth, DiskEntry* out) {
  RewritePlan p;
  for (const ChainLink& link : chain) {
    CHAINFS_ASSIGN_OR_RETURN(std::shared_ptr<const Layer> layer,
                             repo_.OpenLayer(g.name, link.checkpoint->name, *link.disk));
    if (layer->virtual_size() != link.disk->virtual_size)
      return Status::Corruption(layer->location() +
                                ": virtual size differs from the manifest of " +
                                link.checkpoint->name);
    p.chain.push_back({std::move(layer), link.checkpoint->name});
  }
  std::vector<View::LayerRef> merged(p.chain.begin(), p.chain.begin() + depth);
  CHAINFS_ASSIGN_OR_RETURN(
      p.merged,
      View::Create(std::move(merged), g.name + "/" + cp.name + "/" + d.name));
  const bool has_base = depth < chain.size();
  p.info.checkpoint = cp.name;
  p.info.disk = d.name;
  p.info.base = has_base ? chain[depth].checkpoint->name : "";
  p.info.kind = has_base ? DeltaKind::kIncremental : DeltaKind::kFull;
  for (size_t i = 1; i < depth; ++i)
    p.info.merged.push_back(chain[i].checkpoint->name);
  p.info.old_file = d.delta_file;
  p.info.new_file = NewDeltaFileName(cp.name, d.name);
  p.info.virtual_size = d.virtual_size;
  p.ops = OpBuilder(*p.merged, has_base,
                    has_base ? chain[depth].disk->virtual_size : 0)
              .Build();
  CHAINFS_RETURN_IF_ERROR(CheckCopyable(p, chain));
  const LayerFormat& format = repo_.write_format();
  const uint32_t bs = p.merged->block_size();
  uint64_t entries = 0, runs = 0;
  for (const OpRun& op : p.ops) {
    if (op.kind == OpRun::Kind::kZero) {
      p.info.zero_blocks += op.block_count;
      ++runs;
    } else if (op.kind == OpRun::Kind::kReencode) {
      ++p.info.blocks_reencoded;
      p.bytes_needed += format.max_stored_bytes(bs);
      ++entries;
    } else {
      const Layer& layer = *p.merged->layers()[op.layer].layer;
      for (uint64_t i = 0; i < op.block_count; ++i)
        p.bytes_needed += layer.StoredLength(op.first_entry + i);
      p.info.blocks_copied += op.block_count;
      entries += op.block_count;
    }
  }
  p.bytes_needed += format.overhead_bytes(entries, runs);
  report_.bytes_needed += p.bytes_needed;
  out->delta_file = p.info.new_file;
  out->base = p.info.base;
  out->kind = p.info.kind;
  out->format = format.name;
  out->delta_id.reset();  // bound to the new delta once it is written (WriteAll)
  out->index_digest.reset();
  plans_.push_back(std::move(p));
  return Status::Ok();
}

Status Consolidation::CheckCopyable(const RewritePlan& p,
                                    const std::vector<ChainLink>& chain) const {
  const std::string write_format = repo_.write_format().name;
  std::set<uint32_t> asked;
  for (const OpRun& op : p.ops) {
    if (op.kind != OpRun::Kind::kCopy || !asked.insert(op.layer).second)
      continue;
    const Layer& layer = *p.chain[op.layer].layer;
    const std::string& format = chain[op.layer].disk->format;
    Status st =
        format == write_format
            ? layer.ReadStored(op.first_entry, 0, nullptr, nullptr)
            : Status::NotSupported(layer.location() + " is a '" + format +
                                   "' delta");
    if (!st.ok())
      return Status::NotSupported(
          "consolidating " + p.merged->label() + " needs the stored blocks of " +
          layer.location() + " as is, to copy them into a new '" +
          write_format + "' delta, and cannot have them (" + st.message() +
          "); nothing was changed");
  }
  return Status::Ok();
}

Status Consolidation::CheckSpace() {
  const std::string dir = repo_.DeltaDir(opts_.group);
  CHAINFS_ASSIGN_OR_RETURN(FsInfo fs, repo_.env()->StatFs(dir));
  report_.bytes_free = fs.free_bytes;
  const uint64_t margin = 1 << 20;  // journal, manifests, temporaries
  if (report_.bytes_free < report_.bytes_needed + margin) {
    auto mib = [](uint64_t b) {
      return std::to_string((b + (1 << 20) - 1) >> 20) + " MiB";
    };
    return Status::FromErrno(
        ENOSPC, "consolidating group " + opts_.group + " needs about " +
                    std::to_string(report_.bytes_needed + margin) + " bytes (" +
                    mib(report_.bytes_needed + margin) +
                    ") free for its new deltas, but " + dir + " has " +
                    std::to_string(report_.bytes_free) + " bytes (" +
                    mib(report_.bytes_free) + "); nothing was changed");
  }
  return Status::Ok();
}

Status Consolidation::EncodeFromView(RewritePlan& p, uint64_t block,
                                     LayerWriter& w) {
  const uint32_t bs = p.merged->block_size();
  // The whole old chain: what the checkpoint reads there now.
  if (!p.old) {
    CHAINFS_ASSIGN_OR_RETURN(p.old, View::Create(p.chain, p.merged->label()));
  }
  std::string data(bs, '\0');
  CHAINFS_RETURN_IF_ERROR(p.old->Read(block * bs, bs, data.data()));
  if (IsAllZero(data.data(), bs)) {
    if (!p.info.base.empty()) w.AddZeroRun(block, 1);
    return Status::Ok();
  }
  return w.AddStored(w.Encode(block, data.data(), HashContent(data.data(), bs),
                              &encode_buf_));
}

Status Consolidation::CopyStored(const Layer& layer, uint64_t first,
                                 uint64_t count, LayerWriter& w,
                                 Progress& progress) {
  Status st = layer.ReadStored(
      first, count, &copy_buf_, [&](const StoredBlock& s) {
        progress.Add(s.size);
        return w.AddStored(s);
      });
  if (st.code() == Status::Code::kCorruption)
    return Status::Corruption(st.message() + "; not copied");
  return st;
}

Status Consolidation::WriteDelta(RewritePlan& p, Progress& progress) {
  Failpoint("consolidate.before-write-delta");
  const std::string path = repo_.DeltaPath(opts_.group, p.info.new_file);
  written_.push_back(
      path);  // a random name: removing it on failure hurts no one
  CHAINFS_ASSIGN_OR_RETURN(
      std::unique_ptr<LayerWriter> w,
      repo_.CreateDelta(p.info.new_file,
                        {opts_.group, p.info.checkpoint, p.info.disk, p.info.kind,
                         p.info.base},
                        p.info.virtual_size, WriteMode::kDirect));
  for (const OpRun& op : p.ops) {
    if (op.kind == OpRun::Kind::kZero) {
      w->AddZeroRun(op.first_block, op.block_count);
    } else if (op.kind == OpRun::Kind::kReencode) {
      CHAINFS_RETURN_IF_ERROR(EncodeFromView(p, op.first_block, *w));
    } else {
      CHAINFS_RETURN_IF_ERROR(CopyStored(*p.merged->layers()[op.layer].layer,
                                         op.first_entry, op.block_count, *w,
                                         progress));
    }
  }
  CHAINFS_RETURN_IF_ERROR(w->Finish());
  p.info.stored_bytes = w->stored_bytes();
  if (w->identity()) p.identity = *w->identity();
  Failpoint("consolidate.after-write-delta");
  return Status::Ok();
}

Status Consolidation::WriteAll() {
  Progress progress("consolidate " + opts_.group, report_.bytes_needed);
  for (RewritePlan& p : plans_)
    CHAINFS_RETURN_IF_ERROR(WriteDelta(p, progress));
  Failpoint("consolidate.before-sync-dir");
  CHAINFS_RETURN_IF_ERROR(repo_.env()->SyncDir(repo_.DeltaDir(opts_.group)));
  Failpoint("consolidate.after-sync-dir");
  progress.Finish();
  for (RewritePlan& p : plans_) {
    for (Checkpoint& cp : survivors_)
      if (cp.name == p.info.checkpoint)
        for (DiskEntry& d : cp.disks)
          if (d.name == p.info.disk) {
            d.stored_bytes = p.info.stored_bytes;
            if (p.identity) BindEntry(*p.identity, &d);
          }
    report_.rewrites.push_back(p.info);
  }
  return Status::Ok();
}

// No checkpoint links to a dropped base (other than its parent) past a
// survivor the journal rewrites: that survivor's new parent would skip the
// base while the link is still on disk (the one case kPerPhase excludes).
bool Consolidation::PhasesKeepChainsValid(const GroupState& g) const {
  for (const Checkpoint& c : g.checkpoints)
    for (const DiskEntry& d : c.disks) {
      if (d.base.empty() || d.base == c.parent || !drop_.count(d.base)) continue;
      const Checkpoint* p = c.parent.empty() ? nullptr : g.Find(c.parent);
      for (size_t steps = 0; p && p->name != d.base && steps <= g.checkpoints.size(); ++steps) {
        if (changed_.count(p->name)) return false;
        p = p->parent.empty() ? nullptr : g.Find(p->parent);
      }
    }
  return true;
}

Txn Consolidation::BuildTxn(const GroupState& g) {
  Txn t;
  t.group = opts_.group;
  t.purpose = opts_.policy ? "prune" : "consolidate";
  for (const RewritePlan& p : plans_) t.new_deltas.push_back(p.info.new_file);
  // Writes then removals, each newest first, where that keeps every chain
  // valid; else newest first, interleaved (see chain/repo/txn.h).
  auto add_steps = [&](bool writes, bool removals) {
    for (auto it = g.checkpoints.rbegin(); it != g.checkpoints.rend(); ++it) {
      if (drop_.count(it->name)) {
        if (removals) t.steps.push_back({it->name, std::nullopt});
        continue;
      }
      if (!writes || !changed_.count(it->name)) continue;
      for (const Checkpoint& cp : survivors_)
        if (cp.name == it->name) t.steps.push_back({cp.name, cp});
    }
  };
  if (PhasesKeepChainsValid(g)) {
    t.manifest_sync = ManifestSync::kPerPhase;
    add_steps(/*writes=*/true, /*removals=*/false);
    add_steps(/*writes=*/false, /*removals=*/true);
  } else {
    add_steps(/*writes=*/true, /*removals=*/true);
  }
  std::set<std::string> still_named;
  for (const Checkpoint& cp : survivors_)
    for (const DiskEntry& d : cp.disks) still_named.insert(d.delta_file);
  for (const Checkpoint& cp : g.checkpoints)
    for (const DiskEntry& d : cp.disks)
      if (!still_named.count(d.delta_file)) {
        t.delete_deltas.push_back(d.delta_file);
        auto info = repo_.env()->Stat(repo_.DeltaPath(opts_.group, d.delta_file));
        if (info.ok()) report_.bytes_released += info.value().size;
      }
  return t;
}

void Consolidation::RemoveWritten() {
  bool all_gone = true;
  for (const auto& p : written_) {
    Status st = repo_.env()->RemoveFile(p);
    if (!st.ok() && st.code() != Status::Code::kNotFound) all_gone = false;
  }
  written_.clear();
  // Else the intent stays: the next writer removes what is left.
  if (all_gone) (void)ClearIntent(repo_.env(), repo_.IntentPath(opts_.group));
}

Result<ConsolidateReport> Consolidation::Run() {
  const auto start = std::chrono::steady_clock::now();
  CHAINFS_RETURN_IF_ERROR(ValidateOptions());
  report_.group = opts_.group;
  report_.dry_run = opts_.dry_run;
  std::string purpose =
      opts_.policy ? "prune " + opts_.group : "consolidate " + opts_.group;
  CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<RepoLock> lock, repo_.Lock(purpose));
  std::optional<Txn> finished;
  if (!opts_.dry_run) {
    CHAINFS_ASSIGN_OR_RETURN(
        finished, RecoverGroup(repo_, opts_.group, &report_.leftovers_removed));
    report_.finished_interrupted = finished.has_value();
  }
  CHAINFS_ASSIGN_OR_RETURN(GroupState g, repo_.LoadGroup(opts_.group));
  CHAINFS_RETURN_IF_ERROR(g.RequireAllReadable(opts_.policy ? "prune" : "consolidate"));
  CHAINFS_RETURN_IF_ERROR(SelectDrops(g, finished));
  CHAINFS_RETURN_IF_ERROR(Plan(g));
  report_.nothing_to_do = drop_.empty() && changed_.empty();
  auto done = [&]() {
    report_.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    return report_;
  };
  if (report_.nothing_to_do || opts_.dry_run) {
    for (const RewritePlan& p : plans_) report_.rewrites.push_back(p.info);
    if (opts_.dry_run) BuildTxn(g);  // fills bytes_released
    return done();
  }
  CHAINFS_RETURN_IF_ERROR(CheckSpace());
  Failpoint("consolidate.after-space-check");
  auto since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t)
        .count();
  };
  auto t0 = std::chrono::steady_clock::now();
  // The new deltas are recorded before the first is created (write_intent.h).
  WriteIntent intent{opts_.group, purpose, "", {}};
  for (const RewritePlan& p : plans_) intent.deltas.push_back(p.info.new_file);
  CHAINFS_RETURN_IF_ERROR(RecordIntent(repo_.env(), repo_.IntentPath(opts_.group), intent));
  Status st = WriteAll();
  if (!st.ok()) {
    RemoveWritten();
    return st;
  }
  report_.write_seconds = since(t0);
  t0 = std::chrono::steady_clock::now();
  Txn txn = BuildTxn(g);
  bool committed = false;
  st = CommitTxn(repo_, txn, &committed);
  report_.switch_seconds = since(t0);
  if (!st.ok()) {
    // Before the commit point the new deltas are ours to remove, unless the
    // journal may have landed anyway (renamed, then its fsync failed). After
    // it they belong to the journal, applied or not: removing them then
    // would take the data of committed manifests.
    if (!committed && !repo_.env()->FileExists(TxnPath(repo_, opts_.group)))
      RemoveWritten();
    return st;
  }
  // The chains changed: the maps of views that changed are stale. Maps are
  // a cache: a failure here costs speed, not data.
  auto now = repo_.LoadGroup(opts_.group);
  Result<int> maps = now.ok() ? repo_.RefreshViewMaps(now.value()) : Result<int>(now.status());
  if (!maps.ok())
    spdlog::warn("view maps of group {} not refreshed (views open slower until the next "
                 "writer refreshes them): {}", opts_.group, maps.status().message());
  if (Status cat = now.ok() ? repo_.WriteCatalog(now.value()) : Status::Ok(); !cat.ok())
    spdlog::warn("manifest catalogue of group {} not written (the group loads slower until "
                 "the next writer writes it): {}", opts_.group, cat.message());
  return done();
}

}  // namespace

Result<ConsolidateReport> Consolidate(const Repository& repo,
                                      const ConsolidateOptions& opts) {
  Consolidation c(repo, opts);
  return c.Run();
}

}  // namespace chainfs
