// Retention: which checkpoints a prune keeps, after restic's and borg's
// `forget --keep-*` rules.
//
// Checkpoints are walked newest first. keep-last N keeps the N newest. Each
// of keep-hourly/daily/weekly/monthly N keeps the newest checkpoint of each
// of the N most recent hours/days/ISO weeks/months that hold a checkpoint
// (time buckets in UTC, from the checkpoint's creation time). A checkpoint
// kept by any rule is kept; the newest checkpoint is always kept.
//
//   RetentionPolicy p;
//   p.keep_daily = 7;
//   p.keep_weekly = 4;
//   for (const RetentionDecision& d : SelectRetained(g.checkpoints, p))
//     if (!d.keep) Drop(d.checkpoint);
#pragma once

#include <string>
#include <vector>

#include "chain/repo/manifest.h"

namespace chainfs {

struct RetentionPolicy {
  int keep_last = 0;
  int keep_hourly = 0;
  int keep_daily = 0;
  int keep_weekly = 0;
  int keep_monthly = 0;
  // True when no rule is set (a prune would keep only the newest).
  bool empty() const;
  std::string Describe() const;  // "keep-last 3, keep-daily 7"
};

struct RetentionDecision {
  std::string checkpoint;
  bool keep = false;
  std::vector<std::string>
      reasons;  // "newest", "last", "daily 2026-11-21", ...
};

// REQUIRES: checkpoints ordered oldest first (GroupState order). Returns one
// decision per checkpoint, in the same order.
std::vector<RetentionDecision> SelectRetained(
    const std::vector<Checkpoint>& checkpoints, const RetentionPolicy& policy);

}  // namespace chainfs
