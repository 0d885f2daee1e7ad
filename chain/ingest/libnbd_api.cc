#include "chain/ingest/libnbd_api.h"

#include "chain/base/shared_library.h"

namespace chainfs {
namespace {

LibnbdApi api;  // filled by the first successful LoadLibnbd

LazySharedLibrary& Library() {
  static LazySharedLibrary lib("libnbd.so.0", "libnbd0", "the libnbd of Debian 12 or later");
  return lib;
}

}  // namespace

Status LoadLibnbd() {
#define CHAINFS_LIBNBD_SLOT(f) {#f, reinterpret_cast<void**>(&api.f)},
  return Library().Load({CHAINFS_LIBNBD_FUNCTIONS(CHAINFS_LIBNBD_SLOT)});
#undef CHAINFS_LIBNBD_SLOT
}

const LibnbdApi& Libnbd() {
  Library().CheckLoaded();
  return api;
}

}  // namespace chainfs
