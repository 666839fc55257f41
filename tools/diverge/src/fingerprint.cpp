// Reading, validating and summarising ridgeline.diverge/v1 fingerprints (see diverge.hpp):
// schema, config fields, one row per (prompt, step) with top-k arrays of equal length. Both
// `diverge compare` and `--force-tokens` read fingerprints through load_fingerprint.
#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "ridgeline/core/files.hpp"
#include "ridgeline/diverge/diverge.hpp"

namespace ridgeline::bench {

using nlohmann::json;

schema::fingerprint_document validate_fingerprint(const json& doc, const std::string& source) {
  // The shape (schema string, every field present with its type, top-k arrays of equal length)
  // is the typed reader's: it throws schema_error naming `source` and the field.
  schema::fingerprint_document f = schema::parse_fingerprint(doc, source);
  auto bad = [&](const std::string& what) {
    throw std::invalid_argument(source + ": not a usable ridgeline.diverge/v1 fingerprint (" +
                                what + ")");
  };
  const auto& c = f.config;
  if (c.steps <= 0) bad("config.steps is not positive");
  if (c.prompts <= 0) bad("config.prompt_set.prompts is not positive");
  const auto steps = static_cast<std::size_t>(c.steps);
  const auto prompts = static_cast<std::size_t>(c.prompts);
  if (steps > (std::size_t{1} << 32) || steps * prompts > (std::size_t{1} << 32)) {
    bad("absurd size");
  }
  std::vector<char> seen(steps * prompts, 0);
  std::size_t i = 0;
  for (const auto& r : f.rows) {
    const std::string at = "row " + std::to_string(i++);
    if (r.prompt < 0 || static_cast<std::size_t>(r.prompt) >= prompts || r.step < 0 ||
        static_cast<std::size_t>(r.step) >= steps) {
      bad(at + ": prompt " + std::to_string(r.prompt) + " step " + std::to_string(r.step) +
          " out of range");
    }
    char& flag = seen[static_cast<std::size_t>(r.prompt) * steps + static_cast<std::size_t>(r.step)];
    if (flag) {
      bad(at + ": prompt " + std::to_string(r.prompt) + " step " + std::to_string(r.step) +
          " twice");
    }
    flag = 1;
    if (r.top_ids.size() < 2) bad(at + ": fewer than 2 top_ids");
  }
  if (f.rows.size() != steps * prompts) {
    bad("truncated: " + std::to_string(f.rows.size()) + " rows, expected " +
        std::to_string(prompts) + " prompts x " + std::to_string(steps) + " steps");
  }
  return f;
}

json load_fingerprint(const std::string& path) {
  const std::string text = read_text_file(path);
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error&) {
    throw std::invalid_argument(path + ": truncated or malformed JSON (" +
                                std::to_string(text.size()) + " bytes)");
  }
  validate_fingerprint(doc, path);
  return doc;
}

std::string fingerprint_summary(const json& doc) {
  const schema::fingerprint_document f = schema::parse_fingerprint(doc, "fingerprint");
  const auto& c = f.config;
  double min_margin = 1e30, sum = 0;
  long long small = 0;
  for (const auto& r : f.rows) {
    min_margin = std::min(min_margin, r.margin);
    sum += r.margin;
    small += r.margin < 0.01;
  }
  const auto n = static_cast<double>(f.rows.size());
  char line[512];
  std::snprintf(line, sizeof line,
                "%s (%s, %s weights), prompts %s: %lld prompts x %lld steps at batch %lld on the "
                "%s executor\n"
                "top-1/top-2 margin (log-prob): mean %.4g, smallest %.4g, %lld steps below 0.01\n",
                c.model.c_str(), c.weights.c_str(),
                schema::weight_format_or_bf16(c.weight_format).c_str(), c.prompt_set_id.c_str(),
                static_cast<long long>(c.prompts), static_cast<long long>(c.steps),
                static_cast<long long>(c.batch), c.executor.c_str(), n > 0 ? sum / n : 0.0,
                n > 0 ? min_margin : 0.0, small);
  std::string s = line;
  if (c.random_weights_caveat) s += "caveat: " + *c.random_weights_caveat + "\n";
  return s;
}

}  // namespace ridgeline::bench
