#include "chain/ingest/libvirt_api.h"

#include "chain/base/shared_library.h"

namespace chainfs {
namespace {

LibvirtApi api;  // filled by the first successful LoadLibvirt

// Never unloaded: libvirt keeps threads and handlers of its own.
LazySharedLibrary& Library() {
  static LazySharedLibrary lib("libvirt.so.0", "libvirt0",
                               "a libvirt with checkpoints and backup jobs");
  return lib;
}

}  // namespace

Status LoadLibvirt() {
#define CHAINFS_LIBVIRT_SLOT(f) {#f, reinterpret_cast<void**>(&api.f)},
  return Library().Load({CHAINFS_LIBVIRT_FUNCTIONS(CHAINFS_LIBVIRT_SLOT)});
#undef CHAINFS_LIBVIRT_SLOT
}

const LibvirtApi& Libvirt() {
  Library().CheckLoaded();
  return api;
}

}  // namespace chainfs
