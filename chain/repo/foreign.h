// ForeignCatalog: another tool's backups, read as a repository.
//
// `chainfs mount|list|export|check SOURCE` accept, besides a chainfs
// repository, a directory another backup tool wrote (a virtnbdbackup output
// directory, or a directory of them: chain/vnb/vnb_catalog.h). A catalogue
// turns what it finds into the repository's vocabulary: groups, and per
// group a GroupState of synthesised Checkpoints whose DiskEntries name the
// tool's files in a format of the layer registry (chain/layer/registry.h).
// From there the Repository opens views exactly as for its own deltas
// (shared layers, flat composition, block cache, readahead).
//
// A foreign source is read-only: Repository::Lock refuses it, so no writer
// (backup, consolidate, prune) ever touches it, and nothing (lock, journal,
// view map) is created in it.
//
// Adding a source kind: a class implementing ForeignCatalog and one line in
// OpenForeignCatalog (chain/repo/foreign.cc) that tries it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "chain/base/env.h"
#include "chain/base/status.h"
#include "chain/repo/group_state.h"

namespace chainfs {

class ForeignCatalog {
 public:
  virtual ~ForeignCatalog() = default;
  // What the source is, for messages ("virtnbdbackup directory").
  virtual const char* kind() const = 0;
  // The block size shown as st_blksize (the format's entry size).
  virtual uint32_t block_size() const = 0;
  virtual Result<std::vector<std::string>> ListGroups() const = 0;
  // The group's checkpoints (oldest first), those refused with the reason
  // (naming file and offset); indexed.
  virtual Result<GroupState> LoadGroup(const std::string& group) const = 0;
  // The directory whose modification time changes when the group does (the
  // mount rescans on change).
  virtual std::string GroupDir(const std::string& group) const = 0;
  // The file a disk entry's delta_file names.
  virtual std::string DeltaPath(const std::string& group, const std::string& file) const = 0;
  // `check --deep`'s extra verification of one of the group's files beyond
  // reading every entry (a checksum file the tool wrote beside it); a
  // mismatch is kCorruption naming both files.
  virtual Status VerifyFile(const std::string& group, const std::string& file) const {
    (void)group;
    (void)file;
    return Status::Ok();
  }
  // What messages name as a checkpoint's record.
  virtual std::string ManifestPath(const std::string& group, const std::string& checkpoint) const = 0;
  // True if the source's checkpoints change without GroupDir's times
  // changing (a qcow2 image's snapshots, taken and deleted in place): the
  // mount then reads the group again every second it is used, instead of
  // trusting an unchanged directory.
  virtual bool ChangesInPlace() const { return false; }
};

// The catalogue of the foreign source at path (read through env), or
// kNotFound if path is no source any catalogue knows.
Result<std::unique_ptr<ForeignCatalog>> OpenForeignCatalog(Env* env, const std::string& path);

}  // namespace chainfs
