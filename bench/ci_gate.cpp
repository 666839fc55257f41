// The CI gate's slowdown injection (see ci_gate.hpp).
#include "ci_gate.hpp"

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#else  // no valgrind headers: nothing is counted, and scripts/perf_gate.sh says so
#define CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_STOP_INSTRUMENTATION
#endif

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>

namespace ridgeline::bench::ci {

namespace {

std::map<std::string, double, std::less<>>& factors() {
  static std::map<std::string, double, std::less<>> f;
  return f;
}

bool injectable(std::string_view name) {
  return std::find(k_injectable.begin(), k_injectable.end(), name) != k_injectable.end();
}

std::int64_t g_counted_iterations = 0;

}  // namespace

void read_slowdown(const char* text) {
  factors().clear();
  if (text == nullptr || *text == '\0') return;
  const std::string all(text);
  std::size_t start = 0;
  while (start <= all.size()) {
    const std::size_t end = std::min(all.find(',', start), all.size());
    const std::string entry = all.substr(start, end - start);
    const std::size_t eq = entry.find('=');
    if (eq == std::string::npos) {
      throw std::invalid_argument("RIDGELINE_CI_BENCH_SLOWDOWN: '" + entry +
                                  "' is not NAME=FACTOR");
    }
    const std::string name = entry.substr(0, eq), value = entry.substr(eq + 1);
    if (!injectable(name)) {
      throw std::invalid_argument("RIDGELINE_CI_BENCH_SLOWDOWN: '" + name +
                                  "' is not a gate benchmark (bench/ci_gate.hpp k_injectable)");
    }
    char* stop = nullptr;
    const double f = std::strtod(value.c_str(), &stop);
    if (value.empty() || *stop != '\0' || !(f >= 1.0 && f <= 10.0)) {
      throw std::invalid_argument("RIDGELINE_CI_BENCH_SLOWDOWN: factor '" + value + "' of " + name +
                                  " is not a number in [1, 10]");
    }
    factors()[name] = f;
    start = end + 1;
  }
}

std::int64_t work_items(benchmark::State& state, std::string_view benchmark, std::int64_t base) {
  if (!injectable(benchmark)) {
    // A gate benchmark that the injection cannot reach would pass the self-check vacuously.
    throw std::logic_error(std::string(benchmark) + " is missing from k_injectable");
  }
  const auto it = factors().find(benchmark);
  const double f = it == factors().end() ? 1.0 : it->second;
  const auto items = std::max<std::int64_t>(1, std::llround(static_cast<double>(base) * f));
  state.counters["work_items"] = static_cast<double>(items);
  return items;
}

void begin_counted_iteration() { CALLGRIND_START_INSTRUMENTATION; }

void end_counted_iteration() {
  CALLGRIND_STOP_INSTRUMENTATION;
  ++g_counted_iterations;
}

std::int64_t counted_iterations() { return g_counted_iterations; }

bool write_counted_iterations() {
  const char* path = std::getenv("RIDGELINE_CI_BENCH_COUNTED");
  if (path == nullptr || *path == '\0') return true;
  std::FILE* f = std::fopen(path, "w");
  bool ok = f != nullptr &&
            std::fprintf(f, "%lld\n", static_cast<long long>(g_counted_iterations)) > 0;
  if (f != nullptr) ok = std::fclose(f) == 0 && ok;
  if (!ok) std::fprintf(stderr, "ridgeline_ci_bench: cannot write %s\n", path);
  return ok;
}

}  // namespace ridgeline::bench::ci
