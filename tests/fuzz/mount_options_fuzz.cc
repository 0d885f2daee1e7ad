// Fuzz target: mount options (MountOptions::Parse, fusefs/driver/mount_options.h).
//
// The input is the list of -o arguments, one per line. Options that parse
// stay in their documented ranges, and the option string handed to libfuse
// parses again to the same kernel options (escaping round-trips).
#include "fusefs/driver/mount_options.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chainfs;
  std::vector<std::string> args(1);
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == '\n') args.emplace_back();
    else args.back() += static_cast<char>(data[i]);
  }
  Result<MountOptions> o = MountOptions::Parse(args);
  if (!o.ok()) {
    FUZZ_CHECK(o.status().code() == Status::Code::kInvalidArgument);
    return 0;
  }
  FUZZ_CHECK(o->umask <= 0777);
  FUZZ_CHECK((o->FileMode() & ~0444u) == 0 && (o->DirMode() & ~0555u) == 0);
  FUZZ_CHECK(o->readahead_threads <= 64);
  FUZZ_CHECK(o->readahead_min > 0 && o->readahead_max > 0);
  FUZZ_CHECK(o->kernel_readahead <= (1ull << 30));
  Result<MountOptions> again = MountOptions::Parse({o->FuseOptionString()});
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->kernel == o->kernel);
  FUZZ_CHECK(again->allow_other == o->allow_other);
  FUZZ_CHECK(again->fsname == o->fsname);
  if (!o->subtype.empty()) FUZZ_CHECK(again->subtype == o->subtype);
  return 0;
}
