// Host half of the sweep: option checks, the peer's step time at a point, counted work
// (perfmodel's step_work_of), the ceilings and floor columns (and their re-derivation for
// committed results), the synthetic step's batch (built through the KV cache manager), table and
// CSV.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "ridgeline/core/files.hpp"
#include "ridgeline/core/schemas/sweep.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/engine/checkpoint.hpp"
#include "ridgeline/engine/quant_checkpoint.hpp"
#include "ridgeline/engine/quant_weights.hpp"
#include "ridgeline/perfmodel/memory_model.hpp"
#include "ridgeline/perfmodel/profiles.hpp"
#include "ridgeline/sweep/sweep.hpp"

namespace ridgeline::bench {

void validate_sweep_options(const sweep_options& o) {
  if (o.checkpoint.empty()) model_preset_by_name(o.model);  // throws with the known names
  if (o.batches.empty() || o.contexts.empty()) {
    throw std::invalid_argument("sweep: --batch and --context need at least one value each");
  }
  for (int b : o.batches) {
    if (b <= 0 || b > 4096) throw std::invalid_argument("sweep: batch " + std::to_string(b) + " out of range [1, 4096]");
  }
  for (int c : o.contexts) {
    if (c <= 0 || c > (1 << 20)) throw std::invalid_argument("sweep: context " + std::to_string(c) + " out of range [1, 1048576]");
  }
  for (const auto& p : o.phases) {
    if (p != "decode" && p != "prefill") {
      throw std::invalid_argument("sweep: unknown phase '" + p + "' (expected decode or prefill)");
    }
  }
  if (o.max_prefill_tokens <= 0) throw std::invalid_argument("sweep: --max-prefill-tokens must be positive");
  if (o.gemm != "auto" && o.gemm != "cublas" && o.gemm != "skinny") {
    throw std::invalid_argument("sweep: --gemm " + o.gemm + ": expected auto, cublas or skinny");
  }
  if (o.gemm_candidates < 1 || o.gemm_candidates > 1024) {
    throw std::invalid_argument("sweep: --gemm-candidates " + std::to_string(o.gemm_candidates) +
                                " out of range [1, 1024]");
  }
}

std::optional<double> peer_step_seconds(const schema::peer_document& peer, int batch, int context,
                                        const std::string& phase) {
  for (const auto& r : peer.rows) {
    if (r.batch == batch && r.context == context && r.phase == phase && r.step_seconds) {
      return r.step_seconds->median;
    }
  }
  return std::nullopt;
}

step_work count_step_work(const model_preset& m, int batch, int context, bool prefill,
                          const planner::weight_layout& weights) {
  return step_work_of(m, prefill ? prefill_shape(batch, context) : decode_shape(batch, context),
                      weights);
}

planner::weight_layout engine_weight_layout(const std::string& checkpoint,
                                            planner::weight_format f) {
  if (f == planner::weight_format::bf16 || checkpoint.empty()) return f;
  const std::filesystem::path path(checkpoint);
  const std::optional<planner::weight_format> stored = checkpoint_weight_format(path);
  if (!stored) return f;  // a bf16 checkpoint, quantized at load
  if (is_gguf_checkpoint(path)) return {f, cpu::k_ggml_block_elements};  // Q4_0, Q8_0
  if (f != planner::weight_format::int4) return f;  // Hugging Face fp8: per channel
  // AWQ / GPTQ: the group size of config.json's quantization_config, else quantize_config.json
  // (the engine's lookup order).
  std::error_code ec;
  const std::filesystem::path folder =
      std::filesystem::is_directory(path, ec) ? path : path.parent_path();
  std::filesystem::path cfg = folder / "config.json";
  if (!std::filesystem::exists(cfg, ec) ||
      !nlohmann::json::parse(read_text_file(cfg), nullptr, false).contains("quantization_config")) {
    cfg = folder / "quantize_config.json";
  }
  const int group = read_quantization_config(cfg).group_size;
  return {f, group > 0 ? group : -1};
}

sweep_ceilings resolve_sweep_ceilings(const std::optional<gpu_profile>& given,
                                      const std::string& device_name,
                                      double theoretical_dram_bytes_per_second) {
  sweep_ceilings c;
  const gpu_profile* measured = given ? &*given : nullptr;
  if (measured == nullptr) {
    for (const auto& p : planner::measured_profiles()) {
      if (p.name == device_name) measured = &p;
    }
  }
  if (measured != nullptr) {
    c.profile = *measured;
    c.measured = measured->source == "measured" && measured->read_bytes_per_second > 0;
    c.source = (c.measured ? "probe profile of " : "datasheet profile of ") + measured->name;
  } else if (const datasheet_entry* ds = datasheet_for_device(device_name)) {
    c.profile = planner::datasheet_profile(*ds);
    c.source = std::string("datasheet of ") + ds->name +
               " (no measured profile of this GPU: `ridgeline probe -o gpu.json`, then --gpu)";
  } else {
    c.profile.name = device_name;
    c.profile.source = "theoretical";
    c.profile.datasheet_bytes_per_second = theoretical_dram_bytes_per_second;
    c.source = "theoretical bandwidth from memory clock and bus width (no measured profile, no "
               "datasheet entry)";
  }
  const auto it = c.profile.peaks.find(dtype::bf16);
  const double gemm = it != c.profile.peaks.end() ? it->second.flops_per_second : 0;
  const double sheet = it != c.profile.peaks.end() ? it->second.datasheet_flops_per_second : 0;
  c.peak_flops_per_second = gemm > 0 ? gemm : sheet;
  if (c.peak_flops_per_second > 0) {
    c.peak_label = (gemm > 0 ? "measured bf16 GEMM peak " : "datasheet bf16 peak ") +
                   format("%.1f", c.peak_flops_per_second / 1e12) + " TFLOP/s" +
                   (gemm > 0 ? "" : " (no measured bf16 GEMM peak)");
  }
  return c;
}

void put_ceilings(nlohmann::json& config, const sweep_ceilings& c) {
  const bandwidth_ceiling read = bandwidth_ceiling_of(c.profile, traffic_kind::read);
  const bandwidth_ceiling copy = bandwidth_ceiling_of(c.profile, traffic_kind::copy);
  const bandwidth_ceiling write = bandwidth_ceiling_of(c.profile, traffic_kind::write);
  config["floor_bytes_per_second"] = read.bytes_per_second;
  config["floor_ceiling"] = std::string(name(read.kind));
  config["floor_source"] = read.label() + " (" + c.source + ")";
  config["floor_copy_bytes_per_second"] = copy.bytes_per_second;
  config["floor_write_bytes_per_second"] = write.bytes_per_second;
  config["floor_rule"] = k_bandwidth_floor_rule;
  config["peak_bf16_flops_per_second"] = c.peak_flops_per_second;
  config["peak_source"] = c.peak_flops_per_second > 0 ? c.peak_label + " (" + c.source + ")"
                                                      : std::string("none");
}

void put_floor(nlohmann::json& row, const sweep_ceilings& c) {
  const double t = row.at("step_seconds").at("median").get<double>();
  const double read = row.at("weight_bytes").get<double>() + row.at("kv_read_bytes").get<double>();
  const double written = row.at("kv_write_bytes").get<double>();
  const double flops = row.at("flops_per_step").get<double>();
  const bandwidth_floor f = bandwidth_floor_of(c.profile, read, written);
  row["floor_seconds"] = f.seconds;
  row["pct_of_floor"] = f.seconds > 0 && t > 0 ? 100.0 * f.seconds / t : 0.0;
  row["floor_ceiling"] = std::string(name(f.dominant));
  row["pct_of_peak_flops"] =
      c.peak_flops_per_second > 0 && t > 0 ? 100.0 * (flops / t) / c.peak_flops_per_second : 0.0;
}

nlohmann::json rederive_sweep_floor(nlohmann::json doc, const sweep_ceilings& c,
                                    const std::string& note) {
  const schema::sweep_document typed = schema::parse_sweep(doc, "sweep to re-derive");
  const std::string gpu = typed.env.gpu ? typed.env.gpu->name : "";
  if (c.measured && gpu != c.profile.name) {
    throw std::invalid_argument("sweep --rederive: the document ran on '" + gpu +
                                "', the ceilings are of '" + c.profile.name + "'");
  }
  nlohmann::json& cfg = doc["config"];
  // What the measured run divided by; a document re-derived before keeps the first one's record.
  std::string before = "; before: every byte / " +
                       format("%.2f", cfg.at("floor_bytes_per_second").get<double>() / 1e12) +
                       " TB/s (" + cfg.at("floor_source").get<std::string>() + ")";
  if (typed.config.floor_rederived) {
    const std::size_t at = typed.config.floor_rederived->find("; before: ");
    if (at != std::string::npos) before = typed.config.floor_rederived->substr(at);
  }
  put_ceilings(cfg, c);
  cfg["floor_rederived"] = note + before;
  for (auto& row : doc["rows"]) {
    if (!row.contains("skipped")) put_floor(row, c);
  }
  schema::parse_sweep(doc, "re-derived sweep");  // still the format
  return doc;
}

std::int64_t synthetic_step_blocks(int context, bool prefill, int block_tokens) {
  return blocks_for(prefill ? context : context + 1, block_tokens);
}

std::string synthetic_step_skip_reason(const model_preset& m, int block_tokens,
                                       std::int64_t pool_blocks, int batch, int context,
                                       bool prefill) {
  const std::int64_t seq_tokens = prefill ? context : context + 1;
  const std::int64_t blocks_per_seq = synthetic_step_blocks(context, prefill, block_tokens);
  const std::int64_t fit = pool_blocks / blocks_per_seq;
  if (seq_tokens > m.max_context) {
    return "context " + std::to_string(seq_tokens) + " is beyond " + m.name + "'s limit of " +
           std::to_string(m.max_context) + " tokens";
  }
  if (batch > fit) {
    const double bytes =
        double(batch) * double(seq_tokens) * double(m.kv_bytes_per_token(dtype::bf16));
    return "needs " + std::to_string(batch * blocks_per_seq) + " KV blocks (" +
           format_gib(bytes, 2) + "); the pool holds " +
           std::to_string(pool_blocks) + " (" + std::to_string(fit) + " sequences at this context)";
  }
  return {};
}

void make_synthetic_step(synthetic_step& out, const model_preset& m, int block_tokens, int batch,
                         int context, bool prefill, std::mt19937& rng) {
  const std::int64_t seq_tokens = prefill ? context : context + 1;
  const std::int64_t blocks_per_seq = synthetic_step_blocks(context, prefill, block_tokens);
  kv_cache_config c;
  c.block_tokens = block_tokens;
  c.num_blocks = static_cast<std::int32_t>(batch * blocks_per_seq);
  c.prefix_caching = false;  // random tokens share nothing
  c.track_recompute = false;
  c.placement = block_placement::shuffled;
  c.placement_seed = rng();
  out.seqs.clear();  // they point into the manager replaced here
  out.kv.emplace(c);
  out.tokens.assign(static_cast<std::size_t>(batch), {});
  std::uniform_int_distribution<token_id> tok(0, m.vocab - 1);
  std::vector<seq_id> ids;
  for (int b = 0; b < batch; ++b) {
    auto& t = out.tokens[static_cast<std::size_t>(b)];
    t.resize(static_cast<std::size_t>(seq_tokens));
    for (auto& x : t) x = tok(rng);
    // Decode: the context and the token computed this step hold KV slots (as the scheduler
    // appends a step's tokens before running it); prefill: the prompt.
    const seq_id s = out.kv->create_sequence();
    if (!out.kv->append(s, t)) {
      throw std::logic_error("synthetic step: the KV pool sized for the step is too small");
    }
    ids.push_back(s);
  }
  out.seqs.assign(static_cast<std::size_t>(batch), {});
  for (int b = 0; b < batch; ++b) {
    auto& s = out.seqs[static_cast<std::size_t>(b)];
    s.tokens = out.tokens[static_cast<std::size_t>(b)];
    s.context_before = prefill ? 0 : context;
    s.new_tokens = prefill ? context : 1;
    s.blocks = out.kv->block_table(ids[static_cast<std::size_t>(b)]);
    s.samples = true;
    s.prefill = prefill;
  }
}

// Both read the document through the sweep format's reader (core/schemas/sweep.hpp).
std::string sweep_table(const nlohmann::json& doc) {
  const schema::sweep_document sweep = schema::parse_sweep(doc, "sweep");
  const auto& cfg = sweep.config;
  std::ostringstream out;
  // The weights' format (bf16 in sweeps before --weights) and what the bytes counted.
  const std::string weights = schema::weight_format_or_bf16(cfg.weight_format);
  out << "ridgeline sweep: " << cfg.model << " on " << (sweep.env.gpu ? sweep.env.gpu->name : "?")
      << " (" << cfg.weight_layout.value_or(weights) << " weights, bf16 activations, "
      << (cfg.weights == "seeded random" ? std::string("random weights") : cfg.weights)
      << ", greedy" << (cfg.cuda_graphs ? ", CUDA graphs for decode" : "") << ")\n";
  if (weights != "bf16") {
    out << "GB/step counts the block linears at their packed bytes (codes, scales, zero points; "
           "perfmodel/weights.hpp); the embedding and LM head stay bf16\n";
  }
  if (cfg.floor_ceiling) {
    out << "% floor = bandwidth floor / median; the floor: each counted byte at the ceiling that "
           "matches it,\n  "
        << cfg.floor_source << " for bytes read";
    if (cfg.floor_copy_bytes_per_second) {
      out << ", copy " << format("%.2f", *cfg.floor_copy_bytes_per_second / 1e12)
          << " TB/s for written bytes paired with reads";
    }
    if (cfg.floor_write_bytes_per_second) {
      out << ", write " << format("%.2f", *cfg.floor_write_bytes_per_second / 1e12)
          << " TB/s for the other writes";
    }
    out << ";\n  `ceiling` names the one that carries most of the step's bytes\n";
  } else {  // written before the matching ceilings: one bandwidth for every byte
    out << "% floor = (counted bytes / " << format("%.2f", cfg.floor_bytes_per_second / 1e12)
        << " TB/s) / median (" << cfg.floor_source << ")\n";
  }
  out << "% peak = achieved FLOP/s / "
      << (cfg.peak_source ? *cfg.peak_source
                          : format("%.1f", cfg.peak_bf16_flops_per_second / 1e12) + " TFLOP/s")
      << "\n";
  if (cfg.floor_rederived) out << "re-derived: " << *cfg.floor_rederived << "\n";
  out << "\n";
  out << "  phase    batch  context   median ms    p90 ms      tok/s   GB/step  floor ms  "
         "% floor  ceiling  TFLOP/s  % peak";
  const bool peer = cfg.peer.has_value();
  if (peer) out << "  peer ms  peer/ours";
  out << "\n";
  for (const auto& r : sweep.rows) {
    out << "  " << r.phase << std::string(9 - r.phase.size(), ' ')
        << format("%5.0f", static_cast<double>(r.batch))
        << format("  %7.0f", static_cast<double>(r.context));
    if (r.skipped) {
      out << "   skipped: " << *r.skipped << "\n";
      continue;
    }
    const auto& m = *r.measured;
    out << format("  %10.3f", m.step_seconds.median * 1e3) << format("  %8.3f", m.step_seconds.p90 * 1e3)
        << format("  %9.0f", m.tokens_per_second) << format("  %8.2f", m.bytes_per_step / 1e9)
        << format("  %8.3f", m.floor_seconds * 1e3) << format("  %6.1f%%", m.pct_of_floor);
    const std::string ceiling = m.floor_ceiling ? *m.floor_ceiling : "-";
    out << "  " << ceiling << std::string(ceiling.size() < 7 ? 7 - ceiling.size() : 0, ' ')
        << format("  %7.1f", m.flops_per_second / 1e12) << format("  %5.1f%%", m.pct_of_peak_flops);
    if (peer && m.peer_seconds) {
      out << format("  %7.3f", *m.peer_seconds * 1e3)
          << format("  %8.3fx", *m.peer_seconds / m.step_seconds.median);
    }
    out << "\n";
  }
  return out.str();
}

std::string sweep_csv(const nlohmann::json& doc) {
  const schema::sweep_document sweep = schema::parse_sweep(doc, "sweep");
  using j = nlohmann::json;  // numbers as the JSON has them (shortest round-trip text)
  std::ostringstream out;
  out << "phase,batch,context,median_seconds,p10_seconds,p90_seconds,tokens_per_second,"
         "bytes_per_step,flops_per_step,bytes_per_second,flops_per_second,floor_seconds,"
         "pct_of_floor,floor_ceiling,pct_of_peak_flops,kv_bytes_per_token,max_sequences,"
         "skipped\n";
  for (const auto& r : sweep.rows) {
    out << r.phase << "," << r.batch << "," << r.context << ",";
    if (r.skipped) {
      // Empty: the 12 measured columns.
      out << ",,,,,,,,,,,," << r.kv_bytes_per_token << "," << r.max_sequences << ",\""
          << *r.skipped << "\"\n";
      continue;
    }
    const auto& m = *r.measured;
    const auto& s = m.step_seconds;
    out << j(s.median) << "," << j(s.p10) << "," << j(s.p90) << "," << j(m.tokens_per_second)
        << "," << j(m.bytes_per_step) << "," << j(m.flops_per_step) << ","
        << j(m.bytes_per_second) << "," << j(m.flops_per_second) << "," << j(m.floor_seconds)
        << "," << j(m.pct_of_floor) << "," << m.floor_ceiling.value_or("") << ","
        << j(m.pct_of_peak_flops) << ","
        << j(r.kv_bytes_per_token) << "," << r.max_sequences << ",\n";
  }
  return out.str();
}

}  // namespace ridgeline::bench
