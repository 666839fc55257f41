// The metrics of `ridgeline load`, with the same names and formulas as in-process (`replay`),
// from client-side records (docs/load.md; DESIGN.md "Metric definitions"):
//   arrival      = when the request's first byte was written (sent)
//   TTFT         = first content chunk's arrival - arrival (the read's stamp, before parsing)
//   E2E          = last content chunk's arrival - arrival
//   TPOT         = (E2E - TTFT) / (output_tokens - 1), requests with >= 2 output tokens
//   ITL          = gaps between consecutive output tokens, over all requests' gaps; a chunk of
//                  k > 1 tokens after a gap g gives, by --itl-rule:
//                    first: g, then k - 1 zero gaps (the default, as DESIGN.md says)
//                    split: k gaps of g / k
//                    chunk: one gap g (per chunk, as vLLM's bench serve counts)
//                  and the first chunk's k - 1 extra tokens give k - 1 zero gaps (first, split)
//   lateness     = sent - scheduled (how late the client wrote the request)
//   output_tokens from the server's usage when it sent it, else counted from the chunks.
// Under first and split a request's gaps sum to E2E - TTFT over output_tokens - 1 of them
// (when the chunks' counts add up to usage), so their mean is its TPOT.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ridgeline/load/record.hpp"

namespace ridgeline::load {

enum class itl_rule { first, split, chunk };
const char* name(itl_rule r);
itl_rule parse_itl_rule(const std::string& text);  // std::invalid_argument otherwise

// Per request; -1 where undefined (not finished, no content chunk, fewer than 2 tokens).
double ttft_of(const request_record& r);
double e2e_of(const request_record& r);
double tpot_of(const request_record& r);
// Appends the request's inter-token gaps under `rule` (nothing for an unfinished request).
void append_itl(const request_record& r, itl_rule rule, std::vector<double>& out);

// Token-count checks over a level's requests.
struct token_checks {
  std::int64_t usage_reported = 0;              // finished requests with usage
  std::int64_t prompt_usage_mismatches = 0;     // requested prompt tokens != usage.prompt_tokens
  std::int64_t prompt_expected_mismatches = 0;  // the sent prompt's own count != usage
  std::int64_t output_count_mismatches = 0;     // counted chunk tokens != usage.completion_tokens
  std::int64_t short_outputs = 0;               // fewer output tokens than max_tokens
  std::vector<std::string> examples;            // the first few, one line each
};

// Everything a level's row reports, from its records alone (a merge recomputes it the same way).
struct level_metrics {
  std::int64_t requests = 0, sent = 0, finished = 0, failed = 0, cancelled = 0;
  std::map<std::string, std::int64_t> errors;    // kind -> count (cancelled included)
  std::map<std::string, std::int64_t> statuses;  // HTTP status -> count, non-200
  std::int64_t prompt_tokens = 0, output_tokens = 0, cached_tokens = 0;  // finished requests
  std::vector<double> ttft, tpot, itl, e2e, lateness;  // finished requests (lateness: sent ones)
  double duration_seconds = 0;
  double requests_per_second = 0, output_tokens_per_second = 0, prompt_tokens_per_second = 0;
  token_checks checks;
};
level_metrics measure(const std::vector<request_record>& records, itl_rule rule,
                      double duration_seconds);

}  // namespace ridgeline::load
