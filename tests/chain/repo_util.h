// Repositories for unit tests: a new repository opened through a given Env
// (e.g. a FaultyEnv), and a backup of one disk into it.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "chain/ingest/backup.h"
#include "chain/repo/repository.h"
#include "tests/chain/test_util.h"

namespace chainfs::testing {

// Creates DIR/repo, confines env to it (as Repository::Open's own Env is) and
// opens it through env (null on failure, with a test failure).
inline std::unique_ptr<Repository> NewRepository(const TempDir& dir, FaultyEnv* env,
                                                 uint32_t block_size = 4096) {
  RepoConfig cfg;
  cfg.block_size = block_size;
  Status st = Repository::Init(dir / "repo", cfg, env);
  EXPECT_TRUE(st.ok()) << st.ToString();
  st = env->ConfineTo(dir / "repo");
  EXPECT_TRUE(st.ok()) << st.ToString();
  auto repo = Repository::Open(dir / "repo", env);
  EXPECT_TRUE(repo.ok()) << repo.status().ToString();
  return repo.ok() ? std::move(repo).value() : nullptr;
}

// Backs up the file at source as disk vda of group vm1, checkpoint `checkpoint`.
inline Status BackupVda(const Repository& repo, const std::string& checkpoint,
                        const std::string& source) {
  BackupOptions o;
  o.group = "vm1";
  o.checkpoint = checkpoint;
  o.threads = 2;
  o.disks.push_back({"vda", source, ""});
  return Backup(repo, o).status();
}

}  // namespace chainfs::testing
