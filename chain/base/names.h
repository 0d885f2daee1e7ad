// Names of groups, checkpoints and disks: [A-Za-z0-9._-], no leading dot,
// 1..128 characters, so that no name can escape the repository or hide.
#pragma once

#include <string>

#include "chain/base/status.h"

namespace chainfs {

// kind is "group", "checkpoint" or "disk", for the message.
Status ValidateName(const std::string& kind, const std::string& name);

}  // namespace chainfs
