// SLO parsing and evaluation (slo.hpp).
#include "ridgeline/load/slo.hpp"

#include <cmath>
#include <stdexcept>

#include "ridgeline/core/statistics.hpp"
#include "ridgeline/core/text.hpp"

namespace ridgeline::load {
namespace {

// A failed request's latency in a percentile: larger than any real one, finite so interpolation
// next to it stays a number (numpy would give inf; both miss any limit).
constexpr double k_inf = 1e300;
bool is_failure(double v) {
  return v >= 1e299;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

}  // namespace

slo_spec parse_slo(const std::string& text) {
  slo_spec s;
  s.text = text;
  std::size_t pos = 0;
  auto bad = [](const std::string& item, const std::string& why) {
    return std::invalid_argument("--slo term '" + printable(item, 60) + "': " + why +
                                 " (e.g. ttft_p99=2s,tpot_p99=50ms,e2e_p90=10s,goodput=0.9)");
  };
  while (pos <= text.size()) {
    const auto comma = text.find(',', pos);
    const std::string item =
        trim(text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
    pos = comma == std::string::npos ? text.size() + 1 : comma + 1;
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string::npos) throw bad(item, "expected KEY=VALUE");
    const std::string key = trim(item.substr(0, eq));
    const std::string value = trim(item.substr(eq + 1));
    if (key == "goodput") {
      double f = 0;
      try {
        std::size_t used = 0;
        f = std::stod(value, &used);
        if (used != value.size()) throw std::invalid_argument("");
      } catch (const std::exception&) {
        throw bad(item, "goodput takes a fraction in (0, 1]");
      }
      if (!(f > 0 && f <= 1)) throw bad(item, "goodput takes a fraction in (0, 1]");
      s.goodput_fraction = f;
      continue;
    }
    double limit = 0;
    try {
      limit = parse_seconds(value);
    } catch (const std::invalid_argument&) {
      throw bad(item, "'" + value + "' is not a duration (2s, 50ms, 800us)");
    }
    const auto us = key.find("_p");
    const std::string metric = us == std::string::npos ? key : key.substr(0, us);
    if (metric != "ttft" && metric != "tpot" && metric != "itl" && metric != "e2e") {
      throw bad(item, "unknown metric '" + metric + "' (ttft, tpot, itl, e2e, goodput)");
    }
    if (us == std::string::npos) {
      if (metric == "ttft") {
        s.ttft_limit = limit;
      } else if (metric == "tpot") {
        s.tpot_limit = limit;
      } else {
        throw bad(item, "give " + metric + " a percentile (" + metric + "_p99=...)");
      }
      continue;
    }
    const std::string q = key.substr(us + 2);
    double pct = 0;
    try {
      std::size_t used = 0;
      pct = std::stod(q, &used);
      if (used != q.size()) throw std::invalid_argument("");
    } catch (const std::exception&) {
      throw bad(item, "bad percentile '" + q + "'");
    }
    // p999 means 99.9, p9999 99.99 (the usual spelling); p99.9 works too.
    if (q.find('.') == std::string::npos && q.size() > 2 && q.rfind("99", 0) == 0) {
      pct = std::stod("99." + q.substr(2));
    }
    if (!(pct > 0 && pct <= 100)) throw bad(item, "percentile out of (0, 100]");
    s.terms.push_back({metric, pct / 100.0, limit, item});
    if (metric == "ttft" && !s.ttft_limit) s.ttft_limit = limit;
    if (metric == "tpot" && !s.tpot_limit) s.tpot_limit = limit;
  }
  if (s.empty()) throw std::invalid_argument("--slo '" + printable(text, 60) + "' names no term");
  if (s.goodput_fraction && !s.ttft_limit && !s.tpot_limit) {
    throw std::invalid_argument("--slo: goodput needs a ttft or tpot limit to judge requests by");
  }
  return s;
}

slo_result evaluate(const slo_spec& slo, const std::vector<request_record>& records, itl_rule rule,
                    double duration_seconds) {
  slo_result out;
  // Requests the level sent or meant to send; the ones never sent because it stopped early count
  // as failures too (a saturated level does not pass by dropping its tail).
  for (const auto& t : slo.terms) {
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
    tv.met = tv.measured <= t.limit_seconds;
    out.met = out.met && tv.met;
    out.lines.push_back(
        t.text + ": " +
        (is_failure(tv.measured) ? std::string("failed requests") : format_seconds(tv.measured)) +
        (tv.met ? " <= " : " > ") + format_seconds(t.limit_seconds) +
        (tv.met ? ", met" : ", missed"));
    out.values.push_back(tv);
  }
  if (slo.ttft_limit || slo.tpot_limit) {
    std::int64_t good = 0;
    for (const auto& r : records) {
      if (!r.finished()) continue;
      const double ttft = ttft_of(r);
      const double tpot = tpot_of(r);
      if (slo.ttft_limit && !(ttft >= 0 && ttft <= *slo.ttft_limit)) continue;
      if (slo.tpot_limit && tpot >= 0 && tpot > *slo.tpot_limit) continue;
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
