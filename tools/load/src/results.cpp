// The load results document (results.hpp): the kv/v1 row of each level through core's writer,
// the http extension's writer and the reader of its load-only fields (core's readers take the
// rest: parse_serving_results, parse_load_results), and the summary every row is computed from.
#include "ridgeline/load/results.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "ridgeline/core/files.hpp"
#include "ridgeline/core/schema.hpp"
#include "ridgeline/core/schemas/load_results.hpp"
#include "ridgeline/core/schemas/serving_results.hpp"
#include "ridgeline/core/statistics.hpp"
#include "ridgeline/core/text.hpp"

namespace ridgeline::load {
namespace {

using nlohmann::json;

std::map<std::string, std::string> definitions(itl_rule rule) {
  std::map<std::string, std::string> d = {
      {"arrival", "arrival = when the request's first byte was written to the socket"},
      {"ttft_seconds",
       "TTFT = first content chunk's arrival (read stamp, before parsing) - arrival"},
      {"tpot_seconds", "TPOT = (E2E - TTFT) / (output_tokens - 1), requests with > 1 output token"},
      {"e2e_seconds", "E2E = last content chunk's arrival - arrival"},
      {"submit_lag_seconds", "lateness = arrival (write) - scheduled time"},
      {"output_tokens",
       "output_tokens = the server's usage.completion_tokens when sent, else counted"},
      {"output_tokens_per_second",
       "output tokens of finished requests / duration (first write to last response end)"},
      {"requests_per_second", "finished requests / duration"},
      {"goodput", "finished requests per second with TTFT <= SLO ttft AND TPOT <= SLO tpot"},
      {"token_hit_rate", "usage.prompt_tokens_details.cached_tokens / prompt tokens (finished)"},
      {"mean_running", "mean requests in flight at the client (written, response not ended)"},
  };
  std::string itl = "ITL = gap between consecutive output tokens of one request, over all gaps; ";
  switch (rule) {
    case itl_rule::first:
      itl += "rule first: a chunk of k tokens gives its gap, then k - 1 zero gaps";
      break;
    case itl_rule::split:
      itl += "rule split: a chunk of k tokens gives k gaps of its gap / k";
      break;
    case itl_rule::chunk:
      itl += "rule chunk: one gap per chunk, whatever it holds";
      break;
  }
  d["itl_seconds"] = itl;
  return d;
}

// Requests in flight over the level (written, not ended): time-weighted mean over the duration
// and the peak, from the records alone.
void in_flight_of(const std::vector<request_record>& rs, double& mean, std::int64_t& peak) {
  std::vector<std::pair<double, int>> ev;
  for (const auto& r : rs) {
    if (r.sent < 0) continue;
    ev.emplace_back(r.sent, 1);
    ev.emplace_back(std::max(r.end, r.sent), -1);
  }
  mean = 0;
  peak = 0;
  if (ev.empty()) return;
  std::sort(ev.begin(), ev.end());
  std::int64_t n = 0;
  double area = 0;
  for (std::size_t i = 0; i < ev.size(); ++i) {
    if (i > 0) area += static_cast<double>(n) * (ev[i].first - ev[i - 1].first);
    n += ev[i].second;
    peak = std::max(peak, n);
  }
  const double span = ev.back().first - ev.front().first;
  mean = span > 0 ? area / span : 0;
}

double duration_of(const std::vector<request_record>& rs) {
  double first = std::numeric_limits<double>::infinity(), last = -1;
  for (const auto& r : rs) {
    if (r.sent < 0) continue;
    first = std::min(first, r.sent);
    last = std::max(last, r.end);
  }
  return last > first ? last - first : 0;
}

// --- the http extension: writer ----------------------------------------------------------------
json samples_json(const std::vector<request_record>& rs) {
  json id = json::array(), session = json::array(), turn = json::array(), scheduled = json::array(),
       sent = json::array(), response_start = json::array(), end = json::array(),
       status = json::array(), error = json::array(), detail = json::array(),
       attempts = json::array(), req_prompt = json::array(), exp_prompt = json::array(),
       req_output = json::array(), usage_prompt = json::array(), usage_output = json::array(),
       usage_cached = json::array(), offsets = json::array({0}), chunk_seconds = json::array(),
       chunk_tokens = json::array();
  std::int64_t offset = 0;
  for (const auto& r : rs) {
    id.push_back(r.id);
    session.push_back(r.session);
    turn.push_back(r.turn);
    scheduled.push_back(r.scheduled);
    sent.push_back(r.sent);
    response_start.push_back(r.response_start);
    end.push_back(r.end);
    status.push_back(r.status);
    error.push_back(name(r.error));
    detail.push_back(r.error_detail);
    attempts.push_back(r.attempts);
    req_prompt.push_back(r.requested_prompt_tokens);
    exp_prompt.push_back(r.expected_prompt_tokens);
    req_output.push_back(r.requested_output_tokens);
    usage_prompt.push_back(r.usage_prompt_tokens);
    usage_output.push_back(r.usage_output_tokens);
    usage_cached.push_back(r.usage_cached_tokens);
    for (std::size_t i = 0; i < r.chunk_seconds.size(); ++i) {
      chunk_seconds.push_back(r.chunk_seconds[i]);
      chunk_tokens.push_back(r.chunk_tokens[i]);
    }
    offset += static_cast<std::int64_t>(r.chunk_seconds.size());
    offsets.push_back(offset);
  }
  return {{"id", id},
          {"session", session},
          {"turn", turn},
          {"scheduled_seconds", scheduled},
          {"sent_seconds", sent},
          {"response_start_seconds", response_start},
          {"end_seconds", end},
          {"status", status},
          {"error", error},
          {"error_detail", detail},
          {"attempts", attempts},
          {"requested_prompt_tokens", req_prompt},
          {"expected_prompt_tokens", exp_prompt},
          {"requested_output_tokens", req_output},
          {"usage_prompt_tokens", usage_prompt},
          {"usage_output_tokens", usage_output},
          {"usage_cached_tokens", usage_cached},
          {"chunk_offsets", offsets},
          {"chunk_seconds", chunk_seconds},
          {"chunk_tokens", chunk_tokens}};
}

json server_json(const server_series& s) {
  json values = json::object();
  for (const auto& [name, col] : s.values) {
    json c = json::array();
    for (const auto& v : col) c.push_back(v ? json(*v) : json(nullptr));
    values[name] = c;
  }
  return {{"url", s.url},
          {"interval_seconds", s.interval_seconds},
          {"t", s.t},
          {"series", values},
          {"failures", s.failures},
          {"last_error", s.last_error}};
}

json http_json(const load_run& run, const level_data& l, const level_summary& s) {
  const auto& m = s.metrics;
  const auto& c = m.checks;
  json slo = nullptr;
  if (s.slo) {
    json terms = json::array();
    for (const auto& t : s.slo->terms) {
      terms.push_back({{"term", t.term.text}, {"measured", t.measured}, {"met", t.met}});
    }
    slo = {{"spec", run.slo->text},
           {"met", s.slo->met},
           {"terms", terms},
           {"good_requests", s.slo->good_requests},
           {"goodput_requests_per_second", s.slo->goodput_requests_per_second
                                               ? json(*s.slo->goodput_requests_per_second)
                                               : json(nullptr)},
           {"goodput_fraction",
            s.slo->goodput_fraction ? json(*s.slo->goodput_fraction) : json(nullptr)},
           {"lines", s.slo->lines}};
  }
  return {{"label", l.label},
          {"shape", l.shape},
          {"rate_per_second", l.rate_per_second ? json(*l.rate_per_second) : json(nullptr)},
          {"concurrency", l.concurrency ? json(*l.concurrency) : json(nullptr)},
          {"rate_scale", l.rate_scale},
          {"itl_rule", name(l.rule)},
          {"chunk_token_source", l.chunk_token_source},
          {"epoch_steady_seconds", l.epoch_steady_seconds},
          {"epoch_unix_seconds", l.epoch_unix_seconds},
          {"saturated", l.saturated},
          {"stopped", l.stopped},
          {"merged_from", l.merged_from},
          {"duration_seconds", m.duration_seconds},
          {"sent", m.sent},
          {"failed", m.failed},
          {"requests_per_second", m.requests_per_second},
          {"output_tokens_per_second", m.output_tokens_per_second},
          {"prompt_tokens_per_second", m.prompt_tokens_per_second},
          {"errors", m.errors},
          {"http_statuses", m.statuses},
          {"token_checks",
           {{"usage_reported", c.usage_reported},
            {"prompt_usage_mismatches", c.prompt_usage_mismatches},
            {"prompt_expected_mismatches", c.prompt_expected_mismatches},
            {"output_count_mismatches", c.output_count_mismatches},
            {"short_outputs", c.short_outputs},
            {"examples", c.examples}}},
          {"slo", slo},
          {"server_metrics", server_json(l.server)},
          {"samples", samples_json(l.records)}};
}

// --- the kv/v1 row -----------------------------------------------------------------------------
schema::serving_row row_of(const load_run& run, const level_data& l, const level_summary& s) {
  const auto& m = s.metrics;
  schema::serving_row row;
  row.capacity = l.label;
  row.requests = m.requests;
  row.finished = m.finished;
  row.rejected = m.failed + m.cancelled;
  for (const auto& [k, n] : m.errors) row.rejected_by_reason[k] = n;
  row.lookup_tokens = m.prompt_tokens;
  row.hit_tokens = m.cached_tokens;
  row.hit_tokens_tier1 = m.cached_tokens;
  row.token_hit_rate = m.prompt_tokens > 0 ? static_cast<double>(m.cached_tokens) /
                                                 static_cast<double>(m.prompt_tokens)
                                           : 0;
  row.decode_tokens = m.output_tokens;
  row.simulated_seconds = m.duration_seconds;
  row.output_tokens_per_second = m.output_tokens_per_second;
  row.peak_running = s.peak_in_flight;
  row.ttft_seconds = schema::distribution_of(m.ttft);
  row.tpot_seconds = schema::distribution_of(m.tpot);
  row.itl_seconds = schema::distribution_of(m.itl);
  row.e2e_seconds = schema::distribution_of(m.e2e);
  schema::serving_measured me;
  me.executor = "http";
  me.device = run.url;
  me.wall_seconds = m.duration_seconds;
  me.cancelled = m.cancelled;
  me.submit_lag_seconds = schema::distribution_of(m.lateness);
  me.mean_running = s.mean_in_flight;
  auto& rq = me.requests;
  for (const auto& r : l.records) {
    rq.id.push_back(static_cast<std::int64_t>(r.id));
    rq.outcome.emplace_back(r.finished() ? "finished" : name(r.error));
    rq.prompt_tokens.push_back(r.usage_prompt_tokens >= 0 ? r.usage_prompt_tokens
                                                          : r.requested_prompt_tokens);
    rq.output_tokens.push_back(r.finished() ? r.output_tokens() : 0);
    rq.cached_tokens.push_back(std::max<std::int64_t>(r.usage_cached_tokens, 0));
    rq.preemptions.push_back(0);
    rq.arrival_seconds.push_back(r.sent >= 0 ? r.sent : r.scheduled);
    rq.ttft_seconds.push_back(ttft_of(r));
    rq.tpot_seconds.push_back(tpot_of(r));
    rq.e2e_seconds.push_back(e2e_of(r));
    rq.submit_lag_seconds.push_back(r.sent >= 0 ? r.sent - r.scheduled : -1.0);
  }
  row.measured = std::move(me);
  return row;
}

}  // namespace

level_summary summarize(const level_data& l, const std::optional<slo_spec>& slo) {
  level_summary s;
  s.metrics = measure(l.records, l.rule, duration_of(l.records));
  if (slo) s.slo = evaluate(*slo, l.records, l.rule, s.metrics.duration_seconds);
  in_flight_of(l.records, s.mean_in_flight, s.peak_in_flight);
  return s;
}

json document_of(const load_run& run) {
  schema::serving_results doc;
  doc.env = schema::environment_from_block(run.environment);
  auto& c = doc.config;
  c.workload = run.workload;
  c.requests = run.workload_requests;
  c.prompt_tokens = run.workload_prompt_tokens;
  c.output_tokens = run.workload_output_tokens;
  c.model = run.model;
  c.gpu = "";  // the server's; ridgeline cannot see it from here
  c.gpu_source = "unknown (measured over HTTP)";
  c.step_time_model = "";
  c.mooncake_block_tokens = run.mooncake_block_tokens;
  c.window = run.window;
  const itl_rule rule = run.levels.empty() ? itl_rule::first : run.levels.front().rule;
  c.definitions = definitions(rule);
  c.executor = "http";
  std::vector<level_summary> summaries;
  for (const auto& l : run.levels) {
    summaries.push_back(summarize(l, run.slo));
    doc.rows.push_back(row_of(run, l, summaries.back()));
  }
  json j = schema::to_json(doc);
  for (std::size_t i = 0; i < run.levels.size(); ++i) {
    j["rows"][i]["measured"]["http"] = http_json(run, run.levels[i], summaries[i]);
  }
  json fm = nullptr;
  if (run.find_max) {
    const auto& f = *run.find_max;
    fm = {{"max_rate_per_second",
           f.max_rate_per_second ? json(*f.max_rate_per_second) : json(nullptr)},
          {"lowest_failing_rate",
           f.lowest_failing_rate ? json(*f.lowest_failing_rate) : json(nullptr)},
          {"precision", f.precision},
          {"note", f.note}};
  }
  j["load"] = {{"url", run.url},         {"endpoint", run.endpoint},
               {"model", run.model},     {"stream", run.stream},
               {"prompts", run.prompts}, {"slo", run.slo ? json(run.slo->text) : json(nullptr)},
               {"workers", run.workers}, {"find_max", fm}};
  return j;
}

// --- the http extension: reader ------------------------------------------------------------------
namespace {

std::vector<request_record> parse_samples(const schema::node& s) {
  const auto id = s.integers("id");
  const std::size_t n = id.size();
  // Every column has one entry per request.
  auto checked = [&](const char* key, auto v) {
    if (v.size() != n)
      s.fail_member(key,
                    "has " + std::to_string(v.size()) + " entries, expected " + std::to_string(n));
    return v;
  };
  auto ints = [&](const char* key) { return checked(key, s.integers(key)); };
  auto nums = [&](const char* key) { return checked(key, s.numbers(key)); };
  auto strs = [&](const char* key) { return checked(key, s.strings(key)); };
  const auto session = ints("session"), turn = ints("turn"), status = ints("status"),
             attempts = ints("attempts"), req_prompt = ints("requested_prompt_tokens"),
             exp_prompt = ints("expected_prompt_tokens"), req_out = ints("requested_output_tokens"),
             usage_prompt = ints("usage_prompt_tokens"), usage_out = ints("usage_output_tokens"),
             usage_cached = ints("usage_cached_tokens");
  const auto scheduled = nums("scheduled_seconds"), sent = nums("sent_seconds"),
             start = nums("response_start_seconds"), end = nums("end_seconds");
  const auto error = strs("error"), detail = strs("error_detail");
  const auto offsets = s.integers("chunk_offsets");
  const auto chunk_seconds = s.numbers("chunk_seconds");
  const auto chunk_tokens = s.integers("chunk_tokens");
  if (offsets.size() != n + 1)
    s.fail_member("chunk_offsets", "expected " + std::to_string(n + 1) + " entries");
  if (chunk_tokens.size() != chunk_seconds.size())
    s.fail_member("chunk_tokens", "expected as many entries as chunk_seconds");
  std::vector<request_record> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    request_record& r = out[i];
    r.id = static_cast<std::uint64_t>(id[i]);
    r.session = session[i];
    r.turn = static_cast<std::int32_t>(turn[i]);
    r.scheduled = scheduled[i];
    r.sent = sent[i];
    r.response_start = start[i];
    r.end = end[i];
    r.status = static_cast<std::int32_t>(status[i]);
    const auto kind = error_kind_of(error[i]);
    if (!kind)
      s.fail_member("error", "entry " + std::to_string(i) + " '" + printable(error[i], 40) +
                                 "' is no error kind");
    r.error = *kind;
    r.error_detail = detail[i];
    r.attempts = static_cast<std::int32_t>(attempts[i]);
    r.requested_prompt_tokens = req_prompt[i];
    r.expected_prompt_tokens = exp_prompt[i];
    r.requested_output_tokens = req_out[i];
    r.usage_prompt_tokens = usage_prompt[i];
    r.usage_output_tokens = usage_out[i];
    r.usage_cached_tokens = usage_cached[i];
    const auto a = offsets[i], b = offsets[i + 1];
    if (a < 0 || b < a || static_cast<std::size_t>(b) > chunk_seconds.size()) {
      s.fail_member("chunk_offsets", "entry " + std::to_string(i) + " out of order or range");
    }
    for (auto k = a; k < b; ++k) {
      r.chunk_seconds.push_back(chunk_seconds[static_cast<std::size_t>(k)]);
      r.chunk_tokens.push_back(
          static_cast<std::int32_t>(chunk_tokens[static_cast<std::size_t>(k)]));
    }
  }
  return out;
}

server_series parse_server(const schema::node& s) {
  server_series o;
  o.url = s.string("url");
  o.interval_seconds = s.number("interval_seconds");
  o.t = s.numbers("t");
  for (const auto& [name, col] : s.object("series").members()) {
    std::vector<std::optional<double>> v;
    for (const auto& e : col.elements()) {
      if (e.value().is_null()) {
        v.emplace_back();
      } else {
        v.emplace_back(e.as_number());
      }
    }
    if (v.size() != o.t.size())
      s.fail_member("series", "'" + name + "' has " + std::to_string(v.size()) +
                                  " entries, expected " + std::to_string(o.t.size()));
    o.values[name] = std::move(v);
  }
  o.failures = s.integer("failures");
  o.last_error = s.string("last_error");
  return o;
}

// A level: what core's reader took from the row's `measured.http` (schema::load_level), and the
// rest, which only load reads: the level's clock, ITL rule, merges, server series and samples.
level_data parse_level(const schema::load_level& c, const schema::node& h) {
  level_data l;
  l.label = c.label;
  l.shape = c.shape;
  l.rate_per_second = c.rate_per_second;
  l.concurrency = c.concurrency;
  l.saturated = c.saturated;
  l.stopped = c.stopped;
  l.rate_scale = h.number("rate_scale");
  try {
    l.rule = parse_itl_rule(h.string("itl_rule"));
  } catch (const std::invalid_argument&) {
    h.fail_member("itl_rule", "must be first, split or chunk");
  }
  l.chunk_token_source = h.string("chunk_token_source");
  l.epoch_steady_seconds = h.number("epoch_steady_seconds");
  l.epoch_unix_seconds = h.number("epoch_unix_seconds");
  l.merged_from = h.strings("merged_from");
  l.server = parse_server(h.object("server_metrics"));
  l.records = parse_samples(h.object("samples"));
  return l;
}

}  // namespace

load_run parse_load_run(const json& doc, std::string_view source) {
  // The kv/v1 part and the load parts through their one readers (they fail on anything the format
  // lacks, and on a config.executor other than "http").
  const schema::serving_results kv = schema::parse_serving_results(doc, source);
  schema::load_results ld = schema::parse_load_results(doc, source);
  const schema::document_context ctx{std::string(source), schema::k_serving_results_schema};
  const schema::node top = schema::open_document(doc, ctx);
  load_run run;
  run.environment = top.raw("environment");
  run.workload = kv.config.workload;
  run.workload_requests = kv.config.requests;
  run.workload_prompt_tokens = kv.config.prompt_tokens;
  run.workload_output_tokens = kv.config.output_tokens;
  run.mooncake_block_tokens = static_cast<std::int32_t>(kv.config.mooncake_block_tokens);
  run.window = kv.config.window;
  run.url = std::move(ld.url);
  run.endpoint = std::move(ld.endpoint);
  run.model = std::move(ld.model);
  run.stream = ld.stream;
  run.prompts = std::move(ld.prompts);
  run.slo = std::move(ld.slo);
  run.workers = static_cast<std::int32_t>(ld.workers);
  run.find_max = std::move(ld.find_max);
  const auto rows = top.array("rows").elements();
  for (std::size_t i = 0; i < rows.size(); ++i) {
    run.levels.push_back(parse_level(ld.levels[i], rows[i].object("measured").object("http")));
  }
  return run;
}

load_run read_load_run(const std::filesystem::path& path) {
  return parse_load_run(schema::read_json(path, schema::k_serving_results_schema), path.string());
}

}  // namespace ridgeline::load
