// Export writes OUTPUT through the repository's Env: a failed export leaves
// neither OUTPUT nor its temporary.
#include "chain/repo/export.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "tests/chain/repo_util.h"

namespace chainfs {
namespace {

using testing::FaultyEnv;
using testing::TempDir;

class ExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_ = testing::NewRepository(dir_, &env_);
    ASSERT_TRUE(repo_);
    disk_ = std::string(4096, 'a') + std::string(8192, '\0') + std::string(100, 'b');
    testing::WriteFile(dir_ / "disk.raw", disk_);
    ASSERT_TRUE(testing::BackupVda(*repo_, "c1", dir_ / "disk.raw").ok());
    ASSERT_TRUE(env_.CreateDirs(dir_ / "out").ok());
  }
  Result<ExportReport> Export() {
    auto view = repo_->OpenView("vm1", "c1", "vda");
    if (!view.ok()) return view.status();
    return ExportView(repo_->env(), *view.value(), dir_ / "out/vda.raw", 1);
  }
  Result<ExportReport> ExportTo(const std::string& output, const ExportOptions& options) {
    auto view = repo_->OpenView("vm1", "c1", "vda");
    if (!view.ok()) return view.status();
    return ExportView(&env_, *view.value(), output, options);
  }
  uint32_t Mode(const std::string& path) {
    struct stat st;
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  }

  TempDir dir_;
  FaultyEnv env_;
  std::unique_ptr<Repository> repo_;
  std::string disk_;
};

TEST_F(ExportTest, WritesTheViewThroughTheEnv) {
  auto r = Export();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->bytes, disk_.size());
  EXPECT_TRUE(testing::ReadFile(dir_ / "out/vda.raw") == disk_);
  EXPECT_EQ(env_.calls(FaultyEnv::Op::kOpenWrite), 1);
  EXPECT_EQ(env_.ListDir(dir_ / "out").value(), std::vector<std::string>{"vda.raw"});
}

TEST_F(ExportTest, FailedRenameLeavesNoOutputAndNoTemporary) {
  env_.FailNth(FaultyEnv::Op::kRename, 1, EIO, "/out/vda.raw");
  auto r = Export();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(dir_ / "out/vda.raw"), std::string::npos)
      << r.status().ToString();
  EXPECT_TRUE(env_.ListDir(dir_ / "out").value().empty());
}

// Issue 13: exported images are 0600 unless asked otherwise.
TEST_F(ExportTest, Issue13NewImagesAreMode0600UnlessAsked) {
  ASSERT_TRUE(ExportTo(dir_ / "out/a.raw", ExportOptions()).ok());
  EXPECT_EQ(Mode(dir_ / "out/a.raw"), 0600u);
  ExportOptions o;
  o.permissions = 0644;
  ASSERT_TRUE(ExportTo(dir_ / "out/b.raw", o).ok());
  EXPECT_EQ(Mode(dir_ / "out/b.raw"), 0644u);
  EXPECT_TRUE(testing::ReadFile(dir_ / "out/b.raw") == disk_);
}

// Issue 13: the temporary's name is unpredictable and created exclusively: a
// link planted under the old name (OUTPUT.chainfs-partial.PID) is not followed.
TEST_F(ExportTest, Issue13APlantedPartialLinkIsNotFollowed) {
  testing::WriteFile(dir_ / "victim", "precious");
  const std::string out = dir_ / "out/vda.raw";
  ASSERT_EQ(::symlink((dir_ / "victim").c_str(),
                      (out + ".chainfs-partial." + std::to_string(::getpid())).c_str()),
            0);
  ASSERT_TRUE(ExportTo(out, ExportOptions()).ok());
  EXPECT_EQ(testing::ReadFile(dir_ / "victim"), "precious");
  EXPECT_TRUE(testing::ReadFile(out) == disk_);
}

// Issue 13: a link as OUTPUT is followed only to a device; a link to a file
// (or a dangling one) is refused, not replaced, and its target kept.
TEST_F(ExportTest, Issue13ALinkToAFileIsRefused) {
  testing::WriteFile(dir_ / "victim", "precious");
  ASSERT_EQ(::symlink((dir_ / "victim").c_str(), (dir_ / "out/link.raw").c_str()), 0);
  auto r = ExportTo(dir_ / "out/link.raw", ExportOptions());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("symbolic link"), std::string::npos) << r.status().ToString();
  EXPECT_EQ(testing::ReadFile(dir_ / "victim"), "precious");
  ASSERT_EQ(::symlink((dir_ / "gone").c_str(), (dir_ / "out/dangling.raw").c_str()), 0);
  EXPECT_FALSE(ExportTo(dir_ / "out/dangling.raw", ExportOptions()).ok());
  EXPECT_FALSE(Env::Default()->FileExists(dir_ / "gone"));
  EXPECT_EQ(env_.ListDir(dir_ / "out").value().size(), 2u) << "no temporary left";
}

// Issue 13: a character device or FIFO is written in place, never replaced.
TEST_F(ExportTest, Issue13DevicesAndFifosAreWrittenInPlace) {
  ASSERT_TRUE(ExportTo("/dev/null", ExportOptions()).ok());
  struct stat st;
  ASSERT_EQ(::stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode)) << "/dev/null was replaced";
  const std::string fifo = dir_ / "out/pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::string got;
  std::thread reader([&] { got = testing::ReadFileStream(fifo); });
  auto r = ExportTo(fifo, ExportOptions());
  reader.join();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(got == disk_) << got.size() << " bytes";
  ASSERT_EQ(::lstat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
}

// Chunks' buffers are reused: a hole where an earlier chunk held data must
// still come out as zeros on a stream (FIFO) and in a sparse file.
TEST_F(ExportTest, HolesReadAsZerosAfterChunksOfData) {
  // One thread: four chunks in flight, whose buffers the next four reuse.
  // Four 4 MiB chunks of data, then eight of zeros with 4 KiB of data each.
  ExportOptions one;
  one.threads = 1;
  std::string disk;
  for (int i = 0; i < 12; ++i) {
    std::string chunk = i < 4 ? testing::RandomBytes(4 << 20, i) : std::string(4 << 20, '\0');
    if (i >= 4) chunk.replace(1 << 20, 4096, std::string(4096, 'x'));
    disk += chunk;
  }
  testing::WriteFile(dir_ / "big.raw", disk);
  ASSERT_TRUE(testing::BackupVda(*repo_, "c2", dir_ / "big.raw").ok());
  auto view = repo_->OpenView("vm1", "c2", "vda");
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  const std::string fifo = dir_ / "out/pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::string got;
  std::thread reader([&] { got = testing::ReadFileStream(fifo); });
  auto r = ExportView(&env_, *view.value(), fifo, one);
  reader.join();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(got == disk) << "the stream differs from the disk";
  ASSERT_TRUE(ExportView(&env_, *view.value(), dir_ / "out/big.raw", one).ok());
  EXPECT_TRUE(testing::ReadFile(dir_ / "out/big.raw") == disk) << "the sparse file differs";
}

// Issue 13: a stop (SIGINT/SIGTERM in the CLI) ends the export, leaving
// neither OUTPUT nor its temporary.
TEST_F(ExportTest, Issue13AStopRemovesThePartialFile) {
  std::atomic<int> stop{15};
  ExportOptions o;
  o.stop = &stop;
  auto r = ExportTo(dir_ / "out/vda.raw", o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("signal 15"), std::string::npos) << r.status().ToString();
  EXPECT_TRUE(env_.ListDir(dir_ / "out").value().empty());
}

}  // namespace
}  // namespace chainfs
