// VnbCatalog: virtnbdbackup output directories as a read-only repository
// (chain/repo/foreign.h).
//
//   SOURCE/                         one virtnbdbackup output directory, or
//   SOURCE/<dir>/                   a directory of them (one group each)
//     <domain>.cpt                  ["virtnbdbackup.0", "virtnbdbackup.1", ...]
//     vda.full.data                 full stream (or vda.copy.data: a copy)
//     vda.inc.virtnbdbackup.1.data  incremental since virtnbdbackup.0
//     vda.diff.<time>.data          differential since the newest checkpoint
//     vmconfig.virtnbdbackup.1.xml  the domain XML at that checkpoint
//
// GROUP is the domain name (the .cpt file's, else the vmconfig's <name>,
// else the directory's; a name two directories share goes to the first, the
// others are named after their directory). CHECKPOINTs are the .cpt list in
// order (without a .cpt file: the names the streams' meta frames give),
// each with every disk that has a stream for it; a differential is the
// checkpoint PARENT.diff.TIME after its parent. domain.xml comes from the
// vmconfig file.
//
// Refused, with the reason naming file and offset, while every other
// checkpoint is served: a checkpoint whose stream is missing for a disk its
// parent has, unreadable, truncated or malformed, or whose meta frame names
// another checkpoint or parent; and every checkpoint whose chain passes
// through a refused one. Streams are parsed when a group is loaded and the
// result kept while the file's size and modification time stay the same.
#pragma once

#include <memory>

#include "chain/repo/foreign.h"

namespace chainfs {

// The catalogue of path if it is a virtnbdbackup output directory or a
// directory holding such directories; kNotFound otherwise.
Result<std::unique_ptr<ForeignCatalog>> OpenVnbCatalog(Env* env, const std::string& path);

}  // namespace chainfs
