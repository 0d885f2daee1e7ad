// The manifest catalogue: a group's decoded manifests kept in one file, so
// that a process reading a group of 10,000 checkpoints reads one file and
// lists one directory instead of opening and parsing 10,000 JSON files
// (issue 14: backup, export and a mount's first look at a group
// independent of depth).
//
//   REPO/groups/GROUP/catalog
//
// A cache, never the truth. Each entry records the manifest's name, the
// stamp of the file it was decoded from (inode, size, modification and
// change times) and the checkpoint. Repository::LoadGroup lists the
// checkpoints directory with each file's stamp and takes an entry only for
// a regular file whose stamp is the entry's; any other manifest (new,
// replaced, edited in place, a link, not in the catalogue) is read and
// decoded as without one. A missing, damaged or foreign catalogue is
// ignored whole. Only stamps whose change time lies kCatalogSettleNs before
// the listing are recorded: a file changed in place later gets a newer
// change time (whatever the file system's timestamp granularity), so its
// entry no longer matches. Writers (backup, consolidate, prune, import, the
// test generator) rewrite it under the repository lock; readers never
// write. Bytes in docs/FORMAT.md "Manifest catalogue".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chain/base/env.h"
#include "chain/base/status.h"
#include "chain/repo/manifest.h"

namespace chainfs {

inline constexpr char kCatalogMagic[8] = {'c', 'h', 'a', 'i', 'n', 'f', 's', 'C'};
inline constexpr uint32_t kCatalogVersion = 1;
// The largest catalogue read (10,000 checkpoints with a 10 KiB domain XML
// each are about 100 MiB; a larger one is ignored and the manifests read).
inline constexpr size_t kMaxCatalogBytes = 256 << 20;
// How long before a listing a manifest must have last changed for its stamp
// to be recorded (coarse kernel timestamps, a network file system's clock).
inline constexpr int64_t kCatalogSettleNs = 1'000'000'000;

// What identifies one version of a manifest file.
struct ManifestStamp {
  uint64_t inode = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  bool operator==(const ManifestStamp&) const = default;
};

// A regular file's stamp; nullopt for anything else (never cached).
std::optional<ManifestStamp> StampOf(const FileInfo& info);

// A decoded catalogue: entry i is stamps[i] and checkpoints[i] (whose name
// is the manifest's file name without ".json"). Two vectors, so that
// LoadGroup can take the checkpoints as the group's without moving each.
struct Catalog {
  std::vector<ManifestStamp> stamps;
  std::vector<Checkpoint> checkpoints;  // room for one more (a backup's new one)
  size_t size() const { return stamps.size(); }
};

// Entries as (stamp, checkpoint of group), in the order given.
std::string EncodeCatalog(const std::string& group,
                          const std::vector<std::pair<ManifestStamp, const Checkpoint*>>& entries);
// Fails (kCorruption naming `where`) unless bytes are a whole, undamaged
// catalogue of `group` whose every entry is a valid checkpoint of it.
Result<Catalog> DecodeCatalog(std::string_view bytes, const std::string& where,
                              const std::string& group);

}  // namespace chainfs
