// Capacity search of `ridgeline plan`: the largest batch that fits and the largest that meets the
// TPOT SLO (pure decode steps at the workload's context), and, by replaying the workload through
// the engine's scheduler and KV cache manager on the simulated executor, the highest arrival rate
// that meets the SLO (bisection over the rate). The SLO is a set of terms, every one of which must
// hold: a percentile term at its percentile, a goodput term as the share of requests within both
// limits (the same terms as `ridgeline load --slo`, docs/load.md).
//   slo s = parse_slo("ttft_p99=2s,tpot_p99=50ms");               // percentile terms only
//   slo g = parse_slo("ttft=2s,tpot=50ms,goodput=0.9");            // a goodput term, named so
//   rate_result r = max_rate(w, sim_config, model, s, guess, cap);
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ridgeline/engine/simulator.hpp"
#include "ridgeline/engine/workload.hpp"
#include "ridgeline/perfmodel/memory_model.hpp"

namespace ridgeline::planner {

// A latency SLO: TTFT and TPOT limits and the terms a replay must meet (docs/plan.md, "SLO").
//   percentile term (ttft_p99=2s): the TTFT at that percentile over every request of the replay,
//     a rejected one counting as never served, is at most the limit; likewise TPOT (over the
//     requests with two or more tokens).
//   goodput term (goodput=0.9): at least that share of the requests have TTFT and TPOT within
//     their limits. A limit given without a percentile (ttft=2s) is only a goodput limit.
struct slo {
  double ttft_seconds = 0;
  double tpot_seconds = 0;
  double ttft_percentile = 0;  // in (0, 100); 0: no TTFT percentile term
  double tpot_percentile = 0;
  double goodput_target = 0;  // in (0, 1]; 0: no goodput term
  // The terms: "p99 TTFT <= 2000 ms, p99 TPOT <= 50.0 ms" or "goodput >= 90% (TTFT <= 2000 ms
  // and TPOT <= 50.0 ms per request)".
  std::string text() const;
};
// Core's SLO grammar (schema::parse_load_slo, as `ridgeline load --slo` takes it): terms
// `ttft_pQ=T`, `tpot_pQ=T` (Q: 99, 90, 99.9 or 999 = 99.9), plain limits `ttft=T`, `tpot=T`, and
// `goodput=F`; T in seconds or with ms/us. The planner's rules on top: TTFT and TPOT once each
// (itl and e2e terms are load's only), percentiles below 100. A plain limit is a goodput limit:
// with no goodput term given the goodput term is 0.9 (and says so in text()). `goodput_target`
// (the CLI's --goodput) is the goodput term given apart from the spec.
slo parse_slo(const std::string& text, std::optional<double> goodput_target = std::nullopt);

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

// The value of `values` at percentile `percentile` (0 .. 100), counting `never` more requests
// that were never served (above every value): k_never_seconds when the percentile falls on them.
inline constexpr double k_never_seconds = 1e300;
double percentile_with_never(std::vector<double> values, std::int64_t never, double percentile);

struct goodput_eval {
  double rate = 0;      // arrivals per second replayed
  double fraction = 0;  // requests within both SLO thresholds / requests
  double goodput = 0;   // requests within both SLO thresholds per simulated second
  // Over finished requests (0 when none).
  double ttft_p99 = 0, tpot_p99 = 0;
  // At the SLO's percentile terms over every request, a rejected one never served
  // (k_never_seconds); 0 for a metric without a percentile term.
  double ttft_at_slo = 0, tpot_at_slo = 0;
  double output_tokens_per_second = 0;
  std::int64_t requests = 0, rejected = 0;
  bool meets = false;  // every term of the SLO holds
};
goodput_eval evaluate(const workload& w, const simulation_config& c, const step_time_model& m,
                      const slo& s);

struct rate_result {
  bool feasible = false;
  std::string why;    // when even a light load misses the SLO
  goodput_eval best;  // at the highest rate found that meets the SLO
  // The search stopped at `rate_cap` with the SLO still met: the workload is too short for a
  // queue to build up; the rate is that steady-state bound, not one the replay pushed past.
  bool capped = false;
  int simulations = 0;
};
// The highest arrival rate (doubling from rate_guess, then bisection in log space to 1%) at which
// the replay meets `s`; at most `rate_cap` (0: none), the rate above which no steady state exists
// (plan: decode tokens/s at the TPOT batch / mean output tokens).
rate_result max_rate(const workload& w, const simulation_config& c, const step_time_model& m,
                     const slo& s, double rate_guess = 0, double rate_cap = 0);

}  // namespace ridgeline::planner
