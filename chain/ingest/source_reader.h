// SourceReader: reads byte ranges of a Source with several requests in
// flight, on threads of its own, so a source with latency (a network
// server, a busy device) is kept busy while the caller compresses and
// writes.
//
//   SourceReader reader(source, /*max_threads=*/16);
//   std::promise<Status> p;
//   reader.Read(0, 4 << 20, buf, [&p](Status st) { p.set_value(st); });
//   // buf's requests run on up to reader.in_flight() threads at once
//   // (with other reads queued earlier); the callback runs once, last.
//   Status st = p.get_future().get();
//
// Requests are at most Hints().request_bytes long and cut at multiples of
// it, and run in the order they were queued.
#pragma once

#include <cstdint>
#include <functional>

#include "chain/base/status.h"
#include "chain/base/worker_pool.h"
#include "chain/ingest/source.h"

namespace chainfs {

class SourceReader {
 public:
  // Starts min(source.Hints().max_in_flight, max_threads) threads (at least
  // one). REQUIRES: source outlives the reader.
  SourceReader(const Source& source, unsigned max_threads);
  // Waits for every queued read, then joins.
  ~SourceReader() = default;

  unsigned in_flight() const { return pool_.size(); }

  // Reads [offset, offset + n) into buf. done(status) runs exactly once, on
  // a reader thread, after every request of this read has finished; status
  // is the error of the lowest failed request (which names the source and
  // the offset), or OK. Thread-safe.
  // REQUIRES: buf stays valid and untouched until done runs.
  void Read(uint64_t offset, size_t n, char* buf, std::function<void(Status)> done);

 private:
  const Source& source_;
  uint64_t request_bytes_;
  WorkerPool pool_;
};

}  // namespace chainfs
