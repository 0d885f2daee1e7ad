// RepositoryFs: a repository as a read-only FUSE filesystem (low-level API).
//
//   MOUNTPOINT/GROUP/CHECKPOINT/DISK.raw         the view, size = virtual size
//   MOUNTPOINT/GROUP/CHECKPOINT/checkpoint.json  the manifest
//   MOUNTPOINT/GROUP/CHECKPOINT/CONFIG           the VM config, if stored
//   MOUNTPOINT/GROUP/latest -> CHECKPOINT        the newest checkpoint
//
// Design (modelled on libfuse's hello_ll.c):
//  - Inode numbers come from an InodeTable (path + identity -> number); the
//    attributes of checkpoint-level nodes are fixed when first looked up, so
//    the kernel may cache them (and the pages of DISK.raw) for long.
//  - Group directories and `latest` change: short timeouts, and LiveGroups
//    rescans a group when it is stale.
//  - A view is opened on open() and held by the open file (fi->fh), so an
//    open file keeps reading the bytes it read before even if its checkpoint
//    is removed. Views of one file are shared while any open file holds one.
//  - Every operation replies exactly once; an op body returns 0 when it has
//    replied or an errno to reply with. No exception leaves a callback.
//  - Read-only: write-like operations reply EROFS, open for writing EACCES.
//
// Thread-safe: the ops run on libfuse's worker threads.
#pragma once

// 3.12 (written 312 since 3.12): below it, fuse_session_loop_mt() is the old
// entry point that reads a fuse_loop_config_v1 struct, and a config made by
// fuse_loop_cfg_create() read that way means max_idle_threads=0: one worker
// thread, destroyed and re-created for every request.
#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/block_cache.h"
#include "cache/readahead.h"
#include "cache/stats_json.h"
#include "chain/base/worker_pool.h"
#include "chain/repo/repository.h"
#include "fusefs/driver/inode_table.h"
#include "fusefs/driver/live_groups.h"
#include "fusefs/driver/mount_options.h"

namespace chainfs {

class RepositoryFs {
 public:
  // Starts no thread: the daemon forks after constructing it.
  RepositoryFs(std::unique_ptr<Repository> repo, MountOptions options);

  // Creates the block cache and starts the readahead threads. REQUIRES:
  // called once, after daemonizing (fork keeps only the calling thread) and
  // before serving requests.
  void Start();

  // The mount's bdi directory (fusefs/kernel_readahead.h): its read_ahead_kb
  // is set to options.kernel_readahead at the first open of a disk, once
  // FUSE_INIT is done. Empty (the default): left alone.
  void SetBdi(std::string bdi_dir) { bdi_dir_ = std::move(bdi_dir); }

  // The operation table; pass `this` as fuse_session_new's userdata.
  static const fuse_lowlevel_ops& Ops();

  const Repository& repository() const { return *repo_; }

 private:
  struct DirEntry {
    std::string name;
    uint64_t ino;
    mode_t type;
  };
  // Per-open state in fi->fh.
  struct OpenFile {
    // kDisk: the view and its readahead stream (when readahead is on), set
    // at open; afterwards read and replaced under mu: a read that finds a
    // layer of its view gone or replaced (a consolidation rewrote the chain
    // under it, lazily opened layers: chain/repo/view_map.h) swaps in the
    // view of the group as it is now, which reads the same bytes.
    std::mutex mu;
    std::shared_ptr<const View> view;
    std::shared_ptr<Readahead::Stream> stream;
    uint64_t ino = 0;                  // kDisk
    std::shared_ptr<const Node> disk;  // kDisk: its node
    std::shared_ptr<const Node> node;  // kManifest, kConfig: the content
    std::vector<DirEntry> entries;     // directories: the listing at opendir
    std::shared_ptr<const Node> dir;   // directories: the node listed
    // kDisk: the view's lazily opened layers are still to be loaded (by
    // loader_, once the first read has its reply).
    std::atomic<bool> load_layers{false};
  };
  friend struct FsOps;

  // Op bodies: 0 = replied, otherwise the errno to reply.
  int Lookup(fuse_req_t req, fuse_ino_t parent, const std::string& name);
  int GetAttr(fuse_req_t req, fuse_ino_t ino);
  int ReadLink(fuse_req_t req, fuse_ino_t ino);
  int Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  int Read(fuse_req_t req, size_t n, off_t off, fuse_file_info* fi);
  int Release(fuse_req_t req, fuse_file_info* fi);
  int Lseek(fuse_req_t req, off_t off, int whence, fuse_file_info* fi);
  int OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  // READDIR, or with plus READDIRPLUS: the listing with each entry's inode
  // and attributes, so that `ls -lR`, find and rsync need no LOOKUP for what
  // they then open or stat.
  int ReadDir(fuse_req_t req, size_t n, off_t off, fuse_file_info* fi, bool plus);
  int ReleaseDir(fuse_req_t req, fuse_file_info* fi);
  int StatFs(fuse_req_t req);
  // FUSE init: asks libfuse to splice replies when the options allow it.
  void Init(fuse_conn_info* conn);
  // Whether reads are to be answered by splice where they can (the option,
  // and a source with raw layers).
  bool SplicesReplies() const;
  // Answers a read whose pieces include file pieces by splicing them
  // (before_reply runs once they are in the pipe); false (nothing answered,
  // before_reply not run) if they cannot be spliced, to be copied instead.
  bool ReplySpliced(fuse_req_t req, const std::vector<ReadPiece>& pieces, size_t n,
                    const std::function<void()>& before_reply);

  // A child of a node, looked up by name: its inode and attributes.
  struct Entry {
    uint64_t ino = 0;
    struct stat attr = {};
    double entry_timeout = 0, attr_timeout = 0;
  };
  Result<Entry> Child(const Node& parent, const std::string& name);
  // The hidden statistics file at the root (not listed by readdir).
  Result<Entry> StatsChild();
  Result<Entry> GroupChild(const std::string& group, const std::string& name);
  // What Lookup replies for a checkpoint directory already interned.
  Entry CheckpointEntry(uint64_t ino) const;
  // What READDIRPLUS gives for entry d of directory dir: what Lookup of
  // d.name would reply, for the entries whose nodes List made; ino 0 (a name
  // only, looked up when used) for "." and "..", and for the groups at the
  // root, whose attributes would load every group.
  Entry PlusEntry(const Node& dir, const DirEntry& d);
  Result<Entry> CheckpointChild(const Node& cp_node, const std::string& name);
  Result<std::vector<DirEntry>> List(const Node& node, uint64_t ino);
  Result<Entry> Stat(uint64_t ino, const Node& node);
  uint64_t GroupIno(const std::string& group);
  uint64_t CheckpointIno(const std::string& group, const Checkpoint& cp);
  Entry Fixed(uint64_t ino) const;

  struct stat BaseAttr(mode_t type, int64_t mtime_ns) const;
  // Nodes of one checkpoint share one immutable copy of it (cp): a
  // checkpoint of N disks costs one copy, not N (3,000 disks: 1.46 GiB).
  // config: the kConfig node's file.
  Node CheckpointNode(NodeKind kind, std::shared_ptr<const Checkpoint> cp,
                      const ConfigFile* config = nullptr) const;
  Node DiskNode(const GroupState& g, std::shared_ptr<const Checkpoint> cp,
                const std::string& disk) const;
  // The view of a disk node: the one open files share, else a retained one
  // of the same chain, else opened. stale (a view whose read failed): never
  // that one; the group is read again first.
  Result<std::shared_ptr<const View>> ViewOf(uint64_t ino, const Node& node,
                                             const View* stale = nullptr);
  void SetKernelReadaheadOnce();
  // Opens view's unopened layers on loader_ (View::LoadLayers).
  void LoadLayersLater(std::shared_ptr<const View> view);
  // Puts f in fi->fh and replies to an open; f is kept in open_files_ until
  // its release (Forget), or until the mount ends.
  void ReplyOpen(fuse_req_t req, fuse_file_info* fi, std::unique_ptr<OpenFile> f);
  void Forget(fuse_file_info* fi);

  std::unique_ptr<Repository> repo_;
  const MountOptions options_;
  const uid_t uid_;
  const gid_t gid_;
  const int64_t mount_time_ns_;
  // The one place the read path is chosen: the block cache shared by every
  // view (with cache_size=0 it caches nothing but still merges concurrent
  // loads and counts). Readahead is null when off.
  std::unique_ptr<BlockCache> cache_;
  std::unique_ptr<Readahead> readahead_;
  BlockReader* block_reader_ = nullptr;
  LiveGroups groups_;
  InodeTable inodes_;
  std::mutex views_mu_;  // guards views_ and retained_
  std::unordered_map<uint64_t, std::weak_ptr<const View>> views_;
  // The last kRetainedViews views opened, kept after their files close, so
  // that reopening one (another `cat`, rsync's next pass) does not reopen
  // and re-index every layer of a deep chain. Reused only while the group's
  // snapshot gives the chain the same fingerprint (consolidation changes it).
  struct RetainedView {
    std::string group, checkpoint, disk;
    uint64_t ino = 0;
    uint64_t fingerprint = 0;
    std::shared_ptr<const View> view;
  };
  static constexpr size_t kRetainedViews = 8;
  std::deque<RetainedView> retained_;
  // Drops the retained views of g's group that g no longer gives the same
  // chain (their deltas consolidated or pruned: the space is freed once no
  // open file holds them). On every view open and listing of the group.
  void ForgetStaleViews(const GroupState& g);
  std::string bdi_dir_;
  std::once_flag kernel_readahead_once_;
  // Replies by splice (fusefs/driver/splice_reply.h): set at FUSE init when
  // options_.splice and libfuse can; counted for .chainfs-stats.
  std::atomic<bool> splice_{false};
  ReplyStats reply_stats_;
  // Every open file and directory. A release still queued in the kernel
  // when the mount goes away is never delivered; the files are freed here
  // then (declared last: before the cache and readahead they use).
  std::mutex open_mu_;
  std::unordered_map<const OpenFile*, std::unique_ptr<OpenFile>> open_files_;
  // Opens, in the background, the layers a view from a view map left
  // unopened, once a file of it has answered its first read
  // (View::LoadLayers): the open file then holds them, and keeps reading its
  // bytes if a consolidation removes their files. One thread at nice 19,
  // one layer at a time: readers come first. Made by Start (threads
  // after the fork). Last member: its tasks end before the views'
  // Repository and the cache go.
  std::unique_ptr<WorkerPool> loader_;
};

}  // namespace chainfs
