#include "chain/ingest/libvirt_api.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include <spdlog/spdlog.h>

namespace chainfs {
namespace {

constexpr char kLibvirtSoname[] = "libvirt.so.0";

LibvirtApi api;  // filled once, under LoadLibvirt's once_flag
std::atomic<bool> loaded{false};

Status Load() {
  // Never unloaded: libvirt keeps threads and handlers of its own.
  void* lib = ::dlopen(kLibvirtSoname, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* why = ::dlerror();
    return Status::NotSupported(std::string("libvirt cannot be loaded (") + kLibvirtSoname +
                                ": " + (why ? why : "unknown reason") +
                                "); on Debian it is in the package libvirt0");
  }
#define CHAINFS_LIBVIRT_RESOLVE(f)                                                   \
  api.f = reinterpret_cast<decltype(api.f)>(::dlsym(lib, #f));                       \
  if (api.f == nullptr)                                                              \
    return Status::NotSupported(std::string(kLibvirtSoname) + " has no " #f           \
                                " (chainfs needs a libvirt " \
                                "with checkpoints and backup jobs)");
  CHAINFS_LIBVIRT_FUNCTIONS(CHAINFS_LIBVIRT_RESOLVE)
#undef CHAINFS_LIBVIRT_RESOLVE
  loaded = true;
  return Status::Ok();
}

}  // namespace

Status LoadLibvirt() {
  static std::once_flag once;
  static Status outcome;
  std::call_once(once, [] { outcome = Load(); });
  return outcome;
}

const LibvirtApi& Libvirt() {
  if (!loaded) {
    spdlog::critical("a libvirt function was called before libvirt was loaded (a bug)");
    std::abort();
  }
  return api;
}

}  // namespace chainfs
