#include "chain/repo/export.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <deque>

#include "chain/base/failpoint.h"
#include "chain/base/hash.h"
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
  std::vector<char> data;         // the whole chunk (zeros where no data)
  std::vector<Segment> segments;  // data ranges, absolute offsets
  Status status;
};

void LoadChunk(const View& view, Chunk* c) {
  c->data.assign(c->length, 0);
  uint64_t end = c->offset + c->length;
  uint64_t pos = view.SeekData(c->offset);
  while (pos < end) {
    uint64_t hole = std::min(view.SeekHole(pos, end), end);
    c->status = view.Read(pos, hole - pos, c->data.data() + (pos - c->offset));
    if (!c->status.ok()) return;
    // Stored blocks that happen to be all zeros need not be written either.
    if (!IsAllZero(c->data.data() + (pos - c->offset), hole - pos))
      c->segments.push_back({pos, hole - pos});
    if (hole >= end) break;
    pos = view.SeekData(hole);
  }
}

Status WriteAll(int fd, const char* p, uint64_t n, uint64_t off, bool seekable,
                const std::string& what) {
  while (n > 0) {
    ssize_t w = seekable ? ::pwrite(fd, p, n, static_cast<off_t>(off)) : ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "writing " + what);
    }
    p += w;
    n -= static_cast<uint64_t>(w);
    off += static_cast<uint64_t>(w);
  }
  return Status::Ok();
}

}  // namespace

Result<ExportReport> ExportView(const View& view, const std::string& output, unsigned threads) {
  auto start = std::chrono::steady_clock::now();
  ExportReport report;
  report.bytes = view.size();
  const bool to_stdout = output == "-";
  struct stat st_out;
  const bool to_device =
      !to_stdout && ::stat(output.c_str(), &st_out) == 0 && S_ISBLK(st_out.st_mode);
  const bool sparse = !to_stdout && !to_device;
  std::string tmp = sparse ? output + ".chainfs-partial." + std::to_string(::getpid()) : "";
  int fd = to_stdout  ? 1
           : sparse   ? ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)
                      : ::open(output.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "opening " + (sparse ? tmp : output));
  auto fail = [&](Status s) -> Result<ExportReport> {
    if (!to_stdout) ::close(fd);
    if (sparse) ::unlink(tmp.c_str());
    return s;
  };
  if (to_device && static_cast<uint64_t>(::lseek(fd, 0, SEEK_END)) < view.size())
    return fail(Status::InvalidArgument(output + " is smaller than the view (" +
                                        std::to_string(view.size()) + " bytes)"));

  WorkerPool pool(threads);
  Progress progress("export " + view.label(), view.size());
  std::deque<std::pair<std::unique_ptr<Chunk>, std::future<void>>> window;
  uint64_t next = 0;
  Status st;
  while ((next < view.size() || !window.empty())) {
    while (next < view.size() && window.size() < 2 * pool.size() + 2) {
      auto c = std::make_unique<Chunk>();
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
        st = WriteAll(fd, c->data.data() + (s.offset - c->offset), s.length, s.offset, true, tmp);
        if (!st.ok()) break;
        report.data_bytes += s.length;
      }
    } else if (st.ok()) {
      st = WriteAll(fd, c->data.data(), c->length, c->offset, to_device, output);
      report.data_bytes += c->length;
    }
    Failpoint("export.chunk-written");
    progress.Add(c->length);
  }
  if (!st.ok()) return fail(st);
  if (sparse) {
    if (::ftruncate(fd, static_cast<off_t>(view.size())) != 0)
      return fail(Status::FromErrno(errno, "setting the size of " + tmp));
    if (::fsync(fd) != 0) return fail(Status::FromErrno(errno, "fsync " + tmp));
    if (::close(fd) != 0) {
      ::unlink(tmp.c_str());
      return Status::FromErrno(errno, "closing " + tmp);
    }
    if (::rename(tmp.c_str(), output.c_str()) != 0) {
      int e = errno;
      ::unlink(tmp.c_str());
      return Status::FromErrno(e, "renaming " + tmp + " to " + output);
    }
  } else if (to_device) {
    if (::fsync(fd) != 0) return fail(Status::FromErrno(errno, "fsync " + output));
    ::close(fd);
  }
  progress.Finish();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace chainfs
