// StopSignals: SIGINT and SIGTERM become a flag that a long command checks
// between steps, so that it stops cleanly (removes its temporary files) and
// fails, instead of dying half-way with its temporaries left behind.
//
//   StopSignals stop;                        // handlers installed
//   options.stop = &stop.flag();             // the work checks it
//   Status st = Run(options);
//   if (stop.received() != 0) stop.Reraise(); // end as killed by the signal
//
// The handler only stores the signal number (async-signal-safe); a second
// signal while the first is pending ends the process at once, as without a
// handler. A signal ignored when the StopSignals is made stays ignored. One StopSignals at a time per process; not copyable.
#pragma once

#include <atomic>

namespace chainfs {

class StopSignals {
 public:
  StopSignals();   // installs the handlers
  ~StopSignals();  // restores the previous ones
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // 0 until SIGINT or SIGTERM arrives, then its number.
  const std::atomic<int>& flag() const;
  int received() const { return flag().load(); }
  // Restores the default action of the received signal and raises it: the
  // process ends as killed by it (exit status 128 + signal in a shell).
  // REQUIRES: received() != 0.
  [[noreturn]] void Reraise() const;
};

// The signal a StopSignals received (0 if none, or none is installed): for
// code that waits on something outside the process (an NBD server) and is
// not handed the flag, so that it stops waiting when asked to.
int StopSignalReceived();

}  // namespace chainfs
