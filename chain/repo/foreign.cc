#include "chain/repo/foreign.h"

#include "chain/vnb/vnb_catalog.h"

namespace chainfs {

Result<std::unique_ptr<ForeignCatalog>> OpenForeignCatalog(Env* env, const std::string& path) {
  // Each kind of source in turn; the first that recognises path wins.
  auto vnb = OpenVnbCatalog(env, path);
  if (vnb.ok() || vnb.status().code() != Status::Code::kNotFound) return vnb;
  return Status::NotFound(path + " is neither a chainfs repository (no chainfs.json) nor a "
                          "virtnbdbackup output directory (nor a directory of them)");
}

}  // namespace chainfs
