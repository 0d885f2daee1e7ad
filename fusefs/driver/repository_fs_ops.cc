// RepositoryFs: the FUSE operations (bodies and the libfuse op table).
#include <fcntl.h>
#include <sys/statvfs.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstring>
#include <span>
#include <spdlog/spdlog.h>

#include "cache/stats_json.h"
#include "chain/base/failpoint.h"
#include "fusefs/driver/repository_fs.h"
#include "fusefs/driver/splice_reply.h"

namespace chainfs {

namespace {

RepositoryFs* Fs(fuse_req_t req) { return static_cast<RepositoryFs*>(fuse_req_userdata(req)); }

// Replies with err unless the body replied (0). A body that throws (only
// bad_alloc can) has not replied yet: bodies reply last.
template <typename F>
void Run(fuse_req_t req, F&& body) {
  int err;
  try {
    err = body();
  } catch (...) {
    err = EIO;
  }
  if (err != 0) fuse_reply_err(req, err);
}

// The bytes a reply uses for zero ranges (repeated as often as needed). They
// are written once, so that they are ordinary resident pages: a buffer never
// written maps the kernel's shared zero page, which get_user_pages' fast
// path refuses, and every reply with zeros then took the slow path (A/B on a
// 1 GiB view, a third of it zeros: about a tenth of the daemon's CPU).
// 128 KiB: few iovecs per 1 MiB reply, and small enough to stay in the CPU's
// cache.
std::span<const char> ZeroPages() {
  static constexpr size_t kSize = 128 << 10;
  alignas(4096) static char zeros[kSize];
  static const bool touched = [] {
    volatile char* p = zeros;
    for (size_t i = 0; i < kSize; i += 4096) p[i] = 0;
    return true;
  }();
  (void)touched;
  return {zeros, kSize};
}

}  // namespace

int RepositoryFs::Lookup(fuse_req_t req, fuse_ino_t parent, const std::string& name) {
  reply_stats_.lookups.fetch_add(1, std::memory_order_relaxed);
  std::shared_ptr<const Node> p = inodes_.Get(parent);
  if (p == nullptr) return ENOENT;
  auto child = Child(*p, name);
  if (!child.ok()) return child.status().ToErrno();
  fuse_entry_param e = {};
  e.ino = child->ino;
  e.attr = child->attr;
  e.entry_timeout = child->entry_timeout;
  e.attr_timeout = child->attr_timeout;
  fuse_reply_entry(req, &e);
  return 0;
}

int RepositoryFs::GetAttr(fuse_req_t req, fuse_ino_t ino) {
  std::shared_ptr<const Node> n = inodes_.Get(ino);
  if (n == nullptr) return ENOENT;
  auto e = Stat(ino, *n);
  if (!e.ok()) return e.status().ToErrno();
  fuse_reply_attr(req, &e->attr, e->attr_timeout);
  return 0;
}

int RepositoryFs::ReadLink(fuse_req_t req, fuse_ino_t ino) {
  std::shared_ptr<const Node> n = inodes_.Get(ino);
  if (n == nullptr || n->kind != NodeKind::kLatest) return EINVAL;
  auto g = groups_.Get(n->group);
  if (!g.ok()) return g.status().ToErrno();
  const Checkpoint* newest = g.value()->Newest();
  if (newest == nullptr) return ENOENT;
  fuse_reply_readlink(req, newest->name.c_str());
  return 0;
}

int RepositoryFs::Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  std::shared_ptr<const Node> n = inodes_.Get(ino);
  if (n == nullptr) return ENOENT;
  if (n->kind == NodeKind::kRoot || n->kind == NodeKind::kGroup ||
      n->kind == NodeKind::kCheckpoint)
    return EISDIR;
  if ((fi->flags & O_ACCMODE) != O_RDONLY) return EACCES;
  if (fi->flags & O_TRUNC) return EROFS;
  auto f = std::make_unique<OpenFile>();
  if (n->kind == NodeKind::kDisk) {
    auto view = ViewOf(ino, *n);
    if (!view.ok()) {
      spdlog::error("open {}/{}/{}{}: {}", n->group, n->checkpoint->name, n->disk, ".raw",
                    view.status().message());
      return view.status().ToErrno();
    }
    f->view = std::move(view).value();
    if (readahead_) f->stream = readahead_->Open(f->view);
    f->ino = ino;
    f->disk = n;
    // After the first read's reply, not now: at depth 1,000 the opens
    // competed with that read for the two cores (time to the first byte
    // 12 ms against 8.7 ms without them).
    f->load_layers = loader_ != nullptr && !f->view->LayersLoaded();
    SetKernelReadaheadOnce();
    fi->direct_io = options_.direct_io;
  } else if (n->kind == NodeKind::kStats) {
    auto snapshot = std::make_shared<Node>(*n);
    snapshot->content = MountStatsJson(cache_.get(), readahead_.get(), &reply_stats_);
    f->node = std::move(snapshot);
    fi->direct_io = 1;
  } else {
    f->node = n;
  }
  fi->keep_cache = !fi->direct_io;
  ReplyOpen(req, fi, std::move(f));
  return 0;
}

void RepositoryFs::ReplyOpen(fuse_req_t req, fuse_file_info* fi, std::unique_ptr<OpenFile> f) {
  OpenFile* raw = f.get();
  fi->fh = reinterpret_cast<uint64_t>(raw);
  {
    // Before the reply: the release may arrive on another thread at once.
    std::lock_guard<std::mutex> lock(open_mu_);
    open_files_.emplace(raw, std::move(f));
  }
  if (fuse_reply_open(req, fi) != 0) Forget(fi);  // interrupted: no release comes
}

void RepositoryFs::Forget(fuse_file_info* fi) {
  std::unique_ptr<OpenFile> f;  // destroyed outside the lock
  std::lock_guard<std::mutex> lock(open_mu_);
  auto it = open_files_.find(reinterpret_cast<const OpenFile*>(fi->fh));
  if (it == open_files_.end()) return;
  f = std::move(it->second);
  open_files_.erase(it);
  TakeOverAfterRelease(f.get());  // the reads answered before this release
}

namespace {

// Whether two views read the same layers (same cache keys, in order): a
// failed read of the one fails the same way on the other.
bool SameLayers(const View& a, const View& b) {
  if (a.layers().size() != b.layers().size()) return false;
  for (size_t i = 0; i < a.layers().size(); ++i)
    if (a.layers()[i].layer->id() != b.layers()[i].layer->id()) return false;
  return true;
}

}  // namespace

// fuse_reply_iov writes the iovecs and its header in one writev: fewer than
// IOV_MAX (1024) in all.
constexpr size_t kMaxReplyIov = 1000;

int RepositoryFs::Read(fuse_req_t req, size_t n, off_t off, fuse_file_info* fi) {
  OpenFile& f = *reinterpret_cast<OpenFile*>(fi->fh);
  if (f.node != nullptr) {
    // Our own reference: once the kernel has the reply, the reader may close
    // and the release free f (and its node) while this thread is still in
    // writev's return path (ASan checks the buffer there).
    const std::shared_ptr<const Node> node = f.node;
    const std::string& c = node->content;
    size_t start = std::min(c.size(), static_cast<size_t>(off));
    fuse_reply_buf(req, c.data() + start, std::min(n, c.size() - start));
    return 0;
  }
  std::shared_ptr<const View> view;
  std::shared_ptr<Readahead::Stream> stream;
  {
    std::lock_guard<std::mutex> lock(f.mu);
    view = f.view;
    stream = f.stream;
  }
  const uint64_t size = view->size();
  if (static_cast<uint64_t>(off) >= size) {
    fuse_reply_buf(req, nullptr, 0);
    return 0;
  }
  n = static_cast<size_t>(std::min<uint64_t>(n, size - off));
  ReadOptions options =
      stream ? readahead_->OnRead(*stream, static_cast<uint64_t>(off), n) : ReadOptions{};
  options.file_pieces = splice_.load(std::memory_order_relaxed);
  // The reply is gathered from the decoded blocks themselves (pinned in the
  // cache until it is written) and a shared zero page: no copy in between.
  thread_local std::vector<ReadPiece> pieces;
  thread_local std::vector<iovec> iov;
  pieces.clear();
  iov.clear();
  Status st = view->ReadPieces(static_cast<uint64_t>(off), n, &pieces, options);
  if (!st.ok() && (st.code() == Status::Code::kNotFound ||
                   st.code() == Status::Code::kCorruption)) {
    // A layer opened on this read was gone or another file: the chain may
    // have been rewritten by a consolidation since the view was opened. The
    // checkpoint's view as the group is now reads the same bytes; if it is
    // another view, read from it (once), and keep it for this file.
    pieces.clear();
    auto fresh = ViewOf(f.ino, *f.disk, view.get());
    if (fresh.ok() && !SameLayers(*fresh.value(), *view) && fresh.value()->size() == size) {
      spdlog::info("{}: its chain changed while open ({}); reading it from its new files",
                   view->label(), st.message());
      std::shared_ptr<Readahead::Stream> fresh_stream =
          readahead_ ? readahead_->Open(fresh.value()) : nullptr;
      {
        std::lock_guard<std::mutex> lock(f.mu);
        if (f.view == view) {
          f.view = fresh.value();
          f.stream = std::move(fresh_stream);
        }
      }
      view = fresh.value();
      st = view->ReadPieces(static_cast<uint64_t>(off), n, &pieces, options);
    }
  }
  // The view whose unopened layers to open after this file's first reply,
  // taken just before the reply: f may be gone once it is out.
  std::shared_ptr<const View> load;
  auto take_load = [&] {
    if (f.load_layers.exchange(false, std::memory_order_relaxed)) {
      std::lock_guard<std::mutex> lock(f.mu);
      load = f.view;
    }
    HandOffBeforeReply(&f);  // the last use of f (splice_reply.h)
  };
  if (st.ok() && options.file_pieces && HasFilePieces(pieces)) {
    if (ReplySpliced(req, pieces, n, take_load)) {
      pieces.clear();  // unpin
      if (load != nullptr) LoadLayersLater(std::move(load));
      return 0;
    }
    pieces.clear();
    options.file_pieces = false;
    st = view->ReadPieces(static_cast<uint64_t>(off), n, &pieces, options);
  }
  if (!st.ok()) {
    pieces.clear();
    spdlog::error("read failed in repository {}: {}", repo_->path(), st.message());
    return st.ToErrno();
  }
  const std::span<const char> zeros = ZeroPages();
  for (const ReadPiece& p : pieces) {
    if (p.data != nullptr) {
      iov.push_back({const_cast<char*>(p.data), p.size});
      continue;
    }
    for (size_t done = 0; done < p.size; done += zeros.size())
      iov.push_back({const_cast<char*>(zeros.data()), std::min(zeros.size(), p.size - done)});
  }
  take_load();
  if (iov.size() < kMaxReplyIov) {
    fuse_reply_iov(req, iov.data(), static_cast<int>(iov.size()));
  } else {
    // Small entries (a qcow2 image of 512-byte clusters: 2,048 pieces in a
    // 1 MiB read) would pass writev's IOV_MAX, and the kernel would wait
    // for a reply that never comes: gather them into one buffer.
    thread_local std::vector<char> gathered;
    gathered.resize(n);
    size_t at = 0;
    for (const iovec& v : iov) {
      std::memcpy(gathered.data() + at, v.iov_base, v.iov_len);
      at += v.iov_len;
    }
    fuse_reply_buf(req, gathered.data(), at);
  }
  pieces.clear();  // unpin
  if (load != nullptr) LoadLayersLater(std::move(load));
  return 0;
}

void RepositoryFs::LoadLayersLater(std::shared_ptr<const View> view) {
  (void)loader_->Submit([view = std::move(view)] {
    Failpoint("mount.before-load-layers");
    // A failure is the read's to report (and retry on a fresh view).
    if (Status st = view->LoadLayers(1); !st.ok())
      spdlog::debug("{}: {}", view->label(), st.message());
  });
}

int RepositoryFs::Release(fuse_req_t req, fuse_file_info* fi) {
  Forget(fi);
  fuse_reply_err(req, 0);
  return 0;
}

int RepositoryFs::Lseek(fuse_req_t req, off_t off, int whence, fuse_file_info* fi) {
  OpenFile& f = *reinterpret_cast<OpenFile*>(fi->fh);
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return EINVAL;
  std::shared_ptr<const View> view;
  if (f.disk) {
    std::lock_guard<std::mutex> lock(f.mu);
    view = f.view;
  }
  const uint64_t size = view ? view->size() : f.node->content.size();
  if (off < 0 || static_cast<uint64_t>(off) >= size) return ENXIO;
  uint64_t pos = static_cast<uint64_t>(off);
  if (view) {
    pos = whence == SEEK_DATA ? view->SeekData(pos) : view->SeekHole(pos);
  } else if (whence == SEEK_HOLE) {
    pos = size;
  }
  if (whence == SEEK_DATA && pos >= size) return ENXIO;
  fuse_reply_lseek(req, static_cast<off_t>(pos));
  return 0;
}

int RepositoryFs::OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  std::shared_ptr<const Node> n = inodes_.Get(ino);
  if (n == nullptr) return ENOENT;
  auto entries = List(*n, ino);
  if (!entries.ok()) return entries.status().ToErrno();
  // A checkpoint directory lists what its node holds (the manifest's disks
  // and configurations, as the node was made: a rewritten checkpoint is
  // another node), never anything else: the kernel may keep its listing and
  // answer the next getdents itself. A fresh mount's second `ls -R` of 1,000
  // groups of 10 sent 44,000 requests, now 24,000. Groups and the root
  // change with every backup and are listed anew at each opendir.
  if (n->kind == NodeKind::kCheckpoint) {
    fi->cache_readdir = 1;
    fi->keep_cache = 1;
  }
  auto f = std::make_unique<OpenFile>();
  f->entries = std::move(entries).value();
  f->dir = std::move(n);
  ReplyOpen(req, fi, std::move(f));
  return 0;
}

int RepositoryFs::ReadDir(fuse_req_t req, size_t n, off_t off, fuse_file_info* fi, bool plus) {
  const OpenFile& f = *reinterpret_cast<const OpenFile*>(fi->fh);
  std::vector<char> buf(n);
  size_t used = 0;
  uint64_t with_attributes = 0;
  for (size_t i = static_cast<size_t>(off); i < f.entries.size(); ++i) {
    const DirEntry& d = f.entries[i];
    char* at = buf.data() + used;
    const size_t room = n - used;
    const auto next = static_cast<off_t>(i + 1);
    size_t need;
    if (plus) {
      const Entry e = PlusEntry(*f.dir, d);
      fuse_entry_param p = {};
      p.ino = e.ino;
      p.attr = e.attr;
      p.entry_timeout = e.entry_timeout;
      p.attr_timeout = e.attr_timeout;
      need = fuse_add_direntry_plus(req, at, room, d.name.c_str(), &p, next);
      if (need <= room && e.ino != 0) ++with_attributes;
    } else {
      struct stat st = {};
      st.st_ino = d.ino;
      st.st_mode = d.type;
      need = fuse_add_direntry(req, at, room, d.name.c_str(), &st, next);
    }
    if (need > room) break;
    used += need;
  }
  reply_stats_.entries_with_attributes.fetch_add(with_attributes, std::memory_order_relaxed);
  reply_stats_.listings.fetch_add(1, std::memory_order_relaxed);
  fuse_reply_buf(req, buf.data(), used);
  return 0;
}

int RepositoryFs::ReleaseDir(fuse_req_t req, fuse_file_info* fi) { return Release(req, fi); }

void RepositoryFs::Init(fuse_conn_info* conn) {
  // Up to 1 MiB per request: max_write sizes libfuse's buffers and the
  // kernel's max_pages; readahead to match.
  conn->max_write = 1 << 20;
  conn->max_readahead = 1 << 20;
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  // Every listing with attributes (READDIRPLUS), not only a directory's first
  // (the kernel's "auto" mode): they cost no disk read here, and `ls -l`,
  // find and rsync read a whole directory before they stat its entries, so
  // in auto mode all but the first batch of a big one came back as LOOKUPs.
  // Fresh mounts: `ls -lR` of a group of 10,000 checkpoints 1.8 -> 1.1 s.
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  // Only foreign sources have raw layers; a native repository's blocks are
  // checked and decoded, never spliced.
  if (SplicesReplies() && (conn->capable & FUSE_CAP_SPLICE_WRITE)) {
    conn->want |= FUSE_CAP_SPLICE_WRITE;
    splice_.store(true, std::memory_order_relaxed);
    // libfuse splices a reply only if its pipe holds it, its header and
    // three pages more: 2 MiB of pipe for a 1 MiB reply, where pipes stop
    // at 1 MiB (pipe-max-size) without CAP_SYS_RESOURCE. Requests of
    // 512 KiB then, all spliced: at 1 MiB, none would be.
    if (!SplicePipe::CanGrowTo(2u << 20)) conn->max_write = SplicePipe::kSmallReply;
  }
}

bool RepositoryFs::SplicesReplies() const {
  return options_.splice && repo_->foreign() != nullptr;
}

bool RepositoryFs::ReplySpliced(fuse_req_t req, const std::vector<ReadPiece>& pieces, size_t n,
                                const std::function<void()>& before_reply) {
  SplicePipe& pipe = SplicePipe::ForThisThread();
  if (Status st = pipe.Fill(pieces, ZeroPages()); !st.ok()) {
    // Copied instead; a damaged or shortened file is reported by that read.
    reply_stats_.splice_fallbacks.fetch_add(1, std::memory_order_relaxed);
    spdlog::debug("read copied, not spliced: {}", st.message());
    return false;
  }
  before_reply();
  const size_t filled = pipe.filled();
  if (filled != n) {  // cannot happen: the pieces cover the read
    spdlog::error("read of {} bytes gathered {} for its reply", n, filled);
    fuse_reply_err(req, EIO);
    pipe.Discard();
    return true;
  }
  if (pipe.Reply(req) == 0) {
    reply_stats_.spliced_replies.fetch_add(1, std::memory_order_relaxed);
    reply_stats_.spliced_bytes.fetch_add(n, std::memory_order_relaxed);
  }
  return true;
}

int RepositoryFs::StatFs(fuse_req_t req) {
  struct statvfs s = {};
  s.f_bsize = s.f_frsize = repo_->config().block_size;
  s.f_namemax = 255;
  s.f_files = inodes_.size();
  s.f_flag = ST_RDONLY;
  fuse_reply_statfs(req, &s);
  return 0;
}

// The op table: trampolines from libfuse's C callbacks to the bodies.
struct FsOps {
  static void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    Run(req, [&] { return Fs(req)->Lookup(req, parent, name); });
  }
  static void GetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
    Run(req, [&] { return Fs(req)->GetAttr(req, ino); });
  }
  static void ReadLink(fuse_req_t req, fuse_ino_t ino) {
    Run(req, [&] { return Fs(req)->ReadLink(req, ino); });
  }
  static void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    Run(req, [&] { return Fs(req)->Open(req, ino, fi); });
  }
  static void Read(fuse_req_t req, fuse_ino_t, size_t n, off_t off, fuse_file_info* fi) {
    Run(req, [&] { return Fs(req)->Read(req, n, off, fi); });
  }
  static void Release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    Run(req, [&] { return Fs(req)->Release(req, fi); });
  }
  static void Lseek(fuse_req_t req, fuse_ino_t, off_t off, int whence, fuse_file_info* fi) {
    Run(req, [&] { return Fs(req)->Lseek(req, off, whence, fi); });
  }
  static void OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    Run(req, [&] { return Fs(req)->OpenDir(req, ino, fi); });
  }
  static void ReadDir(fuse_req_t req, fuse_ino_t, size_t n, off_t off, fuse_file_info* fi) {
    Run(req, [&] { return Fs(req)->ReadDir(req, n, off, fi, false); });
  }
  static void ReadDirPlus(fuse_req_t req, fuse_ino_t, size_t n, off_t off, fuse_file_info* fi) {
    Run(req, [&] { return Fs(req)->ReadDir(req, n, off, fi, true); });
  }
  static void ReleaseDir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    Run(req, [&] { return Fs(req)->ReleaseDir(req, fi); });
  }
  static void StatFs(fuse_req_t req, fuse_ino_t) {
    Run(req, [&] { return Fs(req)->StatFs(req); });
  }
  static void Init(void* fs, fuse_conn_info* conn) { static_cast<RepositoryFs*>(fs)->Init(conn); }
  // Write-like operations: the filesystem is read-only.
  static void Rofs(fuse_req_t req) { fuse_reply_err(req, EROFS); }
  static void SetAttr(fuse_req_t req, fuse_ino_t, struct stat*, int, fuse_file_info*) {
    Rofs(req);
  }
  static void MkNod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) { Rofs(req); }
  static void MkDir(fuse_req_t req, fuse_ino_t, const char*, mode_t) { Rofs(req); }
  static void Unlink(fuse_req_t req, fuse_ino_t, const char*) { Rofs(req); }
  static void SymLink(fuse_req_t req, const char*, fuse_ino_t, const char*) { Rofs(req); }
  static void Rename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*,
                     unsigned) {
    Rofs(req);
  }
  static void Link(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) { Rofs(req); }
  static void Write(fuse_req_t req, fuse_ino_t, const char*, size_t, off_t, fuse_file_info*) {
    Rofs(req);
  }
  static void Create(fuse_req_t req, fuse_ino_t, const char*, mode_t, fuse_file_info*) {
    Rofs(req);
  }
  static void SetXattr(fuse_req_t req, fuse_ino_t, const char*, const char*, size_t, int) {
    Rofs(req);
  }
  static void RemoveXattr(fuse_req_t req, fuse_ino_t, const char*) { Rofs(req); }
  static void Fallocate(fuse_req_t req, fuse_ino_t, int, off_t, off_t, fuse_file_info*) {
    Rofs(req);
  }
};

const fuse_lowlevel_ops& RepositoryFs::Ops() {
  static const fuse_lowlevel_ops ops = [] {
    fuse_lowlevel_ops o = {};
    o.init = FsOps::Init;
    o.lookup = FsOps::Lookup;
    o.getattr = FsOps::GetAttr;
    o.readlink = FsOps::ReadLink;
    o.open = FsOps::Open;
    o.read = FsOps::Read;
    o.release = FsOps::Release;
    o.lseek = FsOps::Lseek;
    o.opendir = FsOps::OpenDir;
    o.readdir = FsOps::ReadDir;
    o.readdirplus = FsOps::ReadDirPlus;
    o.releasedir = FsOps::ReleaseDir;
    o.statfs = FsOps::StatFs;
    o.setattr = FsOps::SetAttr;
    o.mknod = FsOps::MkNod;
    o.mkdir = FsOps::MkDir;
    o.unlink = FsOps::Unlink;
    o.rmdir = FsOps::Unlink;
    o.symlink = FsOps::SymLink;
    o.rename = FsOps::Rename;
    o.link = FsOps::Link;
    o.write = FsOps::Write;
    o.create = FsOps::Create;
    o.setxattr = FsOps::SetXattr;
    o.removexattr = FsOps::RemoveXattr;
    o.fallocate = FsOps::Fallocate;
    return o;
  }();
  return ops;
}

}  // namespace chainfs
