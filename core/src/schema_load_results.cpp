// Reader of the `ridgeline load` parts of ridgeline.kv/v1 (schemas/load_results.hpp): the
// top-level `load` object and each row's `measured.http` level and SLO verdict, and the SLO spec
// grammar (`load --slo`, `plan --slo` and the files' specs and verdict terms), and the judging of
// a level's requests by a spec (load's verdicts, the report's own). The writer is
// tools/load/src/results.cpp (document_of); tools/load's reader builds on parse_load_results.
#include "ridgeline/core/schemas/load_results.hpp"

#include <optional>
#include <stdexcept>

#include "ridgeline/core/schema.hpp"
#include "ridgeline/core/schemas/serving_results.hpp"
#include "ridgeline/core/statistics.hpp"
#include "ridgeline/core/text.hpp"

namespace ridgeline::schema {
namespace {

using nlohmann::json;

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  return std::string(s.substr(b, s.find_last_not_of(" \t") - b + 1));
}

// The whole of `s` as a number, or nullopt.
std::optional<double> number_of(const std::string& s) {
  try {
    std::size_t used = 0;
    const double v = std::stod(s, &used);
    if (used == s.size()) return v;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

// One item of a spec: a term, or (limit_only) a plain ttft=2s / tpot=50ms, a per-request limit of
// goodput without a percentile term.
struct slo_item {
  load_slo_term term;
  bool limit_only = false;
};

slo_item item_of(const std::string& item, std::string_view label) {
  auto bad = [&](const std::string& why) {
    return std::invalid_argument(std::string(label) + " term '" + printable(item, 60) +
                                 "': " + why);
  };
  const auto eq = item.find('=');
  if (eq == std::string::npos) throw bad("expected KEY=VALUE");
  const std::string key = trim(std::string_view(item).substr(0, eq));
  const std::string value = trim(std::string_view(item).substr(eq + 1));
  if (key == "goodput") {
    const auto f = number_of(value);
    if (!f || !(*f > 0 && *f <= 1)) throw bad("goodput takes a fraction in (0, 1]");
    return {{item, "goodput", 0, *f}};
  }
  double limit = 0;
  try {
    limit = parse_seconds(value);
  } catch (const std::invalid_argument&) {
    throw bad("'" + printable(value, 20) + "' is not a duration (2s, 50ms, 800us)");
  }
  const auto us = key.find("_p");
  const std::string metric = us == std::string::npos ? key : key.substr(0, us);
  if (metric != "ttft" && metric != "tpot" && metric != "itl" && metric != "e2e") {
    throw bad("unknown metric '" + printable(metric, 20) + "' (ttft, tpot, itl, e2e, goodput)");
  }
  if (us == std::string::npos) {
    if (metric != "ttft" && metric != "tpot") {
      throw bad("give " + metric + " a percentile (" + metric + "_p99=...)");
    }
    return {{item, metric, 0, limit}, true};
  }
  const std::string q = key.substr(us + 2);
  auto pct = number_of(q);
  if (!pct) throw bad("bad percentile '" + printable(q, 20) + "'");
  // p999 means 99.9, p9999 99.99 (the usual spelling); p99.9 works too.
  if (q.find('.') == std::string::npos && q.size() > 2 && q.rfind("99", 0) == 0) {
    pct = number_of("99." + q.substr(2));
  }
  if (!pct || !(*pct > 0 && *pct <= 100)) throw bad("percentile out of (0, 100]");
  return {{item, metric, *pct / 100.0, limit}};
}

// A verdict's term: one item of a spec that is a term (goodput=0.9 alone is one, though no spec
// could hold it without a ttft or tpot limit).
load_slo_term term_of(const node& n, std::string_view key) {
  const std::string text = trim(n.string(key));
  try {
    const slo_item it = item_of(text, "SLO");
    if (it.limit_only) throw std::invalid_argument("a per-request limit, not an SLO term");
    return it.term;
  } catch (const std::invalid_argument& e) {
    n.fail_member(key, e.what());
  }
}

// A request that did not finish, in a percentile: larger than any real latency, finite so that
// interpolation next to it stays a number (numpy would give inf; both miss any limit).
constexpr double k_failed_latency = 1e300;
static_assert(k_failed_latency >= k_load_failed_latency_seconds);

// Requests that finished within the spec's per-request limits (a one-token request has no TPOT to
// break its limit).
std::int64_t good_requests(const load_slo_spec& spec, const serving_requests& rq) {
  std::int64_t good = 0;
  for (std::size_t i = 0; i < rq.outcome.size(); ++i) {
    if (rq.outcome[i] != "finished") continue;
    const double ttft = rq.ttft_seconds[i], tpot = rq.tpot_seconds[i];
    if (spec.ttft_limit_seconds && !(ttft >= 0 && ttft <= *spec.ttft_limit_seconds)) continue;
    if (spec.tpot_limit_seconds && tpot >= 0 && tpot > *spec.tpot_limit_seconds) continue;
    ++good;
  }
  return good;
}

load_level parse_level(const node& h) {
  load_level l;
  l.label = h.string("label");
  l.shape = h.string("shape");
  l.rate_per_second = h.nullable_number("rate_per_second");
  l.concurrency = h.nullable_integer("concurrency");
  l.saturated = h.boolean("saturated");
  l.stopped = h.string("stopped");
  l.duration_seconds = h.number("duration_seconds");
  l.sent = h.integer("sent");
  l.failed = h.integer("failed");
  l.requests_per_second = h.number("requests_per_second");
  l.output_tokens_per_second = h.number("output_tokens_per_second");
  if (const auto s = h.nullable_object("slo")) {
    load_level_slo o;
    o.spec = s->string("spec");
    o.met = s->boolean("met");
    for (const auto& t : s->array("terms").elements()) {
      load_term_verdict v;
      v.term = term_of(t, "term");
      v.measured = t.number("measured");
      v.met = t.boolean("met");
      o.terms.push_back(std::move(v));
    }
    o.good_requests = s->integer("good_requests");
    o.goodput_requests_per_second = s->nullable_number("goodput_requests_per_second");
    o.goodput_fraction = s->nullable_number("goodput_fraction");
    l.slo = std::move(o);
  }
  return l;
}

}  // namespace

load_slo_spec parse_load_slo(std::string_view text, std::string_view label) {
  load_slo_spec s;
  s.text = std::string(text);
  std::optional<load_slo_term> goodput;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const auto comma = text.find(',', pos);
    const std::string item = trim(
        text.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos));
    pos = comma == std::string_view::npos ? text.size() + 1 : comma + 1;
    if (item.empty()) continue;
    const auto [t, limit_only] = item_of(item, label);
    auto twice = [&](const std::string& what) {
      return std::invalid_argument(std::string(label) + " term '" + printable(item, 60) +
                                   "': " + what + " is given twice");
    };
    if (t.metric == "goodput") {
      if (goodput) throw twice("goodput");
      s.goodput_fraction = t.limit;
      goodput = t;
      continue;
    }
    // A plain limit sets goodput's per-request limit; a percentile term does when none is set.
    auto& per_request = t.metric == "ttft" ? s.ttft_limit_seconds : s.tpot_limit_seconds;
    if (limit_only) {
      for (const auto& l : s.limits) {
        if (l.metric == t.metric) throw twice("the plain " + t.metric + " limit");
      }
      per_request = t.limit;
      s.limits.push_back(t);
      continue;
    }
    s.terms.push_back(t);
    if ((t.metric == "ttft" || t.metric == "tpot") && !per_request) per_request = t.limit;
  }
  // Goodput is judged after the percentile terms (load's verdicts list it last).
  if (goodput) s.terms.push_back(*goodput);
  if (s.terms.empty() && !s.ttft_limit_seconds && !s.tpot_limit_seconds) {
    throw std::invalid_argument(std::string(label) + " '" + printable(text, 60) +
                                "' names no term");
  }
  if (goodput && !s.ttft_limit_seconds && !s.tpot_limit_seconds) {
    throw std::invalid_argument(std::string(label) +
                                ": goodput needs a ttft or tpot limit to judge requests by");
  }
  return s;
}

std::optional<load_term_verdict> judge_load_term(const load_slo_term& term,
                                                 const load_slo_spec& spec,
                                                 const serving_requests& requests,
                                                 const std::vector<double>* itl_seconds) {
  load_term_verdict out;
  out.term = term;
  const std::size_t n = requests.outcome.size();
  auto finished = [&](std::size_t i) { return requests.outcome[i] == "finished"; };
  if (term.metric == "goodput") {
    out.measured =
        n == 0 ? 0.0 : static_cast<double>(good_requests(spec, requests)) / static_cast<double>(n);
    out.met = out.measured >= term.limit;
    return out;
  }
  std::vector<double> v;
  if (term.metric == "itl") {
    if (itl_seconds == nullptr) return std::nullopt;
    v = *itl_seconds;
    for (std::size_t i = 0; i < n; ++i) {
      if (!finished(i)) v.push_back(k_failed_latency);
    }
  } else {
    const std::vector<double>& column = term.metric == "ttft"   ? requests.ttft_seconds
                                        : term.metric == "tpot" ? requests.tpot_seconds
                                                                : requests.e2e_seconds;
    for (std::size_t i = 0; i < n; ++i) {
      if (!finished(i)) {
        v.push_back(k_failed_latency);
        continue;
      }
      const double x = column[i];
      if (term.metric == "tpot" && x < 0) continue;  // one token: no TPOT
      v.push_back(x < 0 ? k_failed_latency : x);
    }
  }
  out.measured = v.empty() ? 0.0 : bench::quantile(v, term.quantile);
  out.met = out.measured <= term.limit;
  return out;
}

load_level_slo judge_load_level(const load_slo_spec& spec, const serving_requests& requests,
                                const std::vector<double>& itl_seconds, double duration_seconds) {
  load_level_slo out;
  out.spec = spec.text;
  out.met = true;
  for (const auto& t : spec.terms) {
    out.terms.push_back(*judge_load_term(t, spec, requests, &itl_seconds));
    out.met = out.met && out.terms.back().met;
  }
  if (spec.ttft_limit_seconds || spec.tpot_limit_seconds) {
    const std::size_t n = requests.outcome.size();
    out.good_requests = good_requests(spec, requests);
    const auto good = static_cast<double>(out.good_requests);
    out.goodput_requests_per_second = duration_seconds > 0 ? good / duration_seconds : 0.0;
    out.goodput_fraction = n == 0 ? 0.0 : good / static_cast<double>(n);
  }
  return out;
}

bool is_load_result(const json& doc) {
  return doc.is_object() && doc.contains("load") && schema_of(doc) == k_serving_results_schema;
}

load_results parse_load_results(const json& doc, std::string_view source) {
  const document_context ctx{std::string(source), k_serving_results_schema};
  const node top = open_document(doc, ctx);
  const node config = top.object("config");
  if (config.string("executor") != "http") {
    config.fail_member("executor", "is not \"http\": not a `ridgeline load` result");
  }
  load_results out;
  const node ld = top.object("load");
  out.url = ld.string("url");
  out.endpoint = ld.string("endpoint");
  out.model = ld.string("model");
  out.stream = ld.boolean("stream");
  out.prompts = ld.string("prompts");
  if (const auto slo = ld.nullable_string("slo")) {
    try {
      out.slo = parse_load_slo(*slo);
    } catch (const std::invalid_argument& e) {
      ld.fail_member("slo", e.what());
    }
  }
  out.workers = ld.integer("workers");
  if (const auto fm = ld.nullable_object("find_max")) {
    load_find_max f;
    f.max_rate_per_second = fm->nullable_number("max_rate_per_second");
    f.lowest_failing_rate = fm->nullable_number("lowest_failing_rate");
    f.precision = fm->number("precision");
    f.note = fm->string("note");
    out.find_max = f;
  }
  for (const auto& r : top.array("rows").elements()) {
    out.levels.push_back(parse_level(r.object("measured").object("http")));
  }
  return out;
}

}  // namespace ridgeline::schema
