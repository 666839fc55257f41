// libFuzzer target for the trace parsers: Mooncake JSONL, Azure CSV and generator specs, picked
// by the first input byte. Malformed input must end in std::invalid_argument (one line with the
// line number); anything else (crash, other exception, sanitizer report) is a bug.
//   scripts/fuzz.sh [seconds per target]
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

#include "ridgeline/engine/workload.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const int which = data[0] % 3;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    ridgeline::workload w;
    if (which == 0) {
      std::istringstream in(text);
      w = ridgeline::parse_mooncake_trace(in, "fuzz.jsonl", 1 + data[0] % 64);
    } else if (which == 1) {
      std::istringstream in(text);
      w = ridgeline::parse_azure_trace(in, "fuzz.csv");
    } else {
      auto c = ridgeline::parse_generator_spec(text);
      // Keep generated workloads small enough for the fuzzer's memory limit.
      if (c.requests > 1000 || c.sessions > 100) return 0;
      w = ridgeline::generate_workload(c);
    }
    std::int64_t tokens = 0;
    std::vector<ridgeline::token_id> prompt;
    for (const auto& r : w.requests) {
      tokens += r.prompt_tokens;
      if (tokens > 20'000'000) break;
      ridgeline::materialize_prompt(r, prompt);
    }
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    if (msg.find('\n') != std::string::npos) __builtin_trap();  // one line, always
  }
  return 0;
}
