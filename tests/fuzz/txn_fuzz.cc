// Fuzz target: the consolidation journal (Txn::Decode, chain/repo/txn.h).
//
// A journal that decodes names only files and checkpoints that stay inside
// its group, every manifest it writes belongs to that group and step, and it
// encodes to a journal that decodes to the same steps.
#include "chain/base/names.h"
#include "chain/repo/txn.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chainfs;
  Result<Txn> t = Txn::Decode(fuzz::AsString(data, size), "fuzz/txn.json");
  if (!t.ok()) return 0;
  FUZZ_CHECK(ValidateName("group", t->group).ok());
  for (const auto* list : {&t->new_deltas, &t->delete_deltas})
    for (const std::string& f : *list) FUZZ_CHECK(ValidateName("delta file", f).ok());
  for (const ManifestStep& st : t->steps) {
    FUZZ_CHECK(ValidateName("checkpoint", st.checkpoint).ok());
    if (st.write) FUZZ_CHECK(st.write->group == t->group && st.write->name == st.checkpoint);
    (void)t->Drops(st.checkpoint);
  }
  const Txn again = fuzz::DecodeAgainStable(*t, "fuzz/txn.json");
  FUZZ_CHECK(again.steps.size() == t->steps.size());
  return 0;
}
