#include "chain/repo/txn.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace chainfs {
namespace {

// A journal with one removal step, as Txn::Encode writes it.
nlohmann::json Journal() {
  Txn t;
  t.group = "vm1";
  t.purpose = "consolidate --drop c2";
  t.steps.push_back({"c2", std::nullopt});
  t.delete_deltas = {"c2.vda.0123456789abcdef.delta"};
  return nlohmann::json::parse(t.Encode());
}

TEST(Txn, EncodeDecodeRoundTrip) {
  const std::string text = Journal().dump();
  auto t = Txn::Decode(text, "txn.json");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->purpose, "consolidate --drop c2");
  ASSERT_EQ(t->steps.size(), 1u);
  EXPECT_TRUE(t->Drops("c2"));
  auto again = Txn::Decode(t->Encode(), "txn.json");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->Encode(), t->Encode());
}

// Issue 13 (found by tests/fuzz/txn_fuzz.cc): a journal whose "format",
// "purpose" or a step's "remove" has the wrong type is corruption naming
// the file; before, json::value() threw and the uncaught exception aborted
// every writer of the group (they roll a journal forward first).
TEST(Txn, Issue13FieldsOfTheWrongTypeAreCorruptionNotAnException) {
  std::vector<nlohmann::json> bad;
  bad.push_back(Journal());
  bad.back()["format"] = 1;
  bad.push_back(Journal());
  bad.back()["purpose"] = 5;
  bad.push_back(Journal());
  bad.back()["manifest_steps"][0]["remove"] = "yes";
  bad.push_back(Journal());
  bad.back()["manifest_steps"][0]["remove"] = false;
  for (const nlohmann::json& j : bad) {
    Result<Txn> t = Txn::Decode(j.dump(), "/r/groups/vm1/txn.json");
    ASSERT_FALSE(t.ok()) << j.dump();
    EXPECT_EQ(t.status().code(), Status::Code::kCorruption);
    EXPECT_NE(t.status().message().find("/r/groups/vm1/txn.json"), std::string::npos);
  }
}

}  // namespace
}  // namespace chainfs
