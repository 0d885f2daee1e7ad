// NbdSource: an NBD export as a backup Source, read with libnbd. Two ways in:
//
//   // A server someone else runs: qemu-nbd, qemu-storage-daemon, libvirt's
//   // pull-mode backup, nbdkit. nbd://, nbds://, nbd+unix://, nbds+unix://.
//   auto src = OpenNbdSource({"nbd+unix:///vda?socket=/run/backup.sock", "", "backup-1"});
//   // A QEMU image that is not raw (qcow2, vmdk, ...; told by its content):
//   // `qemu-nbd --read-only` is started on it through socket activation
//   // (no port, no root) and stopped when the source is destroyed.
//   auto img = OpenNbdSource({"/var/lib/libvirt/images/vm1.qcow2", "", "daily"});
//
// With a bitmap, ChangedRanges() asks the server for the extents of the
// meta context `qemu:dirty-bitmap:BITMAP` (an image source exports the
// image's persistent bitmap with `qemu-nbd -B BITMAP`). A server that does
// not offer it is an error listing the contexts it does offer.
// ZeroRanges() asks `base:allocation`: a full backup skips holes and zero
// extents without reading them.
//
// Reads: one connection, or up to kMaxConnections where the server allows
// multi-conn; each ReadAt keeps up to kMaxRequestsInFlight requests of at
// most the server's maximum block size in flight on its connection (libnbd's
// asynchronous API). Every error names the source, the offset and the
// server's message. Every wait on the server ends on a stop signal and, with
// spec.timeout, when the server answers nothing for that long.
#pragma once

#include <memory>
#include <string>

#include "chain/ingest/source.h"

namespace chainfs {

// Whether location is an NBD URI (nbd:, nbds:, nbd+unix:, nbds+unix:,
// nbd+vsock:) rather than a path.
bool IsNbdUri(const std::string& location);

// The QEMU image format of the file at path told by its first bytes
// ("qcow2", "vmdk", "vdi", "vhdx", "vpc", "qed", "luks", "parallels",
// "bochs", "cloop"), or "" for raw or unknown content. An unreadable file is
// an error naming it.
Result<std::string> ProbeImageFormat(const std::string& path);

// Opens spec.location as an NBD URI, or, with image_format set, as an image
// served by a qemu-nbd of our own. spec.bitmap names the dirty bitmap, or is
// empty. Connects now (size, block sizes, contexts); fails naming the
// location and the server's or libnbd's message.
Result<std::unique_ptr<Source>> OpenNbdSource(const SourceSpec& spec,
                                              const std::string& image_format = "");

}  // namespace chainfs
