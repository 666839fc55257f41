// Host half of the sweep: option checks, counted work (perfmodel's step_work_of), table and CSV.
#include <algorithm>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "ridgeline/core/text.hpp"
#include "ridgeline/perfmodel/memory_model.hpp"
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

step_work count_step_work(const model_preset& m, int batch, int context, bool prefill) {
  return step_work_of(m, prefill ? prefill_shape(batch, context) : decode_shape(batch, context));
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
           std::to_string(bytes / double(1ULL << 30)).substr(0, 5) + " GiB); the pool holds " +
           std::to_string(pool_blocks) + " (" + std::to_string(fit) + " sequences at this context)";
  }
  return {};
}

void make_synthetic_step(synthetic_step& out, const model_preset& m, int block_tokens, int batch,
                         int context, bool prefill, std::mt19937& rng) {
  const std::int64_t seq_tokens = prefill ? context : context + 1;
  const std::int64_t blocks_per_seq = synthetic_step_blocks(context, prefill, block_tokens);
  out.pool.resize(static_cast<std::size_t>(batch * blocks_per_seq));
  for (std::size_t i = 0; i < out.pool.size(); ++i) out.pool[i] = static_cast<block_id>(i);
  std::shuffle(out.pool.begin(), out.pool.end(), rng);
  out.tokens.assign(static_cast<std::size_t>(batch), {});
  out.seqs.assign(static_cast<std::size_t>(batch), {});
  std::uniform_int_distribution<token_id> tok(0, m.vocab - 1);
  for (int b = 0; b < batch; ++b) {
    auto& t = out.tokens[static_cast<std::size_t>(b)];
    t.resize(static_cast<std::size_t>(seq_tokens));
    for (auto& x : t) x = tok(rng);
    auto& s = out.seqs[static_cast<std::size_t>(b)];
    s.tokens = t;
    s.context_before = prefill ? 0 : context;
    s.new_tokens = prefill ? context : 1;
    s.blocks = std::span<const block_id>(out.pool.data() + b * blocks_per_seq,
                                         static_cast<std::size_t>(blocks_per_seq));
    s.samples = true;
  }
}

std::string sweep_table(const nlohmann::json& doc) {
  std::ostringstream out;
  const auto& cfg = doc["config"];
  out << "ridgeline sweep: " << cfg.value("model", "") << " on "
      << doc["environment"]["gpu"].value("name", "?") << " (bf16, random weights, greedy"
      << (cfg.value("cuda_graphs", false) ? ", CUDA graphs for decode" : "") << ")\n";
  out << "floor = counted bytes / "
      << format("%.2f", cfg.value("floor_bytes_per_second", 0.0) / 1e12) << " TB/s ("
      << cfg.value("floor_source", "") << ")\n\n";
  out << "  phase    batch  context   median ms    p90 ms      tok/s   GB/step  floor ms  "
         "% floor  TFLOP/s  % peak";
  const bool peer = cfg.contains("peer");
  if (peer) out << "  peer ms  peer/ours";
  out << "\n";
  for (const auto& r : doc["rows"]) {
    out << "  " << r["phase"].get<std::string>()
        << std::string(9 - r["phase"].get<std::string>().size(), ' ')
        << format("%5.0f", r["batch"].get<double>())
        << format("  %7.0f", r["context"].get<double>());
    if (r.contains("skipped")) {
      out << "   skipped: " << r["skipped"].get<std::string>() << "\n";
      continue;
    }
    out << format("  %10.3f", r["step_seconds"]["median"].get<double>() * 1e3)
        << format("  %8.3f", r["step_seconds"]["p90"].get<double>() * 1e3)
        << format("  %9.0f", r["tokens_per_second"].get<double>())
        << format("  %8.2f", r["bytes_per_step"].get<double>() / 1e9)
        << format("  %8.3f", r["floor_seconds"].get<double>() * 1e3)
        << format("  %6.1f%%", r["pct_of_floor"].get<double>())
        << format("  %7.1f", r["flops_per_second"].get<double>() / 1e12)
        << format("  %5.1f%%", r["pct_of_peak_flops"].get<double>());
    if (peer && r.contains("peer_seconds")) {
      out << format("  %7.3f", r["peer_seconds"].get<double>() * 1e3)
          << format("  %8.3fx",
                    r["peer_seconds"].get<double>() / r["step_seconds"]["median"].get<double>());
    }
    out << "\n";
  }
  return out.str();
}

std::string sweep_csv(const nlohmann::json& doc) {
  std::ostringstream out;
  out << "phase,batch,context,median_seconds,p10_seconds,p90_seconds,tokens_per_second,"
         "bytes_per_step,flops_per_step,bytes_per_second,flops_per_second,floor_seconds,"
         "pct_of_floor,pct_of_peak_flops,kv_bytes_per_token,max_sequences,skipped\n";
  for (const auto& r : doc["rows"]) {
    out << r["phase"].get<std::string>() << "," << r["batch"] << "," << r["context"] << ",";
    if (r.contains("skipped")) {
      out << ",,,,,,,,,,,," << r.value("kv_bytes_per_token", 0.0) << "," << r.value("max_sequences", 0) << ",\""
          << r["skipped"].get<std::string>() << "\"\n";
      continue;
    }
    const auto& s = r["step_seconds"];
    out << s["median"] << "," << s["p10"] << "," << s["p90"] << "," << r["tokens_per_second"] << ","
        << r["bytes_per_step"] << "," << r["flops_per_step"] << "," << r["bytes_per_second"] << ","
        << r["flops_per_second"] << "," << r["floor_seconds"] << "," << r["pct_of_floor"] << ","
        << r["pct_of_peak_flops"] << "," << r["kv_bytes_per_token"] << "," << r["max_sequences"]
        << ",\n";
  }
  return out.str();
}

}  // namespace ridgeline::bench
