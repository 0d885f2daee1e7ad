// libnbd's C API, loaded when a command first reads an NBD source (dlopen
// of libnbd.so.0), not when chainfs starts: libnbd and what it pulls in
// (gnutls and its tree) were ~1.3 ms of every command's start here.
//
//   CHAINFS_RETURN_IF_ERROR(LoadLibnbd());  // before the first call
//   nbd_handle* h = nbd::nbd_create();
//
// As chain/ingest/libvirt_api.h: calls go through nbd::, typed by libnbd's
// own header; one before LoadLibnbd() succeeded is a bug and aborts.
#pragma once

#include <libnbd.h>

#include <utility>

#include "chain/base/status.h"

namespace chainfs {

// Every libnbd function chainfs calls.
#define CHAINFS_LIBNBD_FUNCTIONS(X)                                                \
  X(nbd_create) X(nbd_close) X(nbd_get_error) X(nbd_get_errno) X(nbd_supports_uri) \
  X(nbd_supports_tls) X(nbd_set_uri_allow_local_file) X(nbd_set_opt_mode)          \
  X(nbd_add_meta_context) X(nbd_aio_connect_uri)                                   \
  X(nbd_aio_connect_systemd_socket_activation) X(nbd_aio_is_connecting)            \
  X(nbd_aio_is_negotiating) X(nbd_aio_is_ready) X(nbd_aio_opt_list_meta_context)   \
  X(nbd_opt_abort) X(nbd_can_meta_context) X(nbd_can_multi_conn) X(nbd_get_size)   \
  X(nbd_get_block_size) X(nbd_shutdown) X(nbd_aio_pread) X(nbd_aio_block_status)   \
  X(nbd_aio_in_flight) X(nbd_poll) X(nbd_aio_command_completed) X(nbd_aio_is_dead) \
  X(nbd_aio_is_closed)

struct LibnbdApi {
#define CHAINFS_LIBNBD_POINTER(f) decltype(&::f) f = nullptr;
  CHAINFS_LIBNBD_FUNCTIONS(CHAINFS_LIBNBD_POINTER)
#undef CHAINFS_LIBNBD_POINTER
};

// Loads libnbd once (later calls return the first outcome); kNotSupported
// naming the library, the loader's reason and the package if it cannot be
// loaded, or the function it lacks.
Status LoadLibnbd();
// The loaded API. REQUIRES: LoadLibnbd() succeeded.
const LibnbdApi& Libnbd();

namespace nbd {
#define CHAINFS_LIBNBD_FORWARD(f)                   \
  template <typename... Args>                       \
  inline auto f(Args&&... args) {                   \
    return Libnbd().f(std::forward<Args>(args)...); \
  }
CHAINFS_LIBNBD_FUNCTIONS(CHAINFS_LIBNBD_FORWARD)
#undef CHAINFS_LIBNBD_FORWARD
}  // namespace nbd

}  // namespace chainfs
