// The CUDA executor (see cuda_engine.hpp). Host code over the launchers of kernels/cuda.
//
// Memory: weights (bf16, and the packed block linears of a quantized format), one scratch set for
// max_tokens tokens, the attention workspace, the dequantize scratch (one packed layer as bf16,
// when a step may take that path), then the KV pool takes what is left of memory_fraction of free
// memory. Every input array lives at a fixed
// device address (uploaded from pinned staging before each step), so a captured graph replays
// with new inputs. Graphs are keyed by (sequences, tokens, block-table width) of decode-only
// steps; other steps run eagerly.
#include "ridgeline/engine/cuda_engine.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <stdexcept>
#include <tuple>

#include "cuda/attention.hpp"
#include "cuda/linear.hpp"
#include "cuda/ops.hpp"
#include "cuda/raii.hpp"
#include "cuda/random.hpp"
#include "ridgeline/engine/checkpoint.hpp"
#include "ridgeline/engine/random_weights.hpp"
#include "ridgeline/perfmodel/memory_model.hpp"
#include "ridgeline/telemetry/device.hpp"
#include "ridgeline/core/errors.hpp"
#include "ridgeline/telemetry/nvtx.hpp"

namespace ridgeline {
namespace {

// The CUDA backend of decoder_forward: every op on one stream; pdl is this engine's
// engine_options::pdl, passed to every launcher that supports it.
struct cuda_backend {
  cudaStream_t s;
  cuda::linear_runner& linear_runner;
  bool pdl;
  bf16_bits* dequant_scratch;  // one packed layer as bf16 (null: no step takes that path)
  void embedding(const embedding_params& p) { cuda::embedding(p, s, pdl); }
  void rms_norm(const rms_norm_params& p) { cuda::rms_norm(p, s, pdl); }
  void linear(const linear_params& p) { linear_runner.run(p, s, pdl); }
  void gather_rows(const gather_rows_params& p) { cuda::gather_rows(p, s, pdl); }
  void qkv_rope_append(const qkv_rope_append_params& p) { cuda::qkv_rope_append(p, s, pdl); }
  void rope(const rope_params& p) { cuda::rope(p, s); }
  void kv_append(const kv_append_params& p) { cuda::kv_append(p, s); }
  void attention(const attention_params& p) { cuda::attention(p, s, pdl); }
  // One decode kernel when the attention takes the decode path (bitwise the same as the two).
  void rope_append_attention(const qkv_rope_append_params& pre, const attention_params& p) {
    cuda::rope_append_attention(pre, p, s, pdl);
  }
  void swiglu(const swiglu_params& p) { cuda::swiglu(p, s, pdl); }
  // Fused on the GEMV path (one launch, bitwise the same act), else GEMM then swiglu.
  void linear_swiglu(const linear_params& l, const swiglu_params& p) {
    linear_runner.run_swiglu(l, p, s, pdl);
  }
  // Packed weights (engine_options::weights): the quantized GEMV, or dequantize + bf16 GEMM.
  void quant_linear(const linear_params& p, const packed_quant_view& w) {
    linear_runner.run_quant(p, w, dequant_scratch, s, pdl);
  }
  void quant_linear_swiglu(const linear_params& p, const packed_quant_view& w,
                           const swiglu_params& act) {
    linear_runner.run_quant_swiglu(p, w, dequant_scratch, act, s, pdl);
  }
  void sampling(const sampling_params& p) { cuda::sampling(p, s, pdl); }
  void range_push(const char* name) { metrics::nvtx_push(name); }
  void range_pop() { metrics::nvtx_pop(); }
};

std::int64_t attention_workspace_for(const model_preset& m, const engine_options& o) {
  // The largest split workspace over every decode batch size this engine can run, at full
  // context, from the attention plan of each shape. Every batch size: the workspace is not
  // monotone in it (the split count steps down where num_seqs x kv heads crosses a fraction of
  // the GPU, so on an H100 with 8 KV heads, 65 sequences need more than 64 or 128). Full context:
  // for a given batch, a narrower block table never needs more splits than the widest.
  std::int64_t most = 0;
  for (int seqs = 1; seqs <= o.max_seqs; ++seqs) {
    cuda::attention_shape s;
    s.num_seqs = seqs;
    s.num_q_tokens = seqs;
    s.num_q_heads = m.heads;
    s.num_kv_heads = m.kv_heads;
    s.head_dim = m.head_dim;
    s.block_size = o.block_tokens;
    s.max_blocks_per_seq = static_cast<int>(blocks_for(m.max_context, o.block_tokens));
    s.split_tokens = o.split_tokens;
    most = std::max(most, cuda::plan_attention(s).workspace_bytes);
  }
  return most + 256;
}

}  // namespace

engine_options effective_options(engine_options o) {
  if (o.batch_invariant && o.split_tokens == 0) o.split_tokens = k_batch_invariant_split_tokens;
  return o;
}

bool engine_may_dequantize(const engine_options& options) {
  const engine_options o = effective_options(options);
  return o.batch_invariant || o.max_tokens > cuda::k_quant_sliced_max_tokens;
}

engine_memory_plan plan_engine_memory(const model_preset& m, const engine_options& options,
                                      std::int64_t free_bytes) {
  const planner::weight_format f = options.weights.value_or(planner::weight_format::bf16);
  check_engine_weights(f);
  validate(m);
  return plan_engine_memory(m, options, free_bytes, f, uniform_storage(m, f));
}

engine_memory_plan plan_engine_memory(const model_preset& m, const engine_options& options,
                                      std::int64_t free_bytes, planner::weight_format f,
                                      std::span<const tensor_storage> storage) {
  const engine_options o = effective_options(options);
  validate(m);
  if (m.planning_only) {
    throw std::invalid_argument(m.name + " is for planning only: its weights do not fit one GPU");
  }
  if (o.max_tokens <= 0 || o.max_seqs <= 0 || o.block_tokens <= 0) {
    throw std::invalid_argument("engine: max_tokens, max_seqs and block_tokens must be positive");
  }
  // The one memory planner (perfmodel/memory_model.hpp), from free memory, the weights' format and
  // KV; then corrected to the exact packed bytes and the dequantize scratch (quant_weights.hpp).
  planner::memory_options mo;
  mo.weights = f;
  mo.block_tokens = o.block_tokens;
  mo.max_batched_tokens = o.max_tokens;
  mo.max_running = o.max_seqs;
  mo.memory_fraction = o.memory_fraction;
  mo.context_reserve_bytes = 0;
  mo.attention_workspace_bytes = attention_workspace_for(m, o);
  mo.num_kv_blocks = o.num_kv_blocks;
  mo.binary_units = true;
  const planner::memory_plan plan =
      planner::plan_memory(m, static_cast<double>(free_bytes), mo, "the GPU (free memory)");
  if (!plan.fits) throw std::invalid_argument(plan.why_not);
  engine_memory_plan p;
  p.free_bytes = free_bytes;
  p.weights = f;
  // All bf16: the planner's figures as they are (as before quantized formats existed).
  const bool all_bf16 =
      f == planner::weight_format::bf16 && largest_packed_elements(m, storage) == 0;
  p.weight_bytes = all_bf16 ? static_cast<std::int64_t>(plan.weight_bytes)
                            : weight_storage_bytes(m, storage);
  p.dequant_scratch_bytes =
      engine_may_dequantize(o) ? largest_packed_elements(m, storage) * 2 : 0;
  p.scratch_bytes = static_cast<std::int64_t>(plan.workspace_bytes) + p.dequant_scratch_bytes;
  p.attention_workspace_bytes = mo.attention_workspace_bytes.value_or(0);
  p.kv_bytes_per_block = plan.kv_bytes_per_block;
  p.kv_blocks = all_bf16 ? static_cast<int>(plan.kv_blocks)
                         : static_cast<int>(corrected_kv_blocks(
                               plan, p.weight_bytes, p.dequant_scratch_bytes, o.num_kv_blocks,
                               m.name + " in " + std::string(planner::name(f))));
  p.kv_bytes = p.kv_blocks * p.kv_bytes_per_block;
  return p;
}

struct cuda_engine::impl {
  // First member: the stream, cuBLASLt handle and workspaces below belong to the device current
  // when they are made, so o.device is selected (and a missing GPU reported) before them.
  struct device_select {
    explicit device_select(int device) {
      if (metrics::device_count() == 0) {
        throw no_device_error("the CUDA engine needs a GPU: " + metrics::no_device_reason());
      }
      RIDGELINE_CUDA_CHECK(cudaSetDevice(device));
    }
  } selected;
  decoder_config cfg;
  engine_options opt;
  engine_memory_plan plan;
  cuda::stream stream;
  cuda::linear_runner linear_runner;
  cuda::device_buffer weights, kv, scratch, inputs, rope_table;
  // Per tensor of weight_tensors(): its element offset in `weights` and its element count (bf16
  // tensors), or its packed matrix in `packed` (storage[i].packed).
  std::vector<std::pair<std::int64_t, std::int64_t>> tensor_offsets;
  planner::weight_format format = planner::weight_format::bf16;
  std::vector<tensor_storage> storage;
  cuda::device_buffer packed, dequant;
  std::vector<packed_quant_view> packed_views;  // per tensor (device pointers); set when packed
  decoder_weights w;
  kv_pool_view kv_view;
  step_buffers buf{};
  // Device input arrays at fixed addresses, and their pinned host staging.
  std::int32_t* d_ints = nullptr;
  sampling_row* d_sampling = nullptr;
  // Pinned staging, two slots: a step is written into one while the step before may still be
  // reading the other (launch / wait with two steps in flight).
  std::int32_t* h_ints_slots[2] = {nullptr, nullptr};
  sampling_row* h_sampling_slots[2] = {nullptr, nullptr};
  std::int32_t* h_tokens_slots[2] = {nullptr, nullptr};
  std::int32_t* h_ints = nullptr;        // the slot being written
  sampling_row* h_sampling = nullptr;
  int slot = 0;
  std::int64_t ints_capacity = 0;
  std::int32_t* d_out_tokens = nullptr;
  float* d_out_logprobs = nullptr;
  std::int32_t* d_out_top_ids = nullptr;
  float* d_out_sampled_logprobs = nullptr;  // [max_seqs]
  cuda::event timed_begin, timed_end;  // timed_step
  // Host tier: pinned slots [slot][layer][block], copies on their own stream.
  unsigned char* h_tier = nullptr;
  std::int64_t block_bytes = 0;  // one block of one layer
  cuda::stream copy_stream;
  cuda::event copies_ready, copies_begin, copies_end;
  bool copies_pending = false;
  struct graph_exec {
    cudaGraphExec_t exec = nullptr;
  };
  // (sequences, tokens, table width, penalty history, samples) of decode-only steps
  std::map<std::tuple<int, int, int, int, int>, graph_exec> graphs;

  // With opt.pdl the GEMVs start streaming weights while the kernel before them finishes (rms_norm,
  // attention and swiglu trigger their dependents at entry); cuda_backend passes it per launch.
  impl(const decoder_config& c, const engine_options& o)
      : selected(o.device), cfg(c), opt(o),
        linear_runner(cuda::linear_options{.gemm = o.gemm,
                                           .batch_invariant = o.batch_invariant,
                                           .gemm_candidates = o.gemm_candidates}) {}

  void apply_pdl(bool on) { opt.pdl = on; }

  // Tensor i of weight_tensors() from the host, in the storage the engine keeps it in.
  void upload_tensor(std::size_t i, const loaded_tensor& t) {
    if (storage[i].packed) {
      if (!t.packed) throw std::logic_error("engine: a packed tensor given as bf16");
      const packed_quant_view& v = packed_views[i];
      const packed_quant_view h = t.packed->view();
      if (h.kind != v.kind || h.rows != v.rows || h.cols != v.cols ||
          h.group_size != v.group_size) {
        throw std::logic_error("engine: a packed tensor of another shape or kind");
      }
      RIDGELINE_CUDA_CHECK(cudaMemcpy(const_cast<std::uint8_t*>(v.data), h.data, h.data_bytes(),
                                      cudaMemcpyHostToDevice));
      RIDGELINE_CUDA_CHECK(cudaMemcpy(const_cast<float*>(v.scales), h.scales,
                                      h.scale_count() * 4, cudaMemcpyHostToDevice));
      if (h.zero_bytes() > 0) {
        RIDGELINE_CUDA_CHECK(cudaMemcpy(const_cast<std::uint8_t*>(v.zeros), h.zeros,
                                        h.zero_bytes(), cudaMemcpyHostToDevice));
      }
      return;
    }
    const auto& [off, count] = tensor_offsets[i];
    if (t.bf16.size() != static_cast<std::size_t>(count)) {
      throw std::logic_error("engine: a bf16 tensor of another size");
    }
    RIDGELINE_CUDA_CHECK(cudaMemcpy(weights.data<bf16_bits>() + off, t.bf16.data(),
                                    static_cast<std::size_t>(count) * 2, cudaMemcpyHostToDevice));
  }

  ~impl() {
    // Nothing in flight may still read or write the pinned buffers freed below.
    if (stream.get()) cudaStreamSynchronize(stream.get());
    if (copy_stream.get()) cudaStreamSynchronize(copy_stream.get());
    for (auto& [k, g] : graphs) {
      if (g.exec) cudaGraphExecDestroy(g.exec);
    }
    for (int i = 0; i < 2; ++i) {
      if (h_ints_slots[i]) cudaFreeHost(h_ints_slots[i]);
      if (h_sampling_slots[i]) cudaFreeHost(h_sampling_slots[i]);
      if (h_tokens_slots[i]) cudaFreeHost(h_tokens_slots[i]);
    }
    if (h_tier) cudaFreeHost(h_tier);
  }

  // Offsets of the inputs inside d_ints / h_ints for a step.
  struct layout {
    std::int64_t ids, positions, slots, q_offsets, seq_lens, tables, sample_rows, prev, prev_off,
        in_rows, in_samples, total;
  };
  layout layout_for(const host_step& h) const {
    layout l{};
    std::int64_t at = 0;
    auto take = [&at](std::int64_t n) {
      const std::int64_t o = at;
      at += (n + 3) / 4 * 4;
      return o;
    };
    l.ids = take(h.num_tokens);
    l.positions = take(h.num_tokens);
    l.slots = take(h.num_tokens);
    l.q_offsets = take(h.num_seqs + 1);
    l.seq_lens = take(h.num_seqs);
    l.tables = take(std::int64_t(h.num_seqs) * h.max_blocks_per_seq);
    l.sample_rows = take(h.num_samples);
    l.prev = take(static_cast<std::int64_t>(h.prev_tokens.size()));
    l.prev_off = take(h.num_samples + 1);
    l.in_rows = take(static_cast<std::int64_t>(h.input_rows.size()));
    l.in_samples = take(static_cast<std::int64_t>(h.input_samples.size()));
    l.total = at;
    return l;
  }

  void upload(const host_step& h, const layout& l) {
    if (l.total > ints_capacity) {
      throw std::invalid_argument("engine: step inputs (" + std::to_string(l.total) +
                                  " ints) exceed the staging capacity");
    }
    auto put = [&](std::int64_t off, const std::vector<std::int32_t>& v) {
      if (!v.empty()) std::memcpy(h_ints + off, v.data(), v.size() * sizeof(std::int32_t));
    };
    put(l.ids, h.ids);
    put(l.positions, h.positions);
    put(l.slots, h.slot_mapping);
    put(l.q_offsets, h.q_offsets);
    put(l.seq_lens, h.seq_lens);
    put(l.tables, h.block_tables);
    put(l.sample_rows, h.sample_rows);
    put(l.prev, h.prev_tokens);
    put(l.prev_off, h.prev_offsets);
    put(l.in_rows, h.input_rows);
    put(l.in_samples, h.input_samples);
    std::memcpy(h_sampling, h.sampling.data(), h.sampling.size() * sizeof(sampling_row));
    RIDGELINE_CUDA_CHECK(cudaMemcpyAsync(d_ints, h_ints, l.total * sizeof(std::int32_t),
                                         cudaMemcpyHostToDevice, stream.get()));
    RIDGELINE_CUDA_CHECK(cudaMemcpyAsync(d_sampling, h_sampling,
                                         h.sampling.size() * sizeof(sampling_row),
                                         cudaMemcpyHostToDevice, stream.get()));
  }

  step_inputs inputs_for(const host_step& h, const layout& l) const {
    return bind_step_inputs(h,
                            {d_ints + l.ids, d_ints + l.positions, d_ints + l.slots,
                             d_ints + l.q_offsets, d_ints + l.seq_lens, d_ints + l.tables,
                             d_ints + l.sample_rows, d_ints + l.prev, d_ints + l.prev_off,
                             d_sampling, d_out_tokens, d_out_logprobs, d_out_top_ids,
                             d_out_sampled_logprobs},
                            opt.top_logprobs, opt.split_tokens, opt.batch_invariant);
  }

  void forward(const step_inputs& in) {
    cuda_backend b{stream.get(), linear_runner, opt.pdl,
                   dequant.bytes() > 0 ? dequant.data<bf16_bits>() : nullptr};
    decoder_forward(b, cfg, w, kv_view, buf, in);
  }

  // Enqueues the step's forward pass (a graph when enabled and all decode; the first call of a
  // shape captures it, which waits for the stream) between the events `begin` and `end`; returns
  // whether a graph ran. Nothing here waits for the GPU otherwise.
  bool enqueue_forward(const host_step& h, const layout& l, const cuda::event& begin,
                       const cuda::event& end) {
    const step_inputs in = inputs_for(h, l);
    const bool decode_only = h.num_tokens == h.num_seqs;
    // The step's phase for timelines: "decode" when every sequence brings one token, else
    // "prefill" (chunked prefill, possibly mixed with decodes). Graph replays keep the outer range.
    metrics::nvtx_range phase(decode_only ? "decode" : "prefill");
    if (!(opt.cuda_graphs && decode_only)) {
      begin.record(stream.get());
      forward(in);
      end.record(stream.get());
      return false;
    }
    const auto key = std::make_tuple(h.num_seqs, h.num_tokens, h.max_blocks_per_seq,
                                     static_cast<int>(h.prev_tokens.size()), h.num_samples);
    auto it = graphs.find(key);
    if (it == graphs.end()) {
      forward(in);  // eager first: builds linear plans, loads modules
      stream.synchronize();
      cudaGraph_t graph = nullptr;
      RIDGELINE_CUDA_CHECK(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
      try {
        forward(in);
      } catch (...) {
        // Leave the stream usable: end (and drop) the capture before passing the error on.
        cudaGraph_t dropped = nullptr;
        if (cudaStreamEndCapture(stream.get(), &dropped) == cudaSuccess && dropped) {
          cudaGraphDestroy(dropped);
        }
        throw;
      }
      RIDGELINE_CUDA_CHECK(cudaStreamEndCapture(stream.get(), &graph));
      graph_exec g;
      const cudaError_t e = cudaGraphInstantiate(&g.exec, graph, 0);
      cudaGraphDestroy(graph);
      RIDGELINE_CUDA_CHECK(e);
      it = graphs.emplace(key, g).first;
    }
    begin.record(stream.get());
    RIDGELINE_CUDA_CHECK(cudaGraphLaunch(it->second.exec, stream.get()));
    end.record(stream.get());
    return true;
  }

  // A launched step: its events, staging slot and outputs until wait() collects them.
  struct flight {
    int num_samples = 0, slot = 0;
    bool graph = false, copies = false;
    std::shared_ptr<cuda::event> begin, end, done, copy_begin, copy_end;
    step_output ready;  // filled at launch when the step had to run synchronously
    bool synchronous = false;
  };
  std::deque<flight> flights;
  std::vector<std::shared_ptr<cuda::event>> spare_events;
  std::shared_ptr<cuda::event> last_end;  // the end of the last forward pass collected
  std::shared_ptr<cuda::event> take_event() {
    if (spare_events.empty()) return std::make_shared<cuda::event>();
    auto e = std::move(spare_events.back());
    spare_events.pop_back();
    return e;
  }
};

cuda_engine::cuda_engine(const model_preset& model, const engine_options& o)
    : cuda_engine(make_decoder_config(model, o.block_tokens), o) {}

cuda_engine::cuda_engine(const decoder_config& c, const engine_options& options)
    : m(std::make_unique<impl>(c, effective_options(options))) {
  const engine_options& o = m->opt;
  if (c.block_tokens != o.block_tokens) {
    throw std::invalid_argument("cuda_engine: decoder block_tokens " +
                                std::to_string(c.block_tokens) + " differs from the options' " +
                                std::to_string(o.block_tokens));
  }
  validate(c.model);
  const model_preset& model = c.model;
  // The weights' format (the load rules of quant_weights.hpp), then read a checkpoint (and check
  // every shape) before anything is allocated on the GPU.
  m->format = resolve_weight_format(o.weights, o.checkpoint);
  std::vector<loaded_tensor> host_weights;
  std::vector<bf16_bits> flat_weights;  // a bf16 run of a checkpoint that is not quantized
  if (!o.checkpoint.empty() && m->format == planner::weight_format::bf16 &&
      (is_gguf_checkpoint(o.checkpoint) || !checkpoint_weight_format(o.checkpoint))) {
    // One host copy, as before quantized formats existed (a GGUF file is dequantized on load).
    flat_weights = load_checkpoint_weights(o.checkpoint, model);
    m->storage.assign(weight_tensors(model).size(), tensor_storage{});
  } else if (!o.checkpoint.empty()) {
    host_weights = load_checkpoint_for_engine(o.checkpoint, model, m->format);
    for (const loaded_tensor& t : host_weights) {
      tensor_storage st;
      if (t.packed) st = {true, t.packed->source, t.packed->group_size};
      m->storage.push_back(st);
    }
  } else {
    m->storage = uniform_storage(model, m->format);
  }
  if (metrics::device_count() == 0) {
    throw no_device_error("the CUDA engine needs a GPU: " + metrics::no_device_reason());
  }
  RIDGELINE_CUDA_CHECK(cudaSetDevice(o.device));
  const auto dev = metrics::query_device(o.device);
  m->plan =
      plan_engine_memory(model, o, dev ? dev->memory_free_bytes : 0, m->format, m->storage);
  const model_preset& mp = m->cfg.model;

  // Weights: bf16 tensors in one allocation, in weight_tensors() order, 256-byte aligned each;
  // packed tensors in another, each one's data, scales and zero points 256-byte aligned.
  const auto tensors = weight_tensors(mp);
  std::int64_t bf16_elements = 0, packed_bytes = 0;
  std::vector<std::int64_t> packed_offsets(tensors.size(), 0);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (m->storage[i].packed) {
      m->tensor_offsets.emplace_back(0, 0);
      packed_offsets[i] = packed_bytes;
      packed_bytes += storage_bytes(tensors[i], m->storage[i]);
    } else {
      m->tensor_offsets.emplace_back(bf16_elements, tensors[i].elements);
      bf16_elements += (tensors[i].elements + 127) / 128 * 128;
    }
  }
  m->weights = cuda::device_buffer(static_cast<std::size_t>(bf16_elements) * 2);
  m->packed = cuda::device_buffer(static_cast<std::size_t>(packed_bytes));
  auto* base = m->weights.data<bf16_bits>();
  m->packed_views.resize(tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (!m->storage[i].packed) continue;
    // The view's shape from a host matrix of this storage (no data), its pointers into `packed`.
    cpu::packed_quant_matrix shape;
    shape.kind = cpu::packed_kind_of(m->storage[i].format);
    shape.rows = tensors[i].rows;
    shape.cols = tensors[i].cols;
    shape.group_size = m->storage[i].format == cpu::quant_format::int4_group
                           ? m->storage[i].group_size
                           : packed_is_grouped(shape.kind) ? cpu::k_ggml_block_elements : 0;
    packed_quant_view v = shape.view();
    auto* at = m->packed.data<std::uint8_t>() + packed_offsets[i];
    v.data = at;
    at += (v.data_bytes() + 255) / 256 * 256;
    v.scales = reinterpret_cast<const float*>(at);
    at += (v.scale_count() * 4 + 255) / 256 * 256;
    v.zeros = v.zero_bytes() > 0 ? at : nullptr;
    m->packed_views[i] = v;
  }
  if (!flat_weights.empty()) {
    for (std::size_t i = 0, at = 0; i < tensors.size(); ++i) {
      RIDGELINE_CUDA_CHECK(cudaMemcpy(base + m->tensor_offsets[i].first, flat_weights.data() + at,
                                      static_cast<std::size_t>(tensors[i].elements) * 2,
                                      cudaMemcpyHostToDevice));
      at += static_cast<std::size_t>(tensors[i].elements);
    }
    flat_weights = {};
  } else if (!host_weights.empty()) {
    for (std::size_t i = 0; i < tensors.size(); ++i) m->upload_tensor(i, host_weights[i]);
    host_weights.clear();
  } else {
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const auto& t = tensors[i];
      if (m->storage[i].packed) {
        // The seeded bf16 weights quantized on the host (quant_weights.hpp), then uploaded.
        loaded_tensor lt;
        lt.packed = random_packed_tensor(mp, i, o.seed, m->storage[i]);
        m->upload_tensor(i, lt);
        continue;
      }
      // The rule of random_weights.hpp (shared with the host-side fill of the CPU executor).
      cuda::fill_uniform(base + m->tensor_offsets[i].first, dtype::bf16,
                         static_cast<std::size_t>(t.elements), random_tensor_seed(o.seed, i),
                         random_weight_scale(t, i), m->stream.get(), random_weight_offset(t));
    }
  }
  std::vector<const bf16_bits*> pointers;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    pointers.push_back(m->storage[i].packed ? nullptr : base + m->tensor_offsets[i].first);
  }
  m->w = bind_weights(mp, pointers);
  for (int l = 0; l < mp.layers; ++l) {
    // weight_tensors() order: embedding, then per layer attn_norm, qkv, o, mlp_norm, gate_up, down.
    const std::size_t first = 1 + 6 * static_cast<std::size_t>(l);
    auto view_of = [&](std::size_t i) -> const packed_quant_view* {
      return m->storage[i].packed ? &m->packed_views[i] : nullptr;
    };
    layer_weights& lw = m->w.layers[static_cast<std::size_t>(l)];
    lw.qkv_packed = view_of(first + 1);
    lw.o_packed = view_of(first + 2);
    lw.gate_up_packed = view_of(first + 4);
    lw.down_packed = view_of(first + 5);
  }
  if (m->plan.dequant_scratch_bytes > 0) {
    m->dequant = cuda::device_buffer(static_cast<std::size_t>(m->plan.dequant_scratch_bytes));
  }

  // KV pool.
  m->kv_view.num_blocks = m->plan.kv_blocks;
  m->kv_view.layer_stride = kv_layer_elements(mp, m->plan.kv_blocks, o.block_tokens);
  m->kv = cuda::device_buffer(static_cast<std::size_t>(m->plan.kv_bytes));
  m->kv_view.data = m->kv.data<bf16_bits>();

  // Scratch: the step buffers of decoder.hpp's layout, one allocation.
  const std::int64_t ws = attention_workspace_for(mp, o);
  const std::int64_t counters = std::int64_t{o.max_seqs} * mp.kv_heads * 4;
  const step_scratch_layout scratch_layout =
      step_scratch_of(step_buffer_elements(mp, o.max_tokens, o.max_seqs), ws, counters);
  m->scratch = cuda::device_buffer(static_cast<std::size_t>(scratch_layout.bytes));
  m->buf = carve_step_buffers(m->scratch.data<unsigned char>(), scratch_layout);
  RIDGELINE_CUDA_CHECK(cudaMemset(m->buf.split_counters, 0, static_cast<std::size_t>(counters)));

  // RoPE cos/sin for every position the model can reach, built once: the step's kernels copy a
  // row instead of computing head_dim / 2 double sincos per token (per CTA in decode attention).
  m->rope_table = cuda::device_buffer(static_cast<std::size_t>(planner::rope_table_bytes(mp)));
  rope_params table_rope = m->cfg.rope;  // theta and scaling; the counts are the decoder's
  table_rope.num_q_heads = mp.heads;
  table_rope.num_kv_heads = mp.kv_heads;
  table_rope.head_dim = mp.head_dim;
  cuda::rope_table_build(table_rope, m->rope_table.data<float>(), mp.max_context,
                         m->stream.get());
  m->cfg.rope.table = m->rope_table.data<float>();
  m->cfg.rope.table_positions = mp.max_context;

  // Inputs: generous bound on ints per step (tables at full context for every sequence).
  const std::int64_t max_table = blocks_for(mp.max_context, o.block_tokens);
  m->ints_capacity = 4LL * o.max_tokens + 5LL * o.max_seqs + o.max_seqs * max_table +
                     std::int64_t(o.max_seqs) * mp.max_context + 64;
  m->ints_capacity = (m->ints_capacity + 63) / 64 * 64;  // keeps what follows 256-byte aligned
  m->inputs = cuda::device_buffer(static_cast<std::size_t>(m->ints_capacity) * 4 +
                                  o.max_seqs * sizeof(sampling_row) + o.max_seqs * 8 +
                                  std::size_t(o.max_seqs) * std::max(o.top_logprobs, 1) * 8 + 4096);
  auto* ip = m->inputs.data<unsigned char>();
  m->d_ints = reinterpret_cast<std::int32_t*>(ip);
  ip += m->ints_capacity * 4;
  m->d_sampling = reinterpret_cast<sampling_row*>(ip);
  ip += (o.max_seqs * sizeof(sampling_row) + 255) / 256 * 256;
  m->d_out_tokens = reinterpret_cast<std::int32_t*>(ip);
  ip += (std::size_t(o.max_seqs) * 4 + 255) / 256 * 256;
  m->d_out_logprobs = reinterpret_cast<float*>(ip);
  ip += (std::size_t(o.max_seqs) * std::max(o.top_logprobs, 1) * 4 + 255) / 256 * 256;
  m->d_out_top_ids = reinterpret_cast<std::int32_t*>(ip);
  ip += (std::size_t(o.max_seqs) * std::max(o.top_logprobs, 1) * 4 + 255) / 256 * 256;
  m->d_out_sampled_logprobs = reinterpret_cast<float*>(ip);
  for (int i = 0; i < 2; ++i) {
    RIDGELINE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&m->h_ints_slots[i]),
                                        static_cast<std::size_t>(m->ints_capacity) * 4));
    RIDGELINE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&m->h_sampling_slots[i]),
                                        o.max_seqs * sizeof(sampling_row)));
    RIDGELINE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&m->h_tokens_slots[i]),
                                        static_cast<std::size_t>(o.max_seqs) * 4));
  }
  m->h_ints = m->h_ints_slots[0];
  m->h_sampling = m->h_sampling_slots[0];
  m->block_bytes = kv_layer_elements(mp, 1, o.block_tokens) * 2;
  if (o.host_kv_blocks < 0) throw std::invalid_argument("engine: negative host KV blocks");
  if (o.host_kv_blocks > 0) {
    RIDGELINE_CUDA_CHECK(cudaMallocHost(
        reinterpret_cast<void**>(&m->h_tier),
        static_cast<std::size_t>(o.host_kv_blocks) * mp.layers * m->block_bytes));
  }
  m->stream.synchronize();
}

cuda_engine::~cuda_engine() = default;

const decoder_config& cuda_engine::config() const { return m->cfg; }
const engine_memory_plan& cuda_engine::memory() const { return m->plan; }
int cuda_engine::num_kv_blocks() const { return m->plan.kv_blocks; }

step_output cuda_engine::step(std::span<const step_sequence> seqs) {
  launch(seqs);
  return wait();
}

void cuda_engine::launch(std::span<const step_sequence> seqs) {
  if (m->flights.size() >= 2) throw std::logic_error("engine: a third step launched before wait()");
  // Decode steps replayed from graphs: the table width rounded up to graph_table_blocks, so that
  // a serving run's growing contexts reuse a few graphs per batch size.
  int min_width = 0;
  const bool decode_only = std::all_of(seqs.begin(), seqs.end(),
                                       [](const step_sequence& s) { return s.new_tokens == 1; });
  if (m->opt.cuda_graphs && decode_only && m->opt.graph_table_blocks > 1) {
    std::int64_t width = 0;
    for (const auto& s : seqs) {
      width = std::max(width, blocks_for(s.context_before + s.new_tokens, m->opt.block_tokens));
    }
    const std::int64_t q = m->opt.graph_table_blocks;
    const std::int64_t max_table = blocks_for(m->cfg.model.max_context, m->opt.block_tokens);
    min_width = static_cast<int>(std::min((width + q - 1) / q * q, std::max(max_table, width)));
  }
  const host_step h = build_step(seqs, m->opt.block_tokens, m->cfg.model.vocab, min_width);
  if (h.num_tokens > m->opt.max_tokens || h.num_seqs > m->opt.max_seqs) {
    throw std::invalid_argument("engine: step of " + std::to_string(h.num_tokens) + " tokens and " +
                                std::to_string(h.num_seqs) + " sequences exceeds the limits (" +
                                std::to_string(m->opt.max_tokens) + ", " +
                                std::to_string(m->opt.max_seqs) + ")");
  }
  for (const auto& s : seqs) {
    if (s.context_before + s.new_tokens > m->cfg.model.max_context) {
      throw std::invalid_argument("engine: a sequence of " +
                                  std::to_string(s.context_before + s.new_tokens) +
                                  " tokens is beyond " + m->cfg.model.name + "'s context limit of " +
                                  std::to_string(m->cfg.model.max_context));
    }
    for (block_id b : s.blocks) {
      if (b < 0 || b >= m->plan.kv_blocks) {
        throw std::invalid_argument("engine: block " + std::to_string(b) + " outside the pool of " +
                                    std::to_string(m->plan.kv_blocks));
      }
    }
  }
  if (!h.input_rows.empty()) {
    // The ids come from the samples of the step launched just before (still in d_out_tokens
    // when this step's kernels run: the stream orders them after it).
    if (m->flights.empty()) {
      throw std::invalid_argument("engine: ids from the previous step's samples, but no step runs");
    }
    for (const std::int32_t k : h.input_samples) {
      if (k < 0 || k >= m->flights.back().num_samples) {
        throw std::invalid_argument("engine: sample " + std::to_string(k) + " of a step that samples " +
                                    std::to_string(m->flights.back().num_samples));
      }
    }
  }
  impl::flight f;
  f.num_samples = h.num_samples;
  // Outputs beyond the tokens (top-k, logits) are read back synchronously.
  const bool extras = m->opt.top_logprobs > 0 || m->opt.return_logits;
  // The slot the step before did not take (a failed launch leaves no trace in the rotation).
  f.slot = m->flights.empty() ? 0 : m->flights.back().slot ^ 1;
  m->slot = f.slot;
  m->h_ints = m->h_ints_slots[f.slot];
  m->h_sampling = m->h_sampling_slots[f.slot];
  const auto l = m->layout_for(h);
  cudaStream_t st = m->stream.get();
  if (m->copies_pending) {
    // The step's inputs and kernels wait for the block copies (loads into its blocks).
    RIDGELINE_CUDA_CHECK(cudaStreamWaitEvent(st, m->copies_end.get(), 0));
  }
  m->upload(h, l);
  if (!h.input_rows.empty()) {
    cuda::scatter_tokens({m->d_out_tokens, m->d_ints + l.in_samples, m->d_ints + l.in_rows,
                          m->d_ints + l.ids, static_cast<int>(h.input_rows.size())},
                         st);
  }
  f.begin = m->take_event();
  f.end = m->take_event();
  f.done = m->take_event();
  f.graph = m->enqueue_forward(h, l, *f.begin, *f.end);
  if (m->copies_pending) {
    // The copies' events go with this step (copy_blocks for a later step records new ones).
    f.copy_begin = m->take_event();
    f.copy_end = m->take_event();
    std::swap(*f.copy_begin, m->copies_begin);
    std::swap(*f.copy_end, m->copies_end);
    f.copies = true;
    m->copies_pending = false;
  }
  RIDGELINE_CUDA_CHECK(cudaMemcpyAsync(m->h_tokens_slots[f.slot], m->d_out_tokens,
                                       static_cast<std::size_t>(h.num_samples) * 4,
                                       cudaMemcpyDeviceToHost, st));
  f.done->record(st);
  if (extras) {
    step_output& r = f.ready;
    if (m->opt.top_logprobs > 0) {
      const std::size_t n = std::size_t(h.num_samples) * m->opt.top_logprobs;
      r.top_logprobs.resize(n);
      r.top_ids.resize(n);
      RIDGELINE_CUDA_CHECK(cudaMemcpyAsync(r.top_logprobs.data(), m->d_out_logprobs, n * 4,
                                           cudaMemcpyDeviceToHost, st));
      RIDGELINE_CUDA_CHECK(cudaMemcpyAsync(r.top_ids.data(), m->d_out_top_ids, n * 4,
                                           cudaMemcpyDeviceToHost, st));
      r.sampled_logprobs.resize(std::size_t(h.num_samples));
      RIDGELINE_CUDA_CHECK(cudaMemcpyAsync(r.sampled_logprobs.data(), m->d_out_sampled_logprobs,
                                           r.sampled_logprobs.size() * 4,
                                           cudaMemcpyDeviceToHost, st));
    }
    if (m->opt.return_logits) {
      r.logits.resize(std::size_t(h.num_samples) * m->cfg.model.vocab);
      RIDGELINE_CUDA_CHECK(cudaMemcpyAsync(r.logits.data(), m->buf.logits, r.logits.size() * 4,
                                           cudaMemcpyDeviceToHost, st));
    }
    m->stream.synchronize();
    f.synchronous = true;
  }
  m->flights.push_back(std::move(f));
}

step_output cuda_engine::wait() {
  if (m->flights.empty()) throw std::logic_error("engine: wait() with no step launched");
  impl::flight f = std::move(m->flights.front());
  m->flights.pop_front();
  RIDGELINE_CUDA_CHECK(cudaEventSynchronize(f.done->get()));
  step_output r = std::move(f.ready);
  float ms = 0;
  RIDGELINE_CUDA_CHECK(cudaEventElapsedTime(&ms, f.begin->get(), f.end->get()));
  r.forward_seconds = static_cast<double>(ms) * 1e-3;
  r.gap_seconds = -1;
  if (m->last_end) {
    RIDGELINE_CUDA_CHECK(cudaEventElapsedTime(&ms, m->last_end->get(), f.begin->get()));
    r.gap_seconds = static_cast<double>(ms) * 1e-3;
    m->spare_events.push_back(std::move(m->last_end));
  }
  m->last_end = std::move(f.end);
  if (f.copies) {
    RIDGELINE_CUDA_CHECK(cudaEventSynchronize(f.copy_end->get()));
    RIDGELINE_CUDA_CHECK(cudaEventElapsedTime(&ms, f.copy_begin->get(), f.copy_end->get()));
    r.copy_seconds = static_cast<double>(ms) * 1e-3;
    m->spare_events.push_back(std::move(f.copy_begin));
    m->spare_events.push_back(std::move(f.copy_end));
  }
  r.graph = f.graph;
  r.tokens.assign(m->h_tokens_slots[f.slot], m->h_tokens_slots[f.slot] + f.num_samples);
  m->spare_events.push_back(std::move(f.begin));
  m->spare_events.push_back(std::move(f.done));
  return r;
}

double cuda_engine::timed_step(std::span<const step_sequence> seqs) {
  if (!m->flights.empty()) throw std::logic_error("engine: timed_step with steps in flight");
  const host_step h = build_step(seqs, m->opt.block_tokens, m->cfg.model.vocab);
  const auto l = m->layout_for(h);
  if (m->copies_pending) {
    RIDGELINE_CUDA_CHECK(cudaStreamWaitEvent(m->stream.get(), m->copies_end.get(), 0));
    m->copies_pending = false;
  }
  m->upload(h, l);
  m->enqueue_forward(h, l, m->timed_begin, m->timed_end);
  RIDGELINE_CUDA_CHECK(cudaEventSynchronize(m->timed_end.get()));
  float ms = 0;
  RIDGELINE_CUDA_CHECK(cudaEventElapsedTime(&ms, m->timed_begin.get(), m->timed_end.get()));
  return static_cast<double>(ms) * 1e-3;
}

void cuda_engine::set_cuda_graphs(bool on) { m->opt.cuda_graphs = on; }

std::int32_t cuda_engine::host_blocks() const { return m->opt.host_kv_blocks; }

void cuda_engine::copy_blocks(std::span<const block_transfer> transfers) {
  if (transfers.empty()) return;
  const int layers = m->cfg.model.layers;
  for (const auto& t : transfers) {
    if (t.gpu < 0 || t.gpu >= m->plan.kv_blocks || t.host_slot < 0 ||
        t.host_slot >= m->opt.host_kv_blocks) {
      throw std::invalid_argument("engine: block copy " + std::to_string(t.gpu) + " <-> slot " +
                                  std::to_string(t.host_slot) + " outside the pools (" +
                                  std::to_string(m->plan.kv_blocks) + " blocks, " +
                                  std::to_string(m->opt.host_kv_blocks) + " slots)");
    }
  }
  // After everything the compute stream has so far (the last step wrote the blocks to save).
  m->copies_ready.record(m->stream.get());
  cudaStream_t cs = m->copy_stream.get();
  RIDGELINE_CUDA_CHECK(cudaStreamWaitEvent(cs, m->copies_ready.get(), 0));
  if (!m->copies_pending) m->copies_begin.record(cs);
  const std::size_t width = static_cast<std::size_t>(m->block_bytes);
  const std::size_t layer_pitch = static_cast<std::size_t>(m->kv_view.layer_stride) * 2;
  auto* pool = m->kv.data<unsigned char>();
  for (const auto& t : transfers) {
    unsigned char* gpu = pool + static_cast<std::size_t>(t.gpu) * width;
    unsigned char* host = m->h_tier + static_cast<std::size_t>(t.host_slot) * layers * width;
    if (t.dir == block_transfer::direction::to_host) {
      RIDGELINE_CUDA_CHECK(cudaMemcpy2DAsync(host, width, gpu, layer_pitch, width,
                                             static_cast<std::size_t>(layers),
                                             cudaMemcpyDeviceToHost, cs));
    } else {
      RIDGELINE_CUDA_CHECK(cudaMemcpy2DAsync(gpu, layer_pitch, host, width, width,
                                             static_cast<std::size_t>(layers),
                                             cudaMemcpyHostToDevice, cs));
    }
  }
  m->copies_end.record(cs);
  m->copies_pending = true;
}

void cuda_engine::set_pdl(bool on) {
  m->apply_pdl(on);
  // Captured graphs hold the launch attributes of their capture.
  for (auto& [k, g] : m->graphs) {
    if (g.exec) cudaGraphExecDestroy(g.exec);
  }
  m->graphs.clear();
}

void cuda_engine::fill_kv_random(std::uint64_t seed) {
  if (!m->flights.empty()) throw std::logic_error("engine: weights or KV copied with steps in flight");
  m->stream.synchronize();
  cuda::fill_uniform(m->kv.data(), dtype::bf16, m->kv.bytes() / 2, seed, 1.0f, m->stream.get());
  m->stream.synchronize();
}

void cuda_engine::load_weights(std::span<const bf16_bits> weights) {
  if (!m->flights.empty()) throw std::logic_error("engine: weights or KV copied with steps in flight");
  m->stream.synchronize();
  const std::int64_t total = total_weight_elements(m->cfg.model);
  if (static_cast<std::int64_t>(weights.size()) != total) {
    throw std::invalid_argument("cuda_engine: " + std::to_string(weights.size()) +
                                " weight elements given, " + m->cfg.model.name + " has " +
                                std::to_string(total));
  }
  const auto tensors = weight_tensors(m->cfg.model);
  std::size_t at = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const weight_tensor& t = tensors[i];
    loaded_tensor lt;
    if (m->storage[i].packed) {
      lt.packed = pack_bf16_tensor(t, weights.data() + at, m->storage[i]);
    } else {
      lt.bf16.assign(weights.begin() + static_cast<std::ptrdiff_t>(at),
                     weights.begin() + static_cast<std::ptrdiff_t>(at + t.elements));
    }
    m->upload_tensor(i, lt);
    at += static_cast<std::size_t>(t.elements);
  }
}

std::vector<bf16_bits> cuda_engine::download_weights() const {
  if (!m->flights.empty()) throw std::logic_error("engine: weights or KV copied with steps in flight");
  m->stream.synchronize();
  const auto tensors = weight_tensors(m->cfg.model);
  std::vector<bf16_bits> host;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::size_t at = host.size();
    const auto count = static_cast<std::size_t>(tensors[i].elements);
    host.resize(at + count);
    if (m->storage[i].packed) {
      const cuda::device_buffer tmp(count * 2);
      cuda::quant_dequantize_bf16(m->packed_views[i], tmp.data<bf16_bits>(), m->stream.get());
      m->stream.synchronize();
      RIDGELINE_CUDA_CHECK(
          cudaMemcpy(host.data() + at, tmp.data(), count * 2, cudaMemcpyDeviceToHost));
      continue;
    }
    RIDGELINE_CUDA_CHECK(cudaMemcpy(host.data() + at,
                                    m->weights.data<bf16_bits>() + m->tensor_offsets[i].first,
                                    count * 2, cudaMemcpyDeviceToHost));
  }
  return host;
}

planner::weight_format cuda_engine::weight_format() const { return m->format; }

int cuda_engine::packed_tensors() const {
  return static_cast<int>(
      std::count_if(m->storage.begin(), m->storage.end(), [](const tensor_storage& t) {
        return t.packed;
      }));
}

std::vector<bf16_bits> cuda_engine::download_kv() const {
  if (!m->flights.empty()) throw std::logic_error("engine: weights or KV copied with steps in flight");
  m->stream.synchronize();
  std::vector<bf16_bits> host(m->kv.bytes() / 2);
  RIDGELINE_CUDA_CHECK(cudaMemcpy(host.data(), m->kv.data(), m->kv.bytes(), cudaMemcpyDeviceToHost));
  return host;
}

}  // namespace ridgeline
