// chainfs: the command line. Each subcommand lives in its own Add*Command.
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <iostream>
#include <map>

#include "chain/base/file_cache.h"
#include "fusefs/cli/commands.h"
#include "fusefs/cli/consolidate_command.h"
#include "fusefs/cli/import_command.h"
#include "fusefs/driver/mount.h"
#include "fusefs/cli/stats_command.h"

int main(int argc, char** argv) {
  auto logger = spdlog::stderr_logger_mt("chainfs");
  logger->set_pattern("chainfs: %^%l%$: %v");
  spdlog::set_default_logger(logger);
  if (const char* lvl = std::getenv("CHAINFS_LOG")) spdlog::set_level(spdlog::level::from_str(lvl));
  // Before anything opens files: delta files are opened through a cache sized
  // from this limit (chain/base/file_cache.h).
  if (auto limit = chainfs::RaiseOpenFileLimit(); limit.ok())
    spdlog::debug("open-file limit (soft RLIMIT_NOFILE): {}", limit.value());
  else
    spdlog::debug("open-file limit not raised: {}", limit.status().ToString());
  // While this process has one thread (file_cache.h).
  if (auto table = chainfs::ReserveDescriptorTable(chainfs::DescriptorsToReserve()); table.ok())
    spdlog::debug("descriptor table grown to {}", table.value());
  else
    spdlog::debug("descriptor table not grown: {}", table.status().ToString());

  CLI::App app{
      "chainfs: mount VM backup chains as read-only raw disks, one per checkpoint.\n"
      "See 'chainfs COMMAND --help'."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "chainfs 0.1.0");
  std::map<std::string, chainfs::Action> actions = {
      {"init", chainfs::AddInitCommand(app)},     {"backup", chainfs::AddBackupCommand(app)},
      {"list", chainfs::AddListCommand(app)},     {"export", chainfs::AddExportCommand(app)},
      {"check", chainfs::AddCheckCommand(app)},
      {"consolidate", chainfs::AddConsolidateCommand(app)},
      {"prune", chainfs::AddPruneCommand(app)},
      {"import", chainfs::AddImportCommand(app)},
      {"stats", chainfs::AddStatsCommand(app)},
      {"mount", chainfs::AddMountCommand(app)},
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  for (auto* sub : app.get_subcommands())
    if (auto it = actions.find(sub->get_name()); it != actions.end()) return it->second();
  return 2;
}
