// chainfs_make_repo: deep test repositories in seconds, and the images their
// views must read as (tests/tools/repo_generator.h).
//
//   chainfs_make_repo REPO --groups G --depth N --disk-size BYTES --changed K
//       [--block-size B] [--seed S] [--disk vda] [--group-prefix vm] [--json]
//   chainfs_make_repo --expect --depth N --disk-size BYTES --changed K
//       [--block-size B] [--seed S] [--group-index I] --checkpoint INDEX --out FILE
#include <CLI/CLI.hpp>

#include <iostream>
#include <nlohmann/json.hpp>

#include "tests/tools/repo_generator.h"

namespace {

using chainfs::Status;
using chainfs::tools::ChainShape;

constexpr char kDescription[] =
    "chainfs_make_repo: write a repository of G groups (PREFIX0001..), each one disk with a "
    "chain of N checkpoints c000001..: c000001 a full backup of every block, each next an "
    "incremental on its parent writing K blocks chosen by a PRNG from (seed, group, "
    "checkpoint), block contents from (seed, group, checkpoint, block). REPO is created "
    "(as 'chainfs init --block-size B') if missing or empty; its groups must be new.\n"
    "With --expect: write to --out the raw image that checkpoint --checkpoint (1-based) of "
    "group --group-index must read as, computed without the repository code.";

struct Args {
  std::string repo, disk = "vda", prefix = "vm", out;
  ChainShape shape;
  uint64_t groups = 0, group_index = 1, checkpoint = 0;
  bool expect = false, json = false;
};

int Fail(const std::string& what, const Status& st) {
  std::cerr << "chainfs_make_repo: " << what << ": " << st.message() << "\n";
  return 1;
}

int Usage(const std::string& message) {
  std::cerr << "chainfs_make_repo: " << message << " (see --help)\n";
  return 2;
}

int Generate(const Args& a) {
  if (a.repo.empty()) return Usage("REPO is required (or --expect)");
  if (a.groups == 0) return Usage("--groups G (at least 1) is required");
  chainfs::tools::GenerateOptions opts{a.repo, a.groups, a.shape, a.disk, a.prefix, 0};
  auto report = chainfs::tools::GenerateRepository(opts);
  if (!report.ok()) return Fail("generating " + a.repo, report.status());
  const auto& r = report.value();
  if (a.json) {
    nlohmann::json j = {{"repo", a.repo},
                        {"groups", r.groups},
                        {"depth", a.shape.depth},
                        {"checkpoints", r.checkpoints},
                        {"disk_size", a.shape.disk_size},
                        {"block_size", a.shape.block_size},
                        {"changed", a.shape.changed},
                        {"seed", a.shape.seed},
                        {"stored_bytes", r.stored_bytes},
                        {"seconds", r.seconds}};
    std::cout << j.dump() << "\n";
  } else {
    std::cout << "wrote " << r.checkpoints << " checkpoints in " << r.groups << " group(s) to "
              << a.repo << " (" << r.stored_bytes << " bytes stored) in " << r.seconds
              << " s\n";
  }
  return 0;
}

int Expect(const Args& a) {
  if (!a.repo.empty()) return Usage("--expect takes no REPO");
  if (a.checkpoint == 0) return Usage("--expect needs --checkpoint INDEX (1-based)");
  if (a.out.empty()) return Usage("--expect needs --out FILE");
  Status st = chainfs::tools::WriteExpectedImage(a.shape, a.group_index, a.checkpoint, a.out);
  if (!st.ok()) return Fail("--expect", st);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{kDescription, "chainfs_make_repo"};
  Args a;
  uint64_t block_size = a.shape.block_size;
  app.add_option("REPO", a.repo, "repository directory (created if missing or empty)");
  app.add_flag("--expect", a.expect, "write the expected image of one view instead");
  app.add_option("--groups", a.groups, "groups to create (generating)");
  app.add_option("--depth", a.shape.depth, "checkpoints per group")->required();
  app.add_option("--disk-size", a.shape.disk_size, "virtual size in bytes (K, M, G suffixes)")
      ->required()
      ->transform(CLI::AsSizeValue(false));
  app.add_option("--changed", a.shape.changed, "blocks each incremental writes")->required();
  app.add_option("--block-size", block_size, "block size (default 65536)")
      ->transform(CLI::AsSizeValue(false));
  app.add_option("--seed", a.shape.seed, "PRNG seed (default 0)");
  app.add_option("--disk", a.disk, "disk name (default vda)");
  app.add_option("--group-prefix", a.prefix, "group name prefix (default vm)");
  app.add_flag("--json", a.json, "print the report as one JSON object");
  app.add_option("--group-index", a.group_index, "--expect: group, 1-based (default 1)");
  app.add_option("--checkpoint", a.checkpoint, "--expect: checkpoint, 1-based");
  app.add_option("--out", a.out, "--expect: image file to write");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (block_size > UINT32_MAX) return Usage("--block-size " + std::to_string(block_size));
  a.shape.block_size = static_cast<uint32_t>(block_size);
  return a.expect ? Expect(a) : Generate(a);
}
