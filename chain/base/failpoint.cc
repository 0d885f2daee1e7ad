#include "chain/base/failpoint.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace chainfs {
namespace {

struct Rule {
  std::string action;
  long nth = 0;  // 0 = every time
  long hits = 0;
};

std::map<std::string, Rule>* Rules() {
  static std::map<std::string, Rule>* rules = [] {
    auto* m = new std::map<std::string, Rule>();
    const char* env = std::getenv("CHAINFS_FAILPOINTS");
    if (!env) return m;
    std::string s(env);
    size_t pos = 0;
    while (pos <= s.size()) {
      size_t comma = s.find(',', pos);
      std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos
                                                                  : comma - pos);
      size_t eq = item.find('=');
      if (eq != std::string::npos) {
        Rule r;
        std::string act = item.substr(eq + 1);
        size_t star = act.find('*');
        if (star != std::string::npos) {
          r.nth = std::atol(act.substr(0, star).c_str());
          act = act.substr(star + 1);
        }
        r.action = act;
        (*m)[item.substr(0, eq)] = r;
      }
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    return m;
  }();
  return rules;
}

}  // namespace

void Failpoint(const char* name) {
  static const bool enabled = std::getenv("CHAINFS_FAILPOINTS") != nullptr;
  if (!enabled) return;
  static std::mutex mu;
  std::string action;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = Rules()->find(name);
    if (it == Rules()->end()) return;
    Rule& r = it->second;
    ++r.hits;
    if (r.nth != 0 && r.hits != r.nth) return;
    action = r.action;
  }
  if (action == "kill") {
    ::kill(::getpid(), SIGKILL);
    ::pause();
  } else if (action == "pause") {
    const char* dir = std::getenv("CHAINFS_FAILPOINT_DIR");
    std::string flag = std::string(dir ? dir : "/tmp") + "/" + name + ".paused";
    { std::ofstream(flag) << ::getpid() << "\n"; }
    while (::access(flag.c_str(), F_OK) == 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace chainfs
