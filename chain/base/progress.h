// Progress: a one-line progress bar on stderr when it is a terminal, silent
// otherwise (scripts, CI, --json). Thread-safe Add().
//
//   Progress p("backup vda", total_bytes);
//   p.Add(n); ...; p.Finish();
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace chainfs {

class Progress {
 public:
  Progress(std::string label, uint64_t total);
  ~Progress();
  void Add(uint64_t n);
  void Finish();
  // Globally disable bars (e.g. for --json output).
  static void SetEnabled(bool enabled);

 private:
  void Draw(bool final);
  std::string label_;
  uint64_t total_;
  std::atomic<uint64_t> done_{0};
  bool enabled_;
  bool finished_ = false;
  std::mutex mu_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace chainfs
