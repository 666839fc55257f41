// Client-side metrics of a load level (metrics.hpp).
#include "ridgeline/load/metrics.hpp"

#include <stdexcept>

#include "ridgeline/core/text.hpp"

namespace ridgeline::load {
namespace {
constexpr std::size_t k_examples = 5;
}

const char* name(itl_rule r) {
  switch (r) {
    case itl_rule::first:
      return "first";
    case itl_rule::split:
      return "split";
    case itl_rule::chunk:
      return "chunk";
  }
  return "first";
}

itl_rule parse_itl_rule(const std::string& text) {
  if (text == "first") return itl_rule::first;
  if (text == "split") return itl_rule::split;
  if (text == "chunk") return itl_rule::chunk;
  throw std::invalid_argument("--itl-rule '" + printable(text, 40) + "' (first, split or chunk)");
}

double ttft_of(const request_record& r) {
  if (!r.finished() || r.chunk_seconds.empty() || r.sent < 0) return -1;
  return r.first_token() - r.sent;
}

double e2e_of(const request_record& r) {
  if (!r.finished() || r.chunk_seconds.empty() || r.sent < 0) return -1;
  return r.last_token() - r.sent;
}

double tpot_of(const request_record& r) {
  const std::int64_t n = r.output_tokens();
  if (!r.finished() || r.chunk_seconds.empty() || n < 2) return -1;
  return (r.last_token() - r.first_token()) / static_cast<double>(n - 1);
}

void append_itl(const request_record& r, itl_rule rule, std::vector<double>& out) {
  if (!r.finished()) return;
  const auto& t = r.chunk_seconds;
  const auto& k = r.chunk_tokens;
  for (std::size_t i = 0; i < t.size(); ++i) {
    const std::int32_t tokens = std::max<std::int32_t>(k[i], 1);
    if (i == 0) {
      if (rule != itl_rule::chunk) out.insert(out.end(), static_cast<std::size_t>(tokens - 1), 0.0);
      continue;
    }
    const double gap = t[i] - t[i - 1];
    switch (rule) {
      case itl_rule::first:
        out.push_back(gap);
        out.insert(out.end(), static_cast<std::size_t>(tokens - 1), 0.0);
        break;
      case itl_rule::split:
        out.insert(out.end(), static_cast<std::size_t>(tokens), gap / tokens);
        break;
      case itl_rule::chunk:
        out.push_back(gap);
        break;
    }
  }
}

level_metrics measure(const std::vector<request_record>& records, itl_rule rule,
                      double duration_seconds) {
  level_metrics m;
  m.duration_seconds = duration_seconds;
  m.requests = static_cast<std::int64_t>(records.size());
  auto& c = m.checks;
  auto example = [&c](const request_record& r, const std::string& what) {
    if (c.examples.size() < k_examples)
      c.examples.push_back("request " + std::to_string(r.id) + ": " + what);
  };
  for (const auto& r : records) {
    if (r.sent >= 0) {
      ++m.sent;
      m.lateness.push_back(r.sent - r.scheduled);
    }
    if (r.error != error_kind::none) {
      ++m.errors[name(r.error)];
      if (r.error == error_kind::cancelled) {
        ++m.cancelled;
      } else {
        ++m.failed;
      }
      if (r.error == error_kind::http_status) ++m.statuses[std::to_string(r.status)];
      continue;
    }
    if (!r.finished()) continue;
    ++m.finished;
    const std::int64_t out = r.output_tokens();
    const std::int64_t prompt =
        r.usage_prompt_tokens >= 0 ? r.usage_prompt_tokens : r.requested_prompt_tokens;
    m.prompt_tokens += prompt;
    m.output_tokens += out;
    if (r.usage_cached_tokens > 0) m.cached_tokens += r.usage_cached_tokens;
    if (const double v = ttft_of(r); v >= 0) m.ttft.push_back(v);
    if (const double v = e2e_of(r); v >= 0) m.e2e.push_back(v);
    if (const double v = tpot_of(r); v >= 0) m.tpot.push_back(v);
    append_itl(r, rule, m.itl);
    // Token checks.
    const bool usage = r.usage_output_tokens >= 0 || r.usage_prompt_tokens >= 0;
    if (usage) ++c.usage_reported;
    if (r.usage_prompt_tokens >= 0 && r.usage_prompt_tokens != r.requested_prompt_tokens) {
      ++c.prompt_usage_mismatches;
      example(r, "asked for " + std::to_string(r.requested_prompt_tokens) +
                     " prompt tokens, the server counted " + std::to_string(r.usage_prompt_tokens));
    }
    if (r.usage_prompt_tokens >= 0 && r.expected_prompt_tokens >= 0 &&
        r.usage_prompt_tokens != r.expected_prompt_tokens) {
      ++c.prompt_expected_mismatches;
    }
    if (r.usage_output_tokens >= 0 && r.usage_output_tokens != r.counted_output_tokens()) {
      ++c.output_count_mismatches;
      example(r, "usage says " + std::to_string(r.usage_output_tokens) + " output tokens, " +
                     std::to_string(r.counted_output_tokens()) + " counted in " +
                     std::to_string(r.chunk_seconds.size()) + " chunks");
    }
    if (out < r.requested_output_tokens) ++c.short_outputs;
  }
  if (duration_seconds > 0) {
    m.requests_per_second = static_cast<double>(m.finished) / duration_seconds;
    m.output_tokens_per_second = static_cast<double>(m.output_tokens) / duration_seconds;
    m.prompt_tokens_per_second = static_cast<double>(m.prompt_tokens) / duration_seconds;
  }
  return m;
}

}  // namespace ridgeline::load
