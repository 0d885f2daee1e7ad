#include "chain/ingest/nbd_source.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <utility>
#include <nlohmann/json.hpp>

#include <spdlog/spdlog.h>

#include "chain/base/file.h"
#include "chain/base/stop_signals.h"
#include "chain/ingest/libnbd_api.h"

namespace chainfs {
namespace {

constexpr unsigned kMaxConnections = 4;
constexpr unsigned kMaxRequestsInFlight = 16;
// The bounds of ExtraConnectTimeout.
constexpr std::chrono::milliseconds kExtraConnectMin{1000};
constexpr std::chrono::milliseconds kExtraConnectMax{10000};
// How long a connection after the first may take to be answered: ten times
// what the first took, 1 to 10 s. A server that has taken all the clients
// it will never answers another.
std::chrono::milliseconds ExtraConnectTimeout(std::chrono::milliseconds first_took) {
  return std::clamp<std::chrono::milliseconds>(10 * first_took, kExtraConnectMin, kExtraConnectMax);
}
// How often a wait on the server looks for a stop signal.
constexpr std::chrono::milliseconds kStopCheck{200};
// How long a stopped wait lets the server answer the commands in flight.
constexpr std::chrono::milliseconds kStopSettle{1000};
// Requests of at most this much even where the server takes more: large
// enough to amortise a round trip, small enough to keep several in flight.
constexpr uint64_t kMaxRequest = 1ull << 20;
// Block status requests cover at most this much of the disk at a time (the
// protocol's lengths are 32 bits).
constexpr uint64_t kStatusSpan = 1ull << 30;

std::string NbdError() {
  const char* e = nbd::nbd_get_error();
  return e && *e ? e : "unknown libnbd error";
}

// The last libnbd error as a Status: "WHAT: libnbd's message" (its errno
// kept, named once).
Status NbdStatus(const std::string& what) {
  const int err = nbd::nbd_get_errno() ? nbd::nbd_get_errno() : EIO;
  std::string msg = NbdError();
  const std::string tail = std::string(": ") + std::strerror(err);
  while (msg.size() >= tail.size() && msg.compare(msg.size() - tail.size(), tail.size(), tail) == 0)
    msg.erase(msg.size() - tail.size());
  return Status::FromErrno(err, what + ": " + msg);
}

// Waits up to kStopCheck for h to make progress (nbd_poll); -1 with errno
// set on failure, -2 when a stop signal arrived meanwhile (a stalled server
// must not keep a backup from stopping: it waited for ever).
int PollOrStop(nbd_handle* h) {
  if (nbd::nbd_poll(h, static_cast<int>(kStopCheck.count())) == -1) return -1;
  return StopSignalReceived() != 0 ? -2 : 0;
}

Status Stopped(const std::string& where) {
  return Status::FromErrno(EINTR, where + ": stopped by signal " +
                                      std::to_string(StopSignalReceived()));
}

// The URI with its user and every query parameter but socket= removed: what
// messages may show (tls-psk-file and passwords stay out of logs).
std::string RedactUri(const std::string& uri) {
  std::string out = uri;
  const size_t scheme = out.find("://");
  if (scheme != std::string::npos) {
    const size_t host = scheme + 3;
    const size_t path = out.find_first_of("/?", host);
    const size_t at = out.find('@', host);
    if (at != std::string::npos && (path == std::string::npos || at < path))
      out.erase(host, at + 1 - host);
  }
  const size_t q = out.find('?');
  if (q == std::string::npos) return out;
  std::string query = out.substr(q + 1), kept;
  out.erase(q);
  for (size_t at = 0; at <= query.size();) {
    size_t amp = query.find('&', at);
    if (amp == std::string::npos) amp = query.size();
    std::string param = query.substr(at, amp - at);
    if (param.rfind("socket=", 0) == 0) kept += (kept.empty() ? "" : "&") + param;
    at = amp + 1;
  }
  return kept.empty() ? out : out + "?" + kept;
}

// "a, b, c" for messages, or "none".
std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "none" : out;
}

struct Handle {
  nbd_handle* h = nullptr;
  Handle() : h(nbd::nbd_create()) {}
  ~Handle() {
    if (h) nbd::nbd_close(h);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  nbd_handle* release() { return std::exchange(h, nullptr); }
};

// How to reach the export: a URI, or a qemu-nbd of our own on an image.
struct Target {
  std::string uri;
  std::vector<std::string> argv;  // socket activation when not empty
  std::string name;               // for messages

  // Starts connecting h (libnbd's aio calls: AwaitServer waits); -1 on
  // error.
  int StartConnect(nbd_handle* h) const {
    // The user wrote the URI: its tls-certificates= and tls-psk-file= may
    // name local files.
    if (argv.empty())
      return nbd::nbd_set_uri_allow_local_file(h, true) == -1 ? -1
                                                             : nbd::nbd_aio_connect_uri(h, uri.c_str());
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    return nbd::nbd_aio_connect_systemd_socket_activation(h, args.data());
  }
};

// "2 s", or "1500 ms" where whole seconds would round: --nbd-timeout as the
// user wrote it, for messages.
std::string DurationText(std::chrono::milliseconds d) {
  const auto ms = d.count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

// Waits while h is connecting: the handshake, or in option mode an option
// under way (`doing`, for messages). With a timeout, at most that long
// (kBusy); stops on a stop signal (EINTR): a stalled server must not keep a
// backup from stopping, or from ending.
Status AwaitServer(nbd_handle* h, const Target& t, const std::string& doing,
                   std::optional<std::chrono::milliseconds> timeout) {
  const auto start = std::chrono::steady_clock::now();
  while (nbd::nbd_aio_is_connecting(h) == 1) {
    if (timeout && std::chrono::steady_clock::now() - start >= *timeout)
      return Status::Busy("NBD source " + t.name + " did not answer " + doing + " within " +
                          std::to_string(timeout->count()) + " ms");
    const int r = PollOrStop(h);
    if (r == -2) return Stopped("connecting to NBD source " + t.name);
    if (r == -1) return NbdStatus("cannot connect to NBD source " + t.name);
  }
  return Status::Ok();
}

// The meta contexts the server offers, comma-separated, for messages, on a
// connection of its own given at most `timeout` in all: a server that
// answered the backup's connection may not answer another (at its client
// limit, or stalled), and the listing, a blocking call, then waited for
// ever, deaf to stop signals. Fails only when stopped.
Result<std::string> ListContexts(const Target& t, std::chrono::milliseconds timeout) {
  std::vector<std::string> names;  // before the handle: its callback points here
  Handle l;
  const auto start = std::chrono::steady_clock::now();
  const auto left = [&] {
    return std::max(std::chrono::milliseconds{0},
                    timeout - std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::steady_clock::now() - start));
  };
  const auto unlisted = [](const std::string& why) -> Result<std::string> {
    return "(could not list them: " + why + ")";
  };
  const auto given_up = [&](const Status& st) {  // a stop ends the command
    return st.sys_errno() == EINTR ? Result<std::string>(st) : unlisted(st.message());
  };
  if (!l.h || nbd::nbd_set_opt_mode(l.h, true) == -1 || t.StartConnect(l.h) == -1)
    return unlisted(NbdError());
  Status st = AwaitServer(l.h, t, "the handshake", left());
  if (!st.ok()) return given_up(st);
  nbd_context_callback cb = {
      [](void* user, const char* name) {
        static_cast<std::vector<std::string>*>(user)->push_back(name);
        return 0;
      },
      &names, nullptr};
  if (nbd::nbd_aio_opt_list_meta_context(l.h, cb, NBD_NULL_COMPLETION) == -1)
    return unlisted(NbdError());
  st = AwaitServer(l.h, t, "the listing of meta contexts", left());
  if (!st.ok()) return given_up(st);
  if (nbd::nbd_aio_is_negotiating(l.h) != 1) return unlisted(NbdError());
  nbd::nbd_opt_abort(l.h);
  return JoinNames(names);
}

// The persistent bitmaps of a QEMU image, as `qemu-img info` lists them.
Result<std::vector<std::string>> ImageBitmaps(const std::string& path) {
  std::string cmd = "qemu-img info --output=json --force-share -- '";
  for (char c : path) cmd += c == '\'' ? std::string("'\\''") : std::string(1, c);
  cmd += "' 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return Status::FromErrno(errno, "running qemu-img info on " + path);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int rc = ::pclose(p);
  if (rc != 0)
    return Status::InvalidArgument("qemu-img info " + path + " failed: " +
                                   out.substr(0, out.find_last_not_of('\n') + 1));
  auto j = nlohmann::json::parse(out, nullptr, false);
  std::vector<std::string> names;
  if (j.is_discarded()) return Status::InvalidArgument("qemu-img info " + path + ": not JSON");
  const auto* data = j.contains("format-specific") && j["format-specific"].contains("data")
                         ? &j["format-specific"]["data"]
                         : nullptr;
  if (data && data->contains("bitmaps") && (*data)["bitmaps"].is_array())
    for (const auto& b : (*data)["bitmaps"])
      if (b.contains("name") && b["name"].is_string()) names.push_back(b["name"]);
  return names;
}

class NbdSource : public Source {
 public:
  NbdSource(Target target, std::vector<nbd_handle*> conns, uint64_t size, uint64_t request,
            std::string bitmap_context, bool has_allocation, std::chrono::milliseconds timeout)
      : target_(std::move(target)),
        size_(size),
        request_(request),
        bitmap_context_(std::move(bitmap_context)),
        has_allocation_(has_allocation),
        timeout_(timeout) {
    for (nbd_handle* h : conns) conns_.push_back(std::make_unique<Conn>(h));
  }
  ~NbdSource() override {
    for (auto& c : conns_) {
      // A connection given up is closed without a goodbye: nbd_shutdown
      // waits for the server to hang up, which a stalled one never does.
      if (!c->given_up) nbd::nbd_shutdown(c->h, 0);
      nbd::nbd_close(c->h);  // stops our qemu-nbd, if we started one
    }
  }

  const std::string& Name() const override { return target_.name; }
  uint64_t Size() const override { return size_; }
  ReadHints Hints() const override {
    return {static_cast<unsigned>(conns_.size()), request_ * kMaxRequestsInFlight};
  }
  Status ReadAt(uint64_t offset, size_t n, void* buf) const override;
  bool HasChangedRanges() const override { return !bitmap_context_.empty(); }
  Result<std::vector<ByteRange>> ChangedRanges() const override {
    return Extents(bitmap_context_, /*bits=*/1);  // dirty
  }
  bool HasZeroRanges() const override { return has_allocation_; }
  Result<std::vector<ByteRange>> ZeroRanges() const override {
    return Extents(LIBNBD_CONTEXT_BASE_ALLOCATION, LIBNBD_STATE_ZERO);
  }

 private:
  struct Conn {
    explicit Conn(nbd_handle* handle) : h(handle) {}
    std::mutex mu;
    nbd_handle* h;
    // Left with commands in flight (the server stopped answering, or a stop
    // signal and no reply within kStopSettle): never polled again, since
    // late replies would land in buffers already handed back; every later
    // call on it fails at once (with why's code and errno), and it is
    // closed without a goodbye. Under mu.
    bool given_up = false;
    Status why;
  };

  // Polls c until done() is 1 (-1: the command failed, see Failed). Fails
  // when a stop signal arrives (Settle) and, with a timeout, gives c up when
  // the server answers nothing for that long (a reply retiring a command in
  // flight is an answer). `what` and `offset` name the command for
  // messages. Called with c.mu held.
  template <typename Done>
  Status Await(Conn& c, Done done, const std::string& what, uint64_t offset) const {
    auto answered = std::chrono::steady_clock::now();
    int64_t in_flight = nbd::nbd_aio_in_flight(c.h);
    for (;;) {
      const int d = done();
      if (d == 1) return Status::Ok();
      if (d == -1) return Failed(c.h, offset, what);
      const int64_t now_in_flight = nbd::nbd_aio_in_flight(c.h);
      const auto now = std::chrono::steady_clock::now();
      if (now_in_flight < in_flight) answered = now;
      in_flight = now_in_flight;
      const auto where = [&] {
        return "NBD source " + Name() + ": " + what + " at offset " + std::to_string(offset);
      };
      if (timeout_.count() > 0 && now - answered >= timeout_)
        return GiveUp(c, Status::FromErrno(ETIMEDOUT, where() + ": no answer from the server in " +
                                                          DurationText(timeout_) + " (--nbd-timeout); "
                                                          "the connection is given up"));
      const int r = PollOrStop(c.h);
      if (r == -2) return Settle(c, Stopped(where()));
      if (r == -1) return Failed(c.h, offset, what);
    }
  }
  // Stopped with commands in flight: their buffers go back to the caller,
  // so they must be answered before c is polled again. A server that
  // answers them within kStopSettle keeps c (and gets a goodbye); else c is
  // given up. Returns stopped.
  Status Settle(Conn& c, Status stopped) const {
    const auto until = std::chrono::steady_clock::now() + kStopSettle;
    while (nbd::nbd_aio_in_flight(c.h) > 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0 || nbd::nbd_poll(c.h, static_cast<int>(left.count())) == -1)
        return GiveUp(c, stopped);
    }
    return stopped;
  }
  Status GiveUp(Conn& c, Status why) const {
    c.given_up = true;
    c.why = why;
    return why;
  }
  // The error of a call on a connection given up earlier.
  Status GivenUp(const Conn& c) const {
    return c.why.Context("NBD source " + Name() + ": connection given up earlier");
  }

  Status Failed(nbd_handle* h, uint64_t offset, const std::string& what) const {
    const std::string where =
        "NBD source " + Name() + ": " + what + " at offset " + std::to_string(offset);
    if (nbd::nbd_aio_is_dead(h) == 1 || nbd::nbd_aio_is_closed(h) == 1)
      return Status::FromErrno(ECONNRESET, where + ": the connection is lost (the server closed "
                                               "it or died; libnbd: " + NbdError() + ")");
    return NbdStatus(where);
  }
  // The byte ranges of context whose flags have any of bits set.
  Result<std::vector<ByteRange>> Extents(const std::string& context, uint32_t bits) const;

  Target target_;
  uint64_t size_;
  uint64_t request_;
  std::string bitmap_context_;
  bool has_allocation_;
  std::chrono::milliseconds timeout_;
  std::vector<std::unique_ptr<Conn>> conns_;
  mutable std::atomic<unsigned> next_{0};
};

Status NbdSource::ReadAt(uint64_t offset, size_t n, void* buf) const {
  if (offset > size_ || n > size_ - offset)
    return Status::InvalidArgument(Name() + ": read of " + std::to_string(n) +
                                   " bytes at offset " + std::to_string(offset) +
                                   " is past its end (" + std::to_string(size_) + " bytes)");
  Conn& c = *conns_[next_.fetch_add(1, std::memory_order_relaxed) % conns_.size()];
  std::lock_guard<std::mutex> lock(c.mu);
  if (c.given_up) return GivenUp(c);
  char* out = static_cast<char*>(buf);
  for (uint64_t done = 0; done < n;) {
    // A window of requests in flight, then wait for all of them.
    std::vector<std::pair<int64_t, uint64_t>> cookies;  // cookie, offset
    for (unsigned i = 0; i < kMaxRequestsInFlight && done < n; ++i) {
      const uint64_t len = std::min<uint64_t>(request_, n - done);
      const int64_t cookie =
          nbd::nbd_aio_pread(c.h, out + done, len, offset + done, NBD_NULL_COMPLETION, 0);
      if (cookie == -1) return Failed(c.h, offset + done, "read");
      cookies.emplace_back(cookie, offset + done);
      done += len;
    }
    CHAINFS_RETURN_IF_ERROR(Await(
        c, [&] { return nbd::nbd_aio_in_flight(c.h) > 0 ? 0 : 1; }, "read",
        cookies.front().second));
    for (const auto& [cookie, at] : cookies)
      if (nbd::nbd_aio_command_completed(c.h, cookie) != 1) return Failed(c.h, at, "read");
  }
  return Status::Ok();
}

Result<std::vector<ByteRange>> NbdSource::Extents(const std::string& context,
                                                   uint32_t bits) const {
  // What the extent callback fills in. It lives on the heap, shared with
  // libnbd's copy of the callback (released by its .free): a stop signal
  // leaves the command in flight, and this function returns meanwhile.
  struct Acc {
    std::string context;
    uint32_t bits = 0;
    uint64_t end = 0;  // of the request: extents past it are clipped
    uint64_t at = 0;   // next byte the server has not described yet
    std::vector<ByteRange> out;
  };
  auto acc = std::make_shared<Acc>();
  acc->context = context;
  acc->bits = bits;
  Conn& c = *conns_[0];
  std::lock_guard<std::mutex> lock(c.mu);
  if (c.given_up) return GivenUp(c);
  for (uint64_t offset = 0; offset < size_;) {
    acc->end = std::min(size_, offset + kStatusSpan);
    acc->at = offset;
    nbd_extent_callback cb = {
        [](void* user, const char* ctx, uint64_t, uint32_t* entries, size_t nr, int*) {
          Acc* a = static_cast<std::shared_ptr<Acc>*>(user)->get();
          if (a->context != ctx) return 0;
          for (size_t i = 0; i + 1 < nr && a->at < a->end; i += 2) {
            const uint64_t len = std::min<uint64_t>(entries[i], a->end - a->at);
            if (entries[i + 1] & a->bits) {
              if (!a->out.empty() && a->out.back().offset + a->out.back().length == a->at)
                a->out.back().length += len;
              else
                a->out.push_back({a->at, len});
            }
            a->at += len;
          }
          return 0;
        },
        new std::shared_ptr<Acc>(acc),
        [](void* user) { delete static_cast<std::shared_ptr<Acc>*>(user); }};
    const std::string what = "block status of " + context;
    const int64_t cookie =
        nbd::nbd_aio_block_status(c.h, acc->end - offset, offset, cb, NBD_NULL_COMPLETION, 0);
    if (cookie == -1) return Failed(c.h, offset, what);
    CHAINFS_RETURN_IF_ERROR(
        Await(c, [&] { return nbd::nbd_aio_command_completed(c.h, cookie); }, what, offset));
    if (acc->at == offset)
      return Status::Corruption("NBD source " + Name() + ": the server described no extent of " +
                                context + " at offset " + std::to_string(offset));
    offset = acc->at;
  }
  return std::move(acc->out);
}

// Has h, once connected, ask the server for base:allocation and
// bitmap_context (if any); fails if libnbd could not make h.
Status AskForContexts(const Handle& h, const std::string& bitmap_context) {
  if (!h.h || nbd::nbd_add_meta_context(h.h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1 ||
      (!bitmap_context.empty() && nbd::nbd_add_meta_context(h.h, bitmap_context.c_str()) == -1))
    return Status::InvalidArgument("libnbd: " + NbdError());
  return Status::Ok();
}

// Connects one handle to t, asking for base:allocation and bitmap_context
// (if any), waiting for the handshake with an eye on stop signals and, with
// a timeout, at most that long: a server at its client limit (qemu-nbd
// --shared=N, QEMU's NBD server with max-connections) leaves one more
// connection waiting, unanswered, for as long as the others stay; a
// blocking connect there never returned (the backup hung). kBusy then.
// Errors name the target.
Result<nbd_handle*> ConnectOne(const Target& t, const std::string& bitmap_context,
                               std::optional<std::chrono::milliseconds> timeout) {
  Handle h;
  CHAINFS_RETURN_IF_ERROR(AskForContexts(h, bitmap_context));
  if (t.StartConnect(h.h) == -1) return NbdStatus("cannot connect to NBD source " + t.name);
  CHAINFS_RETURN_IF_ERROR(AwaitServer(h.h, t, "the handshake", timeout));
  if (nbd::nbd_aio_is_ready(h.h) != 1) return NbdStatus("cannot connect to NBD source " + t.name);
  return h.release();
}

}  // namespace

bool IsNbdUri(const std::string& location) {
  // Any nbd: or nbds: scheme, nbd+unix: and the like included: libnbd
  // names what is wrong with a malformed one.
  for (const char* scheme : {"nbd:", "nbds:", "nbd+", "nbds+"})
    if (location.rfind(scheme, 0) == 0) return true;
  return false;
}

Result<std::string> ProbeImageFormat(const std::string& path) {
  auto f = OpenRandomAccessFile(path);
  if (!f.ok()) return f.status().Context("source");
  char b[512] = {};
  const size_t got = static_cast<size_t>(std::min<uint64_t>(sizeof b, f.value()->Size()));
  if (Status st = f.value()->ReadAt(0, got, b); !st.ok())
    return st.Context("reading the first bytes of source " + path);
  auto at = [&](size_t off, const char* magic, size_t len) {
    return got >= off + len && std::memcmp(b + off, magic, len) == 0;
  };
  if (at(0, "QFI\xfb", 4)) return std::string(b[7] == 1 ? "qcow" : "qcow2");
  if (at(0, "QED\0", 4)) return std::string("qed");
  if (at(0, "KDMV", 4) || at(0, "COWD", 4) || at(0, "# Disk DescriptorFile", 21))
    return std::string("vmdk");
  if (at(0x40, "\x7f\x10\xda\xbe", 4)) return std::string("vdi");
  if (at(0, "vhdxfile", 8)) return std::string("vhdx");
  if (at(0, "conectix", 8)) return std::string("vpc");
  if (at(0, "LUKS\xba\xbe", 6)) return std::string("luks");
  if (at(0, "WithoutFreeSpace", 16) || at(0, "WithouFreSpacExt", 16))
    return std::string("parallels");
  if (at(0, "Bochs Virtual HD Image", 22)) return std::string("bochs");
  if (at(0, "#!/bin/sh\n#V2.0 Format\n", 23)) return std::string("cloop");
  return std::string();
}

Result<std::unique_ptr<Source>> OpenNbdSource(const SourceSpec& spec,
                                              const std::string& image_format) {
  CHAINFS_RETURN_IF_ERROR(LoadLibnbd());
  if (!spec.dirty_map.empty())
    return Status::InvalidArgument("--dirty is for raw sources; source " + spec.location +
                                   " is read over NBD: give --bitmap NAME=BITMAP instead");
  Target t;
  const std::string bitmap_context =
      spec.bitmap.empty() ? "" : "qemu:dirty-bitmap:" + spec.bitmap;
  if (image_format.empty()) {
    t.uri = spec.location;
    t.name = RedactUri(spec.location);
    Handle probe;
    if (probe.h && !nbd::nbd_supports_uri(probe.h))
      return Status::NotSupported("this libnbd cannot open URIs (" + t.name + ")");
    if (probe.h && spec.location.rfind("nbds", 0) == 0 && !nbd::nbd_supports_tls(probe.h))
      return Status::NotSupported("this libnbd was built without TLS; cannot open " + t.name);
  } else {
    t.name = spec.location + " (" + image_format + ", through qemu-nbd)";
    if (!spec.bitmap.empty()) {
      auto bitmaps = ImageBitmaps(spec.location);
      if (!bitmaps.ok()) return bitmaps.status();
      const auto& b = bitmaps.value();
      if (std::find(b.begin(), b.end(), spec.bitmap) == b.end())
        return Status::NotFound("--bitmap " + spec.bitmap + ": image " + spec.location +
                                " has no such bitmap; it has: " + JoinNames(b));
    }
    t.argv = {"qemu-nbd", "--read-only", "--format=" + image_format, "--shared=1"};
    if (!spec.bitmap.empty()) t.argv.push_back("--bitmap=" + spec.bitmap);
    t.argv.push_back(spec.location);
  }

  const auto connect_start = std::chrono::steady_clock::now();
  auto first = ConnectOne(t, bitmap_context,
                          spec.timeout.count() > 0 ? std::optional(spec.timeout) : std::nullopt);
  if (!first.ok() && first.status().code() == Status::Code::kBusy)  // the user's --nbd-timeout
    return Status::FromErrno(ETIMEDOUT, "NBD source " + t.name +
                                            ": no answer to the handshake from the server in " +
                                            DurationText(spec.timeout) + " (--nbd-timeout)");
  if (!first.ok()) return first.status();
  const auto first_took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - connect_start);
  std::vector<nbd_handle*> conns{first.value()};
  nbd_handle* h = conns[0];
  auto close_all = [&] {
    for (nbd_handle* c : conns) nbd::nbd_close(c);
    conns.clear();
  };
  auto fail = [&](Status st) -> Result<std::unique_ptr<Source>> {
    close_all();
    return st;
  };
  const int64_t size = nbd::nbd_get_size(h);
  if (size < 0) return fail(Status::InvalidArgument("NBD source " + t.name + ": " + NbdError()));
  if (!bitmap_context.empty() && nbd::nbd_can_meta_context(h, bitmap_context.c_str()) != 1) {
    // Hang up first: a server may take one client at a time (qemu-nbd's
    // default --shared=1), and listing needs a connection of its own.
    close_all();
    auto offered = ListContexts(t, ExtraConnectTimeout(first_took));
    if (!offered.ok()) return offered.status();
    return Status::NotFound("--bitmap " + spec.bitmap + ": NBD source " + t.name +
                            " does not offer meta context " + bitmap_context +
                            "; it offers: " + offered.value());
  }
  const bool allocation = nbd::nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;

  // Requests: the server's maximum caps them; its preferred size rounds them.
  uint64_t request = kMaxRequest;
  const int64_t max_block = nbd::nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
  const int64_t preferred = nbd::nbd_get_block_size(h, LIBNBD_SIZE_PREFERRED);
  if (max_block > 0) request = std::min<uint64_t>(request, static_cast<uint64_t>(max_block));
  if (preferred > 0 && request >= static_cast<uint64_t>(preferred))
    request -= request % static_cast<uint64_t>(preferred);
  request = std::max<uint64_t>(request, 4096);

  // More connections where the server says they see the same data. Our own
  // qemu-nbd takes one client: one connection.
  if (t.argv.empty() && nbd::nbd_can_multi_conn(h) == 1) {
    const auto timeout = ExtraConnectTimeout(first_took);
    while (conns.size() < kMaxConnections) {
      auto more = ConnectOne(t, "", timeout);
      if (!more.ok()) {
        spdlog::debug("NBD source {}: extra connection refused ({}); reading over {}", t.name,
                      more.status().ToString(), conns.size());
        break;
      }
      conns.push_back(more.value());
    }
  }
  spdlog::debug("NBD source {}: {} bytes, {} connection(s), requests of {} bytes{}{}", t.name,
                size, conns.size(), request, allocation ? ", base:allocation" : "",
                bitmap_context.empty() ? "" : ", " + bitmap_context);
  return std::unique_ptr<Source>(std::make_unique<NbdSource>(
      std::move(t), conns, static_cast<uint64_t>(size), request, bitmap_context, allocation,
      spec.timeout));
}

}  // namespace chainfs
