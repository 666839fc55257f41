// Measured serving steps as fit points, and the serving loop's gap between steps (see
// serving_steps.hpp).
#include "ridgeline/perfmodel/serving_steps.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "ridgeline/core/text.hpp"
#include "ridgeline/perfmodel/weights.hpp"

namespace ridgeline::planner {

step_shape shape_of_step_record(const model_preset& m, std::int64_t sequences,
                                std::int64_t prefill_tokens, std::int64_t decode_tokens,
                                double flops, double bytes, const std::string& where) {
  step_shape s;
  if (sequences <= 0) {
    if (prefill_tokens != 0 || decode_tokens != 0 || flops != 0 || bytes != 0)
      throw std::invalid_argument(where + ": no sequence but tokens or work recorded");
    return s;
  }
  if (prefill_tokens < 0 || decode_tokens < 0 || decode_tokens > sequences ||
      (prefill_tokens == 0 && decode_tokens != sequences) ||
      (prefill_tokens > 0 && decode_tokens == sequences))
    throw std::invalid_argument(where + ": " + std::to_string(sequences) +
                                " sequences cannot hold " + std::to_string(prefill_tokens) +
                                " prefill and " + std::to_string(decode_tokens) + " decode tokens");
  // The engine counts every step as bf16 weights and KV (step_work_of's defaults).
  const double kv = static_cast<double>(m.kv_bytes_per_token(dtype::bf16));
  const double wb = block_weight_bytes(m, weight_format::bf16);
  const double wh = head_weight_bytes(m, weight_format::bf16);
  const auto n = static_cast<double>(sequences), p = static_cast<double>(prefill_tokens),
             d = static_cast<double>(decode_tokens);
  // bytes = block weights + LM head (when the step samples) + KV read (context + decode rows) + KV
  // written (every new token).
  auto context_of = [&](bool head) { return (bytes - wb - (head ? wh : 0.0)) / kv - p - 2 * d; };
  bool head = true;
  double context = context_of(true);
  if (context < -0.5) {
    head = false;
    context = context_of(false);
  }
  const double c = std::round(context);
  if (!(c >= 0) || std::abs(context - c) > 1e-3)
    throw std::invalid_argument(where + ": the recorded bytes (" + format("%.17g", bytes) +
                                ") leave no whole number of KV tokens read");
  // flops = linears + LM head (2 H V per sampled sequence) + attention (per query-key pair).
  const double per_pair = m.attention_flops(1.0);
  const double head_pairs = 2.0 * static_cast<double>(m.lm_head_parameters()) / per_pair;
  const double x = (flops - m.linear_flops_per_token() * (p + d)) / per_pair;
  const double prefills = n - d;
  // The fewest causal pairs the prefill chunks can have: p tokens over `prefills` sequences, each
  // chunk of n tokens at least n (n + 1) / 2 pairs, least when they are equal; one per decode.
  const double least_pairs = d + (prefills > 0 ? p * (p / prefills + 1) / 2 : 0.0);
  double sampled = 0, pairs = x;
  if (head) {
    bool found = false;
    for (double k = n; k >= std::max(d, 1.0); k -= 1) {
      if (x - k * head_pairs >= least_pairs - 1e-6) {
        sampled = k;
        pairs = x - k * head_pairs;
        found = true;
        break;
      }
    }
    if (!found)
      throw std::invalid_argument(where + ": the recorded FLOPs (" + format("%.17g", flops) +
                                  ") leave too few attention pairs for any count of sampled "
                                  "sequences");
  }
  s.sequences = static_cast<std::int32_t>(sequences);
  s.prefill_tokens = prefill_tokens;
  s.decode_tokens = decode_tokens;
  s.sampled_tokens = static_cast<std::int32_t>(sampled);
  s.context_tokens = static_cast<std::int64_t>(c);
  s.attention_pairs = std::round(2 * pairs) / 2;  // a sum of n (c + (n + 1) / 2): halves
  const step_work w = step_work_of(m, s);
  auto off = [](double a, double b) { return std::abs(a - b) > 1e-9 * std::max(1.0, std::abs(b)); };
  if (off(w.flops, flops) || off(w.bytes(), bytes))
    throw std::invalid_argument(
        where + ": the shape rebuilt from the record (" + std::to_string(s.sampled_tokens) +
        " sampled, " + std::to_string(s.context_tokens) + " KV tokens read) gives " +
        format("%.17g", w.flops) + " FLOPs and " + format("%.17g", w.bytes()) +
        " bytes, not the recorded " + format("%.17g", flops) + " and " + format("%.17g", bytes));
  return s;
}

std::vector<serving_step_point> serving_step_points(const schema::serving_steps& s,
                                                    const model_preset& m,
                                                    const std::string& source) {
  const std::size_t n = s.gpu_seconds.size();
  auto check = [&](std::size_t size, const char* column) {
    if (size != n)
      throw std::invalid_argument(source + ": measured.steps." + column + " has " +
                                  std::to_string(size) + " entries, gpu_seconds " +
                                  std::to_string(n));
  };
  check(s.gap_seconds.size(), "gap_seconds");
  check(s.flops.size(), "flops");
  check(s.bytes.size(), "bytes");
  check(s.sequences.size(), "sequences");
  check(s.prefill_tokens.size(), "prefill_tokens");
  check(s.decode_tokens.size(), "decode_tokens");
  check(s.graph.size(), "graph");
  const bool copies = !s.blocks_to_host.empty();
  if (copies) {
    check(s.blocks_to_host.size(), "blocks_to_host");
    check(s.blocks_to_gpu.size(), "blocks_to_gpu");
  }
  std::vector<serving_step_point> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    serving_step_point p;
    p.index = static_cast<std::int64_t>(i);
    p.shape =
        shape_of_step_record(m, s.sequences[i], s.prefill_tokens[i], s.decode_tokens[i], s.flops[i],
                             s.bytes[i], source + ": measured.steps[" + std::to_string(i) + "]");
    p.gpu_seconds = s.gpu_seconds[i];
    if (!(p.gpu_seconds > 0) && p.shape.sequences > 0)
      throw std::invalid_argument(source + ": measured.steps[" + std::to_string(i) +
                                  "]: gpu_seconds must be positive");
    p.gap_seconds = s.gap_seconds[i];
    p.graph = s.graph[i] != 0;
    p.host_copies = copies && (s.blocks_to_host[i] > 0 || s.blocks_to_gpu[i] > 0);
    out.push_back(p);
  }
  return out;
}

loop_gaps loop_gaps_of(const std::vector<std::vector<serving_step_point>>& runs,
                       const std::vector<std::string>& labels) {
  double decode = 0, prefill = 0;
  loop_gaps g;
  for (const auto& run : runs) {
    for (const auto& p : run) {
      if (p.index == 0 || !(p.gap_seconds >= 0) || !p.follows_work() || p.host_copies) continue;
      if (p.decode_only()) {
        decode += p.gap_seconds;
        ++g.decode_steps;
      } else {
        prefill += p.gap_seconds;
        ++g.prefill_steps;
      }
    }
  }
  if (!g.measured())
    throw std::invalid_argument(
        "loop gaps: no step follows work in the runs (a decode token in "
        "the step, a recorded gap, no host-tier copies)");
  if (g.decode_steps > 0) g.decode_seconds = decode / static_cast<double>(g.decode_steps);
  if (g.prefill_steps > 0) g.prefill_seconds = prefill / static_cast<double>(g.prefill_steps);
  std::string names;
  for (const auto& l : labels) names += (names.empty() ? "" : ", ") + l;
  g.source = "measured: mean GPU idle before a step that follows work, " +
             format("%.1f", g.decode_seconds * 1e6) + " us before a decode-only step (" +
             std::to_string(g.decode_steps) + " steps), " +
             format("%.1f", g.prefill_seconds * 1e6) + " us before one with prefill tokens (" +
             std::to_string(g.prefill_steps) + " steps)";
  if (g.decode_steps == 0) {
    g.decode_seconds = g.prefill_seconds;
    g.source += "; no decode-only step: the prefill steps' figure";
  } else if (g.prefill_steps == 0) {
    g.prefill_seconds = g.decode_seconds;
    g.source += "; no step with prefill tokens: the decode steps' figure";
  }
  g.source += " (" + names + ")";
  return g;
}

}  // namespace ridgeline::planner
