#include "fusefs/driver/inode_table.h"

#include <gtest/gtest.h>

#include <set>
#include <thread>

namespace chainfs {

namespace {

Node GroupNode(const std::string& g) {
  Node n;
  n.kind = NodeKind::kGroup;
  n.group = g;
  return n;
}

Checkpoint Cp(const std::string& name, uint64_t seq, int64_t created) {
  Checkpoint cp;
  cp.group = "vm1";
  cp.name = name;
  cp.sequence = seq;
  cp.created_unix_ns = created;
  return cp;
}

}  // namespace

TEST(InodeTable, RootIsOneAndUnknownNumbersAreNull) {
  InodeTable t(std::make_shared<const Node>());
  ASSERT_NE(t.Get(InodeTable::kRootIno), nullptr);
  EXPECT_EQ(t.Get(InodeTable::kRootIno)->kind, NodeKind::kRoot);
  EXPECT_EQ(t.Get(0), nullptr);
  EXPECT_EQ(t.Get(2), nullptr);
}

TEST(InodeTable, SameKeySameNumberAndNodeBuiltOnce) {
  InodeTable t(std::make_shared<const Node>());
  int built = 0;
  auto make = [&] {
    ++built;
    return GroupNode("vm1");
  };
  uint64_t a = t.Intern("/vm1", make);
  uint64_t b = t.Intern("/vm1", make);
  EXPECT_EQ(a, b);
  EXPECT_EQ(built, 1);
  EXPECT_EQ(t.Get(a)->group, "vm1");
  EXPECT_EQ(t.Get(a)->attr.st_ino, a);
  EXPECT_NE(t.Intern("/vm2", [] { return GroupNode("vm2"); }), a);
}

TEST(InodeTable, RecreatedCheckpointGetsNewNumbers) {
  InodeTable t(std::make_shared<const Node>());
  std::string k1 = InodeTable::CheckpointKey(Cp("c3", 3, 1000), "vda.raw");
  std::string k2 = InodeTable::CheckpointKey(Cp("c3", 7, 5000), "vda.raw");
  EXPECT_NE(k1, k2);
  uint64_t a = t.Intern(k1, [] { return Node(); });
  uint64_t b = t.Intern(k2, [] { return Node(); });
  EXPECT_GT(b, a);
  EXPECT_EQ(t.Intern(k1, [] { return Node(); }), a);  // old identity keeps its number
}

TEST(InodeTable, ConcurrentInternsAgree) {
  InodeTable t(std::make_shared<const Node>());
  constexpr int kThreads = 8, kKeys = 500;
  std::vector<std::vector<uint64_t>> got(kThreads, std::vector<uint64_t>(kKeys));
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&, i] {
      for (int k = 0; k < kKeys; ++k)
        got[i][k] = t.Intern("/g" + std::to_string(k), [k] { return GroupNode(std::to_string(k)); });
    });
  for (auto& th : threads) th.join();
  std::set<uint64_t> distinct;
  for (int k = 0; k < kKeys; ++k) {
    for (int i = 1; i < kThreads; ++i) EXPECT_EQ(got[i][k], got[0][k]);
    distinct.insert(got[0][k]);
    EXPECT_EQ(t.Get(got[0][k])->group, std::to_string(k));
  }
  EXPECT_EQ(distinct.size(), static_cast<size_t>(kKeys));
  EXPECT_EQ(t.size(), static_cast<size_t>(kKeys + 1));
}

}  // namespace chainfs
