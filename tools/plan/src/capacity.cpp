// Capacity search (see capacity.hpp).
#include "ridgeline/plan/capacity.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "ridgeline/core/statistics.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/perfmodel/fitted_step_time_model.hpp"

namespace ridgeline::planner {
namespace {

// One SLO time ("500ms", "0.05"): core's duration parser, with the key in the message.
double slo_seconds(const std::string& key, const std::string& v) {
  try {
    return parse_seconds(v);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("--slo: " + key + ": " + e.what());
  }
}

}  // namespace

slo parse_slo(const std::string& text) {
  slo s;
  std::istringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string::npos)
      throw std::invalid_argument("--slo: expected key=value, got '" + item + "'");
    const std::string k = item.substr(0, eq), v = item.substr(eq + 1);
    if (k == "ttft_p99" || k == "ttft")
      s.ttft_seconds = slo_seconds(k, v);
    else if (k == "tpot_p99" || k == "tpot")
      s.tpot_seconds = slo_seconds(k, v);
    else
      throw std::invalid_argument("--slo: unknown key '" + k + "' (ttft_p99, tpot_p99)");
  }
  if (s.ttft_seconds <= 0 || s.tpot_seconds <= 0)
    throw std::invalid_argument(
        "--slo needs both ttft_p99 and tpot_p99 (e.g. "
        "ttft_p99=2s,tpot_p99=50ms)");
  return s;
}

batch_limits find_batch_limits(const step_time_model& model, const memory_plan& mem,
                               double decode_context, std::int64_t kv_context, double tpot_slo,
                               std::int64_t cap) {
  batch_limits out;
  out.context = decode_context;
  const auto ctx = static_cast<std::int64_t>(std::llround(decode_context));
  auto point = [&](std::int64_t b) {
    batch_point p;
    p.batch = b;
    p.step_seconds = model.step_seconds(decode_shape(b, ctx));
    p.tokens_per_second = static_cast<double>(b) / p.step_seconds;
    return p;
  };
  const std::int64_t fit = std::min(cap, mem.max_sequences(kv_context));
  if (fit < 1) {
    out.why = mem.fits ? "not one sequence of " + std::to_string(kv_context) +
                             " tokens fits in the KV cache"
                       : mem.why_not;
    return out;
  }
  out.max_fit = point(fit);
  // Step time grows with the batch: bisect for the largest batch within the SLO.
  if (point(1).step_seconds > tpot_slo) {
    out.why = "a decode step of batch 1 at " + std::to_string(ctx) + " tokens of context takes " +
              format_ms(point(1).step_seconds) + ", over the TPOT SLO of " + format_ms(tpot_slo);
    return out;
  }
  std::int64_t lo = 1, hi = fit;
  if (point(hi).step_seconds <= tpot_slo) lo = hi;
  while (lo < hi) {
    const std::int64_t mid = lo + (hi - lo + 1) / 2;
    if (point(mid).step_seconds <= tpot_slo)
      lo = mid;
    else
      hi = mid - 1;
  }
  out.max_slo = point(lo);
  return out;
}

double arrival_rate(const workload& w) {
  double first = 1e300, last = -1e300;
  std::int64_t n = 0;
  for (const auto& r : w.requests) {
    if (r.follow_up) continue;
    first = std::min(first, r.arrival_seconds);
    last = std::max(last, r.arrival_seconds);
    ++n;
  }
  if (n < 2 || !(last > first)) return 0;
  return static_cast<double>(n - 1) / (last - first);
}

workload with_rate(const workload& w, double rate) {
  const double native = arrival_rate(w);
  if (!(native > 0) || !(rate > 0))
    throw std::invalid_argument("workload '" + w.source +
                                "': arrivals span no time, so its rate cannot be rescaled");
  workload out = w;
  double first = 1e300;
  for (const auto& r : w.requests)
    if (!r.follow_up) first = std::min(first, r.arrival_seconds);
  const double f = native / rate;
  for (auto& r : out.requests)
    if (!r.follow_up) r.arrival_seconds = (r.arrival_seconds - first) * f;
  return out;
}

goodput_eval evaluate(const workload& w, const simulation_config& c, const step_time_model& m,
                      const slo& s) {
  const simulation_result r = simulate(w, c, m);
  goodput_eval e;
  std::vector<double> ttft, tpot;
  std::int64_t good = 0, output = 0;
  for (const auto& q : r.requests) {
    if (q.outcome != request_outcome::finished) {
      ++e.rejected;
      continue;
    }
    ttft.push_back(q.ttft_seconds());
    output += q.output_tokens;
    bool ok = q.ttft_seconds() <= s.ttft_seconds;
    if (q.has_tpot()) {
      tpot.push_back(q.tpot_seconds());
      ok = ok && q.tpot_seconds() <= s.tpot_seconds;
    }
    good += ok ? 1 : 0;
  }
  e.fraction = r.requests.empty() ? 0 : double(good) / double(r.requests.size());
  e.goodput = r.simulated_seconds > 0 ? double(good) / r.simulated_seconds : 0;
  e.output_tokens_per_second = r.simulated_seconds > 0 ? double(output) / r.simulated_seconds : 0;
  // No finished request (or none with two tokens): 0, which meets any SLO; `fraction` is 0 then.
  e.ttft_p99 = ttft.empty() ? 0 : bench::quantile(ttft, 0.99);
  e.tpot_p99 = tpot.empty() ? 0 : bench::quantile(tpot, 0.99);
  return e;
}

rate_result max_goodput_rate(const workload& w, const simulation_config& c,
                             const step_time_model& m, const slo& s, double target,
                             double rate_guess) {
  rate_result out;
  if (w.requests.empty()) throw std::invalid_argument("workload has no requests");
  auto run = [&](double rate) {
    ++out.simulations;
    goodput_eval e = evaluate(with_rate(w, rate), c, m, s);
    e.rate = rate;
    return e;
  };
  double guess = rate_guess > 0 ? rate_guess : 1.0;
  // A light load first: if it misses the SLO, no rate will meet it.
  const goodput_eval light = run(guess / 64);
  if (light.fraction < target) {
    std::ostringstream why;
    why << "even at " << light.rate << " req/s (nearly idle) only " << 100 * light.fraction
        << "% of requests meet the SLO (p99 TTFT " << format_ms(light.ttft_p99) << " vs "
        << format_ms(s.ttft_seconds) << ", p99 TPOT " << format_ms(light.tpot_p99) << " vs "
        << format_ms(s.tpot_seconds);
    if (light.rejected > 0) why << ", " << light.rejected << " rejected";
    why << ")";
    out.why = why.str();
    out.best = light;
    return out;
  }
  out.feasible = true;
  goodput_eval lo = light;
  double hi = guess;
  for (int i = 0; i < 30; ++i) {
    const goodput_eval e = run(hi);
    if (e.fraction < target) break;
    lo = e;
    hi *= 2;
  }
  // Bisect in log space to 1%.
  while (hi / lo.rate > 1.01) {
    const double mid = std::sqrt(lo.rate * hi);
    const goodput_eval e = run(mid);
    if (e.fraction >= target)
      lo = e;
    else
      hi = mid;
  }
  out.best = lo;
  return out;
}

}  // namespace ridgeline::planner
