// Fuzz target: a writer's intent record (WriteIntent::Decode,
// chain/repo/write_intent.h), what ReadIntent parses from intent.json.
//
// An intent that decodes names only files and a checkpoint that stay inside
// its group (garbage collection deletes the deltas it lists), and it encodes
// to an intent that decodes to the same record.
#include "chain/base/names.h"
#include "chain/repo/write_intent.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chainfs;
  Result<WriteIntent> w = WriteIntent::Decode(fuzz::AsString(data, size), "fuzz/intent.json");
  if (!w.ok()) {
    const Status::Code c = w.status().code();
    FUZZ_CHECK(c == Status::Code::kCorruption || c == Status::Code::kNotSupported);
    return 0;
  }
  FUZZ_CHECK(ValidateName("group", w->group).ok());
  FUZZ_CHECK(w->commits.empty() || ValidateName("checkpoint", w->commits).ok());
  for (const std::string& f : w->deltas) FUZZ_CHECK(ValidateName("delta file", f).ok());
  const WriteIntent again = fuzz::DecodeAgainStable(*w, "fuzz/intent.json");
  FUZZ_CHECK(again.group == w->group && again.purpose == w->purpose &&
             again.commits == w->commits && again.deltas == w->deltas);
  return 0;
}
