// Export: write a view as a raw image.
//
// OUTPUT a path: written to a temporary file beside it, sparse (holes where
// the view reads zeros), fsynced, then renamed into place: a failed export
// leaves no half-written OUTPUT. OUTPUT an existing block device: written in
// place, zeros included. OUTPUT "-": every byte to stdout.
// Blocks are read and decoded on a WorkerPool while the writer writes.
#pragma once

#include <string>

#include "chain/base/env.h"
#include "chain/layer/view.h"

namespace chainfs {

struct ExportReport {
  uint64_t bytes = 0;       // virtual size written
  uint64_t data_bytes = 0;  // bytes actually written (not holes)
  double seconds = 0;
};

// Every file of OUTPUT is written through env.
Result<ExportReport> ExportView(Env* env, const View& view, const std::string& output,
                                unsigned threads = 0);

}  // namespace chainfs
