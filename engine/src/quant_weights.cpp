// Quantized weights for the CUDA engine: formats, storage, bytes, and host-side quantization
// (see quant_weights.hpp). The checkpoint half is in checkpoint_quant.cpp.
#include "ridgeline/engine/quant_weights.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>

#include "ridgeline/core/text.hpp"
#include "ridgeline/engine/random_weights.hpp"
#include "ridgeline/kernels/numeric.hpp"

namespace ridgeline {
namespace {

std::int64_t round256(std::int64_t bytes) { return (bytes + 255) / 256 * 256; }

bool ends_with(const std::string& s, std::string_view tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

packed_quant_view shape_of(const tensor_storage& s, int rows, int cols) {
  packed_quant_view v;
  v.kind = cpu::packed_kind_of(s.format);
  v.rows = rows;
  v.cols = cols;
  v.group_size = s.format == cpu::quant_format::int4_group ? s.group_size
                 : packed_is_grouped(v.kind)               ? cpu::k_ggml_block_elements
                                                           : 0;
  return v;
}

}  // namespace

planner::weight_format parse_engine_weights(std::string_view s) {
  for (auto f : {planner::weight_format::bf16, planner::weight_format::fp8,
                 planner::weight_format::int8, planner::weight_format::int4}) {
    if (s == planner::name(f)) return f;
  }
  throw std::invalid_argument("unknown engine weight format '" + std::string(s) +
                              "' (bf16, fp8, int8 or int4)");
}

void check_engine_weights(planner::weight_format f) {
  if (f != planner::weight_format::bf16 && f != planner::weight_format::fp8 &&
      f != planner::weight_format::int8 && f != planner::weight_format::int4) {
    throw std::invalid_argument("the engine runs bf16, fp8, int8 or int4 weights, not " +
                                std::string(planner::name(f)));
  }
}

cpu::quant_format quant_format_for(planner::weight_format f) {
  switch (f) {
    case planner::weight_format::int4:
      return cpu::quant_format::int4_group;
    case planner::weight_format::int8:
      return cpu::quant_format::int8_channel;
    case planner::weight_format::fp8:
      return cpu::quant_format::fp8_e4m3_channel;
    default:
      break;
  }
  throw std::invalid_argument("quant_format_for: " + std::string(planner::name(f)) +
                              " weights are not quantized");
}

bool is_block_linear(const weight_tensor& t) {
  return t.name.rfind("layers.", 0) == 0 &&
         (ends_with(t.name, ".qkv") || ends_with(t.name, ".o") || ends_with(t.name, ".gate_up") ||
          ends_with(t.name, ".down"));
}

std::vector<tensor_storage> uniform_storage(const model_preset& m, planner::weight_format f) {
  check_engine_weights(f);
  const auto tensors = weight_tensors(m);
  std::vector<tensor_storage> out(tensors.size());
  if (f == planner::weight_format::bf16) return out;
  const cpu::quant_format q = quant_format_for(f);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const weight_tensor& t = tensors[i];
    if (!is_block_linear(t)) continue;
    out[i] = {true, q, cpu::k_default_group_size};
    try {
      cpu::check_packable(q, t.rows, t.cols, cpu::k_default_group_size);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(m.name + ": " + t.name + " [" + std::to_string(t.rows) + "][" +
                                  std::to_string(t.cols) + "] cannot be stored as " +
                                  std::string(planner::name(f)) + ": " + e.what());
    }
  }
  return out;
}

std::int64_t storage_bytes(const weight_tensor& t, const tensor_storage& s) {
  if (!s.packed) return round256(t.elements * 2);
  const packed_quant_view v = shape_of(s, t.rows, t.cols);
  return round256(static_cast<std::int64_t>(v.data_bytes())) +
         round256(static_cast<std::int64_t>(v.scale_count() * 4)) +
         round256(static_cast<std::int64_t>(v.zero_bytes()));
}

std::int64_t weight_storage_bytes(const model_preset& m, std::span<const tensor_storage> s) {
  const auto tensors = weight_tensors(m);
  if (s.size() != tensors.size()) {
    throw std::invalid_argument("weight_storage_bytes: " + std::to_string(s.size()) +
                                " storages for " + std::to_string(tensors.size()) + " tensors");
  }
  std::int64_t total = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) total += storage_bytes(tensors[i], s[i]);
  return total;
}

std::int64_t largest_packed_elements(const model_preset& m, std::span<const tensor_storage> s) {
  const auto tensors = weight_tensors(m);
  std::int64_t most = 0;
  for (std::size_t i = 0; i < tensors.size() && i < s.size(); ++i) {
    if (s[i].packed) most = std::max(most, tensors[i].elements);
  }
  return most;
}

std::int64_t corrected_kv_blocks(const planner::memory_plan& plan, std::int64_t exact_weight_bytes,
                                 std::int64_t dequant_scratch_bytes, std::int64_t num_kv_blocks,
                                 const std::string& who) {
  if (!plan.fits) throw std::invalid_argument(plan.why_not);
  if (exact_weight_bytes < 0 || dequant_scratch_bytes < 0 || num_kv_blocks < 0 ||
      plan.kv_bytes_per_block <= 0) {
    throw std::invalid_argument(who + ": negative weight, scratch or block figures");
  }
  const double budget = plan.kv_budget_bytes -
                        (static_cast<double>(exact_weight_bytes) - plan.weight_bytes) -
                        static_cast<double>(dequant_scratch_bytes);
  const std::int64_t fit =
      budget > 0 ? std::min(static_cast<std::int64_t>(budget) / plan.kv_bytes_per_block,
                            k_max_kv_blocks)
                 : 0;
  const std::int64_t want = num_kv_blocks > 0 ? num_kv_blocks : fit;
  if (want < 1 || want > fit) {
    throw std::invalid_argument(
        who + ": weights (" + format_gib(static_cast<double>(exact_weight_bytes)) +
        "), step workspace (" + format_gib(plan.workspace_bytes) + ") and dequantize scratch (" +
        format_gib(static_cast<double>(dequant_scratch_bytes)) + ") leave " +
        format_gib(std::max(0.0, budget)) + " for the KV cache (" + format_gib(plan.usable_bytes) +
        " usable), too little for " + std::to_string(std::max<std::int64_t>(want, 1)) +
        " blocks of " + format_gib(static_cast<double>(plan.kv_bytes_per_block)));
  }
  return want;
}

cpu::packed_quant_matrix quantize_packed(cpu::quant_format f, int rows, int cols, int group_size,
                                         const std::function<void(int, int, float*)>& rows_of,
                                         int threads) {
  cpu::check_packable(f, rows, cols, group_size);
  const tensor_storage s{true, f, group_size};
  const packed_quant_view shape = shape_of(s, rows, cols);
  cpu::packed_quant_matrix p;
  p.source = f;
  p.kind = shape.kind;
  p.rows = rows;
  p.cols = cols;
  p.group_size = shape.group_size;
  p.data.assign(shape.data_bytes(), 0);
  p.scales.assign(shape.scale_count(), 0.0f);
  p.zeros.assign(shape.zero_bytes(), 0);
  // Quantization and packing are row by row and the packed layout is tile-major, so slices of
  // whole 16-row tiles pack independently and land at their tiles' offsets.
  constexpr int k_slice_rows = 4 * k_pack_tile_rows;
  const int slices = (rows + k_slice_rows - 1) / k_slice_rows;
  const std::size_t tile_data = static_cast<std::size_t>(shape.chunks()) * k_pack_chunk_bytes;
  const std::size_t tile_scales = static_cast<std::size_t>(shape.groups()) * k_pack_tile_rows;
  const std::size_t tile_zeros =
      shape.kind == packed_quant_kind::int4_group ? static_cast<std::size_t>(shape.groups()) * 8
                                                  : 0;
  std::atomic<int> next{0};
  std::exception_ptr error;
  std::atomic<bool> failed{false};
  auto work = [&]() {
    std::vector<float> w;
    try {
      for (int i = next++; i < slices && !failed; i = next++) {
        const int r0 = i * k_slice_rows, n = std::min(k_slice_rows, rows - r0);
        w.assign(static_cast<std::size_t>(n) * cols, 0.0f);
        rows_of(r0, n, w.data());
        const cpu::quantized_matrix q = cpu::quantize(f, n, cols, w, group_size);
        const cpu::packed_quant_matrix part = cpu::pack_quantized(q.view());
        const std::size_t t0 = static_cast<std::size_t>(r0 / k_pack_tile_rows);
        std::memcpy(p.data.data() + t0 * tile_data, part.data.data(), part.data.size());
        std::memcpy(p.scales.data() + t0 * tile_scales, part.scales.data(),
                    part.scales.size() * sizeof(float));
        if (!part.zeros.empty()) {
          std::memcpy(p.zeros.data() + t0 * tile_zeros, part.zeros.data(), part.zeros.size());
        }
      }
    } catch (...) {
      if (!failed.exchange(true)) error = std::current_exception();
    }
  };
  int n = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  n = std::clamp(n, 1, std::max(1, slices));
  std::vector<std::thread> pool;
  for (int i = 1; i < n; ++i) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  return p;
}

cpu::packed_quant_matrix random_packed_tensor(const model_preset& m, std::size_t index,
                                              std::uint64_t seed, const tensor_storage& s,
                                              int threads) {
  const auto tensors = weight_tensors(m);
  if (index >= tensors.size()) {
    throw std::invalid_argument("random_packed_tensor: tensor " + std::to_string(index) + " of " +
                                std::to_string(tensors.size()));
  }
  const weight_tensor& t = tensors[index];
  const std::uint64_t ts = random_tensor_seed(seed, index);
  const float scale = random_weight_scale(t, index), offset = random_weight_offset(t);
  const auto cols = static_cast<std::uint64_t>(t.cols);
  return quantize_packed(
      s.format, t.rows, t.cols, s.group_size,
      [&](int r0, int n, float* out) {
        const std::uint64_t first = static_cast<std::uint64_t>(r0) * cols;
        for (std::uint64_t e = 0; e < static_cast<std::uint64_t>(n) * cols; ++e) {
          // The bf16 weight random_weights() holds, then quantized.
          out[e] = cpu::bf16_to_float(
              cpu::float_to_bf16(random_uniform_element(ts, first + e, scale, offset)));
        }
      },
      threads);
}

cpu::packed_quant_matrix pack_bf16_tensor(const weight_tensor& t, const bf16_bits* w,
                                          const tensor_storage& s, int threads) {
  const auto cols = static_cast<std::size_t>(t.cols);
  return quantize_packed(
      s.format, t.rows, t.cols, s.group_size,
      [&](int r0, int n, float* out) {
        const bf16_bits* src = w + static_cast<std::size_t>(r0) * cols;
        for (std::size_t e = 0; e < static_cast<std::size_t>(n) * cols; ++e) {
          out[e] = cpu::bf16_to_float(src[e]);
        }
      },
      threads);
}

std::vector<bf16_bits> dequantized_weights(const model_preset& m, std::span<const bf16_bits> w,
                                           planner::weight_format f) {
  const auto storage = uniform_storage(m, f);
  const auto tensors = weight_tensors(m);
  if (static_cast<std::int64_t>(w.size()) != total_weight_elements(m)) {
    throw std::invalid_argument("dequantized_weights: " + std::to_string(w.size()) +
                                " elements given, " + m.name + " has " +
                                std::to_string(total_weight_elements(m)));
  }
  std::vector<bf16_bits> out(w.begin(), w.end());
  std::size_t at = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const weight_tensor& t = tensors[i];
    const auto n = static_cast<std::size_t>(t.elements);
    if (storage[i].packed) {
      std::vector<float> x(n);
      for (std::size_t e = 0; e < n; ++e) x[e] = cpu::bf16_to_float(w[at + e]);
      const cpu::quantized_matrix q =
          cpu::quantize(storage[i].format, t.rows, t.cols, x, storage[i].group_size);
      const std::vector<float> back = cpu::dequantize(q.view());
      for (std::size_t e = 0; e < n; ++e) out[at + e] = cpu::float_to_bf16(back[e]);
    }
    at += n;
  }
  return out;
}

}  // namespace ridgeline
