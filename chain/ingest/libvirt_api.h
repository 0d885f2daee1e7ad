// libvirt's C API, loaded when a command first needs it (dlopen of
// libvirt.so.0), not when chainfs starts: libvirt pulls in 56 shared
// libraries, and loading them was ~8 ms of every command here (mount,
// export, check, a backup from a file or NBD), most of a small one.
//
//   CHAINFS_RETURN_IF_ERROR(LoadLibvirt());  // before the first call
//   virConnectPtr c = lv::virConnectOpen(uri);
//
// Calls go through lv::, which forwards to the loaded function of the same
// name and type (the header's own declaration: a changed signature fails to
// compile). Calling one before LoadLibvirt() succeeded is a bug: it aborts.
#pragma once

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <utility>

#include "chain/base/status.h"

namespace chainfs {

// Every libvirt function chainfs calls.
#define CHAINFS_LIBVIRT_FUNCTIONS(X)                                                       \
  X(virInitialize) X(virSetErrorFunc) X(virGetLastErrorMessage) X(virConnectOpen)          \
  X(virConnectClose) X(virDomainFree) X(virDomainCheckpointFree)                           \
  X(virDomainLookupByName) X(virDomainLookupByUUIDString) X(virDomainGetUUIDString)        \
  X(virDomainGetName) X(virDomainGetState) X(virDomainGetXMLDesc)                          \
  X(virDomainListAllCheckpoints) X(virDomainCheckpointLookupByName)                        \
  X(virDomainCheckpointGetName) X(virDomainCheckpointGetXMLDesc)                           \
  X(virDomainCheckpointDelete) X(virDomainCheckpointListAllChildren)                       \
  X(virDomainBackupBegin) X(virDomainBackupGetXMLDesc) X(virDomainAbortJob)

struct LibvirtApi {
#define CHAINFS_LIBVIRT_POINTER(f) decltype(&::f) f = nullptr;
  CHAINFS_LIBVIRT_FUNCTIONS(CHAINFS_LIBVIRT_POINTER)
#undef CHAINFS_LIBVIRT_POINTER
};

// Loads libvirt once (later calls return the first outcome); kNotSupported
// naming the library, the loader's reason and the package if it cannot be
// loaded, or the function it lacks.
Status LoadLibvirt();
// The loaded API. REQUIRES: LoadLibvirt() succeeded.
const LibvirtApi& Libvirt();

namespace lv {
#define CHAINFS_LIBVIRT_FORWARD(f)                   \
  template <typename... Args>                        \
  inline auto f(Args&&... args) {                    \
    return Libvirt().f(std::forward<Args>(args)...); \
  }
CHAINFS_LIBVIRT_FUNCTIONS(CHAINFS_LIBVIRT_FORWARD)
#undef CHAINFS_LIBVIRT_FORWARD
}  // namespace lv

}  // namespace chainfs
