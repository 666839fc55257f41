// Validation of ridgeline.diverge/v1 fingerprints (see diverge.hpp): schema, config fields, one
// row per (prompt, step) with top-k arrays of equal length. Both `diverge compare` and
// `--force-tokens` read fingerprints through it.
#include <stdexcept>
#include <string>
#include <vector>

#include "ridgeline/diverge/diverge.hpp"

namespace ridgeline::bench {

using nlohmann::json;

void validate_fingerprint(const json& doc, const std::string& source) {
  auto bad = [&](const std::string& what) {
    throw std::invalid_argument(source + ": not a usable ridgeline.diverge/v1 fingerprint (" +
                                what + ")");
  };
  if (!doc.is_object()) bad("not a JSON object");
  if (!doc.contains("schema") || doc["schema"] != k_diverge_schema)
    bad("schema is not " + std::string(k_diverge_schema));
  if (!doc.contains("config") || !doc["config"].is_object()) bad("no config");
  if (!doc.contains("rows") || !doc["rows"].is_array()) bad("no rows");
  const json& c = doc["config"];
  for (const char* f : {"model", "weights"}) {
    if (!c.contains(f) || !c[f].is_string()) bad(std::string("config.") + f + " missing");
  }
  if (!c.contains("steps") || !c["steps"].is_number_integer() || c["steps"].get<long long>() <= 0) {
    bad("config.steps missing");
  }
  if (!c.contains("prompt_set") || !c["prompt_set"].is_object() ||
      !c["prompt_set"].contains("hash") || !c["prompt_set"]["hash"].is_string() ||
      !c["prompt_set"].contains("id") || !c["prompt_set"]["id"].is_string() ||
      !c["prompt_set"].contains("prompts") || !c["prompt_set"]["prompts"].is_number_integer() ||
      c["prompt_set"]["prompts"].get<long long>() <= 0) {
    bad("config.prompt_set missing");
  }
  const auto steps = c["steps"].get<std::size_t>();
  const auto prompts = c["prompt_set"]["prompts"].get<std::size_t>();
  if (steps * prompts > (std::size_t{1} << 32)) bad("absurd size");
  std::vector<char> seen(steps * prompts, 0);
  std::size_t i = 0;
  for (const auto& r : doc["rows"]) {
    const std::string at = "row " + std::to_string(i++);
    if (!r.is_object()) bad(at + " is not an object");
    for (const char* f : {"prompt", "step", "token"}) {
      if (!r.contains(f) || !r[f].is_number_integer()) bad(at + ": " + f + " missing");
    }
    const long long p = r["prompt"].get<long long>(), s = r["step"].get<long long>();
    if (p < 0 || static_cast<std::size_t>(p) >= prompts || s < 0 ||
        static_cast<std::size_t>(s) >= steps) {
      bad(at + ": prompt " + std::to_string(p) + " step " + std::to_string(s) + " out of range");
    }
    char& flag = seen[static_cast<std::size_t>(p) * steps + static_cast<std::size_t>(s)];
    if (flag) bad(at + ": prompt " + std::to_string(p) + " step " + std::to_string(s) + " twice");
    flag = 1;
    if (!r.contains("top_ids") || !r["top_ids"].is_array() || !r.contains("top_logprobs") ||
        !r["top_logprobs"].is_array() || r["top_ids"].size() != r["top_logprobs"].size() ||
        r["top_ids"].size() < 2) {
      bad(at + ": top_ids/top_logprobs missing or of different lengths");
    }
    for (const auto& x : r["top_ids"]) {
      if (!x.is_number_integer()) bad(at + ": top_ids holds a non-integer");
    }
    for (const auto& x : r["top_logprobs"]) {
      if (!x.is_number()) bad(at + ": top_logprobs holds a non-number (NaN?)");
    }
    if (!r.contains("margin") || !r["margin"].is_number()) bad(at + ": margin missing");
    if (!r.contains("logits_hash") || !r["logits_hash"].is_string())
      bad(at + ": logits_hash missing");
    if (r.contains("fed") && !r["fed"].is_number_integer()) bad(at + ": fed is not a token id");
  }
  if (doc["rows"].size() != steps * prompts) {
    bad("truncated: " + std::to_string(doc["rows"].size()) + " rows, expected " +
        std::to_string(prompts) + " prompts x " + std::to_string(steps) + " steps");
  }
}

}  // namespace ridgeline::bench
