#include "chain/ingest/backup.h"

#include <chrono>
#include <cstring>
#include <deque>
#include <optional>
#include <set>
#include <spdlog/spdlog.h>

#include "chain/base/failpoint.h"
#include "chain/base/file.h"
#include "chain/base/huge_map.h"
#include "chain/base/names.h"
#include "chain/base/progress.h"
#include "chain/repo/delta_binding.h"
#include "chain/repo/txn.h"
#include "chain/repo/write_intent.h"
#include "chain/base/worker_pool.h"
#include "chain/ingest/source.h"
#include "chain/ingest/source_reader.h"

namespace chainfs {
namespace {

// The last component of a path ("vm1.xml" of "/etc/libvirt/vm1.xml").
std::string FileName(const std::string& path) { return path.substr(path.find_last_of('/') + 1); }

constexpr uint64_t kBatchBytes = 4 << 20;  // unit of parallel work
constexpr size_t kMaxBatchesInFlight = 6;  // bounds memory: ~6 x 2 x 4 MiB

// What one disk of the backup will do, decided before anything is written.
struct DiskPlan {
  DiskSource spec;
  std::shared_ptr<const Source> source;
  std::shared_ptr<const View> base;  // null: full
  std::vector<BlockRange> ranges;    // blocks to read
  DiskReport report;
  std::string format;                // of the delta written
  std::string file;                  // the delta file's name
  std::optional<LayerIdentity> identity;  // the delta written records (for its manifest entry)
};

struct BlockOutcome {
  enum class What : uint8_t { kUnchanged, kZero, kData };
  What what = What::kUnchanged;
  StoredBlock stored;  // kData; its bytes are in bytes
  std::string bytes;
};

// A run of blocks on its way: read (SourceReader) ─► classified and
// compressed (WorkerPool) ─► written in order (WriteDisk). done is set when
// both are over, or when the read failed.
struct Batch {
  uint64_t first_block = 0;
  uint32_t count = 0;
  // count blocks; from huge pages (a backup comparing every block of a
  // 256 MiB disk faulted in 256 MiB of fresh batches from malloc).
  std::optional<HugeBuffer> data;
  std::vector<BlockOutcome> out;
  Status read_status;
  std::promise<void> done;
};

// Classifies and encodes the blocks of a batch (runs on a worker).
void ProcessBatch(Batch* b, const View* base, uint32_t bs, const LayerWriter& writer) {
  const ContentHash zero_hash = ZeroBlockHash(bs);
  b->out.resize(b->count);
  for (uint32_t i = 0; i < b->count; ++i) {
    const char* p = b->data->data() + static_cast<size_t>(i) * bs;
    const uint64_t block = b->first_block + i;
    BlockOutcome& o = b->out[i];
    std::optional<ContentHash> known;
    // nullopt (unknown, or a base of another block size): compare by storing.
    if (base && base->block_size() == bs) known = base->KnownBlockHash(block);
    if (IsAllZero(p, bs)) {
      // Full: a hole. Incremental: a zero run unless the base reads zeros.
      o.what = (!base || (known && *known == zero_hash)) ? BlockOutcome::What::kUnchanged
                                                         : BlockOutcome::What::kZero;
      continue;
    }
    ContentHash h = HashContent(p, bs);
    if (known && *known == h) continue;  // unchanged
    o.what = BlockOutcome::What::kData;
    o.stored = writer.Encode(block, p, h, &o.bytes);
  }
}

class BackupRun {
 public:
  BackupRun(const Repository& repo, BackupOptions opts) : repo_(repo), opts_(std::move(opts)) {}
  Result<BackupReport> Run();

 private:
  Status ValidateOptions();
  // Opens every source (refusing what is not a disk) before the lock is
  // taken: a source that cannot be read must not hold up other writers.
  Status OpenSources();
  // snapshot: the group as loaded (base views keep it).
  Status Plan(const std::shared_ptr<const GroupState>& snapshot);
  Status WriteDisk(DiskPlan& plan, const std::string& file_name, WorkerPool& pool);
  Status Commit(const GroupState& g);
  void RemoveWritten();
  std::string ManifestPath() const {
    return repo_.CheckpointDir(opts_.group) + "/" + opts_.checkpoint + ".json";
  }

  const Repository& repo_;
  BackupOptions opts_;  // prepare may fill it in
  std::vector<std::shared_ptr<const Source>> sources_;  // as opts_.disks
  std::vector<DiskPlan> plans_;
  std::vector<std::string> written_;  // delta paths created by this run
  Checkpoint cp_;
};

// The option that gave a disk its changed ranges, for messages.
const char* ChangedRangesFlag(const DiskSource& d) {
  return d.bitmap.empty() ? "--dirty" : "--bitmap";
}

Status BackupRun::ValidateOptions() {
  CHAINFS_RETURN_IF_ERROR(ValidateName("group", opts_.group));
  CHAINFS_RETURN_IF_ERROR(ValidateName("checkpoint", opts_.checkpoint));
  if (opts_.disks.empty() && !opts_.prepare) return Status::InvalidArgument("no --disk given");
  std::set<std::string> seen;
  for (const auto& d : opts_.disks) {
    CHAINFS_RETURN_IF_ERROR(ValidateName("disk", d.disk));
    if (!seen.insert(d.disk).second)
      return Status::InvalidArgument("disk '" + d.disk + "' given twice");
    if (opts_.full && (!d.dirty_map.empty() || !d.bitmap.empty()))
      return Status::InvalidArgument(std::string(ChangedRangesFlag(d)) + " " + d.disk +
                                     "=... cannot be used with --full: a full backup reads "
                                     "the whole disk");
  }
  if (opts_.full && !opts_.since.empty())
    return Status::InvalidArgument("--full and --since exclude each other");
  return Status::Ok();
}

Status BackupRun::OpenSources() {
  for (const DiskSource& src : opts_.disks) {
    std::shared_ptr<const Source> source = src.source;
    if (!source) {
      auto opened = OpenSource({src.path, src.dirty_map, src.bitmap, opts_.nbd_timeout});
      if (!opened.ok()) return opened.status().Context("source of disk " + src.disk);
      source = std::move(opened).value();
    }
    sources_.push_back(std::move(source));
  }
  return Status::Ok();
}

Status BackupRun::Plan(const std::shared_ptr<const GroupState>& snapshot) {
  const GroupState& g = *snapshot;
  // A refused manifest hides a checkpoint whose sequence is unknown: a new
  // one could take its place in the order, or its name.
  CHAINFS_RETURN_IF_ERROR(g.RequireAllReadable("backup"));
  if (g.Find(opts_.checkpoint))
    return Status::AlreadyExists("checkpoint '" + opts_.checkpoint + "' already exists in group " +
                                 opts_.group + "; choose a new name");
  const Checkpoint* base = nullptr;
  if (!opts_.full) {
    if (!opts_.since.empty()) {
      CHAINFS_RETURN_IF_ERROR(ValidateName("checkpoint", opts_.since));
      base = g.Find(opts_.since);
      if (!base)
        return Status::NotFound("--since " + opts_.since + ": no such checkpoint in group " +
                                opts_.group);
    } else {
      base = g.Newest();
    }
  }
  const uint32_t bs = repo_.config().block_size;
  for (size_t i = 0; i < opts_.disks.size(); ++i) {
    const DiskSource& src = opts_.disks[i];
    DiskPlan p;
    p.spec = src;
    p.source = sources_[i];
    p.report.disk = src.disk;
    p.report.virtual_size = p.source->Size();
    if (p.report.virtual_size > kMaxVirtualSize)
      return Status::InvalidArgument(
          "source " + p.source->Name() + " of disk " + src.disk + " claims " +
          std::to_string(p.report.virtual_size) +
          " bytes, above the largest disk chainfs accepts (2^56 bytes, 64 PiB)");
    const uint64_t nblocks = BlockCount(p.report.virtual_size, bs);
    bool has_history = base && base->FindDisk(src.disk);
    if (has_history) {
      auto view = repo_.OpenView(snapshot, *base, src.disk);
      if (!view.ok()) return view.status().Context("base of disk " + src.disk);
      p.base = std::move(view).value();
      p.report.base = base->name;
      p.report.kind = (base == g.Newest()) ? DeltaKind::kIncremental : DeltaKind::kDifferential;
    } else {
      p.report.added_later = base != nullptr;
      if (p.source->HasChangedRanges())
        return Status::InvalidArgument(
            "disk " + src.disk + " has no earlier backup" +
            (base ? " in the chain of checkpoint " + base->name : std::string(" in group ") +
                                                                       opts_.group) +
            ", so a dirty " + (src.bitmap.empty() ? "map" : "bitmap") +
            " cannot say what it holds: its first backup must be full. Give it without " +
            ChangedRangesFlag(src) + " " + src.disk +
            "=... (it is then read whole and stored full), or use --full");
    }
    if (p.source->HasChangedRanges()) {
      auto changed = p.source->ChangedRanges();
      if (!changed.ok()) return changed.status();
      p.ranges = BlocksTouched(changed.value(), bs, p.report.virtual_size);
    } else if (nblocks > 0) {
      p.ranges.push_back({0, nblocks});
    }
    // Stored full, an all-zero block is a hole whether read or not: skip
    // what the source knows reads as zeros (NBD base:allocation).
    if (!p.base && p.source->HasZeroRanges()) {
      auto zeros = p.source->ZeroRanges();
      if (!zeros.ok()) return zeros.status().Context("source of disk " + src.disk);
      p.ranges =
          SubtractBlocks(p.ranges, BlocksCovered(zeros.value(), bs, p.report.virtual_size));
    }
    plans_.push_back(std::move(p));
  }
  return Status::Ok();
}

Status BackupRun::WriteDisk(DiskPlan& plan, const std::string& file_name, WorkerPool& pool) {
  const uint32_t bs = repo_.config().block_size;
  const uint64_t size = plan.report.virtual_size;
  // Recorded before creating: a failed create may leave the file behind.
  written_.push_back(repo_.DeltaPath(opts_.group, file_name));
  auto w = repo_.CreateDelta(file_name,
                             {opts_.group, opts_.checkpoint, plan.spec.disk, plan.report.kind,
                              plan.report.base},
                             size);
  if (!w.ok()) return w.status();
  LayerWriter& writer = *w.value();

  uint64_t total = 0;
  for (const auto& r : plan.ranges) total += r.block_count;
  Progress progress("backup " + plan.spec.disk, total * bs);
  // Batches in submission order; each is read on the reader's threads, then
  // processed on the pool, and written here in order.
  std::deque<std::pair<std::unique_ptr<Batch>, std::future<void>>> window;
  SourceReader reader(*plan.source, kMaxBatchesInFlight);

  auto drain_one = [&]() -> Status {
    auto [batch, fut] = std::move(window.front());
    window.pop_front();
    fut.get();
    if (!batch->read_status.ok()) {
      const std::string what = "reading source " + plan.source->Name() + " of disk " + plan.spec.disk;
      // Stopped by a signal, or a server that stopped answering: nothing
      // to suspect of the source's size.
      if (batch->read_status.sys_errno() == EINTR || batch->read_status.sys_errno() == ETIMEDOUT)
        return batch->read_status.Context(what);
      return batch->read_status.Context(what + " (it was " + std::to_string(size) +
                                        " bytes when the backup started; did it change or vanish?)");
    }
    plan.report.blocks_read += batch->count;
    for (BlockOutcome& o : batch->out) {
      if (o.what == BlockOutcome::What::kData) {
        o.stored.data = o.bytes.data();  // bytes may have moved since Encode
        CHAINFS_RETURN_IF_ERROR(writer.AddStored(o.stored));
        ++plan.report.blocks_stored;
      } else if (o.what == BlockOutcome::What::kZero) {
        writer.AddZeroRun(batch->first_block + (&o - batch->out.data()), 1);
        ++plan.report.blocks_zeroed;
      }
    }
    progress.Add(static_cast<uint64_t>(batch->count) * bs);
    return Status::Ok();
  };

  const uint64_t batch_blocks = std::max<uint64_t>(1, kBatchBytes / bs);
  Status st;
  for (const BlockRange& r : plan.ranges) {
    for (uint64_t b = r.first_block; b < r.first_block + r.block_count && st.ok();
         b += batch_blocks) {
      while (window.size() >= kMaxBatchesInFlight && st.ok()) st = drain_one();
      if (st.ok()) Failpoint("backup.read-batch");
      if (st.ok() && opts_.stop != nullptr && opts_.stop->load() != 0)
        st = Status::FromErrno(EINTR, "backup of disk " + plan.spec.disk + " stopped by signal " +
                                          std::to_string(opts_.stop->load()));
      if (!st.ok()) break;
      auto batch = std::make_unique<Batch>();
      batch->first_block = b;
      batch->count = static_cast<uint32_t>(
          std::min<uint64_t>(batch_blocks, r.first_block + r.block_count - b));
      const size_t bytes = static_cast<size_t>(batch->count) * bs;
      batch->data.emplace(bytes);
      const uint64_t off = b * bs;
      const uint64_t n = std::min<uint64_t>(bytes, size - off);
      // Past the source's end (its last block in part) reads as zeros; the
      // rest is read over (the buffer holds an earlier batch's bytes).
      std::memset(batch->data->data() + n, 0, bytes - n);
      Batch* raw = batch.get();
      const View* base = plan.base.get();
      window.emplace_back(std::move(batch), raw->done.get_future());
      reader.Read(off, n, raw->data->data(), [raw, base, bs, &writer, &pool](Status rs) {
        if (!rs.ok()) {
          raw->read_status = std::move(rs);
          raw->done.set_value();
          return;
        }
        pool.Submit([raw, base, bs, &writer] {
          ProcessBatch(raw, base, bs, writer);
          raw->done.set_value();
        });
      });
    }
    if (!st.ok()) break;
  }
  // Always wait for in-flight work: workers point into the batches.
  while (!window.empty()) {
    Status d = drain_one();
    if (st.ok()) st = d;
  }
  if (!st.ok()) return st;
  Failpoint("backup.before-delta-finish");
  CHAINFS_RETURN_IF_ERROR(writer.Finish());
  progress.Finish();
  plan.report.stored_bytes = writer.stored_bytes();
  plan.format = writer.format();
  if (writer.identity()) plan.identity = *writer.identity();
  return Status::Ok();
}

Status BackupRun::Commit(const GroupState& g) {
  cp_.group = opts_.group;
  cp_.name = opts_.checkpoint;
  cp_.sequence = g.Newest() ? g.Newest()->sequence + 1 : 1;
  cp_.created_unix_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  cp_.parent = g.Newest() ? g.Newest()->name : "";
  if (!opts_.config_path.empty()) {
    // At most half a manifest's bound (JSON escapes it, disks come too).
    auto text = ReadWholeFile(opts_.config_path, kMaxManifestBytes / 2);
    if (!text.ok()) return text.status().Context("--config");
    cp_.configs.push_back({FileName(opts_.config_path), std::move(text).value()});
  }
  for (const ConfigFile& c : opts_.configs) {
    if (cp_.FindConfig(c.name))
      return Status::InvalidArgument("config file " + c.name + " given twice");
    cp_.configs.push_back(c);
  }
  cp_.libvirt = opts_.libvirt;
  // Deltas are durable (Finish fsyncs each); make their names durable too.
  CHAINFS_RETURN_IF_ERROR(repo_.env()->SyncDir(repo_.DeltaDir(opts_.group)));
  Failpoint("backup.before-commit");
  const std::string manifest = ManifestPath();
  CHAINFS_ASSIGN_OR_RETURN(bool exists, repo_.env()->Exists(manifest));
  if (exists)
    return Status::AlreadyExists("checkpoint '" + opts_.checkpoint + "' appeared meanwhile");
  const std::string text = cp_.Encode();
  if (text.size() > kMaxManifestBytes)  // readers would refuse it
    return Status::InvalidArgument("the manifest of checkpoint " + opts_.checkpoint + " would be " +
                                   std::to_string(text.size()) + " bytes, more than the " +
                                   std::to_string(kMaxManifestBytes) + " a manifest may have");
  CHAINFS_RETURN_IF_ERROR(repo_.env()->WriteFileAtomic(manifest, text));
  Failpoint("backup.after-commit");
  return Status::Ok();
}

void BackupRun::RemoveWritten() {
  // A commit that reported a failure after its rename (a failed directory
  // sync) is visible: its deltas stay, and so does the intent, which the
  // next writer then finds committed.
  Env* env = repo_.env();
  if (env->FileExists(ManifestPath())) return;
  bool all_gone = true;
  for (const auto& p : written_) {
    Status st = env->RemoveFile(p);
    if (!st.ok() && st.code() != Status::Code::kNotFound) all_gone = false;
  }
  written_.clear();
  // Else the intent stays: the next writer removes what is left.
  if (all_gone) (void)ClearIntent(env, repo_.IntentPath(opts_.group));
}

Result<BackupReport> BackupRun::Run() {
  auto start = std::chrono::steady_clock::now();
  CHAINFS_RETURN_IF_ERROR(ValidateOptions());
  if (!opts_.config_path.empty()) {
    std::string base = FileName(opts_.config_path);
    Status st = ValidateName("config file", base);
    if (st.ok()) st = CheckInputFile(opts_.config_path, "VM config", false);
    if (!st.ok()) return st.Context("--config");
  }
  CHAINFS_RETURN_IF_ERROR(OpenSources());
  CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<RepoLock> lock,
                           repo_.Lock("backup " + opts_.group + "/" + opts_.checkpoint));
  // Finish an interrupted consolidation of the group before reading it
  // (chain/txn.h): the plan must see the checkpoints that survive it.
  CHAINFS_RETURN_IF_ERROR(RollForward(repo_, opts_.group).status());
  // Plan before creating anything: a refused request (missing source, bad
  // dirty map, existing name) must not leave a new, empty group behind.
  // Shared with the base views, which then point into its entries.
  auto snapshot = std::make_shared<GroupState>();
  GroupState& g = *snapshot;
  g.name = opts_.group;
  if (auto loaded = repo_.LoadGroup(opts_.group); loaded.ok())
    g = std::move(loaded).value();
  else if (loaded.status().code() != Status::Code::kNotFound)
    return loaded.status();
  if (opts_.prepare) {
    CHAINFS_RETURN_IF_ERROR(opts_.prepare(g, &opts_));
    CHAINFS_RETURN_IF_ERROR(ValidateOptions());
    if (opts_.disks.empty()) return Status::InvalidArgument("no disk to back up");
    sources_.clear();
    CHAINFS_RETURN_IF_ERROR(OpenSources());
  }
  CHAINFS_RETURN_IF_ERROR(Plan(snapshot));
  for (const auto& dir : {repo_.CheckpointDir(opts_.group), repo_.DeltaDir(opts_.group)})
    CHAINFS_RETURN_IF_ERROR(repo_.env()->CreateDirs(dir));
  CHAINFS_RETURN_IF_ERROR(repo_.env()->SyncDir(repo_.GroupDir(opts_.group)));
  CHAINFS_RETURN_IF_ERROR(repo_.env()->SyncDir(repo_.path() + "/groups"));
  BackupReport report;
  CHAINFS_ASSIGN_OR_RETURN(report.leftovers_removed, repo_.CollectLeftovers(g));
  if (report.leftovers_removed > 0)
    spdlog::info("removed {} leftover file(s) of an earlier failed run in group {}",
                 report.leftovers_removed, opts_.group);

  // Every new delta is recorded before the first is created (write_intent.h).
  WriteIntent intent{opts_.group, "backup " + opts_.group + "/" + opts_.checkpoint,
                     opts_.checkpoint, {}};
  for (DiskPlan& plan : plans_) {
    plan.file = NewDeltaFileName(opts_.checkpoint, plan.spec.disk);
    intent.deltas.push_back(plan.file);
  }
  CHAINFS_RETURN_IF_ERROR(RecordIntent(repo_.env(), repo_.IntentPath(opts_.group), intent));
  WorkerPool pool(opts_.threads);
  Status st;
  for (DiskPlan& plan : plans_) {
    st = WriteDisk(plan, plan.file, pool);
    if (!st.ok()) break;
    cp_.disks.push_back({plan.spec.disk, plan.file, plan.report.kind, plan.report.base,
                         plan.report.virtual_size, plan.report.stored_bytes, plan.format});
    if (plan.identity) BindEntry(*plan.identity, &cp_.disks.back());
  }
  if (st.ok()) st = Commit(g);
  if (!st.ok()) {
    RemoveWritten();  // unless the manifest landed anyway
    return st;
  }
  // Committed: the manifest names the deltas. A failure here leaves an
  // intent the next writer finds committed.
  (void)ClearIntent(repo_.env(), repo_.IntentPath(opts_.group));
  // The new views' maps (chain/repo/view_map.h): a cache, so a failure costs
  // speed, not the backup. The base views point into g: they go before it
  // changes.
  for (DiskPlan& p : plans_) p.base.reset();
  g.checkpoints.push_back(cp_);
  g.Index();
  if (auto maps = repo_.UpdateViewMaps(g, g.checkpoints.back()); !maps.ok())
    spdlog::warn("view maps of checkpoint {}/{} not written (its views open slower): {}",
                 opts_.group, opts_.checkpoint, maps.message());
  if (Status cat = repo_.WriteCatalog(g); !cat.ok())
    spdlog::warn("manifest catalogue of group {} not written (the group loads slower until "
                 "the next writer writes it): {}", opts_.group, cat.message());
  for (auto& p : plans_) report.disks.push_back(p.report);
  report.checkpoint = cp_;
  report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace

Result<BackupReport> Backup(const Repository& repo, const BackupOptions& opts) {
  BackupRun run(repo, opts);  // a copy: prepare may fill it in
  return run.Run();
}

}  // namespace chainfs
