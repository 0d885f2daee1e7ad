// Export writes OUTPUT through the repository's Env: a failed export leaves
// neither OUTPUT nor its temporary.
#include "chain/repo/export.h"

#include <gtest/gtest.h>

#include <string>
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

}  // namespace
}  // namespace chainfs
