// The steps a measured serving run recorded (`ridgeline replay`, ridgeline.kv/v1
// rows[].measured.steps) as points the step-time model can be fitted on and checked against:
// each step's shape rebuilt from its record, its forward time, and the GPU idle time the serving
// loop put before it. docs/plan.md, "Calibration from serving".
//   auto pts = serving_step_points(doc.rows[0].measured->steps, model_preset_by_name("llama-3-8b"),
//                                  "azure.json.gz");
//   loop_gaps g = loop_gaps_of({pts}, {"azure.json.gz"});   // the loop's mean idle per step kind
//
// A record holds a step's sequences, prefill and decode tokens and its counted FLOPs and bytes
// (step_work_of of the engine's plan, bf16 weights and KV), not every sequence's context. The
// shape's sums are rebuilt from them exactly: KV tokens read (context_tokens) from the bytes, then
// sampled sequences and query-key pairs from the FLOPs; an LM head costs as many FLOPs as some
// whole number of query-key pairs (2004 for llama-3-8b), so the sampled count is taken as the
// largest from the decodes to every sequence that leaves the prefill chunks at least their causal
// pairs (every prefill sequence samples but a chunk cut short by the token budget). The rebuilt
// shape must give the recorded FLOPs and bytes back, else the reader throws naming the step.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ridgeline/core/schemas/serving_results.hpp"
#include "ridgeline/perfmodel/fitted_parameters.hpp"
#include "ridgeline/perfmodel/model.hpp"
#include "ridgeline/perfmodel/step_work.hpp"

namespace ridgeline::planner {

struct serving_step_point {
  std::int64_t index = 0;  // position in the run's step columns
  step_shape shape;        // sums rebuilt from the record (no tier-2 loads: the forward's own work)
  double gpu_seconds = 0;  // forward pass, CUDA events
  double gap_seconds = -1;   // GPU idle since the previous forward pass (-1: the run's first step)
  bool graph = false;        // ran as a CUDA graph (decode-only steps with graphs on)
  bool host_copies = false;  // host-tier block copies before it (their time is in the gap)
  // The loop had work when the previous step ended: a sequence of this step was decoding already
  // (the loop only sleeps when nothing is running or waiting), so the gap is the loop's own time.
  bool follows_work() const { return shape.decode_tokens > 0; }
  bool decode_only() const { return shape.prefill_tokens == 0; }
};

// The shape of one recorded step (rules above). Throws std::invalid_argument (naming `where`) when
// no shape of these sums gives the recorded FLOPs and bytes.
step_shape shape_of_step_record(const model_preset& m, std::int64_t sequences,
                                std::int64_t prefill_tokens, std::int64_t decode_tokens,
                                double flops, double bytes, const std::string& where);

// Every step of a run's record, in order. Throws std::invalid_argument naming `source` and the step
// when a column is short or a step's shape cannot be rebuilt.
std::vector<serving_step_point> serving_step_points(const schema::serving_steps& s,
                                                    const model_preset& m,
                                                    const std::string& source);

// The loop_gaps (fitted_parameters.hpp) of runs: the mean GPU idle time (gap_seconds) before a
// step that follows work (follows_work), without host-tier copies, the run's first step left out,
// over every step of every run (labels name the runs in `source`). A kind with no such step gets
// the other kind's mean; none at all throws std::invalid_argument.
loop_gaps loop_gaps_of(const std::vector<std::vector<serving_step_point>>& runs,
                       const std::vector<std::string>& labels);

}  // namespace ridgeline::planner
