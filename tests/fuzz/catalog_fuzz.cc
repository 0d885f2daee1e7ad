// Fuzz target: the manifest catalogue (DecodeCatalog, chain/repo/catalog.h).
//
// The input is a catalogue without its checksum, which is appended here so
// that the fuzzer reaches the entries. A catalogue that decodes holds only
// valid, distinct checkpoints of its group, and encodes to the same bytes.
#include "chain/base/coding.h"
#include "chain/base/hash.h"
#include "chain/base/names.h"
#include "chain/repo/catalog.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chainfs;
  std::string bytes = fuzz::AsString(data, size);
  PutFixed64(&bytes, Checksum64(bytes.data(), bytes.size()));
  Result<Catalog> got = DecodeCatalog(bytes, "fuzz/catalog", "vm0001");
  if (!got.ok()) return 0;
  FUZZ_CHECK(got->stamps.size() == got->checkpoints.size());
  std::vector<std::pair<ManifestStamp, const Checkpoint*>> again;
  for (size_t i = 0; i < got->size(); ++i) {
    const Checkpoint& c = got->checkpoints[i];
    FUZZ_CHECK(c.group == "vm0001");
    FUZZ_CHECK(ValidateName("checkpoint", c.name).ok());
    for (const DiskEntry& d : c.disks) FUZZ_CHECK(ValidateName("delta file", d.delta_file).ok());
    again.push_back({got->stamps[i], &c});
  }
  FUZZ_CHECK(EncodeCatalog("vm0001", again) == bytes);
  return 0;
}
