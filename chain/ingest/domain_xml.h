// The libvirt XML documents a domain backup reads and writes: the domain
// definition (which disks, of which kind), a checkpoint's (which disks have
// a bitmap), a running backup job's (whose job it is), and the backup and
// checkpoint XML that start a pull-mode job. Pure text in, text out (libxml2
// XPath), so that it is tested without a libvirtd.
//
//   auto dom = ParseDomainXml(virDomainGetXMLDesc(...), "domain vm1");
//   for (const DomainDisk& d : dom->disks)
//     if (std::string why = DiskSkipReason(d); !why.empty()) skipped(d.target, why);
#pragma once

#include <map>
#include <string>
#include <vector>

#include "chain/base/status.h"

namespace chainfs {

struct DomainDisk {
  std::string target;       // <target dev='vda'>: the disk's name in chainfs
  std::string device;       // disk, cdrom, floppy, lun
  std::string type;         // file, block, network, volume, nvme, vhostuser...
  std::string driver_type;  // <driver type='qcow2'>: raw, qcow2...
  std::string source;       // file or dev path; a network disk's name
  bool readonly = false;
  bool shareable = false;
  bool transient = false;
};

struct DomainInfo {
  std::string name;
  std::string uuid;
  std::vector<DomainDisk> disks;  // in document order
};

// `where` names the document in messages ("domain vm1").
Result<DomainInfo> ParseDomainXml(const std::string& xml, const std::string& where);

// Why a disk cannot take part in a checkpoint and pull-mode backup (libvirt
// needs a writable, unshared qcow2 disk for a bitmap), or "" if it can.
std::string DiskSkipReason(const DomainDisk& d);

struct CheckpointInfo {
  std::string name;
  std::string parent;                          // empty: none
  std::string description;
  std::map<std::string, std::string> bitmaps;  // disk target -> bitmap name
};
Result<CheckpointInfo> ParseCheckpointXml(const std::string& xml, const std::string& where);

// A running pull-mode backup job: its NBD server's unix socket and the
// export names of its disks.
struct BackupJobInfo {
  std::string socket;  // empty: not a unix socket
  std::vector<std::string> exports;
};
Result<BackupJobInfo> ParseBackupJob(const std::string& xml, const std::string& where);

// One disk of a backup job to start.
struct JobDisk {
  std::string target;
  bool backup = true;      // false: <disk backup='no'>, and no bitmap in the checkpoint
  std::string since;       // libvirt checkpoint to be incremental on; empty: full
  std::string exportname;  // NBD export name
  std::string exportbitmap;  // the bitmap exported with an incremental disk
  std::string scratch;       // file QEMU keeps the job's copy-before-write data in
};

// <domainbackup mode='pull'> serving every disk with backup over the unix
// socket at socket_path.
std::string BackupJobXml(const std::string& socket_path, const std::vector<JobDisk>& disks);
// <domaincheckpoint> named name, with a bitmap on every disk with backup.
std::string CheckpointXml(const std::string& name, const std::string& description,
                          const std::vector<JobDisk>& disks);

}  // namespace chainfs
