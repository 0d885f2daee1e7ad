#include "chain/base/stop_signals.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <utility>

namespace chainfs {
namespace {

std::atomic<int> g_received{0};
struct sigaction g_old_int, g_old_term;

void OnStopSignal(int sig) {
  int expected = 0;
  if (g_received.compare_exchange_strong(expected, sig)) return;
  // A second signal: the user insists; end now, as without a handler.
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

StopSignals::StopSignals() {
  static_assert(std::atomic<int>::is_always_lock_free, "used from a signal handler");
  g_received.store(0);
  struct sigaction sa = {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  // A signal ignored at start (nohup, a background job of a script) stays ignored.
  for (auto [sig, old] : {std::pair{SIGINT, &g_old_int}, std::pair{SIGTERM, &g_old_term}}) {
    ::sigaction(sig, nullptr, old);
    if (old->sa_handler != SIG_IGN) ::sigaction(sig, &sa, nullptr);
  }
}

StopSignals::~StopSignals() {
  ::sigaction(SIGINT, &g_old_int, nullptr);
  ::sigaction(SIGTERM, &g_old_term, nullptr);
}

const std::atomic<int>& StopSignals::flag() const { return g_received; }

int StopSignalReceived() { return g_received.load(); }

void StopSignals::Reraise() const {
  const int sig = g_received.load();
  ::signal(sig, SIG_DFL);
  ::raise(sig);
  std::_Exit(128 + sig);  // raise returned: the signal is blocked
}

}  // namespace chainfs
