// The Prometheus text-format parser and the server series the load report keeps
// (prometheus_text.hpp).
#include "ridgeline/load/prometheus_text.hpp"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <stdexcept>

#include "ridgeline/core/text.hpp"

namespace ridgeline::load {
namespace {

bool name_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
         (!first && c >= '0' && c <= '9');
}

double parse_value(std::string_view v, bool& ok) {
  ok = true;
  if (v == "+Inf" || v == "Inf") return std::numeric_limits<double>::infinity();
  if (v == "-Inf") return -std::numeric_limits<double>::infinity();
  if (v == "NaN") return std::numeric_limits<double>::quiet_NaN();
  const std::string s(v);
  char* end = nullptr;
  const double x = std::strtod(s.c_str(), &end);
  ok = !s.empty() && end == s.c_str() + s.size();
  return x;
}

}  // namespace

std::vector<prom_sample> parse_prometheus_text(std::string_view text) {
  std::vector<prom_sample> out;
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const auto nl = text.find('\n', pos);
    std::string_view line =
        text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::size_t i = 0;
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i == line.size() || line[i] == '#') continue;
    auto fail = [&](const std::string& why) {
      return std::invalid_argument("metrics line " + std::to_string(line_no) + ": " + why + ": '" +
                                   printable(line, 100) + "'");
    };
    prom_sample s;
    const std::size_t name_start = i;
    while (i < line.size() && name_char(line[i], i == name_start)) ++i;
    if (i == name_start) throw fail("no metric name");
    s.name = std::string(line.substr(name_start, i - name_start));
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (true) {
        while (i < line.size() && (line[i] == ' ' || line[i] == ',')) ++i;
        if (i < line.size() && line[i] == '}') {
          ++i;
          break;
        }
        const std::size_t ks = i;
        while (i < line.size() && name_char(line[i], i == ks)) ++i;
        if (i == ks || i >= line.size() || line[i] != '=') throw fail("bad label");
        const std::string key(line.substr(ks, i - ks));
        ++i;
        if (i >= line.size() || line[i] != '"') throw fail("label value not quoted");
        ++i;
        std::string value;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\' && i + 1 < line.size()) {
            ++i;
            value += line[i] == 'n' ? '\n' : line[i];
          } else {
            value += line[i];
          }
          ++i;
        }
        if (i >= line.size()) throw fail("unterminated label value");
        ++i;
        s.labels[key] = std::move(value);
      }
    }
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const std::size_t vs = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    bool ok = false;
    s.value = parse_value(line.substr(vs, i - vs), ok);
    if (!ok) throw fail("bad value");
    out.push_back(std::move(s));  // a timestamp after the value is ignored
  }
  return out;
}

const std::vector<std::string>& server_series_names() {
  static const std::vector<std::string> names = {
      "ridgeline_requests_running",
      "ridgeline_requests_waiting",
      "ridgeline_kv_cache_usage_ratio",
      "ridgeline_prefix_cache_hits_tokens_total",
      "ridgeline_prefix_cache_queries_tokens_total",
      "ridgeline_preemptions_total",
      "vllm:num_requests_running",
      "vllm:num_requests_waiting",
      "vllm:gpu_cache_usage_perc",
      "vllm:kv_cache_usage_perc",
      "vllm:prefix_cache_hits",
      "vllm:prefix_cache_queries",
      "vllm:num_preemptions",
      "sglang:num_running_reqs",
      "sglang:num_queue_reqs",
      "sglang:token_usage",
      "sglang:cache_hit_rate",
  };
  return names;
}

std::map<std::string, double> pick_server_series(const std::vector<prom_sample>& samples) {
  std::map<std::string, double> out;
  const auto& names = server_series_names();
  for (const auto& s : samples) {
    std::string_view n = s.name;
    for (const auto& want : names) {
      const bool exact = n == want;
      // vLLM's counters: "vllm:num_preemptions" or "vllm:num_preemptions_total".
      const bool suffixed = want.rfind("vllm:", 0) == 0 && n.size() == want.size() + 6 &&
                            n.substr(0, want.size()) == want && n.substr(want.size()) == "_total";
      if (exact || suffixed) {
        if (std::isfinite(s.value)) out[want] += s.value;
        break;
      }
    }
  }
  return out;
}

}  // namespace ridgeline::load
