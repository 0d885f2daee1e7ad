// Failpoints: named places where a test can make the process die or pause.
//
// CHAINFS_FAILPOINTS="name=action[,name=action...]" with action one of
//   kill      raise SIGKILL (a crash: nothing is cleaned up)
//   pause     create $CHAINFS_FAILPOINT_DIR/<name>.paused and wait until a
//             test removes it (lets a test change the world mid-run)
//   N*action  act only on the N-th time the point is reached (1-based)
// Unset, a failpoint costs one relaxed atomic load.
#pragma once

namespace chainfs {

void Failpoint(const char* name);

}  // namespace chainfs
