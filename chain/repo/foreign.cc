#include "chain/repo/foreign.h"

#include "chain/qcow2/qcow2_catalog.h"
#include "chain/vnb/vnb_catalog.h"

namespace chainfs {

Result<std::unique_ptr<ForeignCatalog>> OpenForeignCatalog(Env* env, const std::string& path) {
  // Each kind of source in turn; the first that recognises path wins.
  auto vnb = OpenVnbCatalog(env, path);
  if (vnb.ok() || vnb.status().code() != Status::Code::kNotFound) return vnb;
  auto qcow2 = OpenQcow2Catalog(env, path);
  if (qcow2.ok() || qcow2.status().code() != Status::Code::kNotFound) return qcow2;
  return Status::NotFound(path + " is neither a chainfs repository (no chainfs.json), a "
                          "virtnbdbackup output directory (or a directory of them), nor a qcow2 "
                          "image (or a directory of them)");
}

}  // namespace chainfs
