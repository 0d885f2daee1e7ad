#include "tests/tools/repo_generator.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "chain/ingest/backup.h"
#include "chain/repo/check.h"
#include "chain/repo/repository.h"
#include "tests/chain/test_util.h"

namespace chainfs::tools {
namespace {

using chainfs::testing::TempDir;

// 10.375 blocks of 4 KiB: the last block is partial.
ChainShape SmallShape(uint64_t depth) {
  return {.disk_size = 10 * 4096 + 1536, .block_size = 4096, .depth = depth, .changed = 3,
          .seed = 7};
}

std::string Expected(const ChainShape& shape, uint64_t group, uint64_t checkpoint) {
  std::string image;
  ExpectedImage(shape, group, checkpoint, [&](const char* p, size_t n) { image.append(p, n); });
  return image;
}

std::string ReadView(const Repository& repo, const std::string& group,
                     const std::string& checkpoint) {
  auto view = repo.OpenView(group, checkpoint, "vda");
  EXPECT_TRUE(view.ok()) << view.status().ToString();
  if (!view.ok()) return "";
  std::string bytes(view.value()->size(), '\0');
  Status st = view.value()->Read(0, bytes.size(), bytes.data());
  EXPECT_TRUE(st.ok()) << st.ToString();
  return bytes;
}

Result<GenerateReport> Generate(const std::string& repo, uint64_t groups,
                                const ChainShape& shape) {
  GenerateOptions o;
  o.repo = repo;
  o.groups = groups;
  o.shape = shape;
  return GenerateRepository(o);
}

TEST(RepoGeneratorTest, GeneratedRepositoryPassesCheckAndEveryViewReadsAsExpected) {
  TempDir dir;
  const ChainShape shape = SmallShape(6);
  auto report = Generate(dir / "repo", 2, shape);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report.value().checkpoints, 12u);

  auto repo = Repository::Open(dir / "repo");
  ASSERT_TRUE(repo.ok()) << repo.status().ToString();
  auto check = Check(*repo.value(), "", "", /*deep=*/true);
  ASSERT_TRUE(check.ok()) << check.status().ToString();
  for (const auto& p : check.value().problems) ADD_FAILURE() << p.file << ": " << p.message;
  EXPECT_TRUE(check.value().notices.empty());  // every delta bound to its manifest
  EXPECT_EQ(check.value().groups, 2u);
  EXPECT_EQ(check.value().checkpoints, 12u);
  EXPECT_EQ(check.value().deltas, 12u);

  for (uint64_t g = 1; g <= 2; ++g) {
    auto state = repo.value()->LoadGroup(GroupName("vm", g));
    ASSERT_TRUE(state.ok()) << state.status().ToString();
    ASSERT_EQ(state.value().checkpoints.size(), 6u);
    for (uint64_t c = 1; c <= 6; ++c) {
      const Checkpoint& cp = state.value().checkpoints[c - 1];
      EXPECT_EQ(cp.name, CheckpointName(c));
      EXPECT_EQ(cp.parent, c == 1 ? "" : CheckpointName(c - 1));
      ASSERT_EQ(cp.disks.size(), 1u);
      EXPECT_EQ(cp.disks[0].kind, c == 1 ? DeltaKind::kFull : DeltaKind::kIncremental);
      EXPECT_EQ(ReadView(*repo.value(), GroupName("vm", g), cp.name), Expected(shape, g, c))
          << "group " << g << " checkpoint " << c;
    }
  }
  // Checkpoints differ from each other, and groups too.
  EXPECT_NE(Expected(shape, 1, 5), Expected(shape, 1, 6));
  EXPECT_NE(Expected(shape, 1, 6), Expected(shape, 2, 6));
}

// A real backup of the image the next checkpoint must read as stores exactly
// the blocks the generator writes for it, and the same bytes.
TEST(RepoGeneratorTest, BackupOfTheNextExpectedImageStoresWhatTheGeneratorWrites) {
  TempDir dir;
  const ChainShape shape = SmallShape(3);
  ASSERT_TRUE(Generate(dir / "generated", 1, shape).ok());
  ChainShape shorter = shape;
  shorter.depth = 2;
  ASSERT_TRUE(Generate(dir / "backed-up", 1, shorter).ok());
  ASSERT_TRUE(WriteExpectedImage(shape, 1, 3, dir / "c3.img").ok());

  auto repo = Repository::Open(dir / "backed-up");
  ASSERT_TRUE(repo.ok());
  BackupOptions o;
  o.group = "vm0001";
  o.checkpoint = CheckpointName(3);
  o.disks.push_back({"vda", dir / "c3.img", ""});
  auto backup = Backup(*repo.value(), o);
  ASSERT_TRUE(backup.ok()) << backup.status().ToString();
  EXPECT_EQ(backup.value().disks[0].kind, DeltaKind::kIncremental);
  EXPECT_EQ(backup.value().disks[0].blocks_stored, shape.changed);

  auto generated = Repository::Open(dir / "generated");
  ASSERT_TRUE(generated.ok());
  auto g = generated.value()->LoadGroup("vm0001");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(backup.value().disks[0].stored_bytes, g.value().Find("c000003")->disks[0].stored_bytes);
  EXPECT_EQ(ReadView(*repo.value(), "vm0001", "c000003"),
            ReadView(*generated.value(), "vm0001", "c000003"));
}

TEST(RepoGeneratorTest, ChangedBlocksAreDistinctSortedAndReplayable) {
  for (uint64_t changed : {0u, 1u, 5u, 11u}) {
    ChainShape shape = SmallShape(4);
    shape.changed = changed;  // 11: every block
    for (uint64_t c = 2; c <= 4; ++c) {
      const std::vector<uint64_t> blocks = ChangedBlocks(shape, 1, c);
      ASSERT_EQ(blocks.size(), changed);
      EXPECT_TRUE(std::is_sorted(blocks.begin(), blocks.end()));
      EXPECT_EQ(std::set<uint64_t>(blocks.begin(), blocks.end()).size(), changed);
      for (uint64_t b : blocks) EXPECT_LT(b, DiskBlocks(shape));
      EXPECT_EQ(blocks, ChangedBlocks(shape, 1, c));
    }
  }
  ChainShape a = SmallShape(4), b = SmallShape(4);
  b.seed = 8;
  std::string block_a(4096, '\0'), block_b(4096, '\0');
  FillBlock(a, 1, 1, 0, block_a.data());
  FillBlock(b, 1, 1, 0, block_b.data());
  EXPECT_NE(block_a, block_b);
  // The last block is partial: zeros past the disk's end.
  FillBlock(a, 1, 1, 10, block_a.data());
  EXPECT_EQ(block_a.substr(1536), std::string(4096 - 1536, '\0'));
}

TEST(RepoGeneratorTest, ExpectedImageFileMatchesAndOutOfRangeIsRefused) {
  TempDir dir;
  const ChainShape shape = SmallShape(4);
  ASSERT_TRUE(WriteExpectedImage(shape, 2, 4, dir / "x.img").ok());
  EXPECT_EQ(chainfs::testing::ReadFile(dir / "x.img"), Expected(shape, 2, 4));
  EXPECT_EQ(WriteExpectedImage(shape, 1, 5, dir / "y.img").code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(WriteExpectedImage(shape, 1, 0, dir / "y.img").code(),
            Status::Code::kInvalidArgument);
  ChainShape too_many = shape;
  too_many.changed = 12;
  EXPECT_EQ(WriteExpectedImage(too_many, 1, 1, dir / "y.img").code(),
            Status::Code::kInvalidArgument);
}

TEST(RepoGeneratorTest, RefusesAnExistingGroupAndAnotherBlockSize) {
  TempDir dir;
  const ChainShape shape = SmallShape(2);
  ASSERT_TRUE(Generate(dir / "repo", 1, shape).ok());
  auto again = Generate(dir / "repo", 2, shape);
  EXPECT_EQ(again.status().code(), Status::Code::kAlreadyExists);
  EXPECT_FALSE(boost::filesystem::exists(dir / "repo/groups/vm0002"));  // nothing written
  ChainShape other = shape;
  other.block_size = 8192;
  GenerateOptions o;
  o.repo = dir / "repo";
  o.shape = other;
  o.group_prefix = "db";
  EXPECT_EQ(GenerateRepository(o).status().code(), Status::Code::kInvalidArgument);
}

// A deep group's manifests are read on several threads (disk-cold, one
// after another, 1,000 of them took ~170 ms of a mount's first lookup), and
// the group is the same as read in order.
class ManifestThreads : public EnvWrapper {
 public:
  using EnvWrapper::EnvWrapper;
  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override {
    if (path.size() > 5 && path.compare(path.size() - 5, 5, ".json") == 0 &&
        path.find("/checkpoints/") != std::string::npos) {
      std::unique_lock<std::mutex> l(mu);
      threads.insert(std::this_thread::get_id());
      ++reads;
      // The first read waits (up to 5 s) for a read on another thread: a
      // busy machine may otherwise let one thread read them all.
      if (reads == 1)
        cv.wait_for(l, std::chrono::seconds(5), [this] { return threads.size() > 1; });
      else
        cv.notify_all();
    }
    return EnvWrapper::NewRandomAccessFile(path);
  }
  std::mutex mu;
  std::condition_variable cv;
  std::set<std::thread::id> threads;
  int reads = 0;
};

TEST(RepoGeneratorTest, ADeepGroupsManifestsAreReadOnSeveralThreads) {
  TempDir dir;
  ASSERT_TRUE(Generate(dir / "repo", 1, SmallShape(200)).ok());
  ManifestThreads env(Env::Default());
  auto repo = Repository::Open(dir / "repo", &env);
  ASSERT_TRUE(repo.ok()) << repo.status().ToString();
  const std::string group = repo.value()->ListGroups().value().at(0);
  // Every manifest, not the catalogue the generator wrote (which holds them all).
  auto g = repo.value()->LoadGroup(group, Repository::ManifestSource::kManifests);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  ASSERT_EQ(g->checkpoints.size(), 200u);
  EXPECT_TRUE(g->refused.empty());
  for (size_t i = 0; i < g->checkpoints.size(); ++i) {
    EXPECT_EQ(g->checkpoints[i].sequence, i + 1);
    if (i > 0) {
      EXPECT_EQ(g->checkpoints[i].parent, g->checkpoints[i - 1].name);
    }
  }
  EXPECT_EQ(env.reads, 200);
  EXPECT_GT(env.threads.size(), 1u);
  // The newest view still reads as the generator wrote it.
  EXPECT_EQ(ReadView(*repo.value(), group, g->checkpoints.back().name),
            Expected(SmallShape(200), 1, 200));
}

// The generator leaves the catalogue as a later backup would: holding every
// manifest, the last ones written too (recorded only once settled), so that
// a bench's first process does not parse the newest manifests.
TEST(RepoGeneratorTest, TheCatalogueHoldsEveryManifest) {
  TempDir dir;
  ASSERT_TRUE(Generate(dir / "repo", 1, SmallShape(50)).ok());
  ManifestThreads env(Env::Default());
  auto repo = Repository::Open(dir / "repo", &env);
  ASSERT_TRUE(repo.ok()) << repo.status().ToString();
  auto g = repo.value()->LoadGroup("vm0001");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(g->checkpoints.size(), 50u);
  EXPECT_EQ(env.reads, 0) << "manifests parsed instead of taken from the catalogue";
  EXPECT_TRUE(g->catalog_current);
}

}  // namespace
}  // namespace chainfs::tools
