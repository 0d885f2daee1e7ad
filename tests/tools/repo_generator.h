// Deep test repositories in seconds: G groups of one disk, each a chain of N
// checkpoints, written straight through the repository's own writers
// (Repository::CreateDelta, LayerWriter, Checkpoint manifests bound to their
// deltas) exactly as `chainfs backup` would write them, but without running
// a backup per checkpoint: no base view is opened, no group is reloaded, and
// nothing is fsynced until one syncfs at the end.
//
//   group i (1-based) is PREFIX%04d; its checkpoints c000001 .. c%06d(N):
//
//     c000001 full ──► c000002 inc ──► c000003 inc ──► ... ──► cN inc
//     every block       K blocks          K blocks
//
//   ChangedBlocks(shape, i, c): the K distinct blocks checkpoint c (>= 2)
//   writes, drawn by a PRNG from (seed, i, c); FillBlock: a block's bytes as
//   written at checkpoint c, from (seed, i, c, block), incompressible (zstd
//   stores it raw, as a backup of random data would).
//
// ExpectedImage replays only those two functions (no repository code), so a
// view read through chainfs can be compared byte for byte with what it must
// hold:
//
//   ChainShape shape{.disk_size = 1 << 20, .block_size = 4096, .depth = 100,
//                    .changed = 8, .seed = 1};
//   auto report = GenerateRepository({.repo = dir, .groups = 3, .shape = shape});
//   std::string image;
//   ExpectedImage(shape, 2, 100, [&](const char* p, size_t n) { image.append(p, n); });
//
// A failed run leaves a partial repository behind: remove it. Thread-safety:
// every function may run on any thread; GenerateRepository takes the
// repository's writer lock.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "chain/base/status.h"

namespace chainfs::tools {

// What every chain of a generated repository looks like.
struct ChainShape {
  uint64_t disk_size = 0;      // bytes; a multiple of 512
  uint32_t block_size = 65536;  // the repository's block size
  uint64_t depth = 1;          // checkpoints per group, >= 1
  uint64_t changed = 0;        // blocks each incremental writes, <= the disk's blocks
  uint64_t seed = 0;
};

// Ok, or kInvalidArgument naming the field that is out of range.
Status ValidateShape(const ChainShape& shape);
// Blocks of the disk (the last one may be partial).
uint64_t DiskBlocks(const ChainShape& shape);

// "vm0001" of ("vm", 1); "c000042" of 42.
std::string GroupName(const std::string& prefix, uint64_t group_index);
std::string CheckpointName(uint64_t checkpoint_index);

// The blocks checkpoint `checkpoint` (>= 2; 1 writes every block) of group
// `group` writes: shape.changed distinct blocks, sorted.
std::vector<uint64_t> ChangedBlocks(const ChainShape& shape, uint64_t group, uint64_t checkpoint);

// The content of `block` as checkpoint `checkpoint` of group `group` writes
// it: block_size bytes to out, zeros past the disk's end (as a backup
// pads the last block).
void FillBlock(const ChainShape& shape, uint64_t group, uint64_t checkpoint, uint64_t block,
               char* out);

// The raw image checkpoint `checkpoint` (1-based) of group `group` reads as,
// handed to sink in order, in pieces of at most block_size bytes (disk_size
// bytes in all). REQUIRES: ValidateShape(shape) ok, 1 <= checkpoint <= depth.
void ExpectedImage(const ChainShape& shape, uint64_t group, uint64_t checkpoint,
                   const std::function<void(const char*, size_t)>& sink);
// ExpectedImage into the file at path (created or truncated); errors name it.
Status WriteExpectedImage(const ChainShape& shape, uint64_t group, uint64_t checkpoint,
                          const std::string& path);

struct GenerateOptions {
  std::string repo;            // created (chainfs init semantics) if missing or empty
  uint64_t groups = 1;
  ChainShape shape;
  std::string disk = "vda";
  std::string group_prefix = "vm";
  unsigned threads = 0;        // 0: one per core
};

struct GenerateReport {
  uint64_t groups = 0, checkpoints = 0, stored_bytes = 0;
  double seconds = 0;
};

// Writes opts.groups new groups into opts.repo (an existing repository must
// have shape.block_size; a group that already exists is refused before
// anything is written), then syncs the file system once.
Result<GenerateReport> GenerateRepository(const GenerateOptions& opts);

}  // namespace chainfs::tools
