#include "fusefs/driver/kernel_readahead.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace chainfs {

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const std::string oct = s.substr(i + 1, 3);
      if (oct.find_first_not_of("01234567") == std::string::npos) {
        out.push_back(static_cast<char>(std::stoi(oct, nullptr, 8)));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

}  // namespace

Result<std::string> BdiOfMount(const std::string& mountpoint, const std::string& mountinfo) {
  // Fields: id parent MAJ:MIN root mountpoint options ... (proc(5)).
  std::istringstream lines(mountinfo);
  std::string line, found;
  while (std::getline(lines, line)) {
    std::istringstream f(line);
    std::string id, parent, dev, root, point;
    if (!(f >> id >> parent >> dev >> root >> point)) continue;
    if (Unescape(point) == mountpoint) found = dev;  // the last one is on top
  }
  if (found.empty()) return Status::NotFound("no mount on " + mountpoint + " in mountinfo");
  return "/sys/class/bdi/" + found;
}

Result<std::string> BdiOfMount(const std::string& mountpoint) {
  std::ifstream in("/proc/self/mountinfo");
  if (!in) return Status::FromErrno(errno, "/proc/self/mountinfo");
  std::stringstream text;
  text << in.rdbuf();
  return BdiOfMount(mountpoint, text.str());
}

Status SetReadAheadKb(const std::string& bdi_dir, uint64_t bytes) {
  const std::string path = bdi_dir + "/read_ahead_kb";
  const std::string value = std::to_string(bytes >> 10) + "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, path);
  const ssize_t n = ::write(fd, value.data(), value.size());
  const int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size())) return Status::FromErrno(n < 0 ? err : EIO, path);
  return Status::Ok();
}

}  // namespace chainfs
