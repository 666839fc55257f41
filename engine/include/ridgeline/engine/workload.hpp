// Workloads for the scheduler and KV cache: real traces (Mooncake JSONL, Azure LLM inference CSV)
// and seeded generators (Poisson or gamma arrivals, length distributions, multi-turn chat sessions
// with think time, shared system prompts). All reproducible: the same input and seed give the same
// requests and the same token ids on every run.
//
// A prompt is a list of segments; token i of a segment is a pure function of (segment seed, i), so
// equal seeds mean equal tokens (shared prefixes) without storing millions of token ids:
//   workload w = load_mooncake_trace("data/traces/mooncake_synthetic_trace.jsonl");
//   std::vector<token_id> prompt; materialize_prompt(w.requests[0], prompt);
//
// Parsers throw std::invalid_argument with "<source>:<line>: <what>" on malformed input and
// io_error when the file cannot be read.
#pragma once

#include <cstdint>
#include <filesystem>
#include <istream>
#include <string>
#include <vector>

#include "ridgeline/engine/kv_cache.hpp"

namespace ridgeline {

struct prompt_segment {
  std::uint64_t seed = 0;
  std::int32_t tokens = 0;
};

struct workload_request {
  std::uint64_t id = 0;
  // Absolute arrival for first turns; for a follow-up turn (follow_up = true) the arrival is the
  // previous turn's finish + think_seconds, known only during the replay.
  double arrival_seconds = 0;
  bool follow_up = false;
  double think_seconds = 0;
  std::int64_t next_turn = -1;  // index of this session's next turn in workload::requests, or -1
  std::int64_t session = -1;
  std::int32_t turn = 0;
  std::vector<prompt_segment> prompt;
  std::int64_t prompt_tokens = 0;  // sum of segment lengths
  std::int32_t output_tokens = 1;
  std::uint64_t output_seed = 0;  // output token k is segment_token(output_seed, k)
};

struct workload {
  std::string source;  // file name or generator spec
  std::vector<workload_request> requests;
  std::int64_t total_prompt_tokens() const;
  std::int64_t total_output_tokens() const;
};

// Token `position` of the segment with `seed`, in [0, k_workload_vocab).
inline constexpr std::int32_t k_workload_vocab = 32000;
token_id segment_token(std::uint64_t seed, std::int64_t position);
// Writes the request's prompt tokens into `out` (resized).
void materialize_prompt(const workload_request& r, std::vector<token_id>& out);

// Largest prompt or output length a trace may claim before it is rejected as absurd.
inline constexpr std::int64_t k_max_trace_tokens = 10'000'000;

// Mooncake trace: one JSON object per line with timestamp (ms), input_length, output_length and
// hash_ids (one id per block of `block_tokens` prompt tokens, the last block possibly partial).
// Equal ids give equal token ids; a partial last block takes the first tokens of its id's content.
workload parse_mooncake_trace(std::istream& in, const std::string& source,
                              std::int32_t block_tokens = 512);
workload load_mooncake_trace(const std::filesystem::path& path, std::int32_t block_tokens = 512);

// Azure LLM inference trace (2023): header TIMESTAMP,ContextTokens,GeneratedTokens, then one row
// per request; timestamps "YYYY-MM-DD hh:mm:ss.fffffff" become seconds after the first row. No
// prefix information: each prompt gets unique tokens.
workload parse_azure_trace(std::istream& in, const std::string& source);
workload load_azure_trace(const std::filesystem::path& path);

// Loads by extension: .jsonl -> Mooncake, .csv -> Azure.
workload load_trace(const std::filesystem::path& path, std::int32_t mooncake_block_tokens = 512);

// Length distribution: "fixed:N", "uniform:A:B", "lognormal:MEDIAN:SIGMA", "exp:MEAN",
// each clamped to [min, max] after sampling.
struct length_distribution {
  enum class kind { fixed, uniform, lognormal, exponential } shape = kind::fixed;
  double a = 1, b = 1;
  std::int64_t min = 1, max = k_max_trace_tokens;
};
length_distribution parse_length_distribution(const std::string& text);

// Generator settings; parse_generator_spec reads "key=value,key=value" (docs/kv.md lists keys):
//   arrival=poisson|gamma, rate=REQ_PER_S, cv=C (gamma), requests=N, seed=S,
//   prompt=DIST, output=DIST, sessions=N, turns=DIST, think=DIST (seconds), message=DIST,
//   system=TOKENS, system_prompts=K
struct generator_config {
  enum class arrival_kind { poisson, gamma } arrival = arrival_kind::poisson;
  double rate_per_second = 1.0;  // requests (or sessions) per second
  double cv = 1.0;               // coefficient of variation of inter-arrival gaps (gamma)
  std::int64_t requests = 1000;  // independent requests when sessions == 0
  std::uint64_t seed = 1;
  length_distribution prompt{length_distribution::kind::lognormal, 512, 0.8, 1, 32768};
  length_distribution output{length_distribution::kind::lognormal, 128, 0.8, 1, 4096};
  // Multi-turn chat: sessions > 0 generates sessions instead of independent requests.
  std::int64_t sessions = 0;
  length_distribution turns{length_distribution::kind::uniform, 2, 6, 1, 1000};
  length_distribution think_seconds{length_distribution::kind::exponential, 30, 0, 0, 3600};
  length_distribution message{length_distribution::kind::lognormal, 128, 0.8, 1, 32768};
  // Shared system prompts: each request (or session) starts with one of `system_prompts` prompts
  // of `system_tokens` tokens, picked uniformly.
  std::int32_t system_tokens = 0;
  std::int32_t system_prompts = 1;
};
generator_config parse_generator_spec(const std::string& spec);
workload generate_workload(const generator_config& c);

// The requests whose (first-turn) arrival lies in [start, start + duration) seconds, at most
// max_requests of them (0: no limit), with arrivals shifted so the window starts at 0 and every
// later turn of a kept session kept. duration 0: to the end. Ids stay the trace's.
workload window_of(const workload& w, double start_seconds, double duration_seconds,
                   std::int64_t max_requests);

}  // namespace ridgeline
