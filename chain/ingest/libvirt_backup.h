// Backup of a libvirt domain: one chainfs checkpoint per libvirt checkpoint,
// made atomically with a pull-mode backup job across all its disks, the
// disks read through the job's NBD exports (chain/ingest/nbd_source.h).
//
//   chainfs backup REPO GROUP CP --domain vm1 [--connect URI] [--full | --since B]
//
//   under the repository lock (BackupOptions::prepare):
//     end a job and delete libvirt checkpoints left by killed runs of this
//     group (ours: named "chainfs.GROUP.CP", described "chainfs group GROUP
//     checkpoint CP"; never another tool's)
//     ─► check the base in both chains ─► virDomainBackupBegin(pull, with
//     checkpoint "chainfs.GROUP.CP") ─► the NBD exports are the sources
//   Backup (chain/ingest/backup.h) reads them and commits the manifest
//   ─► the job is ended; on any failure the new libvirt checkpoint is
//      deleted too, its bitmap merged back into its parent's by libvirt, so
//      the next incremental (on the last good checkpoint) loses no change.
//
// A shut-off domain is read from its qcow2 images (a qemu-nbd of our own),
// incremental through the persistent bitmap of the base's libvirt
// checkpoint when that is the newest one, else full. libvirt makes no
// checkpoint for an inactive domain: the new chainfs checkpoint records the
// base's libvirt checkpoint (LibvirtRecord::checkpoint), whose bitmap still
// records every change since, so the next incremental stays correct.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "chain/ingest/backup.h"
#include "chain/repo/repository.h"

namespace chainfs {

struct DomainBackupOptions {
  std::string uri;     // --connect; empty: libvirt's default connection
  std::string domain;  // name or UUID
  std::vector<std::string> exclude;  // disk targets not to back up
  // Where the job's NBD socket and scratch files go (a new directory under
  // it, removed after the job); empty: $TMPDIR, else /var/tmp. Must be on
  // the host libvirt runs on. The scratch files hold the old contents of
  // blocks the guest writes while the job runs.
  std::string work_parent;
};

struct DomainBackupReport {
  BackupReport backup;
  std::string domain;
  bool offline = false;             // read from the images of a shut-off domain
  std::string libvirt_checkpoint;   // made for this checkpoint; empty: none
  std::vector<std::pair<std::string, std::string>> skipped;  // disk, why
  std::vector<std::string> notes;   // what was repaired or decided, for the user
};

// opts: the group, checkpoint, full/since, threads of the backup; its disks
// must be empty (they are the domain's).
Result<DomainBackupReport> BackupDomain(const Repository& repo, BackupOptions opts,
                                        const DomainBackupOptions& dopts);

// The libvirt checkpoint made with chainfs checkpoint `checkpoint` of `group`.
std::string LibvirtCheckpointName(const std::string& group, const std::string& checkpoint);

struct ForgetReport {
  std::vector<std::string> deleted;   // "domain/checkpoint"
  std::vector<std::string> warnings;  // could not delete: said why
};

// After prune or consolidate dropped checkpoints of a group (`before`: the
// group as it was): deletes the libvirt checkpoints (with their bitmaps) that
// only dropped checkpoints recorded. A domain that cannot be reached is a
// warning, never an error: the group's next backup deletes the rest.
ForgetReport ForgetLibvirtCheckpoints(const GroupState& before,
                                      const std::vector<std::string>& dropped);

}  // namespace chainfs
