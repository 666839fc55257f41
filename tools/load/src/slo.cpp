// SLO evaluation (slo.hpp); the spec's grammar is core's (schema::parse_load_slo).
#include "ridgeline/load/slo.hpp"

#include <cmath>
#include <stdexcept>

#include "ridgeline/core/statistics.hpp"
#include "ridgeline/core/text.hpp"

namespace ridgeline::load {
namespace {

// A failed request's latency in a percentile: larger than any real one, finite so interpolation
// next to it stays a number (numpy would give inf; both miss any limit). Readers take anything
// at or above schema::k_load_failed_latency_seconds for it.
constexpr double k_inf = 1e300;
static_assert(k_inf >= schema::k_load_failed_latency_seconds);
bool is_failure(double v) {
  return v >= schema::k_load_failed_latency_seconds;
}

}  // namespace

slo_spec parse_slo(const std::string& text) {
  try {
    return schema::parse_load_slo(text, "--slo");
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string(e.what()) +
                                " (e.g. ttft_p99=2s,tpot_p99=50ms,e2e_p90=10s,goodput=0.9)");
  }
}

slo_result evaluate(const slo_spec& slo, const std::vector<request_record>& records, itl_rule rule,
                    double duration_seconds) {
  slo_result out;
  // Requests the level sent or meant to send; the ones never sent because it stopped early count
  // as failures too (a saturated level does not pass by dropping its tail).
  for (const auto& t : slo.terms) {
    if (t.metric == "goodput") continue;  // judged below, with the per-request limits
    std::vector<double> v;
    for (const auto& r : records) {
      if (t.metric == "itl") {
        if (r.finished()) {
          append_itl(r, rule, v);
        } else {
          v.push_back(k_inf);
        }
        continue;
      }
      if (!r.finished()) {
        v.push_back(k_inf);
        continue;
      }
      const double x = t.metric == "ttft" ? ttft_of(r) : t.metric == "e2e" ? e2e_of(r) : tpot_of(r);
      if (t.metric == "tpot" && x < 0) continue;  // one token: no TPOT
      v.push_back(x < 0 ? k_inf : x);
    }
    slo_result::term_value tv;
    tv.text = t.text;
    tv.measured = v.empty() ? 0.0 : bench::quantile(v, t.quantile);
    tv.met = tv.measured <= t.limit;
    out.met = out.met && tv.met;
    out.lines.push_back(
        t.text + ": " +
        (is_failure(tv.measured) ? std::string("failed requests") : format_seconds(tv.measured)) +
        (tv.met ? " <= " : " > ") + format_seconds(t.limit) + (tv.met ? ", met" : ", missed"));
    out.values.push_back(tv);
  }
  if (slo.ttft_limit_seconds || slo.tpot_limit_seconds) {
    std::int64_t good = 0;
    for (const auto& r : records) {
      if (!r.finished()) continue;
      const double ttft = ttft_of(r);
      const double tpot = tpot_of(r);
      if (slo.ttft_limit_seconds && !(ttft >= 0 && ttft <= *slo.ttft_limit_seconds)) continue;
      if (slo.tpot_limit_seconds && tpot >= 0 && tpot > *slo.tpot_limit_seconds) continue;
      ++good;
    }
    out.good = good;
    out.goodput_requests_per_second =
        duration_seconds > 0 ? static_cast<double>(good) / duration_seconds : 0.0;
    out.goodput_fraction =
        records.empty() ? 0.0 : static_cast<double>(good) / static_cast<double>(records.size());
    if (slo.goodput_fraction) {
      const bool met = *out.goodput_fraction >= *slo.goodput_fraction;
      out.met = out.met && met;
      out.lines.push_back("goodput " + format_percent(*out.goodput_fraction) + " of requests " +
                          (met ? ">= " : "< ") + format_percent(*slo.goodput_fraction) +
                          (met ? ", met" : ", missed"));
      out.values.push_back(
          {"goodput=" + format("%g", *slo.goodput_fraction), *out.goodput_fraction, met});
    }
  }
  return out;
}

}  // namespace ridgeline::load
