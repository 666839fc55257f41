// Capacity search (see capacity.hpp).
#include "ridgeline/plan/capacity.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "ridgeline/core/schemas/load_results.hpp"
#include "ridgeline/core/statistics.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/perfmodel/fitted_step_time_model.hpp"

namespace ridgeline::planner {

std::string slo::text() const {
  std::string out;
  auto term = [&](const std::string& t) { out += (out.empty() ? "" : ", ") + t; };
  if (ttft_percentile > 0)
    term(format("p%g", ttft_percentile) + " TTFT <= " + format_ms(ttft_seconds, 0));
  if (tpot_percentile > 0)
    term(format("p%g", tpot_percentile) + " TPOT <= " + format_ms(tpot_seconds));
  if (goodput_target > 0)
    term(format("goodput >= %g%%", 100 * goodput_target) + " (TTFT <= " +
         format_ms(ttft_seconds, 0) + " and TPOT <= " + format_ms(tpot_seconds) + " per request)");
  return out;
}

slo parse_slo(const std::string& text, std::optional<double> goodput_target) {
  // The grammar, its checks and its messages are core's, as `ridgeline load --slo` takes them.
  const schema::load_slo_spec spec = schema::parse_load_slo(text, "--slo");
  // The planner's own rules on top: it judges TTFT and TPOT only, each with one limit (a
  // percentile term or a plain goodput limit), at a percentile below 100.
  slo s;
  bool ttft = false, tpot = false;
  auto take = [&](const schema::load_slo_term& t) {
    auto bad = [&](const std::string& why) {
      return std::invalid_argument("--slo term '" + printable(t.text, 60) + "': " + why);
    };
    if (t.metric != "ttft" && t.metric != "tpot")
      throw bad("plan judges ttft, tpot and goodput, not " + t.metric);
    if (t.quantile >= 1) throw bad("plan's percentiles are below 100");
    bool& seen = t.metric == "ttft" ? ttft : tpot;
    if (seen) throw bad(t.metric + " given twice (plan takes one " + t.metric + " limit)");
    seen = true;
    (t.metric == "ttft" ? s.ttft_seconds : s.tpot_seconds) = t.limit;
    (t.metric == "ttft" ? s.ttft_percentile : s.tpot_percentile) = 100 * t.quantile;
  };
  for (const auto& t : spec.terms) {
    if (t.metric != "goodput") take(t);
  }
  for (const auto& l : spec.limits) take(l);
  if (!ttft || !tpot)
    throw std::invalid_argument(
        "--slo needs a TTFT and a TPOT limit: percentile terms (ttft_p99=2s,tpot_p99=50ms), "
        "goodput limits (ttft=2s,tpot=50ms,goodput=0.9), or both");
  std::optional<double> goodput = spec.goodput_fraction;
  if (goodput && goodput_target)
    throw std::invalid_argument("--goodput and --slo goodput=... both set the goodput term");
  if (goodput_target && !(*goodput_target > 0 && *goodput_target <= 1))
    throw std::invalid_argument("--goodput must be in (0, 1]");
  if (!goodput) goodput = goodput_target;
  // A plain limit only means something to a goodput term: 0.9 unless one is given.
  s.goodput_target = goodput.value_or(spec.limits.empty() ? 0.0 : 0.9);
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

double percentile_with_never(std::vector<double> values, std::int64_t never, double percentile) {
  values.insert(values.end(), static_cast<std::size_t>(std::max<std::int64_t>(never, 0)),
                k_never_seconds);
  if (values.empty()) return 0;
  const double v = bench::quantile(values, percentile / 100);
  return v >= k_never_seconds / 2 ? k_never_seconds : v;  // interpolated toward "never"
}

goodput_eval evaluate(const workload& w, const simulation_config& c, const step_time_model& m,
                      const slo& s) {
  const simulation_result r = simulate(w, c, m);
  goodput_eval e;
  e.requests = std::ssize(r.requests);
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
  // TPOT is undefined for a request of one token and for a rejected one: those are left out of
  // its percentile; a rejected request never gets a first token.
  e.meets = !r.requests.empty() && e.rejected < std::ssize(r.requests);
  if (s.ttft_percentile > 0) {
    e.ttft_at_slo = percentile_with_never(ttft, e.rejected, s.ttft_percentile);
    e.meets = e.meets && e.ttft_at_slo <= s.ttft_seconds;
  }
  if (s.tpot_percentile > 0) {
    e.tpot_at_slo = tpot.empty() ? 0 : bench::quantile(tpot, s.tpot_percentile / 100);
    e.meets = e.meets && e.tpot_at_slo <= s.tpot_seconds;
  }
  if (s.goodput_target > 0) e.meets = e.meets && e.fraction >= s.goodput_target;
  return e;
}

rate_result max_rate(const workload& w, const simulation_config& c, const step_time_model& m,
                     const slo& s, double rate_guess, double rate_cap) {
  rate_result out;
  if (w.requests.empty()) throw std::invalid_argument("workload has no requests");
  auto run = [&](double rate) {
    ++out.simulations;
    goodput_eval e = evaluate(with_rate(w, rate), c, m, s);
    e.rate = rate;
    return e;
  };
  double guess = rate_guess > 0 ? rate_guess : 1.0;
  if (rate_cap > 0) guess = std::min(guess, rate_cap);
  // A light load first: if it misses the SLO, no rate will meet it.
  const goodput_eval light = run(guess / 64);
  if (!light.meets) {
    std::ostringstream why;
    auto shown = [](double v) {
      return v >= k_never_seconds ? std::string("never") : format_ms(v);
    };
    why << "even at " << light.rate << " req/s (nearly idle) the SLO (" << s.text()
        << ") is missed:";
    std::string sep = " ";
    if (s.ttft_percentile > 0) {
      why << sep << format("p%g", s.ttft_percentile) << " TTFT " << shown(light.ttft_at_slo);
      sep = ", ";
    }
    if (s.tpot_percentile > 0) {
      why << sep << format("p%g", s.tpot_percentile) << " TPOT " << shown(light.tpot_at_slo);
      sep = ", ";
    }
    if (s.goodput_target > 0)
      why << sep << format("%.1f", 100 * light.fraction)
          << "% of requests within the limits (p99 TTFT " << format_ms(light.ttft_p99)
          << ", p99 TPOT " << format_ms(light.tpot_p99) << " of the finished ones)";
    if (light.rejected > 0)
      why << "; " << light.rejected << " of " << light.requests
          << " requests rejected (the KV cache or the model's context cannot hold them)";
    out.why = why.str();
    out.best = light;
    return out;
  }
  out.feasible = true;
  goodput_eval lo = light;
  double hi = guess;
  bool bounded = false;
  for (int i = 0; i < 30; ++i) {
    const goodput_eval e = run(hi);
    if (!e.meets) {
      bounded = true;
      break;
    }
    lo = e;
    if (rate_cap > 0 && hi >= rate_cap) break;
    hi = rate_cap > 0 ? std::min(2 * hi, rate_cap) : 2 * hi;
  }
  if (!bounded) {
    // Every rate tried meets the SLO: the cap (or the last doubling) is the answer.
    out.capped = rate_cap > 0;
    out.best = lo;
    return out;
  }
  // Bisect in log space to 1%.
  while (hi / lo.rate > 1.01) {
    const double mid = std::sqrt(lo.rate * hi);
    const goodput_eval e = run(mid);
    if (e.meets)
      lo = e;
    else
      hi = mid;
  }
  out.best = lo;
  return out;
}

}  // namespace ridgeline::planner
