// Merging load runs and the table `ridgeline load` prints (results.hpp).
#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "ridgeline/core/statistics.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/load/results.hpp"

namespace ridgeline::load {
namespace {

void shift(request_record& r, double dt) {
  auto move = [dt](double& t) {
    if (t >= 0) t += dt;
  };
  r.scheduled += dt;
  move(r.sent);
  move(r.response_start);
  move(r.end);
  for (double& t : r.chunk_seconds) t += dt;
}

std::string ms(const std::vector<double>& v, double q) {
  if (v.empty()) return "-";
  return format("%.1f", bench::quantile(v, q) * 1e3);
}

}  // namespace

load_run merge(const load_run& a, const load_run& b, const std::string& a_name,
               const std::string& b_name) {
  if (a.endpoint != b.endpoint) {
    throw std::invalid_argument("merge: " + a_name + " used /" + a.endpoint + ", " + b_name + " /" +
                                b.endpoint);
  }
  const std::string slo_a = a.slo ? a.slo->text : "", slo_b = b.slo ? b.slo->text : "";
  if (slo_a != slo_b) {
    throw std::invalid_argument("merge: " + a_name + " has --slo '" + slo_a + "', " + b_name +
                                " '" + slo_b + "'");
  }
  load_run out = a;
  out.find_max.reset();  // a search's outcome does not merge
  if (a.url != b.url) out.url = a.url + " + " + b.url;
  out.workers = a.workers + b.workers;
  out.workload_requests += b.workload_requests;
  out.workload_prompt_tokens += b.workload_prompt_tokens;
  out.workload_output_tokens += b.workload_output_tokens;
  if (a.workload != b.workload) out.workload = a.workload + " + " + b.workload;
  for (auto& l : out.levels) {
    if (l.merged_from.empty()) l.merged_from.push_back(a_name);
  }
  for (const auto& lb : b.levels) {
    auto it = std::find_if(out.levels.begin(), out.levels.end(),
                           [&lb](const level_data& x) { return x.label == lb.label; });
    if (it == out.levels.end()) {
      out.levels.push_back(lb);
      if (out.levels.back().merged_from.empty()) out.levels.back().merged_from.push_back(b_name);
      continue;
    }
    if (it->rule != lb.rule) {
      throw std::invalid_argument("merge: level '" + lb.label + "' uses ITL rule " +
                                  name(it->rule) + " in " + a_name + ", " + name(lb.rule) + " in " +
                                  b_name);
    }
    const double dt = lb.epoch_unix_seconds - it->epoch_unix_seconds;
    for (request_record r : lb.records) {
      shift(r, dt);
      it->records.push_back(std::move(r));
    }
    if (lb.chunk_token_source != it->chunk_token_source)
      it->chunk_token_source += "+" + lb.chunk_token_source;
    it->saturated = it->saturated || lb.saturated;
    if (it->stopped.empty()) it->stopped = lb.stopped;
    if (lb.merged_from.empty()) {
      it->merged_from.push_back(b_name);
    } else {
      it->merged_from.insert(it->merged_from.end(), lb.merged_from.begin(), lb.merged_from.end());
    }
    // Server series: the first run's scrape of the server stays (both runs watched one server).
  }
  return out;
}

std::string table_of(const load_run& run) {
  std::ostringstream o;
  o << "ridgeline load: " << run.url << " /v1/"
    << (run.endpoint == "chat" ? "chat/completions" : "completions") << ", model " << run.model
    << ", " << run.workload << " (" << run.workload_requests << " requests), "
    << (run.stream ? "streamed" : "not streamed") << ", prompts as " << run.prompts;
  if (run.workers > 1) o << ", " << run.workers << " workers";
  o << "\n\n";
  const bool slo = run.slo.has_value();
  o << "| level | sent | ok | failed | req/s | out tok/s | TTFT p50 | TTFT p99 | TPOT p50 | TPOT "
       "p99 "
       "| ITL p50 | ITL p99 | E2E p99 | late p99 |"
    << (slo ? " goodput req/s | SLO |" : "") << "\n";
  o << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    << (slo ? "---:|---|" : "") << "\n";
  std::vector<level_summary> sums;
  for (const auto& l : run.levels) {
    sums.push_back(summarize(l, run.slo));
    const auto& m = sums.back().metrics;
    o << "| " << l.label << (l.saturated ? " (saturated)" : "") << " | " << m.sent << " | "
      << m.finished << " | " << m.failed + m.cancelled << " | "
      << format("%.2f", m.requests_per_second) << " | "
      << format("%.1f", m.output_tokens_per_second) << " | " << ms(m.ttft, 0.5) << " | "
      << ms(m.ttft, 0.99) << " | " << ms(m.tpot, 0.5) << " | " << ms(m.tpot, 0.99) << " | "
      << ms(m.itl, 0.5) << " | " << ms(m.itl, 0.99) << " | " << ms(m.e2e, 0.99) << " | "
      << ms(m.lateness, 0.99) << " |";
    if (slo) {
      const auto& s = *sums.back().slo;
      o << " "
        << (s.goodput_requests_per_second ? format("%.2f", *s.goodput_requests_per_second) : "-")
        << " | " << (s.met ? "met" : "missed") << " |";
    }
    o << "\n";
  }
  o << "\nlatencies in ms; ITL rule "
    << (run.levels.empty() ? "first" : name(run.levels.front().rule));
  if (!run.levels.empty()) o << ", tokens per chunk from " << run.levels.front().chunk_token_source;
  o << "\n";
  for (std::size_t i = 0; i < run.levels.size(); ++i) {
    const auto& l = run.levels[i];
    const auto& m = sums[i].metrics;
    const std::string head = run.levels.size() > 1 ? l.label + ": " : "";
    if (!m.errors.empty()) {
      o << head << "errors:";
      for (const auto& [k, n] : m.errors) o << " " << k << " " << n;
      if (!m.statuses.empty()) {
        o << " (HTTP";
        for (const auto& [k, n] : m.statuses) o << " " << k << " x" << n;
        o << ")";
      }
      for (const auto& r : l.records) {
        if (r.error != error_kind::none && r.error != error_kind::cancelled) {
          o << "; first: " << r.error_detail;
          break;
        }
      }
      o << "\n";
    }
    if (!l.stopped.empty()) o << head << "stopped early: " << l.stopped << "\n";
    const auto& c = m.checks;
    if (c.prompt_usage_mismatches + c.output_count_mismatches + c.short_outputs > 0) {
      o << head << "token counts: " << c.prompt_usage_mismatches
        << " prompts where usage.prompt_tokens != requested (" << c.prompt_expected_mismatches
        << " != the prompt's own count), " << c.output_count_mismatches
        << " outputs where usage.completion_tokens != counted chunk tokens, " << c.short_outputs
        << " outputs shorter than max_tokens";
      if (!c.examples.empty()) o << "; e.g. " << c.examples.front();
      o << "\n";
    } else if (m.finished > 0 && c.usage_reported < m.finished) {
      o << head << "token counts: " << m.finished - c.usage_reported
        << " responses without usage (output tokens counted from chunks)\n";
    }
    if (sums[i].slo) {
      o << head << "SLO " << run.slo->text << ":";
      for (const auto& line : sums[i].slo->lines) o << " " << line << ";";
      o << "\n";
    }
    const auto& sv = l.server;
    if (!sv.t.empty()) {
      o << head << "server /metrics (" << sv.t.size() << " scrapes):";
      for (const auto& [name, col] : sv.values) {
        double mx = -1;
        for (const auto& v : col) {
          if (v) mx = std::max(mx, *v);
        }
        if (mx >= 0) o << " " << name << " max " << format("%g", mx) << ";";
      }
      o << "\n";
    } else if (sv.failures > 0) {
      o << head << "server /metrics: " << sv.failures << " scrapes failed (" << sv.last_error
        << ")\n";
    }
  }
  if (run.find_max) {
    const auto& f = *run.find_max;
    o << "find-max: ";
    if (f.max_rate_per_second) {
      o << "highest rate meeting the SLO " << format("%.3g", *f.max_rate_per_second) << " req/s";
    } else if (f.note.rfind("the server failed", 0) == 0) {
      o << "no answer";
    } else {
      o << "no rate tried met the SLO";
    }
    if (f.lowest_failing_rate)
      o << " (lowest failing " << format("%.3g", *f.lowest_failing_rate) << " req/s)";
    if (!f.note.empty()) o << "; " << f.note;
    o << "\n";
  }
  o << "\nTTFT = first content chunk's arrival - request written; E2E = last chunk's arrival - "
       "written; TPOT = (E2E - TTFT) / (output_tokens - 1); ITL = gaps between tokens (rule "
       "above); "
       "late = written - scheduled; req/s and tok/s over first write to last response end\n";
  return o.str();
}

}  // namespace ridgeline::load
