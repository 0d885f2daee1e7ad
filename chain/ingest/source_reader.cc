#include "chain/ingest/source_reader.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>

namespace chainfs {
namespace {

// One Read: its requests count down; the last to finish calls done.
struct PendingRead {
  std::atomic<size_t> left{0};
  std::mutex mu;
  uint64_t error_offset = UINT64_MAX;
  Status error;
  std::function<void(Status)> done;

  void Finish(uint64_t offset, Status st) {
    if (!st.ok()) {
      std::lock_guard<std::mutex> lock(mu);
      if (offset < error_offset) {
        error_offset = offset;
        error = std::move(st);
      }
    }
    if (left.fetch_sub(1, std::memory_order_acq_rel) == 1) done(std::move(error));
  }
};

}  // namespace

SourceReader::SourceReader(const Source& source, unsigned max_threads)
    : source_(source),
      request_bytes_(std::max<uint64_t>(4096, source.Hints().request_bytes)),
      pool_(std::max(1u, std::min(source.Hints().max_in_flight, max_threads))) {}

void SourceReader::Read(uint64_t offset, size_t n, char* buf,
                        std::function<void(Status)> done) {
  if (n == 0) {
    done(Status::Ok());
    return;
  }
  auto pending = std::make_shared<PendingRead>();
  pending->done = std::move(done);
  const uint64_t end = offset + n;
  const uint64_t first_cut = (offset / request_bytes_ + 1) * request_bytes_;
  pending->left = 1 + (end > first_cut ? (end - first_cut + request_bytes_ - 1) / request_bytes_
                                       : 0);
  for (uint64_t at = offset; at < end;) {
    const uint64_t next = std::min(end, (at / request_bytes_ + 1) * request_bytes_);
    char* p = buf + (at - offset);
    const size_t len = static_cast<size_t>(next - at);
    pool_.Submit([this, pending, at, len, p] { pending->Finish(at, source_.ReadAt(at, len, p)); });
    at = next;
  }
}

}  // namespace chainfs
