#include "tests/tools/repo_generator.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "chain/base/env.h"
#include "chain/base/hash.h"
#include "chain/base/names.h"
#include "chain/base/worker_pool.h"
#include "chain/layer/layer.h"
#include "chain/native/delta_format.h"
#include "chain/repo/catalog.h"
#include "chain/repo/delta_binding.h"
#include "chain/repo/manifest.h"
#include "chain/repo/repository.h"

namespace chainfs::tools {
namespace {

// splitmix64 (Steele, Lea, Flood 2014): the step and its finalizer, the one
// source of every choice and every byte the generator makes.
inline uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
inline uint64_t Next(uint64_t* state) { return Mix64(*state += 0x9e3779b97f4a7c15ULL); }

// Distinct streams for block choices and block contents.
enum class Stream : uint64_t { kChanges = 1, kContent = 2 };

uint64_t StreamSeed(const ChainShape& s, Stream stream, uint64_t group, uint64_t checkpoint,
                    uint64_t block) {
  uint64_t h = Mix64(s.seed ^ (static_cast<uint64_t>(stream) << 56));
  h = Mix64(h ^ group);
  h = Mix64(h ^ checkpoint);
  return Mix64(h ^ block);
}

// A number in [0, n), near enough uniform for n far below 2^64.
inline uint64_t Below(uint64_t* state, uint64_t n) { return Next(state) % n; }

// An Env whose fsyncs (files and directories) do nothing: the generator
// writes thousands of files and makes them durable with one syncfs at the
// end. Everything else is the wrapped Env's.
class UnsyncedEnv : public EnvWrapper {
 public:
  explicit UnsyncedEnv(std::unique_ptr<Env> base)
      : EnvWrapper(base.get()), base_(std::move(base)) {}

  Result<std::unique_ptr<AppendFile>> NewAppendFile(const std::string& path,
                                                    WriteMode mode) override {
    CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<AppendFile> f, base_->NewAppendFile(path, mode));
    return std::unique_ptr<AppendFile>(new File(std::move(f)));
  }
  Status SyncDir(const std::string&) override { return Status::Ok(); }
  Status RenameFile(const std::string& from, const std::string& to) override {
    return base_->RenameFileNoDirSync(from, to);
  }

 private:
  // AppendFile::Sync does nothing; a buffered AppendFile writes through
  // write(2), so what was appended is in the page cache when it returns.
  class File : public AppendFile {
   public:
    explicit File(std::unique_ptr<AppendFile> base) : base_(std::move(base)) {}
    Status Append(const void* data, size_t n) override { return base_->Append(data, n); }
    Status Sync() override { return Status::Ok(); }
    Status Close() override { return base_->Close(); }
    uint64_t Offset() const override { return base_->Offset(); }
    const std::string& Path() const override { return base_->Path(); }
    WriteMode mode() const override { return base_->mode(); }

   private:
    std::unique_ptr<AppendFile> base_;
  };
  std::unique_ptr<Env> base_;
};

// Creates opts.repo as `chainfs init` would (missing or empty directory),
// or checks that an existing repository has the shape's block size.
Status InitOrCheck(const GenerateOptions& opts) {
  if (!Env::Default()->FileExists(opts.repo + "/chainfs.json")) {
    RepoConfig cfg;
    cfg.block_size = opts.shape.block_size;
    return Repository::Init(opts.repo, cfg);
  }
  CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<Repository> repo, Repository::Open(opts.repo));
  if (repo->config().block_size != opts.shape.block_size)
    return Status::InvalidArgument(
        "repository " + opts.repo + " has block size " +
        std::to_string(repo->config().block_size) + ", not the --block-size " +
        std::to_string(opts.shape.block_size) + " asked for");
  return Status::Ok();
}

// What one checkpoint task needs, shared by all.
struct Run {
  const Repository& repo;
  const GenerateOptions& opts;
  int64_t first_created_ns;  // creation time of c000001; one second apart
  std::vector<std::string> groups;
};

// Writes checkpoint `index` of group `group` (1-based): its delta, then its
// manifest, as a backup would (a block of zeros is a hole in a full delta,
// a zero run in an incremental).
Status WriteCheckpoint(const Run& run, uint64_t group, uint64_t index, std::string* raw,
                       std::string* buf, uint64_t* stored_bytes) {
  const ChainShape& shape = run.opts.shape;
  const std::string& g = run.groups[group - 1];
  const std::string name = CheckpointName(index);
  const DeltaKind kind = index == 1 ? DeltaKind::kFull : DeltaKind::kIncremental;
  const std::string base = index == 1 ? "" : CheckpointName(index - 1);
  const std::string file = NewDeltaFileName(name, run.opts.disk);
  CHAINFS_ASSIGN_OR_RETURN(
      std::unique_ptr<LayerWriter> w,
      run.repo.CreateDelta(file, {g, name, run.opts.disk, kind, base}, shape.disk_size));
  raw->resize(shape.block_size);
  auto add = [&](uint64_t block) -> Status {
    FillBlock(shape, group, index, block, raw->data());
    if (IsAllZero(raw->data(), raw->size())) {
      if (kind != DeltaKind::kFull) w->AddZeroRun(block, 1);
      return Status::Ok();
    }
    const ContentHash h = HashContent(raw->data(), raw->size());
    return w->AddStored(w->Encode(block, raw->data(), h, buf));
  };
  if (index == 1) {
    for (uint64_t b = 0; b < DiskBlocks(shape); ++b) CHAINFS_RETURN_IF_ERROR(add(b));
  } else {
    for (uint64_t b : ChangedBlocks(shape, group, index)) CHAINFS_RETURN_IF_ERROR(add(b));
  }
  CHAINFS_RETURN_IF_ERROR(w->Finish());
  *stored_bytes += w->stored_bytes();

  Checkpoint cp;
  cp.group = g;
  cp.name = name;
  cp.sequence = index;
  cp.created_unix_ns = run.first_created_ns + static_cast<int64_t>(index - 1) * 1'000'000'000;
  cp.parent = base;
  cp.disks.push_back(
      {run.opts.disk, file, kind, base, shape.disk_size, w->stored_bytes(), w->format()});
  BindEntry(*w->identity(), &cp.disks.back());
  // Written in place, not renamed: nobody reads the repository before the
  // generator is done (a rename would sync the directory).
  const std::string text = cp.Encode();
  CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<AppendFile> out,
                           run.repo.env()->NewAppendFile(run.repo.ManifestPath(g, name),
                                                         WriteMode::kBuffered));
  CHAINFS_RETURN_IF_ERROR(out->Append(text.data(), text.size()));
  return out->Close();
}

// Refuses a repository that would not fit: the blocks are incompressible,
// so every block written is stored whole (plus a little per file).
Status CheckSpace(Env* env, const GenerateOptions& o) {
  const ChainShape& s = o.shape;
  const long double per_group =
      static_cast<long double>(s.disk_size) +
      static_cast<long double>(s.depth - 1) * s.changed * s.block_size +
      static_cast<long double>(s.depth) * 2 * 4096;  // header, index, manifest
  const long double need = per_group * o.groups;
  CHAINFS_ASSIGN_OR_RETURN(FsInfo fs, env->StatFs(o.repo));
  if (need > static_cast<long double>(fs.free_bytes))
    return Status::FromErrno(
        ENOSPC, o.repo + ": " + std::to_string(o.groups) + " group(s) of " +
                    std::to_string(s.depth) + " checkpoints would store about " +
                    std::to_string(static_cast<uint64_t>(need / (1 << 20))) +
                    " MiB, but only " + std::to_string(fs.free_bytes >> 20) + " MiB are free");
  return Status::Ok();
}

// One syncfs of the file system holding the repository.
Status SyncFileSystem(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "opening " + path + " to sync it");
  const int rc = ::syncfs(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return Status::FromErrno(err, "syncing the file system of " + path);
  return Status::Ok();
}

}  // namespace

Status ValidateShape(const ChainShape& s) {
  if (!IsValidBlockSize(s.block_size))
    return Status::InvalidArgument("block size " + std::to_string(s.block_size) +
                                   ": must be a power of two from 4096 to 4 MiB");
  if (s.disk_size == 0 || s.disk_size % 512 != 0 || s.disk_size > kMaxVirtualSize)
    return Status::InvalidArgument("disk size " + std::to_string(s.disk_size) +
                                   ": must be a positive multiple of 512, at most 2^56");
  if (s.depth == 0 || s.depth > 999'999)
    return Status::InvalidArgument("depth " + std::to_string(s.depth) +
                                   ": must be 1 to 999999 checkpoints");
  if (s.changed > DiskBlocks(s))
    return Status::InvalidArgument("changed " + std::to_string(s.changed) +
                                   ": more than the disk's " + std::to_string(DiskBlocks(s)) +
                                   " blocks");
  return Status::Ok();
}

uint64_t DiskBlocks(const ChainShape& s) { return (s.disk_size + s.block_size - 1) / s.block_size; }

std::string GroupName(const std::string& prefix, uint64_t group_index) {
  char digits[24];
  std::snprintf(digits, sizeof digits, "%04llu", static_cast<unsigned long long>(group_index));
  return prefix + digits;
}

std::string CheckpointName(uint64_t checkpoint_index) {
  char name[24];
  std::snprintf(name, sizeof name, "c%06llu", static_cast<unsigned long long>(checkpoint_index));
  return name;
}

std::vector<uint64_t> ChangedBlocks(const ChainShape& s, uint64_t group, uint64_t checkpoint) {
  // Floyd's sampling: exactly `changed` distinct draws, one per step.
  const uint64_t n = DiskBlocks(s);
  uint64_t state = StreamSeed(s, Stream::kChanges, group, checkpoint, 0);
  std::unordered_set<uint64_t> chosen;
  chosen.reserve(s.changed);
  for (uint64_t j = n - s.changed; j < n; ++j) {
    const uint64_t t = Below(&state, j + 1);
    chosen.insert(chosen.count(t) ? j : t);
  }
  std::vector<uint64_t> out(chosen.begin(), chosen.end());
  std::sort(out.begin(), out.end());
  return out;
}

void FillBlock(const ChainShape& s, uint64_t group, uint64_t checkpoint, uint64_t block,
               char* out) {
  uint64_t state = StreamSeed(s, Stream::kContent, group, checkpoint, block);
  for (uint32_t i = 0; i < s.block_size; i += 8) {
    const uint64_t v = Next(&state);
    std::memcpy(out + i, &v, 8);  // block sizes are multiples of 8
  }
  const uint64_t start = block * s.block_size;
  if (start + s.block_size > s.disk_size)
    std::memset(out + (s.disk_size - start), 0, start + s.block_size - s.disk_size);
}

void ExpectedImage(const ChainShape& s, uint64_t group, uint64_t checkpoint,
                   const std::function<void(const char*, size_t)>& sink) {
  // The checkpoint that last wrote each block.
  std::vector<uint64_t> writer(DiskBlocks(s), 1);
  for (uint64_t c = 2; c <= checkpoint; ++c)
    for (uint64_t b : ChangedBlocks(s, group, c)) writer[b] = c;
  std::string raw(s.block_size, '\0');
  for (uint64_t b = 0; b < writer.size(); ++b) {
    FillBlock(s, group, writer[b], b, raw.data());
    sink(raw.data(), std::min<uint64_t>(s.block_size, s.disk_size - b * s.block_size));
  }
}

Status WriteExpectedImage(const ChainShape& s, uint64_t group, uint64_t checkpoint,
                          const std::string& path) {
  CHAINFS_RETURN_IF_ERROR(ValidateShape(s));
  if (checkpoint == 0 || checkpoint > s.depth)
    return Status::InvalidArgument("checkpoint " + std::to_string(checkpoint) +
                                   ": must be 1 to the depth, " + std::to_string(s.depth));
  if (group == 0) return Status::InvalidArgument("group index 0: group indexes start at 1");
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Status::FromErrno(errno, "creating " + path);
  ExpectedImage(s, group, checkpoint, [&](const char* p, size_t n) {
    out.write(p, static_cast<std::streamsize>(n));
  });
  out.close();
  if (!out) return Status::FromErrno(errno ? errno : EIO, "writing " + path);
  return Status::Ok();
}

Result<GenerateReport> GenerateRepository(const GenerateOptions& opts) {
  const auto start = std::chrono::steady_clock::now();
  CHAINFS_RETURN_IF_ERROR(ValidateShape(opts.shape));
  CHAINFS_RETURN_IF_ERROR(ValidateName("disk", opts.disk));
  if (opts.groups == 0) return Status::InvalidArgument("groups: must be at least 1");
  CHAINFS_RETURN_IF_ERROR(InitOrCheck(opts));
  CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<Env> rooted, NewRootedPosixEnv(opts.repo));
  UnsyncedEnv env(std::move(rooted));
  CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<Repository> repo, Repository::Open(opts.repo, &env));
  CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<RepoLock> lock, repo->Lock("chainfs_make_repo"));
  CHAINFS_RETURN_IF_ERROR(CheckSpace(&env, opts));

  const auto now = std::chrono::system_clock::now().time_since_epoch();
  Run run{*repo, opts,
          std::chrono::duration_cast<std::chrono::nanoseconds>(now).count() -
              static_cast<int64_t>(opts.shape.depth) * 1'000'000'000,
          {}};
  for (uint64_t g = 1; g <= opts.groups; ++g) {
    run.groups.push_back(GroupName(opts.group_prefix, g));
    CHAINFS_RETURN_IF_ERROR(ValidateName("group", run.groups.back()));
    CHAINFS_ASSIGN_OR_RETURN(bool exists, env.Exists(repo->GroupDir(run.groups.back())));
    if (exists)
      return Status::AlreadyExists("group " + run.groups.back() + " already exists in " +
                                   opts.repo + "; the generator only makes new groups");
  }
  for (const std::string& g : run.groups) {
    CHAINFS_RETURN_IF_ERROR(env.CreateDirs(repo->CheckpointDir(g)));
    CHAINFS_RETURN_IF_ERROR(env.CreateDirs(repo->DeltaDir(g)));
  }

  // Checkpoints are independent of each other: every worker takes the next
  // (group, checkpoint) until all are written or one fails.
  const uint64_t total = opts.groups * opts.shape.depth;
  std::atomic<uint64_t> next{0};
  std::atomic<uint64_t> stored{0};
  std::mutex mu;
  Status first_error;
  {
    WorkerPool pool(opts.threads);
    const unsigned workers = std::max(1u, pool.size());
    std::vector<std::future<void>> done;
    for (unsigned i = 0; i < workers; ++i)
      done.push_back(pool.Submit([&] {
        std::string raw, buf;
        uint64_t bytes = 0;
        for (uint64_t t = next++; t < total; t = next++) {
          Status st = WriteCheckpoint(run, t / opts.shape.depth + 1, t % opts.shape.depth + 1,
                                      &raw, &buf, &bytes);
          if (!st.ok()) {
            std::lock_guard<std::mutex> l(mu);
            if (first_error.ok()) first_error = st;
            next = total;
          }
        }
        stored += bytes;
      }));
    for (auto& f : done) f.get();
  }
  CHAINFS_RETURN_IF_ERROR(first_error);
  // The manifest catalogue records only settled manifests (catalog.h): the
  // last ones written are left out unless their change time is old enough,
  // and every process would then parse them. A backup made a while later
  // would record them; wait as long, so that the repository is as it would
  // be then (about a second, once).
  std::this_thread::sleep_for(std::chrono::nanoseconds(kCatalogSettleNs) +
                              std::chrono::milliseconds(50));
  // The view maps a backup keeps (chain/repo/view_map.h), as backups would
  // have left them.
  for (const std::string& g : run.groups) {
    CHAINFS_ASSIGN_OR_RETURN(GroupState state, repo->LoadGroup(g));
    CHAINFS_RETURN_IF_ERROR(repo->RefreshViewMaps(state).status().Context("view maps of " + g));
    CHAINFS_RETURN_IF_ERROR(repo->WriteCatalog(state).Context("manifest catalogue of " + g));
  }
  CHAINFS_RETURN_IF_ERROR(SyncFileSystem(opts.repo));
  GenerateReport report;
  report.groups = opts.groups;
  report.checkpoints = total;
  report.stored_bytes = stored;
  report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace chainfs::tools
