// Delta binding: a manifest's disk entry and the delta file it names vouch for
// each other.
//
// Every delta chainfs writes records its identity (group, checkpoint, disk,
// kind, base, a random 128-bit id; chain/layer/layer_identity.h) in its
// header, and the manifest entry that names it records the id and the digest
// of its index. Repository::OpenLayer compares the two on every open (a few
// string compares per layer, never per block), so that a mix-up (two delta
// files swapped, a manifest naming another checkpoint's delta, a changed
// base) is refused instead of read as wrong bytes:
//
//   groups/vm1/checkpoints/c2.json names disk vda's delta c2.vda.X.delta, but
//   that file's header says checkpoint c1, not c2; ...
//
// What is compared: group, checkpoint, disk, base, full-or-not, id and index
// digest, exactly. Not incremental against differential: that follows from
// the checkpoint's parent, which consolidation relinks without rewriting the
// delta; the bytes a view reads depend only on the base.
//
// Compatibility: an entry without id whose file records no identity (both
// written before chainfs bound deltas) is kUnbound: it opens, and `check`
// reports it as a notice. One side bound and not the other is a mismatch.
#pragma once

#include <string>

#include "chain/base/status.h"
#include "chain/layer/layer.h"
#include "chain/repo/manifest.h"

namespace chainfs {

enum class Binding { kBound, kUnbound };

// Checks that layer, opened from entry.delta_file, is the delta that
// checkpoint `checkpoint` of `group` names for entry.name in the manifest at
// manifest_path. A mismatch is kCorruption naming the manifest, the delta
// file and every field that differs.
Result<Binding> VerifyBinding(const Layer& layer, const std::string& manifest_path,
                              const std::string& group, const std::string& checkpoint,
                              const DiskEntry& entry);

// Records written's id and index digest in entry (after the delta's Finish).
void BindEntry(const LayerIdentity& written, DiskEntry* entry);

}  // namespace chainfs
