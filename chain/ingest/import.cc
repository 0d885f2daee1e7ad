#include "chain/ingest/import.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>

#include "chain/base/names.h"
#include "chain/ingest/backup.h"
#include "chain/ingest/source.h"

namespace chainfs {
namespace {

// A view of a source checkpoint as a backup Source: its changed ranges are
// what its own (newest) layer stores; its zero ranges the view's holes.
class ViewSource : public Source {
 public:
  ViewSource(std::shared_ptr<const View> view, std::string name,
             std::optional<std::vector<ByteRange>> changed)
      : view_(std::move(view)), name_(std::move(name)), changed_(std::move(changed)) {}

  const std::string& Name() const override { return name_; }
  uint64_t Size() const override { return view_->size(); }
  ReadHints Hints() const override { return {4, 4ull << 20}; }
  Status ReadAt(uint64_t offset, size_t n, void* buf) const override {
    if (offset > view_->size() || n > view_->size() - offset)
      return Status::InvalidArgument(name_ + ": read of " + std::to_string(n) + " bytes at " +
                                     std::to_string(offset) + " past its end");
    // All of the piece's stored bytes are asked for at once: a qcow2 image
    // is read without the kernel's readahead (OpenQcow2Layer).
    view_->WillNeed(offset, n);
    return view_->Read(offset, n, static_cast<char*>(buf));
  }
  bool HasChangedRanges() const override { return changed_.has_value(); }
  Result<std::vector<ByteRange>> ChangedRanges() const override { return *changed_; }
  bool HasZeroRanges() const override { return true; }
  Result<std::vector<ByteRange>> ZeroRanges() const override {
    std::vector<ByteRange> out;
    const uint64_t size = view_->size();
    for (uint64_t at = 0; at < size;) {
      const uint64_t hole = view_->SeekHole(at);
      if (hole >= size) break;
      const uint64_t data = view_->SeekData(hole);
      out.push_back({hole, data - hole});
      at = data;
    }
    return out;
  }

 private:
  std::shared_ptr<const View> view_;
  std::string name_;
  std::optional<std::vector<ByteRange>> changed_;
};

// What view's newest layer stores (data and zero extents), within the view.
std::vector<ByteRange> OwnRanges(const View& view) {
  std::vector<ByteRange> out;
  const uint64_t size = view.size();
  view.layers().front().layer->ForEachExtent([&](const LayerExtent& e) {
    if (e.offset >= size) return;
    out.push_back({e.offset, std::min(e.length, size - e.offset)});
  });
  return out;
}

// Compares ranges of two views (in 1 MiB pieces); the first difference is
// kCorruption naming `what` and the offset. Adds the bytes compared.
Status CompareViews(const View& a, const View& b, const std::vector<ByteRange>& ranges,
                    const std::string& what, uint64_t* compared) {
  if (a.size() != b.size())
    return Status::Corruption(what + ": imported size " + std::to_string(b.size()) +
                              " differs from the source's " + std::to_string(a.size()));
  constexpr uint64_t kPiece = 1 << 20;
  std::string x(kPiece, '\0'), y(kPiece, '\0');
  for (const ByteRange& r : ranges) {
    for (uint64_t at = r.offset; at < r.offset + r.length; at += kPiece) {
      const size_t n = std::min<uint64_t>(kPiece, r.offset + r.length - at);
      CHAINFS_RETURN_IF_ERROR(a.Read(at, n, x.data()).Context("source " + what));
      CHAINFS_RETURN_IF_ERROR(b.Read(at, n, y.data()).Context("imported " + what));
      if (std::memcmp(x.data(), y.data(), n) != 0) {
        size_t k = 0;
        while (k < n && x[k] == y[k]) ++k;
        return Status::Corruption(what + ": the imported view differs from the source's at byte " +
                                  std::to_string(at + k));
      }
      *compared += n;
    }
  }
  return Status::Ok();
}

}  // namespace

Result<ImportReport> Import(const Repository& src, const Repository& dst,
                            const ImportOptions& opts) {
  ImportReport report;
  if (dst.foreign() != nullptr)
    return Status::InvalidArgument(dst.path() + " is a " + dst.foreign()->kind() +
                                   ", not a chainfs repository to import into");
  report.group = opts.group;
  if (report.group.empty()) {
    CHAINFS_ASSIGN_OR_RETURN(std::vector<std::string> groups, src.ListGroups());
    if (groups.size() != 1)
      return Status::InvalidArgument(src.path() + " holds " + std::to_string(groups.size()) +
                                     " groups; name the one to import");
    report.group = groups[0];
  }
  report.to_group = opts.to_group.empty() ? report.group : opts.to_group;
  CHAINFS_RETURN_IF_ERROR(ValidateName("group", report.to_group));
  CHAINFS_ASSIGN_OR_RETURN(GroupState sg, src.LoadGroup(report.group));
  for (const RefusedCheckpoint& r : sg.refused) report.refused.push_back({r.name, r.reason});

  // The repository's group as it stands (empty if new), read again after
  // each commit only.
  GroupState dg;
  if (auto g = dst.LoadGroup(report.to_group); g.ok())
    dg = std::move(g).value();
  else if (g.status().code() != Status::Code::kNotFound)
    return g.status();
  // In sequence order: everything the source serves is older than what it
  // refuses (a refused checkpoint refuses those after it).
  for (const Checkpoint& cp : sg.checkpoints) {
    const auto t0 = std::chrono::steady_clock::now();
    ImportedCheckpoint done;
    done.name = cp.name;
    const std::string where = report.to_group + "/" + cp.name;

    if (const Checkpoint* have = dg.Find(cp.name)) {
      // Imported before (a resumed import): the same disks and sizes.
      for (const DiskEntry& d : cp.disks) {
        const DiskEntry* h = have->FindDisk(d.name);
        if (h == nullptr || h->virtual_size != d.virtual_size)
          return Status::AlreadyExists(
              where + " already exists in " + dst.path() + " but differs from the source's (disk " +
              d.name + (h ? ": " + std::to_string(h->virtual_size) + " bytes, not " +
                                std::to_string(d.virtual_size)
                          : " is missing") +
              "); import into another group (--group)");
      }
      if (have->disks.size() != cp.disks.size())
        return Status::AlreadyExists(where + " already exists in " + dst.path() +
                                     " with other disks; import into another group (--group)");
      done.skipped = true;
      report.checkpoints.push_back(done);
      continue;
    }

    BackupOptions b;
    b.group = report.to_group;
    b.checkpoint = cp.name;
    b.configs = cp.configs;
    b.threads = opts.threads;
    b.stop = opts.stop;
    std::string base;
    bool all_full = true;
    for (const DiskEntry& d : cp.disks) {
      if (d.kind == DeltaKind::kFull) continue;
      all_full = false;
      if (!base.empty() && d.base != base)
        return Status::NotSupported(where + ": its disks are based on different checkpoints (" +
                                    base + ", " + d.base + ")");
      base = d.base;
    }
    if (all_full) {
      b.full = true;
    } else {
      const Checkpoint* bcp = dg.Find(base);
      if (bcp == nullptr)
        return Status::NotFound(where + ": its base checkpoint " + base + " is not in " +
                                dst.path() + " (import stopped)");
      if (bcp != dg.Newest()) b.since = base;
    }
    std::vector<std::shared_ptr<const View>> views;
    std::vector<std::optional<std::vector<ByteRange>>> own;
    for (const DiskEntry& d : cp.disks) {
      CHAINFS_ASSIGN_OR_RETURN(std::shared_ptr<const View> v, src.OpenView(sg, cp, d.name));
      std::optional<std::vector<ByteRange>> changed;
      if (d.kind != DeltaKind::kFull) changed = OwnRanges(*v);
      views.push_back(v);
      own.push_back(changed);
      auto source = std::make_shared<ViewSource>(
          v, src.path() + " " + report.group + "/" + cp.name + "/" + d.name, changed);
      b.disks.push_back({d.name, "", "", source, ""});
    }
    CHAINFS_ASSIGN_OR_RETURN(BackupReport br, Backup(dst, b));
    for (const DiskReport& d : br.disks) {
      done.bytes_read += d.blocks_read * dst.config().block_size;
      done.stored_bytes += d.stored_bytes;
    }

    // Read back what this checkpoint stored.
    CHAINFS_ASSIGN_OR_RETURN(GroupState now, dst.LoadGroup(report.to_group));
    const Checkpoint* mine = now.Find(cp.name);
    if (mine == nullptr) return Status::Corruption(where + ": committed, yet not found after");
    for (size_t i = 0; i < cp.disks.size(); ++i) {
      const DiskEntry& d = cp.disks[i];
      CHAINFS_ASSIGN_OR_RETURN(std::shared_ptr<const View> got, dst.OpenView(now, *mine, d.name));
      std::vector<ByteRange> ranges;
      if (!own[i]) {
        ranges.push_back({0, views[i]->size()});
      } else {
        const uint32_t bs = dst.config().block_size;
        for (const BlockRange& r : BlocksTouched(*own[i], bs, views[i]->size()))
          ranges.push_back({r.first_block * bs,
                            std::min<uint64_t>(r.block_count * bs, views[i]->size() - r.first_block * bs)});
        // Bytes past the base's size read as zeros on both sides: compared too.
        const Checkpoint* bcp = dg.Find(base);
        const DiskEntry* bd = bcp ? bcp->FindDisk(d.name) : nullptr;
        if (bd && bd->virtual_size < views[i]->size())
          ranges.push_back({bd->virtual_size, views[i]->size() - bd->virtual_size});
      }
      CHAINFS_RETURN_IF_ERROR(CompareViews(*views[i], *got, ranges, where + "/" + d.name,
                                           &done.bytes_verified));
    }
    done.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    report.checkpoints.push_back(done);
    dg = std::move(now);
  }
  if (!report.refused.empty()) {
    std::string names;
    for (const auto& [n, why] : report.refused) names += (names.empty() ? "" : "; ") + n + ": " + why;
    return Status::Corruption("imported " + std::to_string(report.checkpoints.size()) +
                              " checkpoints of " + report.group + ", but the source refuses " +
                              std::to_string(report.refused.size()) + " (not imported): " + names);
  }
  return report;
}

}  // namespace chainfs
