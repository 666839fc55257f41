// Google Benchmark glue (see gbench.hpp).
#include "ridgeline/bench/gbench.hpp"

#include <nlohmann/json.hpp>

#include "ridgeline/telemetry/environment.hpp"

namespace ridgeline::bench {

void add_environment_context(std::optional<int> device) {
  const nlohmann::json env = metrics::environment_block(device);
  for (const auto& [key, value] : env.items()) {
    benchmark::AddCustomContext("ridgeline_" + key, value.is_string() ? value.get<std::string>()
                                                                       : value.dump());
  }
}

int run_benchmarks(int argc, char** argv, std::optional<int> device) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  add_environment_context(device);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace ridgeline::bench
