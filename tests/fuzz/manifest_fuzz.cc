// Fuzz target: a checkpoint manifest (Checkpoint::Decode, docs/FORMAT.md).
//
// A manifest that decodes must encode to a manifest that decodes to the
// same checkpoint (compared through a second Encode), with names that
// cannot escape the repository and the kind/base rule kept.
#include "chain/base/names.h"
#include "chain/repo/manifest.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chainfs;
  Result<Checkpoint> c = Checkpoint::Decode(fuzz::AsString(data, size), "fuzz.json");
  if (!c.ok()) return 0;
  FUZZ_CHECK(ValidateName("group", c->group).ok());
  FUZZ_CHECK(ValidateName("checkpoint", c->name).ok());
  for (const DiskEntry& d : c->disks) {
    FUZZ_CHECK(ValidateName("disk", d.name).ok());
    FUZZ_CHECK(ValidateName("delta file", d.delta_file).ok());
    FUZZ_CHECK((d.kind == DeltaKind::kFull) == d.base.empty());
  }
  const Checkpoint again = fuzz::DecodeAgainStable(*c, "fuzz.json");
  FUZZ_CHECK(again.disks.size() == c->disks.size());
  return 0;
}
