#include "chain/repo/export.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>

#include "chain/base/failpoint.h"
#include "chain/base/hash.h"
#include "chain/base/huge_map.h"
#include "chain/base/progress.h"
#include "chain/base/worker_pool.h"

namespace chainfs {
namespace {

constexpr uint64_t kChunk = 4 << 20;

struct Segment {
  uint64_t offset;
  uint64_t length;
};

struct Chunk {
  uint64_t offset = 0;
  uint64_t length = 0;
  // The whole chunk (zeros where no data). Reused from chunk to chunk: a
  // fresh 4 MiB buffer each time, zero-filled and faulted in page by page,
  // was a third of a warm export's CPU. From huge pages: the window's ~40
  // MiB then take ~20 page faults, not ~10,000 (6,600 of a depth-1
  // export's). Holds old bytes: every byte of the chunk is written before
  // it is used.
  HugeBuffer data{kChunk};
  std::vector<Segment> segments;  // data ranges, absolute offsets
  Status status;
};

void LoadChunk(const View& view, Chunk* c) {
  const uint64_t end = c->offset + c->length;
  auto zero = [&](uint64_t from, uint64_t to) {
    if (from < to) std::memset(c->data.data() + (from - c->offset), 0, to - from);
  };
  uint64_t pos = std::min(view.SeekData(c->offset), end);
  zero(c->offset, pos);
  while (pos < end) {
    uint64_t hole = std::min(view.SeekHole(pos, end), end);
    c->status = view.Read(pos, hole - pos, c->data.data() + (pos - c->offset));
    if (!c->status.ok()) return;
    // Stored blocks that happen to be all zeros need not be written either.
    if (!IsAllZero(c->data.data() + (pos - c->offset), hole - pos))
      c->segments.push_back({pos, hole - pos});
    if (hole >= end) break;
    pos = std::min(view.SeekData(hole), end);
    zero(hole, pos);
  }
}

// Writes [p, p + n) at off of out, or to stdout if out is null.
Status WriteAll(WritableFile* out, const char* p, uint64_t n, uint64_t off) {
  if (out) return out->WriteAt(off, p, n);
  while (n > 0) {
    ssize_t w = ::write(1, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "writing -");
    }
    p += w;
    n -= static_cast<uint64_t>(w);
  }
  return Status::Ok();
}

// How OUTPUT is written, from what Stat says is there.
enum class Target { kStdout, kNewFile, kDevice, kStream };

Result<Target> ChooseTarget(Env* env, const std::string& output) {
  if (output == "-") return Target::kStdout;
  auto info = env->Stat(output);
  if (!info.ok())
    return info.status().code() == Status::Code::kNotFound ? Result<Target>(Target::kNewFile)
                                                           : info.status();
  switch (info->type) {
    case FileType::kBlockDevice: return Target::kDevice;
    case FileType::kCharDevice:
    case FileType::kFifo: return Target::kStream;
    case FileType::kRegular:
      if (!info->is_symlink) return Target::kNewFile;
      return Status::InvalidArgument(output + " is a symbolic link to a file; export replaces "
                                     "files, not links: give the link's target instead");
    case FileType::kDirectory:
      return Status::InvalidArgument(output + " is a directory; give a file name in it");
    default:
      return Status::InvalidArgument(output + (info->is_symlink ? " is a dangling symbolic link"
                                                                : " is not a file or device") +
                                     ": refusing to replace it");
  }
}

}  // namespace

Result<ExportReport> ExportView(Env* env, const View& view, const std::string& output,
                                const ExportOptions& options) {
  auto start = std::chrono::steady_clock::now();
  ExportReport report;
  report.bytes = view.size();
  CHAINFS_ASSIGN_OR_RETURN(Target target, ChooseTarget(env, output));
  const bool sparse = target == Target::kNewFile;
  std::string tmp = sparse ? output + ".chainfs-partial." + UnpredictableSuffix() : "";
  std::unique_ptr<WritableFile> out;  // null: stdout
  if (target != Target::kStdout) {
    CHAINFS_ASSIGN_OR_RETURN(out, env->NewWritableFile(sparse ? tmp : output,
                                                       sparse ? Env::OpenMode::kCreate
                                                              : Env::OpenMode::kDevice,
                                                       options.permissions));
  }
  auto fail = [&](Status s) -> Result<ExportReport> {
    out.reset();
    if (sparse) (void)env->RemoveFile(tmp);
    return s;
  };
  if (target == Target::kDevice && out->Size() < view.size())
    return fail(Status::InvalidArgument(output + " is smaller than the view (" +
                                        std::to_string(view.size()) + " bytes)"));

  WorkerPool pool(options.threads);
  Progress progress("export " + view.label(), view.size());
  std::deque<std::pair<std::unique_ptr<Chunk>, std::future<void>>> window;
  std::vector<std::unique_ptr<Chunk>> spare;  // written chunks, their buffers reused
  uint64_t next = 0;
  Status st;
  // After a failure (or a stop) nothing new is read: the window drains.
  while ((st.ok() && next < view.size()) || !window.empty()) {
    while (st.ok() && next < view.size() && window.size() < 2 * pool.size() + 2) {
      std::unique_ptr<Chunk> c;
      if (spare.empty()) {
        c = std::make_unique<Chunk>();
      } else {
        c = std::move(spare.back());
        spare.pop_back();
        c->segments.clear();
        c->status = Status::Ok();
      }
      c->offset = next;
      c->length = std::min(kChunk, view.size() - next);
      next += c->length;
      Chunk* raw = c.get();
      view.WillNeed(raw->offset, raw->length);  // disk reads start before a worker is free
      window.emplace_back(std::move(c), pool.Submit([&view, raw] { LoadChunk(view, raw); }));
    }
    auto [c, fut] = std::move(window.front());
    window.pop_front();
    fut.get();
    if (!st.ok()) continue;  // drain the window before returning
    st = c->status;
    if (st.ok() && sparse) {
      for (const Segment& s : c->segments) {
        st = WriteAll(out.get(), c->data.data() + (s.offset - c->offset), s.length, s.offset);
        if (!st.ok()) break;
        report.data_bytes += s.length;
      }
    } else if (st.ok()) {
      st = WriteAll(out.get(), c->data.data(), c->length, c->offset);
      report.data_bytes += c->length;
    }
    Failpoint("export.chunk-written");
    progress.Add(c->length);
    spare.push_back(std::move(c));
    if (st.ok() && options.stop != nullptr && options.stop->load() != 0)
      st = Status::FromErrno(EINTR, "export to " + output + " stopped by signal " +
                                        std::to_string(options.stop->load()));
  }
  if (!st.ok()) return fail(st);
  if (sparse) {
    if (st = out->Truncate(view.size()); !st.ok()) return fail(st);
    if (st = out->Sync(); !st.ok()) return fail(st);
    if (st = out->Close(); !st.ok()) return fail(st);
    if (st = env->RenameFile(tmp, output); !st.ok()) return fail(st);
  } else if (out) {
    if (st = out->Sync(); !st.ok()) return fail(st);
    if (st = out->Close(); !st.ok()) return fail(st);
  }
  progress.Finish();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace chainfs
