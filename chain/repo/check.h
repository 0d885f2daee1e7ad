// Check: verify a repository's structure and, with deep, every stored block.
//
// Structure: every manifest parses; every parent exists; every disk's chain
// resolves (bases exist, are ancestors, hold the disk) down to a full delta;
// every delta file is complete (valid footer and index) and agrees with its
// manifest (virtual size, block size, identity: chain/repo/delta_binding.h;
// a mismatch is a problem naming the manifest and the delta file). Deep: every stored block of every
// delta reached is read, its checksum and content hash verified.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "chain/repo/repository.h"

namespace chainfs {

struct CheckProblem {
  std::string group, checkpoint, disk, file;
  int64_t offset = -1;  // disk offset of a bad block, -1 if not about a block
  std::string message;
};

struct CheckReport {
  uint64_t groups = 0, checkpoints = 0, deltas = 0, blocks_verified = 0;
  std::vector<CheckProblem> problems;
  // Not problems: deltas that read correctly but that no identity binds to
  // their manifest entry (written before chainfs bound them), so a mix-up
  // of such files would go unnoticed. One per delta file.
  std::vector<CheckProblem> notices;
};

// group and checkpoint may be empty (= all). Fails only when the repository
// itself cannot be read; problems found are in the report.
Result<CheckReport> Check(const Repository& repo, const std::string& group,
                          const std::string& checkpoint, bool deep);

}  // namespace chainfs
