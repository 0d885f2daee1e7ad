// Fuzz target: the repository config (RepoConfig::Decode, docs/FORMAT.md).
//
// A config that decodes has a valid block size and a known compression, and
// encodes to a config that decodes to the same values.
#include "chain/native/delta_format.h"
#include "chain/repo/manifest.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chainfs;
  Result<RepoConfig> c = RepoConfig::Decode(fuzz::AsString(data, size), "fuzz/config.json");
  if (!c.ok()) return 0;
  FUZZ_CHECK(IsValidBlockSize(c->block_size));
  FUZZ_CHECK(c->compression == "zstd" || c->compression == "none");
  FUZZ_CHECK(c->version >= 1 && c->version <= kRepoVersion);
  const RepoConfig again = fuzz::DecodeAgainStable(*c, "fuzz/config.json");
  FUZZ_CHECK(again.block_size == c->block_size &&
             again.compression_level == c->compression_level);
  return 0;
}
