// Txn: the journal that makes a consolidation one atomic step.
//
// A consolidation replaces several manifests and delta files of one group.
// Readers take no lock, so every state on disk, at every instant and after a
// crash at any point, must be a valid repository in which every surviving
// checkpoint reads the same bytes. The journal gives that:
//
//   1. new delta files written, fsynced, directory fsynced  (invisible: no
//      manifest names them; a crash here leaves leftovers that the next
//      writer collects)
//   2. REPO/groups/G/txn.json renamed into place, group dir  COMMIT POINT
//      fsynced
//   3. manifest steps in the journal's order: a survivor's new manifest
//      written (temporary, fsync, rename), or a dropped checkpoint's manifest
//      removed; checkpoints/ fsynced at the end of each phase (below)
//   4. old delta files removed, deltas/ fsynced once        (nothing names
//   them)
//   5. txn.json removed, group dir fsynced
//
// Order of the steps (Txn::manifest_sync). A checkpoint names only older ones
// (parent, base). Two orders, chosen by the consolidation (consolidate.cc
// BuildTxn), each shown valid at every instant for a reader that watches the
// steps happen (the live order, which is also what a crash leaves on a file
// system that makes directory operations durable in order: ext4, XFS, an NFS
// server, CephFS's MDS journal):
//
//   kPerPhase: every write (newest first), one fsync of checkpoints/, every
//   removal (newest first), one fsync of checkpoints/. Used when no
//   checkpoint has a differential base that is dropped with a rewritten
//   survivor between the two on its line of parents (the common case: all
//   incremental). While the writes run, nothing is gone: each checkpoint,
//   with its old manifest or its new one, names only checkpoints that exist,
//   and each base stays on its holder's line of parents: a rewritten
//   survivor's new parent skips only dropped checkpoints, and a link onto a
//   dropped base past such a survivor is exactly what the condition
//   excludes. While the removals run, every survivor names survivors only,
//   and a dropped checkpoint still present names older ones, none removed
//   yet (newest first), its bases still on its line of parents as above.
//   kEachStep: newest checkpoint first, writes and removals interleaved,
//   checkpoints/ fsynced after every step (so durable in that order on any
//   file system). When step 3 reaches checkpoint C, every newer dropped
//   checkpoint is gone and every newer survivor already names survivors
//   only, while every checkpoint older than C is untouched. So no existing
//   checkpoint ever names one that is gone, and no dropped checkpoint still
//   present ever finds its base cut off its parent path by a survivor
//   relinked past it. Journals written before kPerPhase existed are this.
//
// What one fsync per phase guarantees after a crash where the file system
// keeps any subset of the un-synced directory operations (POSIX's weakest
// promise): the journal is durable before step 3 begins, so the next writer
// redoes every step (RollForward) whatever survived. Until then, survivors
// still read their bytes: each rewritten manifest's contents are fsynced
// before its rename, every rename is durable before any removal (the fsync
// between the phases), and old deltas go only after the last fsync of
// checkpoints/. A dropped checkpoint, already committed to go, may meanwhile
// find its parent removed (a broken chain, refused by name, never wrong
// bytes). The journal's removal is durable only after all that (deltas/ and
// checkpoints/ fsynced first), so a journal never vanishes before its effect
// is durable.
//
// Every step of 3..5 is idempotent, so a journal found by the next writer
// (consolidate, prune or backup, right after taking the lock) is simply
// applied again: RollForward. Repository::CollectLeftovers refuses to run
// while a journal exists, so the new deltas of a committed journal are never
// mistaken for leftovers.
//
// REQUIRES for every function here: the caller holds the repository lock.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "chain/repo/manifest.h"
#include "chain/repo/repository.h"

namespace chainfs {

inline constexpr uint32_t kTxnVersion = 1;

// Step 3 for one checkpoint: write its new manifest, or remove it.
struct ManifestStep {
  std::string checkpoint;
  std::optional<Checkpoint> write;  // nullopt: remove the manifest
};

// When ApplyTxn fsyncs checkpoints/ (the order argument above).
enum class ManifestSync {
  kEachStep,  // after every step; steps newest first, interleaved
  kPerPhase,  // after the last write and after the last removal; writes first
};

struct Txn {
  std::string group;
  std::string purpose;                  // what committed it, for messages
  std::vector<std::string> new_deltas;  // delta files written before the commit
  std::vector<ManifestStep> steps;      // applied in this order
  // kPerPhase REQUIRES every write step before every removal (Decode checks).
  ManifestSync manifest_sync = ManifestSync::kEachStep;
  std::vector<std::string> delete_deltas;  // delta file names

  // True if a step removes this checkpoint.
  bool Drops(const std::string& checkpoint) const;
  std::string Encode() const;
  static Result<Txn> Decode(const std::string& json, const std::string& where);
};

// REPO/groups/G/txn.json
std::string TxnPath(const Repository& repo, const std::string& group);

// Writes the journal (the commit point), then applies it. A failure before the
// journal's rename returns an error with nothing visible changed; a failure
// after it returns an error saying the next writer run finishes the job, and
// sets *committed (if given): from then on the journal owns the new deltas,
// even once it is applied and removed, so the caller must not remove them.
Status CommitTxn(const Repository& repo, const Txn& txn, bool* committed = nullptr);

// Steps 3..5 above: one fsync of checkpoints/ per phase (kPerPhase: two;
// kEachStep: one per step), one of deltas/, one of the group directory.
// Idempotent.
Status ApplyTxn(const Repository& repo, const Txn& txn);

// If group G has a journal, checks that its new deltas exist and are complete,
// applies it and returns it; nullopt when there was none. Also removes a
// half-written journal temporary (a crash before the commit point).
Result<std::optional<Txn>> RollForward(const Repository& repo,
                                       const std::string& group);

// What every writer of a group runs right after taking the lock: RollForward,
// then Repository::CollectLeftovers. Returns the journal rolled forward, if
// any; *leftovers (if non-null) gets the number of leftover files removed.
Result<std::optional<Txn>> RecoverGroup(const Repository& repo,
                                        const std::string& group,
                                        int* leftovers);

}  // namespace chainfs
