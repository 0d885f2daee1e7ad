// Import: every checkpoint of a foreign source (a virtnbdbackup directory,
// chain/repo/foreign.h) into a chainfs repository, as the same chain.
//
//   source group vm1:  virtnbdbackup.0 (full) ─► .1 (inc) ─► .2 (inc) ...
//   repository:        vm1/virtnbdbackup.0 (full) ─► .1 (incremental) ...
//
// Each source checkpoint becomes one Backup (chain/ingest/backup.h) whose
// sources are the source's views (ViewSource): a full is read whole (its
// zero frames and holes are not read), an incremental or differential
// reads only the ranges its own stream holds, on the imported checkpoint
// its source is based on; the domain XML is kept. So each checkpoint is
// atomic (it appears whole or not at all), and an interrupted import is
// resumed by running it again: checkpoints already in the repository are
// skipped once their disks and sizes are found to match.
//
// Verified as it goes: after each commit the ranges it stored are read back
// through the repository's new view and compared with the source's view
// (the rest of the view is its base's, compared before), so that when the
// import ends every view of the repository equals the source's, byte for
// byte. A difference is an error naming checkpoint, disk and offset.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "chain/repo/repository.h"

namespace chainfs {

struct ImportOptions {
  std::string group;     // the source's group ("" = its only group)
  std::string to_group;  // the repository's group ("" = the source group's name)
  unsigned threads = 0;  // compression threads (BackupOptions::threads)
  const std::atomic<int>* stop = nullptr;
};

struct ImportedCheckpoint {
  std::string name;
  bool skipped = false;  // already in the repository
  uint64_t bytes_read = 0;      // source bytes read and stored
  uint64_t bytes_verified = 0;  // read back and compared
  uint64_t stored_bytes = 0;
  double seconds = 0;
};

struct ImportReport {
  std::string group, to_group;
  std::vector<ImportedCheckpoint> checkpoints;
  // Source checkpoints not imported: refused by the source (with reason).
  std::vector<std::pair<std::string, std::string>> refused;
};

// Imports group opts.group of src into dst (created on the first
// checkpoint). Fails, after what it imported, on the first checkpoint it
// cannot import; refused source checkpoints end the import too (the ones
// after them depend on them) and make it fail naming them.
Result<ImportReport> Import(const Repository& src, const Repository& dst, const ImportOptions& opts);

}  // namespace chainfs
