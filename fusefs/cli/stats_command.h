// `chainfs stats MOUNTPOINT [--json]`: the block cache and readahead counters
// of a running mount, read from its hidden file MOUNTPOINT/.chainfs-stats
// (cache/stats_json.h) and printed as a table, or as JSON with --json.
#pragma once

#include <CLI/CLI.hpp>

#include "fusefs/cli/commands.h"

namespace chainfs {

Action AddStatsCommand(CLI::App& app);

}  // namespace chainfs
