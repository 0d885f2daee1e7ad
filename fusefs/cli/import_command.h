// The `import` subcommand (chain/ingest/import.h).
#pragma once

#include "fusefs/cli/commands.h"

namespace chainfs {

Action AddImportCommand(CLI::App& app);

}  // namespace chainfs
