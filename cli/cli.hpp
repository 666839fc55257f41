// The `ridgeline` command as a function, so tests can drive it: parses args, runs the subcommand,
// maps errors to one line on `err` and an exit code (docs/cli.md):
//   0 ok, 1 runtime failure, 2 bad input or usage, 3 no usable GPU, 4 file not readable/writable.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace CLI {
class App;
}

namespace ridgeline::cli {

enum exit_code : int { ok = 0, failure = 1, bad_input = 2, no_device = 3, io_failure = 4 };

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

// "a,b,,c" -> {"a", "b", "c"} (empty items dropped).
std::vector<std::string> split_list(const std::string& s, char sep = ',');
// "1,8,64" -> {1, 8, 64}; throws std::invalid_argument("--<what>: 'x' is not an integer").
std::vector<int> int_list(const std::string& s, const char* what);

// Each subcommand registers itself on the app; its callback runs the command.
struct context {
  std::ostream& out;
  std::ostream& err;
  bool progress = true;  // progress lines on stderr
};
// Redrawn progress bars only when stderr is a terminal, progress is on and CI is not set.
bool progress_bar_wanted(const context& ctx);

void register_probe(CLI::App& app, context& ctx);
void register_kv(CLI::App& app, context& ctx);
void register_replay(CLI::App& app, context& ctx);
void register_sweep(CLI::App& app, context& ctx);
void register_report(CLI::App& app, context& ctx);
void register_plan(CLI::App& app, context& ctx);
void register_diverge(CLI::App& app, context& ctx);
void register_compare(CLI::App& app, context& ctx);
void register_history(CLI::App& app, context& ctx);
void register_roofline(CLI::App& app, context& ctx);
void register_serve(CLI::App& app, context& ctx);
void register_load(CLI::App& app, context& ctx);

// Thrown by a command whose work succeeded but found a problem the exit code must report
// (`compare` found a regression): exit 1, after the command has written its output.
struct regression_found : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace ridgeline::cli
