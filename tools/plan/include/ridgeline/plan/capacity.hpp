// Capacity search of `ridgeline plan`: the largest batch that fits and the largest that meets the
// TPOT SLO (pure decode steps at the workload's context), and, by replaying the workload through
// the engine's scheduler and KV cache manager on the simulated executor, the highest arrival rate
// whose goodput is at least 90% of arrivals (bisection over the rate).
//   slo s = parse_slo("ttft_p99=2s,tpot_p99=50ms");
//   rate_result r = max_goodput_rate(w, sim_config, model, s);
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "ridgeline/engine/simulator.hpp"
#include "ridgeline/engine/workload.hpp"
#include "ridgeline/perfmodel/memory_model.hpp"

namespace ridgeline::planner {

struct slo {
  double ttft_seconds = 0;
  double tpot_seconds = 0;
};
// "ttft_p99=2,tpot_p99=0.05" (seconds) or with units "ttft_p99=500ms,tpot_p99=40ms"; ttft/tpot
// without the _p99 suffix are accepted too. Both are required.
slo parse_slo(const std::string& text);

struct batch_point {
  std::int64_t batch = 0;
  double step_seconds = 0;
  double tokens_per_second = 0;  // batch / step (decode)
};
struct batch_limits {
  double context = 0;   // context per sequence of the decode steps
  batch_point max_fit;  // largest batch whose KV fits at `kv_context` tokens (capped)
  std::optional<batch_point> max_slo;  // largest with step time <= TPOT SLO
  std::string why;                     // when no batch meets the SLO
};
// Decode steps at `decode_context` cached tokens per sequence; memory at `kv_context` tokens per
// sequence; batches up to `cap`.
batch_limits find_batch_limits(const step_time_model& model, const memory_plan& mem,
                               double decode_context, std::int64_t kv_context, double tpot_slo,
                               std::int64_t cap);

// First-turn arrivals per second of a workload (requests / span of arrivals).
double arrival_rate(const workload& w);
// The same requests with first-turn arrivals rescaled to `rate` per second (follow-up turns keep
// their think times).
workload with_rate(const workload& w, double rate);

struct goodput_eval {
  double rate = 0;      // arrivals per second replayed
  double fraction = 0;  // requests within both SLOs / requests
  double goodput = 0;   // requests within both SLOs per simulated second
  double ttft_p99 = 0, tpot_p99 = 0;
  double output_tokens_per_second = 0;
  std::int64_t rejected = 0;
};
goodput_eval evaluate(const workload& w, const simulation_config& c, const step_time_model& m,
                      const slo& s);

struct rate_result {
  bool feasible = false;
  std::string why;    // when even a light load misses the SLO
  goodput_eval best;  // at the highest rate found with fraction >= target
  int simulations = 0;
};
rate_result max_goodput_rate(const workload& w, const simulation_config& c,
                             const step_time_model& m, const slo& s, double target = 0.9,
                             double rate_guess = 0);

}  // namespace ridgeline::planner
