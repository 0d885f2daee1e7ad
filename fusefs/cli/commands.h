// The chainfs command line: one function per subcommand, each registering its
// options on a CLI11 App. main.cc wires them together. Exit codes: 0 success,
// 1 failure, 2 usage.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace chainfs {

// A subcommand's action, run after parsing; returns the exit code.
using Action = std::function<int()>;

Action AddInitCommand(CLI::App& app);
Action AddBackupCommand(CLI::App& app);
Action AddListCommand(CLI::App& app);
Action AddExportCommand(CLI::App& app);
Action AddCheckCommand(CLI::App& app);

// Parses "65536", "64K", "64KiB", "4M", "1G" into bytes; false if malformed.
bool ParseSize(const std::string& text, uint64_t* out);

}  // namespace chainfs
