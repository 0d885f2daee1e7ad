// Checkpoint manifests and the repository config, as JSON (docs/FORMAT.md).
//
// A checkpoint exists exactly when its manifest file exists: it is written
// last, by one atomic rename, after every delta it names is durable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "chain/base/status.h"
#include "chain/layer/layer_identity.h"

namespace chainfs {

inline constexpr uint32_t kRepoVersion = 1;
inline constexpr uint32_t kManifestVersion = 1;
// Bounds on what a manifest (and chainfs.json) may be, checked before it is
// parsed: a checkpoint of 3,000 disks is about 1 MiB, a VM config a few KiB.
inline constexpr size_t kMaxManifestBytes = 16 << 20;
inline constexpr size_t kMaxJsonDepth = 32;
// zstd's levels: negative ones are its fast modes.
inline constexpr int kMinCompressionLevel = -131072;
inline constexpr int kMaxCompressionLevel = 22;

struct RepoConfig {
  uint32_t version = kRepoVersion;
  uint32_t block_size = 64 * 1024;
  std::string compression = "zstd";  // "zstd" or "none"
  int compression_level = 3;

  std::string Encode() const;
  // `where` names the file in messages.
  static Result<RepoConfig> Decode(const std::string& json, const std::string& where);
};

// The format of a disk entry without a "format" field.
inline constexpr char kLegacyDiskFormat[] = "native";

struct DiskEntry {
  std::string name;
  std::string delta_file;  // file name inside the group's deltas/ directory
  DeltaKind kind = DeltaKind::kFull;
  std::string base;        // base checkpoint; empty for full
  uint64_t virtual_size = 0;
  uint64_t stored_bytes = 0;
  // The layer format of delta_file, a name in the format registry
  // (chain/layer/registry.h). A manifest written before formats were
  // recorded has no such field: its deltas are kLegacyDiskFormat.
  std::string format = kLegacyDiskFormat;
  // The delta's identity, as its file records it (chain/repo/delta_binding.h):
  // its random id ("id") and the digest of its index ("index_digest"). Both
  // absent in entries written before chainfs bound deltas to manifests.
  std::optional<DeltaId> delta_id;
  std::optional<uint64_t> index_digest;
  // Which layer of delta_file the disk is, for a format whose files hold
  // several (the format's open_part): a qcow2 image's internal snapshot, by
  // id and time (Qcow2SnapshotPart). Empty: the file is the layer. Set by
  // foreign catalogues only; never in a manifest.
  std::string part;

  // What names this entry's layer among a group's: `file` (delta_file, or
  // its path) alone, or with the part after a NUL (a part of a file is a
  // layer of its own; a file name holds no NUL).
  std::string LayerKey(const std::string& file) const {
    return part.empty() ? file : file + '\0' + part;
  }
};

// A file kept with a checkpoint and shown beside its disks: the VM's config
// (libvirt's live domain XML as "domain.xml", the inactive one beside it).
struct ConfigFile {
  std::string name;     // a plain file name (ValidateName)
  std::string content;  // as given
};

// Where a checkpoint taken from a libvirt domain came from (chainfs backup
// --domain), so that later backups, prune and consolidate find the domain
// and its libvirt checkpoints (chain/ingest/libvirt_backup.h).
struct LibvirtRecord {
  std::string uri;     // the connection URI given (empty: libvirt's default)
  std::string domain;  // name
  std::string uuid;
  // The libvirt checkpoint whose dirty bitmaps have recorded every change
  // since this chainfs checkpoint, at or before its point in time: the one
  // made with it, or for a backup that could make none (a shut-off domain)
  // the newest earlier one. Empty: none (a later incremental must be full).
  std::string checkpoint;
};

struct Checkpoint {
  std::string group;
  std::string name;
  uint64_t sequence = 0;        // increasing within a group: the order of checkpoints
  int64_t created_unix_ns = 0;  // creation time
  std::string parent;           // the previous checkpoint; empty for the first
  std::vector<DiskEntry> disks;
  std::vector<ConfigFile> configs;  // e.g. "domain.xml"; names unique
  std::optional<LibvirtRecord> libvirt;

  const ConfigFile* FindConfig(const std::string& name) const;

  const DiskEntry* FindDisk(const std::string& disk) const;
  std::string Encode() const;
  static Result<Checkpoint> Decode(const std::string& json, const std::string& where);
};

std::string FormatTime(int64_t unix_ns);  // ISO 8601 UTC

}  // namespace chainfs
