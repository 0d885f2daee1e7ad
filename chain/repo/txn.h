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
//   2. REPO/groups/G/txn.json renamed into place            COMMIT POINT
//   3. manifest steps, newest checkpoint first: a survivor's new manifest
//      written by atomic rename, or a dropped checkpoint's manifest removed,
//      each durable before the next
//   4. old delta files removed                               (nothing names
//   them)
//   5. txn.json removed
//
// Why newest first, interleaved: a checkpoint names only older ones (parent,
// base). When step 3 reaches checkpoint C, every newer dropped checkpoint is
// gone and every newer survivor already names survivors only, while every
// checkpoint older than C is untouched. So no existing checkpoint ever names
// one that is gone, and no dropped checkpoint still present ever finds its
// base cut off its parent path by a survivor relinked past it.
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

struct Txn {
  std::string group;
  std::string purpose;                  // what committed it, for messages
  std::vector<std::string> new_deltas;  // delta files written before the commit
  std::vector<ManifestStep> steps;      // applied in this order (newest first)
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

// Steps 3..5 above. Idempotent.
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
