// A shared library loaded when a command first needs it (dlopen), not
// linked: chain/ingest/libvirt_api.h, chain/ingest/libnbd_api.h. Each lists
// its functions once (an X-macro) and hands their names and slots to Load.
//
//   static LazySharedLibrary lib("libnbd.so.0", "libnbd0", "the libnbd of Debian 12");
//   CHAINFS_RETURN_IF_ERROR(lib.Load({{"nbd_create", (void**)&api.nbd_create}}));
//   lib.CheckLoaded();  // before using a slot: aborts if Load did not succeed
#pragma once

#include <atomic>
#include <initializer_list>
#include <mutex>
#include <utility>

#include "chain/base/status.h"

namespace chainfs {

class LazySharedLibrary {
 public:
  // soname: what dlopen opens; package: the Debian package that has it;
  // needed_for: what chainfs needs of it, for a missing function's message.
  LazySharedLibrary(const char* soname, const char* package, const char* needed_for)
      : soname_(soname), package_(package), needed_for_(needed_for) {}

  // The first call opens the library (RTLD_NOW | RTLD_LOCAL; never closed)
  // and stores each symbol's address in its slot; every call returns that
  // call's outcome. kNotSupported naming the library, the loader's reason
  // and the package; or the library and the function it lacks.
  Status Load(std::initializer_list<std::pair<const char*, void**>> symbols);
  // Aborts, logging a bug, unless Load succeeded.
  void CheckLoaded() const;

 private:
  Status LoadOnce(std::initializer_list<std::pair<const char*, void**>> symbols);

  const char* const soname_;
  const char* const package_;
  const char* const needed_for_;
  std::once_flag once_;
  Status outcome_;  // set once, under once_
  std::atomic<bool> loaded_{false};
};

}  // namespace chainfs
