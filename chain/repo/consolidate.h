// Consolidate: drop checkpoints, fold history into a synthetic full, prune by
// policy, without changing a byte of any surviving view.
//
// Views compose: view(Y) = delta(Y) over view(base(Y)), cut or zero-extended
// to Y's virtual size. So a survivor whose base survives needs nothing; only
// a survivor Y whose base is dropped gets a new delta M, the merge of Y's
// delta and the dropped deltas down to the first surviving checkpoint B in
// Y's chain (or of the whole chain when none survives, or for --full-at):
//
//   chain of Y:   Y ─► X2 ─► X1 ─► B ─► ...        (X1, X2 dropped)
//   M = for each block, the newest of Y, X2, X1 that stores or zeroes it,
//       each layer clipped to the smallest virtual size above it (as View),
//       plus zero runs where a dropped smaller size hid B's blocks
//   new chain:    M ─► B ─► ...                      (M's base = B)
//
// Stored blocks are copied as they are (checksum verified, no
// recompression); a block appears in M only if some view still reads it,
// so blocks shadowed everywhere vanish with the dropped files. The one
// exception: a block cut in the middle by a smaller virtual size in between
// (unaligned sizes) is read through the old view and encoded afresh.
//
// Everything runs under the repository lock; the switch is one journal
// commit (chain/txn.h), so a crash at any point leaves every surviving
// checkpoint reading as before and the next run finishing the job.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "chain/repo/repository.h"
#include "chain/repo/retention.h"

namespace chainfs {

struct ConsolidateOptions {
  std::string group;
  std::vector<std::string> drop;          // --drop
  std::string full_at;                    // --full-at
  std::optional<RetentionPolicy> policy;  // prune
  bool dry_run = false;
};

// One new delta: `disk` of `checkpoint` merged with the deltas of `merged`.
struct DiskRewrite {
  std::string checkpoint;
  std::string disk;
  DeltaKind kind = DeltaKind::kFull;
  std::string base;                 // new base; empty for full
  std::vector<std::string> merged;  // checkpoints whose deltas are folded in
  std::string old_file, new_file;
  uint64_t virtual_size = 0;
  uint64_t blocks_copied = 0;  // stored bytes copied verbatim
  uint64_t blocks_reencoded =
      0;                      // cut by an unaligned smaller size: re-encoded
  uint64_t zero_blocks = 0;   // blocks in zero runs
  uint64_t stored_bytes = 0;  // of the new delta
};

struct ConsolidateReport {
  std::string group;
  std::vector<std::string> dropped;          // oldest first
  std::vector<std::string> kept;             // survivors, oldest first
  std::vector<RetentionDecision> retention;  // prune only
  std::vector<DiskRewrite> rewrites;
  std::vector<std::pair<std::string, std::string>>
      relinked;                 // checkpoint, new parent
  uint64_t bytes_needed = 0;    // estimate of the new deltas' size
  uint64_t bytes_free = 0;      // free space found before starting
  uint64_t bytes_released = 0;  // size of the delta files removed
  bool dry_run = false;
  bool nothing_to_do = false;
  bool finished_interrupted =
      false;  // a journal of an earlier run was rolled forward
  int leftovers_removed = 0;
  double seconds = 0;
  double write_seconds = 0;   // writing and syncing the new deltas
  double switch_seconds = 0;  // journal commit, manifests, removal of old files
};

// Takes the repository lock for its whole run. With dry_run the plan is
// computed and reported and nothing is written.
Result<ConsolidateReport> Consolidate(const Repository& repo,
                                      const ConsolidateOptions& opts);

}  // namespace chainfs
