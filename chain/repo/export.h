// Export: write a view as a raw image.
//
// OUTPUT a path: written to a temporary file beside it
// (OUTPUT.chainfs-partial.<random>, created exclusively, never through a
// link, mode ExportOptions::permissions), sparse (holes where the view reads
// zeros), fsynced, then renamed into place: a failed or stopped export leaves
// no half-written OUTPUT and no temporary. Only a regular file or nothing is
// replaced. OUTPUT an existing block device, character device or FIFO (or a
// symbolic link to one, like /dev/disk/by-id/...): written in place, zeros
// included, nothing renamed or truncated (a character device or FIFO as a
// stream, in order). OUTPUT a symbolic link to anything else (or dangling):
// refused, since replacing it with a file is not what a link's owner meant.
// OUTPUT "-": every byte to stdout.
// Blocks are read and decoded on a WorkerPool while the writer writes.
#pragma once

#include <atomic>
#include <string>

#include "chain/base/env.h"
#include "chain/layer/view.h"

namespace chainfs {

struct ExportReport {
  uint64_t bytes = 0;       // virtual size written
  uint64_t data_bytes = 0;  // bytes actually written (not holes)
  double seconds = 0;
};

struct ExportOptions {
  unsigned threads = 0;           // decoding workers (0: one per core)
  uint32_t permissions = 0600;    // of a new OUTPUT file
  // Checked after every chunk: once nonzero (a signal number, StopSignals),
  // the export stops, removes its temporary and fails naming the signal.
  const std::atomic<int>* stop = nullptr;
};

// Every file of OUTPUT is written through env.
Result<ExportReport> ExportView(Env* env, const View& view, const std::string& output,
                                const ExportOptions& options);
inline Result<ExportReport> ExportView(Env* env, const View& view, const std::string& output,
                                       unsigned threads = 0) {
  ExportOptions options;
  options.threads = threads;
  return ExportView(env, view, output, options);
}

}  // namespace chainfs
