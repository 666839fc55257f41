// The `ridgeline load` parts of a ridgeline.kv/v1 document (docs/load.md, "Results"), typed: the
// top-level `load` object (its SLO spec parsed into terms, and the --find-max outcome) and, per
// row, the level and its SLO verdict from `measured.http`. The one reader of these fields: the
// report reads them here, and tools/load's reader (tools/load/src/results.cpp, for `load merge`)
// takes them from here and adds what only load needs (the raw samples, the server's series, the
// level's clock). The SLO spec grammar of `ridgeline load --slo` and `ridgeline plan --slo` lives
// here too (parse_load_slo), and the verdict of a level's requests under a spec (judge_load_level).
// The kv/v1 rest is parse_serving_results'.
//   if (schema::is_load_result(doc)) {
//     const auto l = schema::parse_load_results(doc, path);  // l.levels[i] is rows[i]
//     if (l.find_max) ... l.find_max->max_rate_per_second ...
//   }
//   const auto slo = schema::parse_load_slo("ttft_p99=2s,tpot_p99=50ms,goodput=0.9", "--slo");
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ridgeline::schema {

struct serving_requests;  // schemas/serving_results.hpp

// A latency percentile at or above this is load's stand-in for "failed requests reach the
// percentile" (a failed request counts as an infinite latency; load writes 1e300).
inline constexpr double k_load_failed_latency_seconds = 1e299;

// One term of an SLO spec ("ttft_p99=2s", "goodput=0.9"), as `ridgeline load --slo` takes it:
// METRIC_pQ=DURATION holds when the Q-th percentile of the metric over a level's requests is at or
// below DURATION (p99 = 0.99, p999 = 0.999, p99.9 = 0.999); goodput=F when at least the fraction F
// of the level's requests finished within the spec's per-request TTFT and TPOT limits.
struct load_slo_term {
  std::string text;     // as written
  std::string metric;   // ttft, tpot, itl, e2e, or goodput
  double quantile = 0;  // 0.99 for p99 (latency terms; 0 for goodput)
  double limit = 0;     // seconds (latency terms) or the least good fraction (goodput)
};

// An SLO spec: its percentile and goodput terms in order, and goodput's per-request limits (the
// first ttft and tpot terms, or plain ttft=2s / tpot=50ms, which are not terms).
struct load_slo_spec {
  std::string text;
  std::vector<load_slo_term> terms;
  std::vector<load_slo_term> limits;  // the plain limits as written (quantile 0), in order
  std::optional<double> ttft_limit_seconds, tpot_limit_seconds, goodput_fraction;
};
// Parses an SLO spec: comma-separated terms and plain limits, in any order; goodput and each plain
// limit at most once; a goodput term needs a ttft or tpot limit to judge requests by. Throws
// std::invalid_argument naming the bad term, with `label` naming the spec ("SLO term
// 'ttft_p99=soon': ..."; "--slo term ..." for the flag).
load_slo_spec parse_load_slo(std::string_view text, std::string_view label = "SLO");

// One term's verdict at one level: `measured` is the percentile in seconds (at or above
// k_load_failed_latency_seconds: failed requests reach it) or, for goodput, the good fraction.
struct load_term_verdict {
  load_slo_term term;
  double measured = 0;
  bool met = false;
  bool failed_requests() const {
    return term.metric != "goodput" && measured >= k_load_failed_latency_seconds;
  }
};

struct load_level_slo {
  std::string spec;
  bool met = false;
  std::vector<load_term_verdict> terms;
  std::int64_t good_requests = 0;
  std::optional<double> goodput_requests_per_second, goodput_fraction;
};

// Judging a level's requests by a spec (load's rule, docs/load.md "SLOs and --find-max"; load
// writes these verdicts and the report judges a run that ran without the spec by the same code).
// The requests are their kv/v1 columns (outcome, ttft/tpot/e2e_seconds, -1 where undefined) and,
// for ITL terms, the finished requests' token gaps. A request that did not finish counts as an
// infinite latency (a percentile it reaches is at or above k_load_failed_latency_seconds); TPOT
// skips finished requests with one token; goodput is the share of all the requests that finished
// within the spec's per-request TTFT and TPOT limits.
//   auto v = schema::judge_load_term(spec.terms[0], spec, row.measured->requests, nullptr);
//   load_level_slo l = schema::judge_load_level(spec, columns, itl_gaps, duration_seconds);
// One term; nullopt for an ITL term when `itl_seconds` is null (the columns hold no gaps).
std::optional<load_term_verdict> judge_load_term(const load_slo_term& term,
                                                 const load_slo_spec& spec,
                                                 const serving_requests& requests,
                                                 const std::vector<double>* itl_seconds);
// Every term of the spec in order, and the good requests (per second over `duration_seconds`, and
// as a fraction) when the spec has a TTFT or TPOT limit.
load_level_slo judge_load_level(const load_slo_spec& spec, const serving_requests& requests,
                                const std::vector<double>& itl_seconds, double duration_seconds);

// One load level (one row): its shape, whether it stopped early, its throughput and SLO verdict.
struct load_level {
  std::string label, shape;  // "rate 4/s", "rate"; "trace x1", "trace"; "concurrency 16", ...
  std::optional<double> rate_per_second;
  std::optional<std::int64_t> concurrency;
  bool saturated = false;
  std::string stopped;  // why it stopped early; "" when it ran to the end
  double duration_seconds = 0;
  std::int64_t sent = 0, failed = 0;
  double requests_per_second = 0, output_tokens_per_second = 0;
  std::optional<load_level_slo> slo;  // null without --slo
};

// --find-max's answer: the highest rate that met the SLO and the lowest that did not.
struct load_find_max {
  std::optional<double> max_rate_per_second, lowest_failing_rate;
  double precision = 0;
  std::string note;
};

struct load_results {
  std::string url, endpoint, model, prompts;
  bool stream = true;
  std::optional<load_slo_spec> slo;
  std::int64_t workers = 0;
  std::optional<load_find_max> find_max;
  std::vector<load_level> levels;  // one per row, in row order
};

// A ridgeline.kv/v1 document written by `ridgeline load`: it has a top-level "load" member.
bool is_load_result(const nlohmann::json& doc);
// The load parts of such a document; a schema_error naming the field when one is missing or
// mistyped, when config.executor is not "http", or when an SLO spec or term does not parse.
load_results parse_load_results(const nlohmann::json& doc, std::string_view source);

}  // namespace ridgeline::schema
