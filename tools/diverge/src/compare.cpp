// `ridgeline diverge compare` (see diverge.hpp): two fingerprints -> first divergence per prompt,
// the margin there, per-step KL on the top-k and |delta log-prob|, verdicts, the margin histogram
// with the divergences placed in it (ridgeline.diverge_compare/v1), and its table.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "diverge_detail.hpp"
#include "ridgeline/core/statistics.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/diverge/diverge.hpp"
#include "ridgeline/telemetry/environment.hpp"

namespace ridgeline::bench {

using nlohmann::json;
using detail::index_rows;
using detail::row_at;

std::optional<double> topk_kl(std::span<const std::int32_t> ids_p, std::span<const float> lp_p,
                              std::span<const std::int32_t> ids_q, std::span<const float> lp_q) {
  std::vector<double> p, q;
  for (std::size_t i = 0; i < ids_p.size(); ++i) {
    for (std::size_t j = 0; j < ids_q.size(); ++j) {
      if (ids_p[i] == ids_q[j]) {
        p.push_back(std::exp(static_cast<double>(lp_p[i])));
        q.push_back(std::exp(static_cast<double>(lp_q[j])));
        break;
      }
    }
  }
  if (p.empty()) return std::nullopt;
  double sp = 0, sq = 0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    sp += p[i];
    sq += q[i];
  }
  if (!(sp > 0) || !(sq > 0)) return std::nullopt;
  double kl = 0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    const double pi = p[i] / sp, qi = q[i] / sq;
    if (pi > 0) kl += pi * std::log(pi / qi);
  }
  return std::max(kl, 0.0);  // rounding can leave -1e-17
}

namespace {

struct margin_bins {
  // Log-prob margins: divergences happen where the top two are close, so the bins are finer there.
  std::vector<double> edges{0, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1, 3, 10};
  std::vector<long long> all = std::vector<long long>(10, 0), diverged = all;
  std::size_t bin(double m) const {
    std::size_t b = 0;
    while (b + 1 < edges.size() && m >= edges[b + 1]) ++b;
    return b;
  }
  json to_json() const {
    json out = json::array();
    for (std::size_t b = 0; b < edges.size(); ++b) {
      out.push_back({{"lo", edges[b]},
                     {"hi", b + 1 < edges.size() ? json(edges[b + 1]) : json(nullptr)},
                     {"steps", all[b]},
                     {"divergences", diverged[b]}});
    }
    return out;
  }
};

json side_summary(const json& doc, const std::string& name) {
  json env = doc.value("environment", json::object());
  json gpu = env.contains("gpu") && env["gpu"].is_object() ? env["gpu"] : json(nullptr);
  return {{"file", name},
          {"gpu", gpu.is_object() ? gpu.value("name", "") : std::string("none")},
          {"config", doc["config"]}};
}

}  // namespace

json compare_fingerprints(const json& a, const json& b, const std::string& name_a,
                          const std::string& name_b) {
  const schema::fingerprint_document ta = validate_fingerprint(a, name_a);
  const schema::fingerprint_document tb = validate_fingerprint(b, name_b);
  const json &ca = a["config"], &cb = b["config"];
  // A checkpoint's model is named after its folder, which may differ between machines: the shape
  // and the weights' hash identify it.
  const bool both_presets =
      ca.value("checkpoint", json()).is_null() && cb.value("checkpoint", json()).is_null();
  if ((both_presets && ca["model"] != cb["model"]) ||
      ca.value("model_shape", json()) != cb.value("model_shape", json())) {
    throw std::invalid_argument("cannot compare " + name_a + " and " + name_b +
                                ": different models (" + ca["model"].get<std::string>() + " vs " +
                                cb["model"].get<std::string>() + ")");
  }
  if (ca["weights"] != cb["weights"]) {
    throw std::invalid_argument("cannot compare " + name_a + " and " + name_b +
                                ": different weights (" + ca["weights"].get<std::string>() +
                                " vs " + cb["weights"].get<std::string>() + ")");
  }
  const json &pa = ca["prompt_set"], &pb = cb["prompt_set"];
  if (pa["hash"] != pb["hash"] || pa["prompts"] != pb["prompts"]) {
    throw std::invalid_argument(
        "cannot compare " + name_a + " and " + name_b + ": different prompt sets (" +
        pa["id"].get<std::string>() + " hash " + pa["hash"].get<std::string>() + " vs " +
        pb["id"].get<std::string>() + " hash " + pb["hash"].get<std::string>() + ")");
  }
  const auto steps_a = ca["steps"].get<std::size_t>(), steps_b = cb["steps"].get<std::size_t>();
  const std::size_t steps = std::min(steps_a, steps_b);
  const auto prompts = pa["prompts"].get<std::size_t>();
  const auto ia = index_rows(a), ib = index_rows(b);

  margin_bins bins;
  std::vector<double> kls;
  double max_delta_all = 0;
  long long compared_all = 0, same_top1_all = 0, hash_equal_all = 0, kl_undefined = 0;
  long long token_mismatches_all = 0, prompts_diverged = 0;
  std::optional<std::size_t> earliest;
  bool all_bitwise = true;
  json prompt_rows = json::array(), step_rows = json::array(), divergences = json::array();

  for (std::size_t p = 0; p < prompts; ++p) {
    std::optional<std::size_t> div;
    double margin_at = 0, margin_b_at = 0;
    bool shared = true;
    std::size_t compared = 0, history_split = steps;
    long long same_top1 = 0, hash_equal = 0, mismatches = 0;
    double kl_sum = 0, kl_max = 0, delta_max = 0;
    long long kl_n = 0;
    for (std::size_t s = 0; s < steps; ++s) {
      const json& ra = row_at(ia, steps_a, p, s);
      bins.all[bins.bin(ra["margin"].get<double>())]++;
      if (!shared) continue;
      const json& rb = row_at(ib, steps_b, p, s);
      ++compared;
      const auto ids_a = ra["top_ids"].get<std::vector<std::int32_t>>();
      const auto ids_b = rb["top_ids"].get<std::vector<std::int32_t>>();
      const auto lp_a = ra["top_logprobs"].get<std::vector<float>>();
      const auto lp_b = rb["top_logprobs"].get<std::vector<float>>();
      const bool token_same = ra["token"] == rb["token"];
      const bool top1_same = ids_a[0] == ids_b[0];
      const bool hash_same = ra["logits_hash"] == rb["logits_hash"];
      double delta = 0;
      for (std::size_t i = 0; i < ids_a.size(); ++i) {
        for (std::size_t j = 0; j < ids_b.size(); ++j) {
          if (ids_a[i] == ids_b[j]) {
            delta = std::max(delta, std::fabs(double(lp_a[i]) - double(lp_b[j])));
          }
        }
      }
      const auto kl = topk_kl(ids_a, lp_a, ids_b, lp_b);
      if (kl) {
        kls.push_back(*kl);
        kl_sum += *kl;
        kl_max = std::max(kl_max, *kl);
        ++kl_n;
      } else {
        ++kl_undefined;
      }
      delta_max = std::max(delta_max, delta);
      same_top1 += top1_same;
      hash_equal += hash_same;
      if (!token_same) {
        ++mismatches;
        if (!div) {
          div = s;
          margin_at = ra["margin"].get<double>();
          margin_b_at = rb["margin"].get<double>();
        }
      }
      step_rows.push_back({{"prompt", p},
                           {"step", s},
                           {"same_token", token_same},
                           {"same_top1", top1_same},
                           {"logits_equal", hash_same},
                           {"margin_a", ra["margin"]},
                           {"margin_b", rb["margin"]},
                           {"max_abs_delta_logprob", delta},
                           {"kl_topk", kl ? json(*kl) : json(nullptr)}});
      // The history of step s + 1 includes the token fed at step s.
      const json& fa = ra.contains("fed") ? ra["fed"] : ra["token"];
      const json& fb = rb.contains("fed") ? rb["fed"] : rb["token"];
      if (fa != fb) {
        shared = false;
        history_split = s + 1;
      }
    }
    std::string verdict;
    if (div) {
      verdict = "diverged at step " + std::to_string(*div);
      ++prompts_diverged;
      bins.diverged[bins.bin(margin_at)]++;
      divergences.push_back(
          {{"prompt", p}, {"step", *div}, {"margin_a", margin_at}, {"margin_b", margin_b_at}});
      if (!earliest || *div < *earliest) earliest = div;
      all_bitwise = false;
    } else if (compared < steps) {
      // Only with teacher forcing from different sources: same tokens, different histories.
      verdict = "histories differ from step " + std::to_string(history_split) +
                " (teacher-forced from different runs)";
      all_bitwise = false;
    } else if (hash_equal == static_cast<long long>(compared)) {
      verdict = "bitwise identical";
    } else {
      verdict = "numerically different but same tokens";
      all_bitwise = false;
    }
    compared_all += static_cast<long long>(compared);
    same_top1_all += same_top1;
    hash_equal_all += hash_equal;
    token_mismatches_all += mismatches;
    max_delta_all = std::max(max_delta_all, delta_max);
    prompt_rows.push_back(
        {{"prompt", p},
         {"verdict", verdict},
         {"divergence_step", div ? json(*div) : json(nullptr)},
         {"margin_at_divergence", div ? json(margin_at) : json(nullptr)},
         {"margin_b_at_divergence", div ? json(margin_b_at) : json(nullptr)},
         {"steps_compared", compared},
         {"token_mismatches", mismatches},
         {"kl_mean", kl_n ? json(kl_sum / double(kl_n)) : json(nullptr)},
         {"kl_max", kl_n ? json(kl_max) : json(nullptr)},
         {"max_abs_delta_logprob", delta_max},
         {"same_top1_share", compared ? double(same_top1) / double(compared) : 0.0},
         {"logits_equal_share", compared ? double(hash_equal) / double(compared) : 0.0}});
  }

  std::string overall;
  if (earliest) {
    overall = "diverged at step " + std::to_string(*earliest);
  } else if (all_bitwise) {
    overall = "bitwise identical";
  } else {
    overall = "numerically different but same tokens";
  }
  double kl_mean = 0;
  for (double x : kls) kl_mean += x;
  if (!kls.empty()) kl_mean /= double(kls.size());
  const bool teacher_forced = (ca.contains("teacher_forced") && !ca["teacher_forced"].is_null()) ||
                              (cb.contains("teacher_forced") && !cb["teacher_forced"].is_null());
  json summary = {
      {"verdict", overall},
      {"prompts", prompts},
      {"prompts_diverged", prompts_diverged},
      {"earliest_divergence_step", earliest ? json(*earliest) : json(nullptr)},
      {"steps", steps},
      {"steps_compared", compared_all},
      {"token_mismatches", token_mismatches_all},
      {"same_top1_share", compared_all ? double(same_top1_all) / double(compared_all) : 0.0},
      {"logits_equal_share", compared_all ? double(hash_equal_all) / double(compared_all) : 0.0},
      {"kl_mean", kl_mean},
      {"kl_p99", kls.empty() ? 0.0 : quantile(kls, 0.99)},
      {"kl_max", kls.empty() ? 0.0 : *std::max_element(kls.begin(), kls.end())},
      {"kl_undefined_steps", kl_undefined},
      {"max_abs_delta_logprob", max_delta_all}};
  json cfg = {
      {"a", side_summary(a, name_a)},
      {"b", side_summary(b, name_b)},
      {"steps", steps},
      {"teacher_forced", teacher_forced},
      {"compared_steps",
       "steps where A and B have the same history: up to and including the first differing token, "
       "or every step when both were fed the same tokens (teacher forcing)"},
      {"kl_estimate",
       "KL(A || B) on the top-k: over the ids in both top-k lists, exp(logprob) renormalized to "
       "sum to 1 on that shared set on each side; the tail beyond the top-k is ignored, so this "
       "underestimates differences spread over the tail"},
      {"margin", "A's top-1 minus top-2 log-probability"}};
  if (steps_a != steps_b) {
    cfg["note"] = "A has " + std::to_string(steps_a) + " steps, B " + std::to_string(steps_b) +
                  "; the first " + std::to_string(steps) + " are compared";
  }
  // The formats may differ (the same weights quantized on one side): name both, so that a
  // divergence is read as the quantization's, not only the arithmetic's.
  const std::string fa = schema::weight_format_or_bf16(ta.config.weight_format);
  const std::string fb = schema::weight_format_or_bf16(tb.config.weight_format);
  cfg["weight_formats"] = {{"a", fa}, {"b", fb}};
  if (fa != fb) {
    cfg["weight_formats_note"] =
        "A ran " + fa + " weights, B " + fb +
        ": the same weights in two formats, so the differences include the quantization error";
  }
  if (ca.contains("random_weights_caveat")) cfg["random_weights_caveat"] = k_random_weights_caveat;
  return {{"schema", k_diverge_compare_schema},
          {"environment", metrics::environment_block(std::nullopt)},
          {"config", cfg},
          {"summary", summary},
          {"rows", prompt_rows},
          {"steps", step_rows},
          {"divergences", divergences},
          {"margin_histogram", bins.to_json()}};
}

std::string compare_table(const json& r) {
  std::ostringstream out;
  char line[512];
  const json& c = r["config"];
  auto describe = [&](const char* label, const json& side) {
    const json& sc = side["config"];
    std::snprintf(
        line, sizeof line,
        "%s: %s  gpu %s, executor %s, %s weights, batch %d, split %d, graphs %s, "
        "deterministic %s%s\n",
        label, side["file"].get<std::string>().c_str(), side["gpu"].get<std::string>().c_str(),
        sc.value("executor", "?").c_str(),
        // absent in fingerprints before --weights, which ran bf16 (schemas/diverge.hpp)
        sc.value("weight_format", "bf16").c_str(), sc.value("batch", 0), sc.value("split_tokens", 0),
        sc.value("graphs", false) ? "on" : "off", sc.value("deterministic", false) ? "on" : "off",
        sc.contains("teacher_forced") && !sc["teacher_forced"].is_null() ? ", teacher-forced" : "");
    out << line;
  };
  const json& ca = c["a"]["config"];
  out << "model " << ca["model"].get<std::string>() << ", " << ca["weights"].get<std::string>()
      << ", prompts " << ca["prompt_set"]["id"].get<std::string>() << ", "
      << c["steps"].get<long long>() << " steps\n";
  describe("A", c["a"]);
  describe("B", c["b"]);
  if (c.contains("note")) out << "note: " << c["note"].get<std::string>() << "\n";
  if (c.contains("weight_formats_note")) {
    out << "note: " << c["weight_formats_note"].get<std::string>() << "\n";
  }
  out << "\n";
  std::snprintf(line, sizeof line, "%6s  %-40s %10s %9s %10s %10s %10s %8s\n", "prompt", "verdict",
                "margin(A)", "compared", "KL mean", "KL max", "max|dlp|", "same top1");
  out << line;
  auto num = [](const json& v, const char* fmt) {
    return v.is_null() ? std::string("-") : format(fmt, v.get<double>());
  };
  for (const auto& row : r["rows"]) {
    std::snprintf(line, sizeof line, "%6lld  %-40s %10s %9lld %10s %10s %10s %7.1f%%\n",
                  row["prompt"].get<long long>(), row["verdict"].get<std::string>().c_str(),
                  num(row["margin_at_divergence"], "%.4g").c_str(),
                  row["steps_compared"].get<long long>(), num(row["kl_mean"], "%.3g").c_str(),
                  num(row["kl_max"], "%.3g").c_str(),
                  num(row["max_abs_delta_logprob"], "%.3g").c_str(),
                  100.0 * row["same_top1_share"].get<double>());
    out << line;
  }
  const json& s = r["summary"];
  out << "\nverdict: " << s["verdict"].get<std::string>() << " (" << s["prompts_diverged"] << " of "
      << s["prompts"] << " prompts diverged)\n";
  std::snprintf(
      line, sizeof line,
      "KL on the top-k over %lld compared steps: mean %.3g, p99 %.3g, max %.3g; max "
      "|delta log-prob| %.3g; same top-1 %.1f%%; logits bitwise equal %.1f%%\n",
      s["steps_compared"].get<long long>(), s["kl_mean"].get<double>(), s["kl_p99"].get<double>(),
      s["kl_max"].get<double>(), s["max_abs_delta_logprob"].get<double>(),
      100.0 * s["same_top1_share"].get<double>(), 100.0 * s["logits_equal_share"].get<double>());
  out << line;
  out << "margins of A (log-prob, all steps) and where divergences happened:\n";
  for (const auto& b : r["margin_histogram"]) {
    std::string range = num(b["lo"], "%g") + " .. " + (b["hi"].is_null() ? "" : num(b["hi"], "%g"));
    std::snprintf(line, sizeof line, "  %-14s %8lld steps %6lld divergences\n", range.c_str(),
                  b["steps"].get<long long>(), b["divergences"].get<long long>());
    out << line;
  }
  out << "KL is estimated on the top-k (renormalized over the shared ids; the tail is ignored).\n";
  if (c.contains("random_weights_caveat")) {
    out << "caveat: " << c["random_weights_caveat"].get<std::string>() << "\n";
  }
  return out.str();
}

}  // namespace ridgeline::bench
