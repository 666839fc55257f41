// GPU half of `ridgeline sweep` (see sweep.hpp). One engine (random weights, KV pool filled with
// random values) serves every point. A decode point is B sequences at `context` cached tokens
// computing one new token each; a prefill point is B prompts of `context` tokens in one step.
// The batch comes from make_synthetic_step: block tables from a KV cache manager with the
// shuffled placement (sweep_common.cpp). Each point repeats the same step (its new KV overwrites the same slots) under the harness's
// stopping rule; decode replays a CUDA graph. --weights stores the block linears quantized
// (engine_options::weights); every point's bytes count them at their packed size.
#include <algorithm>
#include <filesystem>
#include <random>

#include "ridgeline/telemetry/measure.hpp"
#include "ridgeline/sweep/sweep.hpp"
#include "ridgeline/engine/checkpoint.hpp"
#include "ridgeline/engine/cuda_engine.hpp"
#include "ridgeline/engine/kv_cache.hpp"
#include "ridgeline/telemetry/device.hpp"
#include "ridgeline/telemetry/environment.hpp"
#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/telemetry/nvtx.hpp"

namespace ridgeline::bench {

using nlohmann::json;

json run_sweep(const sweep_options& o) {
  validate_sweep_options(o);
  if (metrics::device_count() == 0) {
    throw no_device_error("ridgeline sweep needs a CUDA GPU: " + metrics::no_device_reason());
  }
  const decoder_config dc =
      o.checkpoint.empty()
          ? make_decoder_config(model_preset_by_name(o.model))
          : read_checkpoint_config(o.checkpoint);
  const model_preset& m = dc.model;
  const auto dev = metrics::query_device(o.device);
  if (!dev) throw std::invalid_argument("--device " + std::to_string(o.device) + " does not exist");

  // Ceilings: the probe's profile when given, else the one embedded for this GPU, else the
  // datasheet (labelled so in floor_source and peak_source).
  const sweep_ceilings ceilings =
      resolve_sweep_ceilings(o.profile, dev->name, dev->theoretical_dram_bytes_per_second());
  const double read_bw = bandwidth_ceiling_of(ceilings.profile, traffic_kind::read).bytes_per_second;
  if (o.live && ceilings.peak_flops_per_second > 0 && read_bw > 0) {
    o.live->set_ceilings("bf16", ceilings.peak_flops_per_second, read_bw);
  }

  engine_options eo;
  eo.device = o.device;
  eo.cuda_graphs = o.cuda_graphs;
  eo.split_tokens = o.split_tokens;
  eo.pdl = o.pdl;
  eo.batch_invariant = o.batch_invariant;
  eo.gemm_candidates = o.gemm_candidates;
  eo.gemm = o.gemm;
  eo.max_seqs = std::max(*std::max_element(o.batches.begin(), o.batches.end()), 1);
  eo.max_tokens = std::max(o.max_prefill_tokens, eo.max_seqs);
  eo.weights = o.weights;
  eo.checkpoint = o.checkpoint;
  if (o.progress) {
    o.progress("loading " + m.name + " (" +
               (o.checkpoint.empty() ? std::string("random weights") : o.checkpoint) +
               (o.weights ? ", " + std::string(planner::name(*o.weights)) : std::string()) +
               ") and sizing the KV pool");
  }
  cuda_engine engine(dc, eo);
  // The bytes of every point: the block linears as the engine holds them.
  const planner::weight_layout layout = engine_weight_layout(o.checkpoint, engine.weight_format());
  engine.fill_kv_random(7);
  const int block_tokens = eo.block_tokens;
  const double kv_token = static_cast<double>(m.kv_bytes_per_token(dtype::bf16));

  measure_options mo;
  mo.device = o.device;
  mo.warmup = 3;
  mo.stop = o.full ? stopping_rule{20, 200, 0.005, 3.0} : stopping_rule{10, 50, 0.01, 1.0};

  json rows = json::array();
  std::mt19937 rng(11);
  for (const std::string& phase : o.phases) {
    const bool prefill = phase == "prefill";
    for (int context : o.contexts) {
      for (int batch : o.batches) {
        json row = {{"phase", phase}, {"batch", batch}, {"context", context},
                    {"kv_bytes_per_token", kv_token}};
        row["max_sequences"] =
            engine.num_kv_blocks() / synthetic_step_blocks(context, prefill, block_tokens);
        std::string skip = synthetic_step_skip_reason(m, block_tokens, engine.num_kv_blocks(),
                                                      batch, context, prefill);
        if (skip.empty() && prefill && std::int64_t(batch) * context > o.max_prefill_tokens) {
          skip = "prefill of " + std::to_string(std::int64_t(batch) * context) +
                 " tokens exceeds the step budget of " + std::to_string(o.max_prefill_tokens);
        }
        if (!skip.empty()) {
          row["skipped"] = skip;
          rows.push_back(row);
          continue;
        }
        synthetic_step step;
        make_synthetic_step(step, m, block_tokens, batch, context, prefill, rng);
        const auto& seqs = step.seqs;
        const step_work w = count_step_work(m, batch, context, prefill, layout);
        const metrics::step_sample live_step{
            prefill ? metrics::step_phase::prefill : metrics::step_phase::decode,
            0.0,
            batch,
            prefill ? std::int64_t(batch) * context : 0,
            prefill ? 0 : std::int64_t(batch),
            batch,
            w.flops,
            w.bytes()};
        const metrics::nvtx_range range("sweep " + phase + " batch " + std::to_string(batch) +
                                        " context " + std::to_string(context));
        const measurement meas = measure(
            [&] {
              const double step_s = engine.timed_step(seqs);
              if (o.live) {  // after the step's events: outside the timed region
                metrics::step_sample obs = live_step;
                obs.seconds = step_s;
                o.live->observe_step(obs);
              }
              return step_s;
            },
            mo);
        if (o.live) {
          if (auto g = metrics::nvml::instance().sample(o.device)) o.live->set_gpu(o.device, *g);
        }
        const double t = meas.stats.median;
        row["step_seconds"] = to_json(meas.stats);
        row["measurement"] = to_json(meas);
        row["tokens_per_second"] = (prefill ? double(batch) * context : double(batch)) / t;
        row["bytes_per_step"] = w.bytes();
        row["weight_bytes"] = w.weight_bytes;
        row["kv_read_bytes"] = w.kv_read_bytes;
        row["kv_write_bytes"] = w.kv_write_bytes;
        row["flops_per_step"] = w.flops;
        row["bytes_per_second"] = w.bytes() / t;
        row["flops_per_second"] = w.flops / t;
        row["intensity_flops_per_byte"] = w.flops / w.bytes();
        put_floor(row, ceilings);  // floor_seconds, pct_of_floor, floor_ceiling, % of peak
        if (o.peer) {
          if (const auto ps = peer_step_seconds(*o.peer, batch, context, phase)) {
            row["peer_seconds"] = *ps;
          }
        }
        if (o.progress) {
          o.progress(phase + " batch " + std::to_string(batch) + " context " + std::to_string(context) +
                     ": " + format_ms(t, 3));
        }
        rows.push_back(row);
      }
    }
  }
  json cfg = {{"model", m.name},
              {"batches", o.batches},
              {"contexts", o.contexts},
              {"phases", o.phases},
              {"dtype", "bf16"},
              {"weights", o.checkpoint.empty() ? std::string("seeded random") : o.checkpoint},
              {"weight_format", std::string(planner::name(layout.format))},
              {"weight_layout", planner::describe(layout)},
              {"sampling", "greedy"},
              {"cuda_graphs", o.cuda_graphs},
              {"split_tokens", effective_options(eo).split_tokens},
              {"pdl", o.pdl},
              {"deterministic", o.batch_invariant},
              {"gemm_candidates", o.gemm_candidates},
              {"gemm", o.gemm},
              {"kv_blocks", engine.num_kv_blocks()},
              {"block_tokens", block_tokens},
              {"max_prefill_tokens", o.max_prefill_tokens},
              {"timing", "CUDA events around the forward pass, median over repetitions after 3 warm-ups"}};
  put_ceilings(cfg, ceilings);
  if (o.peer) cfg["peer"] = o.peer->config;
  return {{"schema", k_sweep_schema},
          {"environment", metrics::environment_block(o.device)},
          {"config", cfg},
          {"rows", rows}};
}

}  // namespace ridgeline::bench
