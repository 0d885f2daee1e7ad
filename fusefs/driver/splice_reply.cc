#include "fusefs/driver/splice_reply.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace chainfs {
namespace {

constexpr size_t kPage = 4096;

// Pipe slots taken by n bytes starting at byte `start` of a page-aligned
// source (a page cache page or a page of memory holds one slot).
size_t Slots(uint64_t start, size_t n) {
  return n == 0 ? 0 : static_cast<size_t>((start % kPage + n + kPage - 1) / kPage);
}

}  // namespace

bool HasFilePieces(const std::vector<ReadPiece>& pieces) {
  return std::any_of(pieces.begin(), pieces.end(),
                     [](const ReadPiece& p) { return p.file != nullptr; });
}

bool SplicePipe::CanGrowTo(size_t bytes) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  const bool ok = ::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(bytes)) >= 0;
  ::close(fds[0]);
  ::close(fds[1]);
  return ok;
}

SplicePipe& SplicePipe::ForThisThread() {
  thread_local SplicePipe pipe;
  return pipe;
}

SplicePipe::~SplicePipe() { Discard(); }

void SplicePipe::Discard() {
  if (r_ >= 0) ::close(r_);
  if (w_ >= 0) ::close(w_);
  r_ = w_ = -1;
  slots_ = 0;
  filled_ = 0;
}

Status SplicePipe::Ensure(size_t slots) {
  if (r_ < 0) {
    int fds[2];
    // The write end never blocks: a miscounted pipe fails the fill (the
    // read is then copied) rather than hanging the FUSE thread.
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
      return Status::NotSupported(std::string("no pipe for splicing: ") + std::strerror(errno));
    r_ = fds[0];
    w_ = fds[1];
    (void)::fcntl(r_, F_SETFL, 0);  // libfuse may read it back: blocking
    const int size = ::fcntl(w_, F_GETPIPE_SZ);
    slots_ = size > 0 ? static_cast<size_t>(size) / kPage : 0;
  }
  if (slots_ < slots) {
    const int size = ::fcntl(w_, F_SETPIPE_SZ, static_cast<int>(slots * kPage));
    if (size < 0)
      return Status::NotSupported("a pipe of " + std::to_string(slots * kPage) +
                                  " bytes for splicing: " + std::strerror(errno));
    slots_ = static_cast<size_t>(size) / kPage;
  }
  return Status::Ok();
}

Status SplicePipe::VmspliceAll(const char* p, size_t n) {
  iovec v{const_cast<char*>(p), n};
  while (v.iov_len > 0) {
    const ssize_t r = ::vmsplice(w_, &v, 1, SPLICE_F_NONBLOCK);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "vmsplice into the reply pipe");
    }
    v.iov_base = static_cast<char*>(v.iov_base) + r;
    v.iov_len -= static_cast<size_t>(r);
  }
  return Status::Ok();
}

Status SplicePipe::Fill(const std::vector<ReadPiece>& pieces, std::span<const char> zeros) {
  size_t slots = 1;
  for (const ReadPiece& p : pieces) {
    if (p.file != nullptr)
      slots += Slots(p.file_offset, p.size);
    else if (p.data != nullptr)
      slots += Slots(reinterpret_cast<uintptr_t>(p.data), p.size);
    else
      slots += (p.size / zeros.size()) * Slots(0, zeros.size()) + Slots(0, p.size % zeros.size());
  }
  if (slots > kMaxSlots)
    return Status::NotSupported("a reply of " + std::to_string(slots) + " pipe pages");
  filled_ = 0;
  Status st = Ensure(slots);
  for (size_t i = 0; st.ok() && i < pieces.size(); ++i) {
    const ReadPiece& p = pieces[i];
    filled_ += p.size;
    if (p.file != nullptr) {
      st = p.file->SpliceTo(p.file_offset, p.size, w_);
    } else if (p.data != nullptr) {
      st = VmspliceAll(p.data, p.size);
    } else {
      for (size_t done = 0; st.ok() && done < p.size; done += zeros.size())
        st = VmspliceAll(zeros.data(), std::min(zeros.size(), p.size - done));
    }
  }
  if (!st.ok()) Discard();
  return st;
}

int SplicePipe::Reply(fuse_req_t req) {
  // FUSE_BUFVEC_INIT's fields (the macro is a C99 compound literal).
  fuse_bufvec bv{};
  bv.count = 1;
  bv.buf[0].size = filled_;
  // RETRY: libfuse's fallback (a reply under two pages, or its pipe too
  // small) reads the pipe until it has all filled_ bytes, which it holds.
  bv.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_RETRY);
  bv.buf[0].fd = r_;
  const int rc = fuse_reply_data(req, &bv, static_cast<fuse_buf_copy_flags>(0));
  // Whatever libfuse did not take (it failed, or the request was
  // interrupted) must not open the next reply.
  int left = 0;
  if (rc != 0 || ::ioctl(r_, FIONREAD, &left) != 0 || left != 0) Discard();
  return rc;
}

}  // namespace chainfs
