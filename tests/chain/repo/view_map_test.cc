// Issue 14: view maps (chain/repo/view_map.h). A view of a deep chain opens
// from one small file, its layers opened when a read needs them; a missing,
// damaged or stale map costs speed, never bytes; a layer a map names that is
// gone or wrong fails the read that needs it, naming the file.
#include "chain/repo/view_map.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "chain/base/coding.h"
#include "chain/base/hash.h"
#include "chain/repo/consolidate.h"
#include "tests/chain/repo_util.h"

namespace chainfs {
namespace {

using testing::RandomBytes;
using testing::TempDir;
using testing::WriteFile;
namespace fs = std::filesystem;

constexpr uint32_t kBs = 4096;
constexpr int kDepth = 140;

std::string Name(int i) {
  char b[16];
  std::snprintf(b, sizeof b, "c%04d", i);
  return b;
}

std::set<std::string> MapFiles(const Repository& repo) {
  std::set<std::string> out;
  if (!fs::exists(repo.MapDir("vm1"))) return out;
  for (const auto& e : fs::directory_iterator(repo.MapDir("vm1"))) out.insert(e.path().filename());
  return out;
}

std::string ReadAll(const View& v) {
  std::string got(v.size(), '\0');
  Status st = v.Read(0, got.size(), got.data());
  EXPECT_TRUE(st.ok()) << st.ToString();
  return got;
}

class ViewMapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_ = testing::NewRepository(dir_, &env_, kBs);
    ASSERT_NE(repo_, nullptr);
    // 140 checkpoints of a disk that changes one block each time, is
    // zeroed in places, grows and shrinks (by a part of a block too).
    std::string disk = RandomBytes(16 * kBs, 1);
    for (int i = 0; i < kDepth; ++i) {
      if (i > 0) disk.replace((i % 16) * kBs, 100, RandomBytes(100, 1000 + i));
      if (i % 23 == 5) disk.replace((i % 7) * kBs, kBs, std::string(kBs, '\0'));
      if (i % 37 == 20) disk.resize(disk.size() - kBs - 512);
      if (i % 37 == 30) disk.append(RandomBytes(3 * kBs, 2000 + i));
      WriteFile(dir_ / "disk.raw", disk);
      Status st = testing::BackupVda(*repo_, Name(i), dir_ / "disk.raw");
      ASSERT_TRUE(st.ok()) << "backup " << i << ": " << st.ToString();
      contents_.push_back(disk);
    }
  }
  // A Repository with nothing open yet, and the group loaded.
  std::unique_ptr<Repository> Fresh() {
    auto r = Repository::Open(dir_ / "repo", &env_);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return std::move(r).value();
  }
  void ExpectEveryViewRight(const Repository& repo, int from = 0) {
    auto g = repo.LoadGroup("vm1");
    ASSERT_TRUE(g.ok());
    for (int i = from; i < kDepth; ++i) {
      auto v = repo.OpenView(g.value(), *g.value().Find(Name(i)), "vda");
      ASSERT_TRUE(v.ok()) << Name(i) << ": " << v.status().ToString();
      EXPECT_TRUE(ReadAll(*v.value()) == contents_[i]) << "view " << Name(i) << " differs";
    }
  }

  TempDir dir_;
  testing::FaultyEnv env_;
  std::unique_ptr<Repository> repo_;
  std::vector<std::string> contents_;
};

TEST_F(ViewMapTest, Issue14BackupsKeepTheNewestAndEverySixtyFourthMap) {
  // Sequences start at 1: c0063 is sequence 64, c0127 is 128.
  EXPECT_EQ(MapFiles(*repo_),
            (std::set<std::string>{"c0063.vda.map", "c0127.vda.map", "c0139.vda.map"}));
  ExpectEveryViewRight(*Fresh());
}

TEST_F(ViewMapTest, Issue14NewestViewOpensFromItsMapAlone) {
  auto repo = Fresh();
  auto g = repo->LoadGroup("vm1");
  ASSERT_TRUE(g.ok());
  const int opens = env_.calls(testing::FaultyEnv::Op::kOpenRead);
  auto v = repo->OpenView(g.value(), *g.value().Find(Name(kDepth - 1)), "vda");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  // The map file, and no delta: a depth-140 view costs what a shallow one does.
  EXPECT_LE(env_.calls(testing::FaultyEnv::Op::kOpenRead) - opens, 1);
  EXPECT_EQ(v.value()->layers().size(), static_cast<size_t>(kDepth));
  EXPECT_TRUE(ReadAll(*v.value()) == contents_.back());
}

// LoadLayers (what the mount runs after a file's first read, so that an open
// file keeps its bytes through a consolidation) opens the layers that serve
// a byte of the view, and no layer the newer ones shadow whole: at depth
// 10,000 those were most of the work, competing with the reader.
TEST_F(ViewMapTest, Issue14LoadLayersOpensOnlyTheLayersThatServeTheView) {
  auto repo = Fresh();
  auto g = repo->LoadGroup("vm1");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  // From a snapshot of the caller's own: the view holds every layer.
  auto v = repo->OpenView(g.value(), *g.value().Newest(), "vda");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  const View& view = *v.value();
  std::set<uint32_t> named;  // by the map's data runs
  for (const MapRun& r : view.map().runs())
    if (!r.is_zero()) named.insert(r.layer);
  ASSERT_GT(named.size(), 0u);
  ASSERT_LT(named.size(), view.layers().size() / 2);  // most are shadowed here
  EXPECT_FALSE(view.LayersLoaded());
  // Every file the view does not need is removed first: nothing misses it.
  for (size_t i = 0; i < view.layers().size(); ++i) {
    if (named.count(static_cast<uint32_t>(i))) continue;
    ASSERT_TRUE(fs::remove(view.layers()[i].layer->location())) << i;
  }
  const int opens = env_.calls(testing::FaultyEnv::Op::kOpenRead);
  ASSERT_TRUE(view.LoadLayers().ok());
  EXPECT_EQ(env_.calls(testing::FaultyEnv::Op::kOpenRead) - opens,
            static_cast<int>(named.size()));
  EXPECT_TRUE(view.LayersLoaded());
  for (size_t i = 0; i < view.layers().size(); ++i)
    EXPECT_EQ(view.layers()[i].layer->Loaded(), named.count(static_cast<uint32_t>(i)) == 1) << i;
  EXPECT_TRUE(ReadAll(view) == contents_.back());
}

// A view opened from a group snapshot its caller shares (the mount's way)
// points into the snapshot's entries instead of copying them, and keeps it:
// the view still reads right after the caller let the snapshot go, and lets
// it go in turn when closed.
TEST_F(ViewMapTest, Issue14AViewFromASharedSnapshotKeepsIt) {
  auto repo = Fresh();
  auto g = repo->LoadGroup("vm1");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  auto shared = std::make_shared<const GroupState>(std::move(g).value());
  const std::weak_ptr<const GroupState> watch = shared;
  auto v = repo->OpenView(shared, *shared->Find(Name(kDepth - 1)), "vda");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  std::shared_ptr<const View> view = std::move(v).value();
  EXPECT_FALSE(view->LayersLoaded());  // opened from its map: lazy layers
  shared.reset();
  EXPECT_FALSE(watch.expired()) << "the view's layers point into the snapshot";
  EXPECT_TRUE(ReadAll(*view) == contents_.back());
  ASSERT_TRUE(view->LoadLayers().ok());
  EXPECT_TRUE(ReadAll(*view) == contents_.back());
  view.reset();
  EXPECT_TRUE(watch.expired()) << "a closed view keeps nothing";
}

// The mount's views (from a shared snapshot) hold the chain's newest layer
// and the layers a data run names, no others: the same runs as the view with
// every layer, naming the same checkpoints' layers, the same bytes. The
// chain grows and shrinks, so dropped layers clipped older ones: the map
// keeps that, not the layers left.
TEST_F(ViewMapTest, Issue14AViewFromASharedSnapshotHoldsOnlyTheLayersThatServeIt) {
  auto repo = Fresh();
  auto g = repo->LoadGroup("vm1");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  auto shared = std::make_shared<const GroupState>(std::move(g).value());
  constexpr int kFirstMapped = kViewMapSpacing - 1;  // sequences start at 1
  size_t fewer = 0;
  for (int i = 0; i < kDepth; ++i) {
    SCOPED_TRACE(Name(i));
    const Checkpoint& cp = *shared->Find(Name(i));
    auto whole = repo->OpenView(*shared, cp, "vda");
    auto held = repo->OpenView(shared, cp, "vda");
    ASSERT_TRUE(whole.ok() && held.ok());
    const View& w = *whole.value();
    const View& h = *held.value();
    EXPECT_EQ(w.layers().size(), static_cast<size_t>(i + 1));
    ASSERT_EQ(h.layers().front().checkpoint, Name(i));
    std::set<uint32_t> named;
    ASSERT_EQ(h.map().runs().size(), w.map().runs().size());
    for (size_t k = 0; k < h.map().runs().size(); ++k) {
      const MapRun& a = h.map().runs()[k];
      const MapRun& b = w.map().runs()[k];
      ASSERT_EQ(a.start, b.start);
      ASSERT_EQ(a.end, b.end);
      ASSERT_EQ(a.is_zero(), b.is_zero());
      if (a.is_zero()) continue;
      EXPECT_EQ(a.entry_pos, b.entry_pos);
      EXPECT_EQ(h.layers()[a.layer].checkpoint, w.layers()[b.layer].checkpoint);
      named.insert(a.layer);
    }
    named.insert(0);
    // Views below the first map (c0063: sequence kViewMapSpacing) are built
    // from every layer, whose extents they read; from it on, from a map,
    // without the others.
    if (i < kFirstMapped)
      EXPECT_EQ(h.layers().size(), w.layers().size());
    else
      EXPECT_EQ(named.size(), h.layers().size()) << "a layer no run names is held";
    for (size_t k = 1; k < h.layers().size(); ++k)  // newest first, in order
      EXPECT_GT(h.layers()[k - 1].checkpoint, h.layers()[k].checkpoint);
    fewer += h.layers().size() < w.layers().size() ? 1 : 0;
    EXPECT_TRUE(ReadAll(h) == contents_[i]) << "view " << Name(i) << " differs";
  }
  // From the first map on, most layers are shadowed whole.
  EXPECT_EQ(fewer, static_cast<size_t>(kDepth - kFirstMapped));
  auto newest = repo->OpenView(shared, *shared->Newest(), "vda");
  ASSERT_TRUE(newest.ok());
  EXPECT_LT(newest.value()->layers().size(), static_cast<size_t>(kDepth / 4));
  ASSERT_TRUE(newest.value()->LoadLayers().ok());
  EXPECT_TRUE(ReadAll(*newest.value()) == contents_.back());
}

TEST_F(ViewMapTest, Issue14DamagedOrMissingMapsCostSpeedNotBytes) {
  // Damage the newest map (one byte, then its tail), remove another.
  const std::string newest = repo_->MapPath("vm1", Name(kDepth - 1), "vda");
  std::string bytes = testing::ReadFile(newest);
  for (size_t at : {size_t{20}, bytes.size() / 2, bytes.size() - 1}) {
    std::string bad = bytes;
    bad[at] ^= 0x40;
    WriteFile(newest, bad);
    auto repo = Fresh();
    auto v = repo->OpenView("vm1", Name(kDepth - 1), "vda");
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_TRUE(ReadAll(*v.value()) == contents_.back()) << "byte " << at << " flipped";
  }
  WriteFile(newest, bytes.substr(0, bytes.size() - 40));
  fs::remove(repo_->MapPath("vm1", Name(127), "vda"));
  ExpectEveryViewRight(*Fresh());
}

TEST_F(ViewMapTest, Issue14AGoneLayerFailsTheReadThatNeedsItNamingTheFile) {
  // c0125 changed block 125 % 16 = 13; its delta lies under c0127's map.
  auto g = repo_->LoadGroup("vm1");
  ASSERT_TRUE(g.ok());
  const std::string victim = repo_->DeltaPath("vm1", g.value().Find(Name(125))->disks[0].delta_file);
  ASSERT_TRUE(fs::remove(victim));
  auto repo = Fresh();
  auto v = repo->OpenView("vm1", Name(kDepth - 1), "vda");
  ASSERT_TRUE(v.ok()) << v.status().ToString();  // lazily: not opened yet
  std::string block(kBs, '\0');
  EXPECT_TRUE(v.value()->Read(0, kBs, block.data()).ok());
  EXPECT_EQ(block, contents_.back().substr(0, kBs));
  Status st = v.value()->Read(13 * kBs, kBs, block.data());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(victim), std::string::npos) << st.ToString();
  // A delta replaced by another file of the group is refused by its binding.
  fs::copy_file(repo_->DeltaPath("vm1", g.value().Find(Name(124))->disks[0].delta_file), victim);
  auto fresh = Fresh();
  auto again = fresh->OpenView("vm1", Name(kDepth - 1), "vda");
  ASSERT_TRUE(again.ok());
  st = again.value()->Read(13 * kBs, kBs, block.data());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Status::Code::kCorruption) << st.ToString();
}

// Index takes each chain's map key once (an open of a deep view hashed its
// whole chain, and RefreshViewMaps did for every map it kept): the same key
// ViewMapKeys gives for the chain, for every checkpoint.
TEST_F(ViewMapTest, Issue14TheIndexTakesEachChainsMapKeyAsViewMapKeysDoes) {
  auto g = repo_->LoadGroup("vm1");
  ASSERT_TRUE(g.ok());
  std::set<uint64_t> distinct;
  for (const Checkpoint& cp : g.value().checkpoints) {
    auto chain = g.value().ResolveChain(cp, "vda");
    ASSERT_TRUE(chain.ok()) << cp.name;
    auto keys = ViewMapKeys(chain.value());
    ASSERT_TRUE(keys.has_value()) << cp.name;
    const DiskChainInfo* info = g.value().ChainInfo(cp, "vda");
    ASSERT_NE(info, nullptr);
    ASSERT_TRUE(info->view_map_key.has_value()) << cp.name;
    EXPECT_EQ(*info->view_map_key, (*keys)[0]) << cp.name;
    distinct.insert(*info->view_map_key);
  }
  EXPECT_EQ(distinct.size(), g.value().checkpoints.size());
}

TEST_F(ViewMapTest, Issue14AMapNamingAnEntryTheLayerLacksFailsTheRead) {
  // A well-formed map of the right chain whose run points past the entries
  // its layer has (a writer's bug, or a crafted file): an error, no crash.
  auto g = repo_->LoadGroup("vm1");
  ASSERT_TRUE(g.ok());
  const Checkpoint& cp = *g.value().Find(Name(kDepth - 1));
  auto chain = g.value().ResolveChain(cp, "vda");
  ASSERT_TRUE(chain.ok());
  auto keys = ViewMapKeys(chain.value());
  ASSERT_TRUE(keys.has_value());
  auto v = repo_->OpenView(g.value(), cp, "vda");
  ASSERT_TRUE(v.ok());
  std::vector<MapRun> runs = v.value()->map().runs();
  size_t bad = 0;
  while (runs[bad].is_zero()) ++bad;
  runs[bad].entry_pos += uint64_t{1000} * kBs;
  WriteFile(repo_->MapPath("vm1", cp.name, "vda"),
            EncodeViewMap((*keys)[0], kBs, v.value()->size(),
                          static_cast<uint32_t>(chain.value().size()),
                          ExtentMap::FromRuns(runs)));
  auto fresh = Fresh();
  auto crafted = fresh->OpenView("vm1", cp.name, "vda");
  ASSERT_TRUE(crafted.ok()) << crafted.status().ToString();
  std::string buf(runs[bad].end - runs[bad].start, '\0');
  Status st = crafted.value()->Read(runs[bad].start, buf.size(), buf.data());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Status::Code::kCorruption) << st.ToString();
}

// The newest map's own file, decoded as a reader would (the chain it must
// match: the manifests' now).
Result<ViewMapFile> DecodeNewestMap(const Repository& repo, const std::string& bytes) {
  auto g = repo.LoadGroup("vm1");
  if (!g.ok()) return g.status();
  auto chain = g.value().ResolveChain(*g.value().Newest(), "vda");
  if (!chain.ok()) return chain.status();
  auto keys = ViewMapKeys(chain.value());
  if (!keys) return Status::NotFound("no key");
  ViewMapExpect expect{(*keys)[0], kBs, {}};
  uint64_t clip = UINT64_MAX;
  for (const ChainLink& l : chain.value())
    expect.clip_bytes.push_back(clip = std::min(clip, l.disk->virtual_size));
  return DecodeViewMap(bytes, "newest map", expect);
}

// A view map locates the entries of the small layers it names (each of this
// chain's deltas holds a block or two): a view read from it reads each such
// entry with one read of its stored bytes, never the delta's header or
// index (two of a small delta's three disk reads, what bound a cold read at
// depth 10,000), and the bytes are the view's.
TEST_F(ViewMapTest, Issue14LocatedEntriesAreReadWithoutTheirDeltasHeaderOrIndex) {
  const std::string newest = repo_->MapPath("vm1", Name(kDepth - 1), "vda");
  auto file = DecodeNewestMap(*repo_, testing::ReadFile(newest));
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  std::set<uint32_t> named;
  for (const MapRun& r : file.value().map.runs())
    if (!r.is_zero()) named.insert(r.layer);
  std::map<uint32_t, int> located;  // per layer
  for (const LocatedEntry& l : file.value().located) ++located[l.layer];
  // Every layer a run names serves at most 16 entries here: all located.
  ASSERT_EQ(located.size(), named.size());
  for (uint32_t layer : named) EXPECT_TRUE(located.count(layer)) << "layer " << layer;

  auto repo = Fresh();
  auto g = repo->LoadGroup("vm1");
  ASSERT_TRUE(g.ok());
  // From a snapshot of the test's own: every layer, by place as in the map.
  auto v = repo->OpenView(g.value(), *g.value().Newest(), "vda");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  const View& view = *v.value();
  ASSERT_EQ(view.layers().size(), static_cast<size_t>(kDepth));
  std::map<std::string, int> reads_before, opens_before;
  for (uint32_t layer : named) {
    const std::string& path = view.layers()[layer].layer->location();
    reads_before[path] = env_.calls(testing::FaultyEnv::Op::kRead, path);
    opens_before[path] = env_.calls(testing::FaultyEnv::Op::kOpenRead, path);
  }
  EXPECT_TRUE(ReadAll(view) == contents_.back());
  for (uint32_t layer : named) {
    const std::string& path = view.layers()[layer].layer->location();
    const int reads = env_.calls(testing::FaultyEnv::Op::kRead, path) - reads_before[path];
    EXPECT_GE(reads, 1) << path;
    EXPECT_LE(reads, located[layer]) << path << ": read more often than it has located entries";
    EXPECT_EQ(env_.calls(testing::FaultyEnv::Op::kOpenRead, path) - opens_before[path], 1) << path;
  }
  // What a backup compares with, and a du, come from the map too.
  for (const LocatedEntry& l : file.value().located) {
    const Layer& layer = *view.layers()[l.layer].layer;
    EXPECT_EQ(layer.BlockHash(l.entry), std::optional<ContentHash>(l.loc.stored.content));
    EXPECT_EQ(layer.StoredLength(l.entry), l.loc.stored.size);
  }
}

// A located entry is checked as a layer's read checks it: a stored byte
// damaged in its delta, or a map whose location is wrong (checksum of the
// map itself intact: a writer's bug, a crafted file), fails that read with
// kCorruption naming the delta; never other bytes.
TEST_F(ViewMapTest, Issue14ALocatedEntryThatDoesNotHoldFailsTheReadNamingTheDelta) {
  const std::string newest = repo_->MapPath("vm1", Name(kDepth - 1), "vda");
  const std::string bytes = testing::ReadFile(newest);
  auto file = DecodeNewestMap(*repo_, bytes);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto g = repo_->LoadGroup("vm1");
  ASSERT_TRUE(g.ok());
  auto chain = g.value().ResolveChain(*g.value().Newest(), "vda");
  ASSERT_TRUE(chain.ok());
  // The newest layer's block: where the view reads it.
  const LocatedEntry target = file.value().located.front();
  const uint64_t block = target.loc.stored.block;
  const std::string delta = repo_->DeltaPath("vm1", chain.value()[target.layer].disk->delta_file);
  std::string buf(kBs, '\0');
  {  // The location moved by 512 bytes: a map that lies.
    std::vector<LocatedEntry> lying = file.value().located;
    lying.front().loc.offset += 512;
    auto keys = ViewMapKeys(chain.value());
    ASSERT_TRUE(keys.has_value());
    WriteFile(newest, EncodeViewMap((*keys)[0], kBs, contents_.back().size(),
                                    static_cast<uint32_t>(chain.value().size()),
                                    file.value().map, lying));
    auto repo = Fresh();
    auto v = repo->OpenView("vm1", Name(kDepth - 1), "vda");
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    Status st = v.value()->Read(block * kBs, kBs, buf.data());
    ASSERT_FALSE(st.ok()) << "read block " << block << " from a lying location";
    EXPECT_EQ(st.code(), Status::Code::kCorruption) << st.ToString();
    EXPECT_NE(st.message().find(delta), std::string::npos) << st.ToString();
    WriteFile(newest, bytes);
  }
  {  // A stored byte of the delta damaged.
    std::string d = testing::ReadFile(delta);
    d[target.loc.offset + 7] ^= 0x01;
    WriteFile(delta, d);
    auto repo = Fresh();
    auto v = repo->OpenView("vm1", Name(kDepth - 1), "vda");
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    Status st = v.value()->Read(block * kBs, kBs, buf.data());
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.code(), Status::Code::kCorruption) << st.ToString();
    EXPECT_NE(st.message().find(delta), std::string::npos) << st.ToString();
    EXPECT_NE(st.message().find("checksum mismatch"), std::string::npos) << st.ToString();
  }
}

// Maps of version 1 (runs, no located entries) are still read; located
// entries out of order, on a layer outside the chain or of no sane length
// make the map refused (the view is composed from its layers, right).
TEST_F(ViewMapTest, Issue14VersionOneMapsAreReadAndBadLocatedEntriesRefuseTheMap) {
  const std::string newest = repo_->MapPath("vm1", Name(kDepth - 1), "vda");
  const std::string bytes = testing::ReadFile(newest);
  auto file = DecodeNewestMap(*repo_, bytes);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  ASSERT_GE(file.value().located.size(), 2u);
  // Version 1: the same runs, nothing after them.
  const size_t runs_end = kViewMapHeaderSize + file.value().map.runs().size() * kViewMapRunSize;
  std::string v1 = bytes.substr(0, runs_end);
  v1[8] = 1;
  PutFixed64(&v1, Checksum64(v1.data(), v1.size()));
  auto old = DecodeNewestMap(*repo_, v1);
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  EXPECT_TRUE(old.value().located.empty());
  EXPECT_EQ(old.value().map.runs().size(), file.value().map.runs().size());
  WriteFile(newest, v1);
  {
    auto repo = Fresh();
    auto g = repo->LoadGroup("vm1");
    ASSERT_TRUE(g.ok());
    const int opens = env_.calls(testing::FaultyEnv::Op::kOpenRead);
    auto v = repo->OpenView(g.value(), *g.value().Newest(), "vda");
    ASSERT_TRUE(v.ok());
    EXPECT_LE(env_.calls(testing::FaultyEnv::Op::kOpenRead) - opens, 1) << "not read from its map";
    EXPECT_TRUE(ReadAll(*v.value()) == contents_.back());
  }
  auto g = repo_->LoadGroup("vm1");
  ASSERT_TRUE(g.ok());
  auto chain = g.value().ResolveChain(*g.value().Newest(), "vda");
  ASSERT_TRUE(chain.ok());
  auto keys = ViewMapKeys(chain.value());
  ASSERT_TRUE(keys.has_value());
  const uint32_t layers = static_cast<uint32_t>(chain.value().size());
  using Damage = std::function<void(std::vector<LocatedEntry>*)>;
  const std::vector<std::pair<std::string, Damage>> damages = {
      {"out of order", [](auto* l) { std::swap((*l)[0], (*l)[1]); }},
      {"twice", [](auto* l) { (*l)[1] = (*l)[0]; }},
      {"outside the chain", [layers](auto* l) { l->back().layer = layers; }},
      {"stored bytes", [](auto* l) { (*l)[0].loc.stored.size = 0; }},
      {"stored bytes", [](auto* l) { (*l)[0].loc.stored.size = 2 * kBs + 1; }},
  };
  for (const auto& [why, damage] : damages) {
    std::vector<LocatedEntry> bad = file.value().located;
    damage(&bad);
    const std::string crafted = EncodeViewMap((*keys)[0], kBs, contents_.back().size(), layers,
                                              file.value().map, bad);
    auto decoded = DecodeNewestMap(*repo_, crafted);
    ASSERT_FALSE(decoded.ok()) << why;
    EXPECT_EQ(decoded.status().code(), Status::Code::kCorruption) << why;
    EXPECT_NE(decoded.status().message().find(why == "twice" ? "out of order" : why),
              std::string::npos)
        << decoded.status().ToString();
    WriteFile(newest, crafted);
    auto repo = Fresh();
    auto v = repo->OpenView("vm1", Name(kDepth - 1), "vda");
    ASSERT_TRUE(v.ok());
    EXPECT_TRUE(ReadAll(*v.value()) == contents_.back()) << why;
  }
}

TEST_F(ViewMapTest, Issue14PruneAndBackupKeepTheMapsTrue) {
  ConsolidateOptions o;
  o.group = "vm1";
  o.policy = RetentionPolicy{};
  o.policy->keep_last = 20;
  auto r = Consolidate(*repo_, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // Survivors c0120..c0139: the rewritten chains are 20 deep; c0127's and
  // the newest's maps are rewritten for them, the others removed.
  EXPECT_EQ(MapFiles(*repo_), (std::set<std::string>{"c0127.vda.map", "c0139.vda.map"}));
  ExpectEveryViewRight(*Fresh(), kDepth - 20);
  // One more backup: its map is written, its parent's (not a 64th) removed.
  WriteFile(dir_ / "disk.raw", contents_.back() + RandomBytes(kBs, 7));
  ASSERT_TRUE(testing::BackupVda(*repo_, "c9999", dir_ / "disk.raw").ok());
  EXPECT_EQ(MapFiles(*repo_), (std::set<std::string>{"c0127.vda.map", "c9999.vda.map"}));
  auto fresh = Fresh();
  auto v = fresh->OpenView("vm1", "c9999", "vda");
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(ReadAll(*v.value()) == testing::ReadFile(dir_ / "disk.raw"));
}

}  // namespace
}  // namespace chainfs
