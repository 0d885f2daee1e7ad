// WriteIntent: what a writer records before it creates delta files, so that
// the files it leaves behind when it fails or dies can be removed, and
// nothing else.
//
//   REPO/groups/G/intent.json
//   {"format": "chainfs-intent", "version": 1, "group": "vm1",
//    "purpose": "backup vm1/c6", "commits": "c6",
//    "deltas": ["c6.vda.0123456789abcdef.delta", ...]}
//
// Garbage collection deletes only files whose unreferencing is recorded: a
// consolidation's journal (delete_deltas, chain/repo/txn.h) and an intent.
// A delta file that no manifest names and no record explains (a checkpoint
// whose manifest is missing for a while: an NFS hiccup, a restore in
// progress) is left in place and reported by `check`.
//
// Protocol (REQUIRES the repository lock throughout):
//   1. the intent is written durably (atomic rename) before any of its
//      deltas is created;
//   2. the deltas are written;
//   3. backup: the manifest of `commits` is renamed into place (the commit),
//      then the intent removed. Consolidation: the journal is written (the
//      commit) and owns the new deltas from then on; ApplyTxn removes the
//      intent.
//   On failure the writer removes its deltas, then the intent. After a
//   crash, the next writer (Repository::CollectLeftovers) removes the listed
//   deltas unless the commit happened (the manifest of `commits` exists,
//   whatever its state) or a readable manifest names them, then the intent.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "chain/base/env.h"
#include "chain/base/status.h"

namespace chainfs {

inline constexpr uint32_t kIntentVersion = 1;

struct WriteIntent {
  std::string group;
  std::string purpose;  // for messages: "backup vm1/c6", "prune vm1"
  // The checkpoint whose manifest commits the deltas (backup); empty when a
  // consolidation journal commits them.
  std::string commits;
  std::vector<std::string> deltas;  // file names in the group's deltas/

  std::string Encode() const;
  // Names are validated (they must not escape the group).
  static Result<WriteIntent> Decode(const std::string& json, const std::string& where);
};

// Writes intent to path durably (step 1).
Status RecordIntent(Env* env, const std::string& path, const WriteIntent& intent);
// The intent at path; nullopt if there is none.
Result<std::optional<WriteIntent>> ReadIntent(Env* env, const std::string& path);
// Removes the intent at path; already gone is fine.
Status ClearIntent(Env* env, const std::string& path);

}  // namespace chainfs
