// The `consolidate` and `prune` subcommands (chain/consolidate.h).
#pragma once

#include "fusefs/cli/commands.h"

namespace chainfs {

Action AddConsolidateCommand(CLI::App& app);
Action AddPruneCommand(CLI::App& app);

}  // namespace chainfs
