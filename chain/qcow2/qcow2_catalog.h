// Qcow2Catalog: qcow2 backing chains as a read-only repository
// (chain/repo/foreign.h).
//
//   SOURCE = DIR/ holding images, or one image file (then only its chain)
//     base.qcow2       <- inc1.qcow2 <- inc2.qcow2     group "inc2"
//     base.raw         <- top.qcow2                    group "top"
//
// Each backing chain is a GROUP named after its top image (one that no
// other qcow2 image of the directory uses as its backing file) without its
// extension; its CHECKPOINTs are the chain's images from the base up, named
// after their file names without extension, each with one disk, `disk`, and
// `image.json` (what `qemu-img info --output=json` tells: format, virtual
// size, cluster size, backing file, format-specific data). A backing file
// is found as QEMU finds it (relative to the image's directory), also
// outside SOURCE, and is only ever read; its format is the header's backing
// format, else probed (qcow2 magic, else raw). Two tops may share a base:
// each group shows it.
//
// Refused, with the reason naming file and feature, while every other image
// is served: an image whose header this reader refuses (encryption, the
// corrupt bit, unknown incompatible features, an external data file), whose
// backing file is missing or of an unknown format, or whose chain loops;
// and every image above a refused one.
#pragma once

#include <memory>

#include "chain/repo/foreign.h"

namespace chainfs {

// The catalogue of path if it is a qcow2 image or a directory holding at
// least one; kNotFound otherwise.
Result<std::unique_ptr<ForeignCatalog>> OpenQcow2Catalog(Env* env, const std::string& path);

}  // namespace chainfs
