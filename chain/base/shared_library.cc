#include "chain/base/shared_library.h"

#include <dlfcn.h>

#include <cstdlib>
#include <string>

#include <spdlog/spdlog.h>

namespace chainfs {

Status LazySharedLibrary::Load(std::initializer_list<std::pair<const char*, void**>> symbols) {
  std::call_once(once_, [&] { outcome_ = LoadOnce(symbols); });
  return outcome_;
}

Status LazySharedLibrary::LoadOnce(
    std::initializer_list<std::pair<const char*, void**>> symbols) {
  void* lib = ::dlopen(soname_, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* why = ::dlerror();
    return Status::NotSupported(std::string(soname_) + " cannot be loaded (" +
                                (why ? why : "unknown reason") +
                                "); on Debian it is in the package " + package_);
  }
  for (const auto& [name, slot] : symbols) {
    *slot = ::dlsym(lib, name);
    if (*slot == nullptr)
      return Status::NotSupported(std::string(soname_) + " has no " + name + " (chainfs needs " +
                                  needed_for_ + ")");
  }
  loaded_.store(true, std::memory_order_release);
  return Status::Ok();
}

void LazySharedLibrary::CheckLoaded() const {
  if (loaded_.load(std::memory_order_acquire)) return;
  spdlog::critical("a function of {} was called before it was loaded (a bug)", soname_);
  std::abort();
}

}  // namespace chainfs
