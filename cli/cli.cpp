// Argument parsing and error mapping for the `ridgeline` command (see cli.hpp).
#include "cli.hpp"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "ridgeline/core/build_info.hpp"
#include "ridgeline/core/errors.hpp"

namespace ridgeline::cli {

bool progress_bar_wanted(const context& ctx) {
  const char* ci = std::getenv("CI");
  const bool in_ci = ci != nullptr && *ci != '\0' && std::string_view(ci) != "false";
  return ctx.progress && !in_ci && isatty(STDERR_FILENO) != 0;
}

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{"ridgeline: benchmarking and profiling for LLM inference on NVIDIA GPUs", "ridgeline"};
  app.require_subcommand(1);
  app.fallthrough();  // global flags may follow the subcommand
  app.set_version_flag("--version", std::string(current_build().version) + " (" +
                                        current_build().git_sha + ")");
  context ctx{out, err};
  app.add_flag("--no-progress{false}", ctx.progress, "Do not print progress lines on stderr");
  register_probe(app, ctx);
  register_kv(app, ctx);
  register_replay(app, ctx);
  register_sweep(app, ctx);
  register_plan(app, ctx);
  register_compare(app, ctx);
  register_history(app, ctx);
  register_report(app, ctx);
  register_diverge(app, ctx);
  register_roofline(app, ctx);
  register_serve(app, ctx);
  register_load(app, ctx);

  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    out << app.help();
    return ok;
  } catch (const CLI::CallForAllHelp&) {
    out << app.help("", CLI::AppFormatMode::All);
    return ok;
  } catch (const CLI::CallForVersion&) {
    out << app.version() << "\n";
    return ok;
  } catch (const CLI::ParseError& e) {
    // CLI11 reports subcommand help requests as a ParseError with exit code 0.
    if (e.get_exit_code() == 0) {
      for (const auto* sub : app.get_subcommands()) out << sub->help();
      if (app.get_subcommands().empty()) out << app.help();
      return ok;
    }
    err << "ridgeline: " << e.what() << " (see ridgeline --help)\n";
    return bad_input;
  } catch (const std::invalid_argument& e) {
    err << "ridgeline: " << e.what() << "\n";
    return bad_input;
  } catch (const no_device_error& e) {
    err << "ridgeline: " << e.what() << "\n";
    return no_device;
  } catch (const io_error& e) {
    err << "ridgeline: " << e.what() << "\n";
    return io_failure;
  } catch (const nlohmann::json::exception& e) {
    err << "ridgeline: malformed JSON: " << e.what() << "\n";
    return bad_input;
  } catch (const std::exception& e) {
    err << "ridgeline: " << e.what() << "\n";
    return failure;
  }
  return ok;
}

std::vector<std::string> split_list(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const auto end = s.find(sep, start);
    std::string item = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!item.empty()) out.push_back(item);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

std::vector<int> int_list(const std::string& s, const char* what) {
  std::vector<int> out;
  for (const auto& item : split_list(s)) {
    std::size_t pos = 0;
    int v = 0;
    try {
      v = std::stoi(item, &pos);
    } catch (const std::exception&) {
      pos = 0;
    }
    if (pos != item.size()) {
      throw std::invalid_argument(std::string("--") + what + ": '" + item + "' is not an integer");
    }
    out.push_back(v);
  }
  return out;
}

}  // namespace ridgeline::cli
