// The group index (GroupState::Index) against the scan it replaces: random
// groups with every kind of broken link must resolve to the same chains and
// the same errors, word for word, and ancestry must agree.
#include "chain/repo/group_state.h"

#include <gtest/gtest.h>

#include <memory>
#include <random>

namespace chainfs {
namespace {

// A random group: parents mostly the previous checkpoint, sometimes an older
// one, a missing or a refused name; disks full or based on the parent, an
// older or newer checkpoint, itself, a missing or a refused name.
GroupState RandomGroup(uint32_t seed) {
  std::mt19937 rng(seed);
  auto pick = [&](uint32_t n) { return static_cast<uint32_t>(rng() % n); };
  GroupState g;
  g.name = "vm";
  const uint32_t n = 1 + pick(40);
  for (uint32_t k = 0; k < 3; ++k)
    g.refused.push_back({"r" + std::to_string(k), "vm/checkpoints/r.json", "bad " + std::to_string(k)});
  auto name_of = [](uint32_t i) { return "c" + std::to_string(i); };
  for (uint32_t i = 0; i < n; ++i) {
    Checkpoint c;
    c.group = g.name;
    c.name = name_of(i);
    c.sequence = i + 1;
    if (i > 0) {
      switch (pick(10)) {
        case 0: c.parent = "gone"; break;
        case 1: c.parent = "r" + std::to_string(pick(3)); break;
        case 2: c.parent = name_of(pick(i)); break;
        case 3: break;  // a second root
        default: c.parent = name_of(i - 1);
      }
    }
    for (const char* disk : {"vda", "vdb"}) {
      if (pick(5) == 0) continue;
      DiskEntry d;
      d.name = disk;
      d.delta_file = c.name + "." + disk + ".delta";
      d.stored_bytes = 1 + pick(1000);
      d.virtual_size = pick(8) == 0 ? 2 << 20 : 1 << 20;  // sometimes resized
      if (pick(16) == 0) d.format = "qcow2";  // sometimes another format
      const uint32_t how = i == 0 ? 0 : pick(12);
      if (how == 0) {
        d.kind = DeltaKind::kFull;
      } else {
        d.kind = DeltaKind::kIncremental;
        switch (how) {
          case 1: d.base = "gone"; break;
          case 2: d.base = "r" + std::to_string(pick(3)); break;
          case 3: d.base = name_of(i + 1 + pick(3)); break;  // newer or missing
          case 4: d.base = c.name; break;
          case 5: d.base = name_of(pick(i)); break;  // older: an ancestor or not
          default: d.base = c.parent.empty() ? name_of(i - 1) : c.parent;
        }
      }
      c.disks.push_back(std::move(d));
    }
    g.checkpoints.push_back(std::move(c));
  }
  return g;
}

std::vector<std::string> Names(const std::vector<ChainLink>& chain) {
  std::vector<std::string> out;
  for (const ChainLink& l : chain) out.push_back(l.checkpoint->name + "/" + l.disk->name);
  return out;
}

// True if every link of chain points into s's own checkpoints and their disks.
bool PointsInto(const GroupState& s, const std::vector<ChainLink>& chain) {
  for (const ChainLink& l : chain) {
    const Checkpoint* c = s.Find(l.checkpoint->name);
    if (l.checkpoint != c || l.disk < c->disks.data() || l.disk >= c->disks.data() + c->disks.size())
      return false;
  }
  return true;
}

TEST(GroupStateTest, Issue14IndexResolvesLikeTheScan) {
  int resolved = 0, broken = 0, resized = 0, mixed = 0;
  for (uint32_t seed = 1; seed <= 400; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    GroupState plain = RandomGroup(seed);  // no index: every query scans
    GroupState indexed = plain;
    indexed.Index();
    // A copy of an indexed state shares its index, and a moved one takes
    // it: both must resolve into their own checkpoints once the state they
    // came from is gone (the index's pointers are the original's).
    auto original = std::make_unique<GroupState>(plain);
    original->Index();
    const GroupState copied = *original;
    original.reset();
    auto to_move = std::make_unique<GroupState>(plain);
    to_move->Index();
    const GroupState moved = std::move(*to_move);
    to_move.reset();
    for (size_t i = 0; i < plain.checkpoints.size(); ++i) {
      for (const GroupState* other : {&copied, &moved})
        for (const char* disk : {"vda", "vdb"}) {
          auto want = plain.ResolveChain(plain.checkpoints[i], disk);
          auto got = other->ResolveChain(other->checkpoints[i], disk);
          ASSERT_EQ(want.ok(), got.ok());
          if (!want.ok()) continue;
          EXPECT_EQ(Names(want.value()), Names(got.value()));
          EXPECT_TRUE(PointsInto(*other, got.value()))
              << (other == &copied ? "copy" : "moved state") << " of " << plain.name << "/"
              << plain.checkpoints[i].name << "/" << disk;
        }
      const Checkpoint& pc = plain.checkpoints[i];
      const Checkpoint& ic = indexed.checkpoints[i];
      for (const char* disk : {"vda", "vdb", "vdz"}) {
        auto want = plain.ResolveChain(pc, disk);
        auto got = indexed.ResolveChain(ic, disk);
        ASSERT_EQ(want.ok(), got.ok()) << pc.name << "/" << disk << ": "
                                       << (want.ok() ? got.status() : want.status()).message();
        const DiskChainInfo* info = indexed.ChainInfo(ic, disk);
        ASSERT_EQ(info == nullptr, ic.FindDisk(disk) == nullptr);
        if (!want.ok()) {
          ++broken;
          EXPECT_EQ(want.status().code(), got.status().code());
          EXPECT_EQ(want.status().message(), got.status().message());
          if (info != nullptr) {
            EXPECT_FALSE(info->broken.empty());
          }
          continue;
        }
        ++resolved;
        EXPECT_EQ(Names(want.value()), Names(got.value()));
        EXPECT_TRUE(PointsInto(indexed, got.value()));  // links point into the snapshot
        uint64_t stored = 0;
        bool uniform = true;
        bool one_format = true;
        for (const ChainLink& l : want.value()) {
          stored += l.disk->stored_bytes;
          uniform &= l.disk->virtual_size == want.value()[0].disk->virtual_size;
          one_format &= l.disk->format == want.value()[0].disk->format;
        }
        resized += uniform ? 0 : 1;
        mixed += one_format ? 0 : 1;
        EXPECT_EQ(info->sizes_uniform, uniform) << pc.name << "/" << disk;
        EXPECT_EQ(info->formats_uniform, one_format) << pc.name << "/" << disk;
        EXPECT_TRUE(info->broken.empty());
        EXPECT_EQ(info->stored_bytes, stored);
        EXPECT_EQ(info->depth, want->size());
      }
      for (size_t k = 0; k < plain.checkpoints.size(); ++k)
        EXPECT_EQ(plain.IsAncestor(plain.checkpoints[k].name, pc.name),
                  indexed.IsAncestor(plain.checkpoints[k].name, pc.name))
            << plain.checkpoints[k].name << " of " << pc.name;
      EXPECT_EQ(indexed.Find(pc.name), &ic);
    }
    for (const RefusedCheckpoint& r : plain.refused)
      EXPECT_EQ(indexed.FindRefused(r.name)->reason, r.reason);
    EXPECT_EQ(indexed.Find("gone"), nullptr);
  }
  // The random groups exercise both outcomes, many times.
  EXPECT_GT(resolved, 2000);
  EXPECT_GT(broken, 2000);
  EXPECT_GT(resized, 100);
  EXPECT_GT(mixed, 100);
}

TEST(GroupStateTest, Issue14FingerprintNamesTheChainsFiles) {
  GroupState g;
  g.name = "vm";
  for (int i = 0; i < 3; ++i) {
    Checkpoint c;
    c.group = "vm";
    c.name = "c" + std::to_string(i);
    c.sequence = i + 1;
    if (i > 0) c.parent = "c" + std::to_string(i - 1);
    DiskEntry d;
    d.name = "vda";
    d.delta_file = c.name + ".vda.delta";
    d.kind = i == 0 ? DeltaKind::kFull : DeltaKind::kIncremental;
    d.base = c.parent;
    c.disks.push_back(d);
    g.checkpoints.push_back(c);
  }
  GroupState other = g;
  other.checkpoints[0].disks[0].delta_file = "c0.vda.rewritten.delta";  // a consolidation
  g.Index();
  other.Index();
  auto fp = [](const GroupState& s, int i) {
    return s.ChainInfo(s.checkpoints[i], "vda")->fingerprint;
  };
  EXPECT_NE(fp(g, 0), fp(g, 1));
  EXPECT_NE(fp(g, 1), fp(g, 2));
  for (int i = 0; i < 3; ++i) EXPECT_NE(fp(g, i), fp(other, i)) << i;  // a file below changed
  GroupState same = g;
  same.Index();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(fp(g, i), fp(same, i));
}

}  // namespace
}  // namespace chainfs
