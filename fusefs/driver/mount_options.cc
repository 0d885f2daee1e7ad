#include "fusefs/driver/mount_options.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <string_view>

namespace chainfs {

namespace {

// Options libfuse or the kernel understand; passed through as given.
constexpr std::array<std::string_view, 14> kKernelFlags = {
    "allow_root", "auto_unmount", "nodev", "dev",   "nosuid", "suid",  "noexec",
    "exec",       "noatime",      "atime", "async", "sync",   "dirsync", "default_permissions"};
// mount(8) / fstab bookkeeping and atime variants libfuse does not take:
// accepted and ignored (nothing is ever written, atime included). "rw" is
// ignored too: the mount is read-only whatever is asked.
constexpr std::array<std::string_view, 16> kIgnoredFlags = {
    "defaults", "auto",       "noauto",   "user",       "users",    "nouser",
    "nofail",   "_netdev",    "rw",       "ro",         "relatime", "norelatime",
    "strictatime", "lazytime", "diratime", "nodiratime"};

bool ParseUnsigned(std::string_view text, int base, uint64_t* out) {
  if (text.empty()) return false;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), *out, base);
  return ec == std::errc() && p == text.data() + text.size();
}

template <size_t N>
bool Contains(const std::array<std::string_view, N>& set, std::string_view s) {
  return std::find(set.begin(), set.end(), s) != set.end();
}

// Splits on commas; a backslash escapes the next character.
std::vector<std::string> SplitOptions(const std::string& s) {
  std::vector<std::string> out(1);
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      out.back() += s[++i];
    } else if (s[i] == ',') {
      out.emplace_back();
    } else {
      out.back() += s[i];
    }
  }
  return out;
}

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ',' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// "65536", "64K", "64KiB", "4M", "1G" (binary units) into bytes.
bool ParseByteSize(std::string_view text, uint64_t* out) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (!ParseUnsigned(text.substr(0, digits), 10, out)) return false;
  std::string_view unit = text.substr(digits);
  int shift = 0;
  if (unit.empty() || unit == "B") shift = 0;
  else if (unit == "K" || unit == "k" || unit == "KiB") shift = 10;
  else if (unit == "M" || unit == "MiB") shift = 20;
  else if (unit == "G" || unit == "GiB") shift = 30;
  else return false;
  if (*out > (UINT64_MAX >> shift)) return false;
  *out <<= shift;
  return true;
}

// Applies a block cache or readahead option; false if key is not one.
Result<bool> ApplyCacheOption(const std::string& key, const std::string& value,
                              MountOptions* o) {
  const std::string bad = "mount option " + key + "=" + value + ": ";
  uint64_t n = 0;
  if (key == "readahead_threads") {
    if (!ParseUnsigned(value, 10, &n) || n > 64)
      return Status::InvalidArgument(bad + "expected a thread count from 0 to 64");
    o->readahead_threads = static_cast<unsigned>(n);
    return true;
  }
  if (key != "cache_size" && key != "readahead_min" && key != "readahead_max" &&
      key != "kernel_readahead")
    return false;
  if (!ParseByteSize(value, &n)) return Status::InvalidArgument(bad + "expected a size (256M)");
  if (key == "kernel_readahead") {
    if (n > (1ull << 30)) return Status::InvalidArgument(bad + "at most 1G");
    o->kernel_readahead = n;
    return true;
  }
  if (key == "cache_size") o->cache_size = n;
  else if (key == "readahead_min") o->readahead_min = n;
  else o->readahead_max = n;
  if (key != "cache_size" && n == 0) return Status::InvalidArgument(bad + "must not be 0");
  return true;
}

// Applies one key=value option; false if the key is not a valued option.
Result<bool> ApplyValued(const std::string& key, const std::string& value, MountOptions* o) {
  uint64_t n = 0;
  const std::string bad = "mount option " + key + "=" + value + ": ";
  if (key == "uid" || key == "gid") {
    if (!ParseUnsigned(value, 10, &n) || n >= UINT32_MAX)
      return Status::InvalidArgument(bad + "expected a numeric id");
    if (key == "uid") o->uid = static_cast<uid_t>(n);
    else o->gid = static_cast<gid_t>(n);
  } else if (key == "umask") {
    if (!ParseUnsigned(value, 8, &n) || n > 0777)
      return Status::InvalidArgument(bad + "expected octal 000 to 777");
    o->umask = static_cast<mode_t>(n);
  } else if (key == "log") {
    if (value.empty()) return Status::InvalidArgument(bad + "expected a file path");
    o->log_path = value;
  } else if (key == "fsname") {
    o->fsname = value;
  } else if (key == "subtype") {
    o->subtype = value;
  } else if (key == "comment" || key.rfind("x-", 0) == 0) {
    // fstab comments and x-systemd.* style options: ignored.
  } else if (auto cache = ApplyCacheOption(key, value, o); !cache.ok() || cache.value()) {
    return cache;
  } else if (key == "max_read") {
    if (!ParseUnsigned(value, 10, &n)) return Status::InvalidArgument(bad + "expected a number");
    o->kernel.push_back(key + "=" + value);
  } else {
    return false;
  }
  return true;
}

}  // namespace

Result<MountOptions> MountOptions::Parse(const std::vector<std::string>& args) {
  MountOptions o;
  for (const std::string& arg : args) {
    for (const std::string& opt : SplitOptions(arg)) {
      if (opt.empty() || Contains(kIgnoredFlags, opt) || opt.rfind("x-", 0) == 0) continue;
      if (opt == "allow_other") {
        o.allow_other = true;
      } else if (opt == "direct_io") {
        o.direct_io = true;
      } else if (opt == "nosplice") {
        o.splice = false;
      } else if (Contains(kKernelFlags, opt)) {
        if (opt != "default_permissions") o.kernel.push_back(opt);
      } else if (auto eq = opt.find('='); eq != std::string::npos) {
        auto applied = ApplyValued(opt.substr(0, eq), opt.substr(eq + 1), &o);
        if (!applied.ok()) return applied.status();
        if (!applied.value())
          return Status::InvalidArgument("unknown mount option '" + opt + "'");
      } else {
        return Status::InvalidArgument("unknown mount option '" + opt + "'");
      }
    }
  }
  return o;
}

std::string MountOptions::FuseOptionString() const {
  std::string s = "ro,default_permissions";
  if (!fsname.empty()) s += ",fsname=" + Escape(fsname);
  if (!subtype.empty()) s += ",subtype=" + Escape(subtype);
  if (allow_other) s += ",allow_other";
  for (const std::string& k : kernel) s += "," + Escape(k);
  return s;
}

const char* MountOptions::Help() {
  return "Mount options (-o, comma-separated; also from mount(8) and /etc/fstab):\n"
         "  allow_other      let other users in (subject to the mode bits; needs\n"
         "                   user_allow_other in /etc/fuse.conf for non-root)\n"
         "  uid=N, gid=N     owner of every file (default: the mounting user)\n"
         "  umask=OOO        bits removed from 0444 files / 0555 directories\n"
         "                   (default 077: only the owner can read)\n"
         "  log=PATH         append daemon logs to PATH (default: stderr with -f)\n"
         "  cache_size=SIZE  block cache of decompressed blocks shared by every view\n"
         "                   (default 256M; 0: off). Daemon memory stays under this plus\n"
         "                   the open layers' indexes (48 bytes per stored block)\n"
         "  readahead_min=SIZE, readahead_max=SIZE\n"
         "                   readahead window of a sequential reader (default 256K, 16M;\n"
         "                   a max below the min is raised to it)\n"
         "  readahead_threads=N  prefetch threads (default 2; 0: no readahead)\n"
         "  kernel_readahead=SIZE  the kernel's readahead for this mount (read_ahead_kb\n"
         "                   of its bdi; default 1M, set when run as root; 0: the\n"
         "                   kernel's 128K)\n"
         "  direct_io        disk views bypass the kernel's page cache: every read is\n"
         "                   served by the daemon (block cache); views advertise 1M as\n"
         "                   their preferred read size. For reading whole disks with\n"
         "                   large reads (dd bs=1M, cat, pv): faster, and the disk is\n"
         "                   not copied into the page cache. Slower for loop mounts and\n"
         "                   cp (smaller reads, each a round trip). Re-reads of more\n"
         "                   than cache_size decode again; shared mmap of a view fails\n"
         "  nosplice         copy every byte of a reply through the daemon; by default\n"
         "                   stored raw bytes (qcow2 clusters, uncompressed virtnbdbackup\n"
         "                   streams) are spliced from the page cache (splice(2))\n"
         "  (a hidden file MOUNTPOINT/.chainfs-stats holds the counters: chainfs stats)\n"
         "  fsname=, subtype=, auto_unmount, nodev, nosuid, noexec, max_read=, ...\n"
         "                   passed to the kernel (fsname defaults to chainfs:REPO)\n"
         "  defaults, auto, noauto, user, nofail, _netdev, rw, ro, relatime, x-*,\n"
         "  comment=         fstab bookkeeping, ignored (the mount is always read-only)\n";
}

}  // namespace chainfs
