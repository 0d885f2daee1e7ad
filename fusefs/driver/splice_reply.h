// SplicePipe: a FUSE read answered without copying stored raw bytes through
// the daemon.
//
// A qcow2 image's uncompressed clusters and an uncompressed virtnbdbackup
// stream's data are the disk's bytes as they lie in the source file
// (Layer::RawSpan). Read the usual way they are copied twice: pread from
// the file's page cache into the block cache, then writev into the kernel's
// FUSE request. Here they are spliced (splice(2)) from the file into a pipe
// of this thread, which then holds references to the page-cache pages, not
// copies; the pieces from memory (cached blocks, zeros) are vmspliced in
// between, in order; and libfuse splices the pipe into /dev/fuse
// (fuse_reply_data), where the kernel makes the one copy into the reader's
// pages. A cold sequential read then costs the daemon about a third of the
// CPU (docs/ARCHITECTURE.md, "Replies by splice").
//
//   pieces = view.ReadPieces(off, n, {.file_pieces = true})
//   SplicePipe& p = SplicePipe::ForThisThread();
//   if (p.Fill(pieces, zeros).ok()) p.Reply(req);   // answered
//   else: read the pieces again without file pieces and copy (as before)
//
// Never wrong bytes: Fill moves exactly each piece's bytes or fails (a file
// that ends early is kCorruption, as pread's short read), and a failed or
// partly sent pipe is closed, never reused with bytes left in it. The caller
// answers a failed Fill the copying way, which reads the same bytes through
// ReadBlock and reports what is wrong there. Memory pieces stay pinned by
// the caller until Reply has returned: by then the kernel has copied them.
//
// The pipe grows to hold a whole reply (1 MiB: 2 MiB of pipe, which takes
// CAP_SYS_RESOURCE beyond /proc/sys/fs/pipe-max-size, 1 MiB by default):
// where it cannot, Fill returns kNotSupported and the read is copied.
#pragma once

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse3/fuse_lowlevel.h>

#include <cstddef>
#include <span>
#include <vector>

#include "chain/base/status.h"
#include "chain/layer/view.h"

#if defined(__SANITIZE_THREAD__)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace chainfs {

// ThreadSanitizer orders a reply written to /dev/fuse (writev) before the
// requests read from it afterwards (read), but splice(2) is outside its model
// of file descriptors: it would see no order between a read handler's last
// use of its open file before a spliced reply and the release, on another
// thread, that frees the file once the reader has the reply and closes it.
// The kernel orders them; these tell ThreadSanitizer so (no-ops otherwise).
#if defined(__SANITIZE_THREAD__)
inline void HandOffBeforeReply(const void* object) { __tsan_release(const_cast<void*>(object)); }
inline void TakeOverAfterRelease(const void* object) { __tsan_acquire(const_cast<void*>(object)); }
#else
inline void HandOffBeforeReply(const void*) {}
inline void TakeOverAfterRelease(const void*) {}
#endif

// True if some piece is to be moved from a file (ReadPiece::file).
bool HasFilePieces(const std::vector<ReadPiece>& pieces);

class SplicePipe {
 public:
  // Pipe slots (pages) one reply may take; more (tiny pieces, as a qcow2
  // image of 512-byte clusters gives) are copied instead.
  static constexpr size_t kMaxSlots = 1024;

  // The request size used where a 1 MiB reply cannot be spliced (CanGrowTo).
  static constexpr unsigned kSmallReply = 512u << 10;
  // Whether this process may make a pipe of `bytes` (more than
  // /proc/sys/fs/pipe-max-size takes CAP_SYS_RESOURCE).
  static bool CanGrowTo(size_t bytes);

  // This thread's pipe (FUSE worker threads answer one request at a time).
  static SplicePipe& ForThisThread();

  SplicePipe() = default;
  ~SplicePipe();
  SplicePipe(const SplicePipe&) = delete;
  SplicePipe& operator=(const SplicePipe&) = delete;

  // Puts the pieces' bytes into the pipe, in order: file pieces spliced,
  // memory pieces and zero pieces (from `zeros`, written pages) vmspliced.
  // On failure the pipe is discarded: kNotSupported when it cannot hold them,
  // the file's error when a splice fails. REQUIRES: the pipe is empty (it is
  // after Reply or a failed Fill).
  Status Fill(const std::vector<ReadPiece>& pieces, std::span<const char> zeros);
  // Sends what the last Fill put into the pipe as req's reply. Always
  // answers req (an error reply if libfuse cannot send it). Returns
  // libfuse's result (0: sent). REQUIRES: the last Fill succeeded.
  int Reply(fuse_req_t req);
  // Bytes the last successful Fill put into the pipe.
  size_t filled() const { return filled_; }
  // Closes the pipe: whatever is in it is dropped.
  void Discard();

  // The read end, for tests that check what Fill put in.
  int read_fd() const { return r_; }

 private:
  // Opens the pipe if needed and makes it hold at least `slots` pages.
  Status Ensure(size_t slots);
  Status VmspliceAll(const char* p, size_t n);

  int r_ = -1, w_ = -1;
  size_t slots_ = 0;  // capacity in pages
  size_t filled_ = 0;
};

}  // namespace chainfs
