#!/usr/bin/env python3
"""PyTorch peer of ridgeline's decode step (Llama-2-7B shapes), for ratio comparison.

This is *not* ridgeline: it is an independent, plain PyTorch implementation of the same decoder
step (torch.compile + a CUDA graph), timed the way ridgeline times its own kernels (CUDA events
around replays on one stream), so that ridgeline's decode numbers can be reported next to a
well-known baseline on the same GPU. See docs/peers.md.

What one "step" is: every sequence of the batch has `context` tokens in its KV cache and decodes
one new token. The step embeds the B new token ids, runs 32 decoder layers (RMSNorm, fused QKV
projection, RoPE, KV-cache append at position `context`, attention over the `context + 1`
positions 0..context, output projection, residual, RMSNorm, fused gate/up projection, SwiGLU,
down projection, residual), the final RMSNorm, the lm_head (logits in fp32) and a greedy argmax.
`context` has ridgeline's meaning (engine/step_time_model: KV tokens already in the cache that the
step's queries read); the new token's own K/V is read as well, so attention covers context + 1
positions, exactly, whatever the allocated cache length.

How it is run (the robust choice, see docs/peers.md): one decoder-layer function is compiled with
torch.compile(fullgraph=True, dynamic=False) in Inductor's default mode (no CUDA graphs inside
torch.compile); the same compiled function serves all 32 layers (weights and caches are passed as
arguments), so compilation happens once per batch size and takes seconds, not minutes. The whole
step (embedding, 32 compiled layer calls, compiled head) is then captured by hand in one
torch.cuda.CUDAGraph and replayed. All inputs are static tensors updated in place.

Usage:
  python3 bench/peers/torch_decode.py --batch 1,8,32,64,128,256 --context 512 --out peer.json
  python3 bench/peers/torch_decode.py --verify        # tiny model: compiled+graphed vs eager vs fp32
Needs a CUDA GPU and torch >= 2.5 (written for torch 2.11 / CUDA 13 on H100).
"""

import argparse
import datetime
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

SCHEMA = "ridgeline.peer/v1"
GIB = 1024 ** 3


# ----------------------------------------------------------------------------------------------
# Model shapes
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelConfig:
    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    rms_eps: float = 1e-5
    rope_theta: float = 10000.0

    @property
    def qkv_out(self):  # rows of the fused QKV weight: [(heads + 2 * kv_heads) * head_dim][hidden]
        return (self.heads + 2 * self.kv_heads) * self.head_dim

    def weight_bytes(self):
        per_layer = (self.qkv_out * self.hidden                 # fused QKV
                     + self.heads * self.head_dim * self.hidden  # o_proj
                     + 2 * self.intermediate * self.hidden       # fused gate_up
                     + self.hidden * self.intermediate           # down
                     + 2 * self.hidden)                          # two RMSNorm weights
        total = self.layers * per_layer + 2 * self.vocab * self.hidden + self.hidden
        return 2 * total  # bf16

    def kv_bytes(self, batch, max_ctx):
        # K and V, every layer, [batch][kv_heads][max_ctx][head_dim] bf16
        return 2 * self.layers * batch * self.kv_heads * max_ctx * self.head_dim * 2


LLAMA2_7B = ModelConfig("llama-2-7b", layers=32, hidden=4096, heads=32, kv_heads=32, head_dim=128,
                        intermediate=11008, vocab=32000)
# Tiny model for --verify (same code paths, seconds to compile).
TINY = ModelConfig("tiny-verify", layers=2, hidden=256, heads=4, kv_heads=4, head_dim=64,
                   intermediate=688, vocab=1024)


# ----------------------------------------------------------------------------------------------
# Weights and KV cache (random, seeded)
# ----------------------------------------------------------------------------------------------

class Weights:
    """bf16 weights, allocated once. Linear weights ~ U(-a, a) with variance 1/in_features
    (a = sqrt(3 / in_features)), so every projection keeps unit-variance activations; RMSNorm
    weights ~ U(0.9, 1.1). Layouts as ridgeline's: qkv [(H + 2 KV) * D][hidden] with q, k, v rows in
    that order; gate_up [2 * intermediate][hidden] with gate rows first, then up."""

    def __init__(self, cfg: ModelConfig, device, seed: int):
        torch.manual_seed(seed)
        bf16 = torch.bfloat16

        def linear(out_f, in_f):
            a = math.sqrt(3.0 / in_f)
            return torch.empty(out_f, in_f, dtype=bf16, device=device).uniform_(-a, a)

        def norm(n):
            return torch.empty(n, dtype=bf16, device=device).uniform_(0.9, 1.1)

        self.embed = torch.empty(cfg.vocab, cfg.hidden, dtype=bf16, device=device).uniform_(-1, 1)
        # One tuple per layer, in the order decoder_layer() takes them.
        self.layers = []
        for _ in range(cfg.layers):
            self.layers.append((
                norm(cfg.hidden),                                   # input RMSNorm
                linear(cfg.qkv_out, cfg.hidden),                    # fused QKV
                linear(cfg.hidden, cfg.heads * cfg.head_dim),       # o_proj
                norm(cfg.hidden),                                   # post-attention RMSNorm
                linear(2 * cfg.intermediate, cfg.hidden),           # fused gate_up
                linear(cfg.hidden, cfg.intermediate),               # down
            ))
        self.final_norm = norm(cfg.hidden)
        self.lm_head = linear(cfg.vocab, cfg.hidden)


def make_kv_cache(cfg: ModelConfig, batch: int, max_ctx: int, device):
    """Static contiguous per-layer caches [batch][kv_heads][max_ctx][head_dim], random values
    (U(-1, 1)), standing for the `context` tokens already decoded."""
    shape = (batch, cfg.kv_heads, max_ctx, cfg.head_dim)
    k = [torch.empty(shape, dtype=torch.bfloat16, device=device).uniform_(-1, 1)
         for _ in range(cfg.layers)]
    v = [torch.empty(shape, dtype=torch.bfloat16, device=device).uniform_(-1, 1)
         for _ in range(cfg.layers)]
    return k, v


def rope_cos_sin(cfg: ModelConfig, position: int, device):
    """cos/sin [head_dim] (fp32) of one position, rotate-half convention:
    inv_freq[i] = theta^(-2i/D), angle = position * inv_freq, repeated for both halves."""
    i = torch.arange(0, cfg.head_dim // 2, dtype=torch.float64)
    inv_freq = cfg.rope_theta ** (-2.0 * i / cfg.head_dim)
    ang = position * inv_freq
    ang = torch.cat([ang, ang])
    return (ang.cos().to(torch.float32).to(device), ang.sin().to(torch.float32).to(device))


# ----------------------------------------------------------------------------------------------
# The model (pure functions: weights, caches and static inputs are arguments)
# ----------------------------------------------------------------------------------------------

def rms_norm(x, w, eps: float):
    # fp32 mean of squares, out = bf16(x * rsqrt(mean + eps) * w), as ridgeline's rms_norm.
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * w.float()).to(x.dtype)


def apply_rope(t, cos, sin):
    # t [..., D]; rotate_half(t) = cat(-t2, t1); math in fp32, result in t's dtype.
    tf = t.float()
    half = tf.shape[-1] // 2
    rotated = torch.cat((-tf[..., half:], tf[..., :half]), dim=-1)
    return (tf * cos + rotated * sin).to(t.dtype)


def make_layer_fn(cfg: ModelConfig):
    """Returns decoder_layer(...) for cfg's shapes (Python ints captured in the closure)."""
    H, KV, D, I = cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.intermediate
    eps = cfg.rms_eps
    scale = 1.0 / math.sqrt(D)
    assert H == KV, "this peer implements multi-head attention (kv_heads == heads), as Llama-2-7B"

    def decoder_layer(x, in_norm, w_qkv, w_o, post_norm, w_gate_up, w_down,
                      k_cache, v_cache, cos, sin, pos: int):
        # x: [B, hidden] bf16 residual stream of the B new tokens, all at position `pos`.
        B = x.shape[0]
        h = rms_norm(x, in_norm, eps)
        qkv = F.linear(h, w_qkv)                                   # [B, (H + 2 KV) * D]
        q, k, v = qkv.split([H * D, KV * D, KV * D], dim=-1)
        q = apply_rope(q.view(B, H, 1, D), cos, sin)               # [B, H, 1, D]
        k = apply_rope(k.view(B, KV, 1, D), cos, sin)              # [B, KV, 1, D]
        v = v.view(B, KV, 1, D)
        # Append the new token's K/V at position `pos` (in place in the static caches) ...
        k_cache[:, :, pos:pos + 1].copy_(k)
        v_cache[:, :, pos:pos + 1].copy_(v)
        # ... and attend over exactly positions 0..pos (= context cached tokens + the new one).
        # One query per sequence attends to all of them: no causal mask needed.
        attn = F.scaled_dot_product_attention(q, k_cache[:, :, :pos + 1], v_cache[:, :, :pos + 1],
                                              scale=scale)          # [B, H, 1, D]
        x = x + F.linear(attn.reshape(B, H * D), w_o)
        h = rms_norm(x, post_norm, eps)
        gu = F.linear(h, w_gate_up)                                 # [B, 2 I]: gate | up
        gate, up = gu.split([I, I], dim=-1)
        x = x + F.linear(F.silu(gate) * up, w_down)
        return x

    return decoder_layer


def make_head_fn(cfg: ModelConfig):
    eps = cfg.rms_eps

    def head(x, final_norm, w_lm_head):
        h = rms_norm(x, final_norm, eps)
        # bf16 GEMM (fp32 accumulation in cuBLAS), logits widened to fp32 as Hugging Face does.
        logits = F.linear(h, w_lm_head).float()                     # [B, vocab] fp32
        return logits, torch.argmax(logits, dim=-1)                 # greedy; first max wins ties

    return head


class DecodeStep:
    """One batch size / context point: static inputs, caches, and the step as a callable."""

    def __init__(self, cfg, weights, layer_fn, head_fn, batch, context, max_ctx, device):
        assert max_ctx >= context + 1
        self.cfg, self.w, self.layer_fn, self.head_fn = cfg, weights, layer_fn, head_fn
        self.batch, self.context = batch, context
        # Static inputs, updated in place between replays if one wants other tokens.
        self.tokens = torch.randint(0, cfg.vocab, (batch,), dtype=torch.long, device=device)
        self.cos, self.sin = rope_cos_sin(cfg, context, device)
        self.k_cache, self.v_cache = make_kv_cache(cfg, batch, max_ctx, device)

    def __call__(self):
        x = F.embedding(self.tokens, self.w.embed)                  # [B, hidden]
        for l, lw in enumerate(self.w.layers):
            x = self.layer_fn(x, *lw, self.k_cache[l], self.v_cache[l], self.cos, self.sin,
                              self.context)
        return self.head_fn(x, self.w.final_norm, self.w.lm_head)   # (logits fp32, tokens)

    def free(self):
        del self.k_cache, self.v_cache, self.tokens, self.cos, self.sin


def compile_fns(cfg, mode):
    """(layer_fn, head_fn), compiled unless mode is None."""
    layer_fn, head_fn = make_layer_fn(cfg), make_head_fn(cfg)
    if mode is None:
        return layer_fn, head_fn
    kw = dict(fullgraph=True, dynamic=False)
    if mode != "default":
        kw["mode"] = mode
    return torch.compile(layer_fn, **kw), torch.compile(head_fn, **kw)


def capture_graph(step, warmup_calls=3):
    """Runs `step` a few times on a side stream (compiles, cuBLAS/SDPA workspaces, lazy inits),
    then captures one call into a CUDAGraph. Returns (graph, static outputs, seconds of the first
    call, i.e. compile + first run)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    t0 = time.perf_counter()
    with torch.cuda.stream(side):
        for i in range(warmup_calls):
            step()
            if i == 0:
                torch.cuda.synchronize()
                first_call = time.perf_counter() - t0
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = step()
    torch.cuda.synchronize()
    return graph, outputs, first_call


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------

def percentile(sorted_xs, p):
    """Linear interpolation between closest ranks (numpy's default)."""
    if len(sorted_xs) == 1:
        return sorted_xs[0]
    r = (len(sorted_xs) - 1) * p / 100.0
    lo = int(math.floor(r))
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (r - lo)


def time_replays(run, warmup, repetitions):
    """`warmup` untimed calls, then `repetitions` calls each between two CUDA events on the current
    stream, back to back; one synchronize at the end. Returns the step times in seconds."""
    for _ in range(warmup):
        run()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repetitions)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repetitions)]
    for s, e in zip(starts, ends):
        s.record()
        run()
        e.record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends)]


# ----------------------------------------------------------------------------------------------
# Environment
# ----------------------------------------------------------------------------------------------

def nvidia_driver():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def environment(device):
    props = torch.cuda.get_device_properties(device)
    env = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpu": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "sm_count": props.multi_processor_count,
        "gpu_memory_bytes": props.total_memory,
        "driver": nvidia_driver(),
        "python": platform.python_version(),
        "hostname": socket.gethostname(),
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        import triton  # noqa: PLC0415 (optional)
        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    return env


def raise_recompile_limits():
    # One compiled layer function serves every batch size (one recompile per shape, dynamic=False):
    # keep Dynamo from falling back to eager after its default 8 recompiles.
    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit",
                 "accumulated_cache_size_limit"):
        if hasattr(cfg, name):
            setattr(cfg, name, max(getattr(cfg, name), 256))


# ----------------------------------------------------------------------------------------------
# Benchmark
# ----------------------------------------------------------------------------------------------

def workspace_estimate(cfg, batch):
    """Bytes beyond weights and KV that a point needs: activations (a few [B, 2I] / [B, vocab]
    fp32 buffers alive at once, generously), the CUDA graph's pool, cuBLAS/SDPA workspaces and
    allocator slack."""
    per_token = (4 * 2 * cfg.vocab * 4            # logits fp32 (+ bf16 copy, argmax scratch)
                 + 4 * 2 * cfg.intermediate * 2   # gate_up, swiglu
                 + 4 * cfg.qkv_out * 4            # qkv and RoPE in fp32
                 + 16 * cfg.hidden * 4)           # residual, norms
    return 1 * GIB + batch * per_token


def run_benchmark(args):
    device = torch.device("cuda")
    cfg = LLAMA2_7B
    mode = None if args.no_compile else args.compile_mode
    raise_recompile_limits()

    env = environment(device)
    print(f"# {env['gpu']}, torch {env['torch']}, CUDA {env['cuda']}, driver {env['driver']}",
          flush=True)
    t0 = time.perf_counter()
    weights = Weights(cfg, device, args.seed)  # once, shared by every point
    torch.cuda.synchronize()
    print(f"# weights: {cfg.weight_bytes() / 1e9:.2f} GB in {time.perf_counter() - t0:.1f} s",
          flush=True)
    layer_fn, head_fn = compile_fns(cfg, mode)

    rows = []
    for batch in args.batch:
        ctx = args.context
        max_ctx = ctx + 1 + args.extra_cache_slots
        row = {"batch": batch, "context": ctx, "phase": "decode"}
        kv = cfg.kv_bytes(batch, max_ctx)
        need = kv + workspace_estimate(cfg, batch)
        torch.cuda.empty_cache()
        free, total = torch.cuda.mem_get_info()
        if need > free:
            row["skipped"] = (f"does not fit: KV cache {kv / GIB:.1f} GiB + workspace "
                              f"{(need - kv) / GIB:.1f} GiB > {free / GIB:.1f} GiB free "
                              f"(of {total / GIB:.1f} GiB; weights {cfg.weight_bytes() / GIB:.1f} "
                              f"GiB resident)")
            rows.append(row)
            print(f"B={batch:4d} ctx={ctx}: skipped ({row['skipped']})", flush=True)
            continue
        step = graph = outputs = run = None
        try:
            step = DecodeStep(cfg, weights, layer_fn, head_fn, batch, ctx, max_ctx, device)
            if args.no_cuda_graph:
                t1 = time.perf_counter()
                step()
                torch.cuda.synchronize()
                first = time.perf_counter() - t1
                run = step
            else:
                graph, outputs, first = capture_graph(step)
                run = graph.replay
            times = sorted(time_replays(run, args.warmup, args.repetitions))
            med = percentile(times, 50)
            bytes_read = cfg.weight_bytes() + cfg.kv_bytes(batch, ctx + 1)
            row.update({
                "step_seconds": {"median": med, "p10": percentile(times, 10),
                                 "p90": percentile(times, 90), "min": times[0], "max": times[-1],
                                 "count": len(times)},
                "tokens_per_second": batch / med,
                "first_call_seconds": first,  # compile (if not cached) + first eager run
                "kv_cache_bytes": kv,
                "attention_positions": ctx + 1,
                # Sanity figure: weights + the KV the step reads, over the median. Decode is
                # memory-bound, so this should sit below (and at small batch near) the HBM peak.
                "bytes_read_per_step": bytes_read,
                "effective_bandwidth_gb_per_s": bytes_read / med / 1e9,
            })
            print(f"B={batch:4d} ctx={ctx}: median {med * 1e3:8.3f} ms  "
                  f"p10 {row['step_seconds']['p10'] * 1e3:8.3f}  "
                  f"p90 {row['step_seconds']['p90'] * 1e3:8.3f}  "
                  f"{batch / med:10.1f} tok/s  {bytes_read / med / 1e9:7.0f} GB/s  "
                  f"(first call {first:.1f} s)", flush=True)
        except torch.cuda.OutOfMemoryError as e:
            row["skipped"] = f"out of memory: {str(e).splitlines()[0]}"
            print(f"B={batch:4d} ctx={ctx}: skipped ({row['skipped']})", flush=True)
        finally:
            # Free this point's caches and graph pool before the next one (weights stay).
            if step is not None:
                step.free()
            del step, graph, outputs, run
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        rows.append(row)

    result = {
        "schema": SCHEMA,
        "environment": env,
        "config": {
            "model": asdict(cfg),
            "peer": "pytorch",
            "dtype": "bfloat16",
            "attention": "torch.nn.functional.scaled_dot_product_attention over k_cache[:, :, :context+1]",
            "kv_cache_layout": "per layer [batch][kv_heads][max_ctx][head_dim] contiguous bf16",
            "max_ctx": f"context + 1 + {args.extra_cache_slots}",
            "compile": None if mode is None else {
                "mode": mode, "scope": "one decoder layer function (shared by all layers) + head",
                "fullgraph": True, "dynamic": False},
            "cuda_graph": None if args.no_cuda_graph else "manual torch.cuda.CUDAGraph of the whole step",
            "repetitions": args.repetitions,
            "warmup": args.warmup,
            "seed": args.seed,
            "timing": "CUDA events around each replay, back to back on one stream",
            "total_seconds": time.perf_counter() - t0,
        },
        "rows": rows,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        print(f"# wrote {args.out}")

    print("\n  batch  context   median ms     p10 ms     p90 ms       tok/s")
    for r in rows:
        if "skipped" in r:
            print(f"  {r['batch']:5d}  {r['context']:7d}   skipped: {r['skipped']}")
        else:
            s = r["step_seconds"]
            print(f"  {r['batch']:5d}  {r['context']:7d}  {s['median'] * 1e3:10.3f} "
                  f"{s['p10'] * 1e3:10.3f} {s['p90'] * 1e3:10.3f} {r['tokens_per_second']:11.1f}")
    return 0


# ----------------------------------------------------------------------------------------------
# --verify: tiny model, compiled + graphed vs eager bf16 vs an fp32 reference
# ----------------------------------------------------------------------------------------------

def reference_step(cfg, w, tokens, k_cache, v_cache, context):
    """fp32 reference from the same bf16 weights and cache contents, written independently of the
    peer's functions: explicit softmax attention over positions 0..context, no SDPA, no compile.
    Reads the caches (does not write them); the new K/V are concatenated instead."""
    f = lambda t: t.float()  # noqa: E731
    H, D, I, eps = cfg.heads, cfg.head_dim, cfg.intermediate, cfg.rms_eps
    B = tokens.shape[0]
    inv_freq = cfg.rope_theta ** (-2.0 * torch.arange(D // 2, dtype=torch.float64) / D)
    ang = (context * inv_freq).to(tokens.device)
    cos, sin = ang.cos().float(), ang.sin().float()

    def rope(t):  # t [B, H, D]: pairs (i, i + D/2) rotated by angle i
        a, b = t[..., : D // 2], t[..., D // 2:]
        return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)

    def norm(x, g):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * f(g)

    x = f(w.embed)[tokens]
    for l, (n1, wqkv, wo, n2, wgu, wd) in enumerate(w.layers):
        qkv = norm(x, n1) @ f(wqkv).t()
        q = rope(qkv[:, : H * D].reshape(B, H, D))
        k = rope(qkv[:, H * D: 2 * H * D].reshape(B, H, D))
        v = qkv[:, 2 * H * D:].reshape(B, H, D)
        keys = torch.cat([f(k_cache[l][:, :, :context]), k[:, :, None]], dim=2)  # [B, H, ctx+1, D]
        vals = torch.cat([f(v_cache[l][:, :, :context]), v[:, :, None]], dim=2)
        scores = torch.einsum("bhd,bhtd->bht", q, keys) / math.sqrt(D)
        attn = torch.einsum("bht,bhtd->bhd", scores.softmax(-1), vals)
        x = x + attn.reshape(B, H * D) @ f(wo).t()
        gu = norm(x, n2) @ f(wgu).t()
        x = x + (F.silu(gu[:, :I]) * gu[:, I:]) @ f(wd).t()
    logits = norm(x, w.final_norm) @ f(w.lm_head).t()
    return logits, logits.argmax(-1)


def compare(name, logits, tokens, ref_logits, ref_tokens, max_rel_err, tie_tol):
    """Tokens must match except where the reference's two candidates are within tie_tol (a near
    tie that rounding may flip); logits within max_rel_err * std(ref) at worst."""
    err = (logits.float() - ref_logits).abs()
    scale = ref_logits.std().item()
    rows = torch.arange(tokens.shape[0], device=tokens.device)
    gap = (ref_logits[rows, ref_tokens] - ref_logits[rows, tokens]).abs()
    mismatch = tokens != ref_tokens
    hard = mismatch & (gap > tie_tol)
    ok = (err.max().item() <= max_rel_err * scale) and not bool(hard.any())
    print(f"  {name:32s} max|dlogit| {err.max().item():.4f} (logit std {scale:.3f}, limit "
          f"{max_rel_err * scale:.4f})  tokens {int((~mismatch).sum())}/{tokens.numel()} equal, "
          f"{int(hard.sum())} not near ties  -> {'OK' if ok else 'FAIL'}")
    return ok


def run_verify(args):
    device = torch.device("cuda")
    cfg = TINY
    raise_recompile_limits()
    batch, context, extra = 4, 37, 11  # odd sizes; 11 unused slots after position `context`
    weights = Weights(cfg, device, args.seed)
    print(f"# verify on {torch.cuda.get_device_name(device)}: {cfg}, batch {batch}, context "
          f"{context}, cache length {context + 1 + extra}")

    # Eager bf16 (no compile, no graph): the peer's own functions.
    eager = DecodeStep(cfg, weights, make_layer_fn(cfg), make_head_fn(cfg), batch, context,
                       context + 1 + extra, device)
    # Poison the slots after `context`: attention must never read them.
    for c in eager.k_cache + eager.v_cache:
        c[:, :, context + 1:] = 1e4
    # The fp32 reference reads the caches before the step writes position `context`.
    ref_logits, ref_tokens = reference_step(cfg, weights, eager.tokens, eager.k_cache,
                                            eager.v_cache, context)
    e_logits, e_tokens = eager()

    # Compiled (+ CUDA graph unless --no-cuda-graph) on a copy of the same inputs and caches.
    layer_fn, head_fn = compile_fns(cfg, None if args.no_compile else args.compile_mode)
    test = DecodeStep(cfg, weights, layer_fn, head_fn, batch, context, context + 1 + extra, device)
    test.tokens.copy_(eager.tokens)
    for dst, src in zip(test.k_cache + test.v_cache, eager.k_cache + eager.v_cache):
        dst.copy_(src)
    if args.no_cuda_graph:
        c_logits, c_tokens = test()
        c_logits2, c_tokens2 = test()
    else:
        graph, (g_logits, g_tokens), _ = capture_graph(test)
        graph.replay()
        c_logits, c_tokens = g_logits.clone(), g_tokens.clone()
        # Change the static input in place, replay, restore, replay: the graph must follow.
        test.tokens.copy_((eager.tokens + 1) % cfg.vocab)
        graph.replay()
        moved = g_logits.clone()
        test.tokens.copy_(eager.tokens)
        graph.replay()
        c_logits2, c_tokens2 = g_logits.clone(), g_tokens.clone()
        if torch.equal(moved, c_logits):
            print("  FAIL: replay ignored the in-place update of the static token ids")
            return 1
    torch.cuda.synchronize()

    ok = True
    ok &= compare("eager bf16 vs fp32 reference", e_logits, e_tokens, ref_logits, ref_tokens,
                  max_rel_err=0.15, tie_tol=0.1 * ref_logits.std().item())
    ok &= compare("compiled vs eager bf16", c_logits, c_tokens, e_logits, e_tokens,
                  max_rel_err=0.1, tie_tol=0.05 * e_logits.std().item())
    ok &= compare("compiled vs fp32 reference", c_logits, c_tokens, ref_logits, ref_tokens,
                  max_rel_err=0.15, tie_tol=0.1 * ref_logits.std().item())
    same = torch.equal(c_logits, c_logits2) and torch.equal(c_tokens, c_tokens2)
    print(f"  repeated step bit-identical: {same} -> {'OK' if same else 'FAIL'}")
    ok &= same
    print("verify:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


# ----------------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", default="1,8,32,64,128,256",
                   help="comma-separated batch sizes (default: %(default)s)")
    p.add_argument("--context", type=int, default=512,
                   help="tokens already in every sequence's KV cache (default: %(default)s)")
    p.add_argument("--out", help="write the JSON result here")
    p.add_argument("--repetitions", type=int, default=100, help="timed replays (>= 50 advised)")
    p.add_argument("--warmup", type=int, default=10, help="untimed replays before timing")
    p.add_argument("--no-compile", action="store_true",
                   help="eager PyTorch ops (still captured in a CUDA graph)")
    p.add_argument("--no-cuda-graph", action="store_true",
                   help="launch the step from Python every time instead of replaying a CUDA graph")
    p.add_argument("--compile-mode", default="default",
                   choices=["default", "max-autotune-no-cudagraphs"],
                   help="torch.compile mode of the layer/head functions (default: %(default)s; "
                        "max-autotune-no-cudagraphs autotunes GEMMs per batch size: much slower "
                        "to compile)")
    p.add_argument("--extra-cache-slots", type=int, default=0,
                   help="allocate the cache with this many slots beyond context + 1 (attention "
                        "still reads exactly context + 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verify", action="store_true",
                   help="check a tiny model: compiled+graphed vs eager vs an fp32 reference")
    args = p.parse_args(argv)
    try:
        args.batch = [int(b) for b in args.batch.split(",") if b.strip()]
    except ValueError:
        p.error("--batch takes comma-separated integers")
    if not args.batch or min(args.batch) < 1 or args.context < 0 or args.repetitions < 1 \
            or args.warmup < 0 or args.extra_cache_slots < 0:
        p.error("batch sizes >= 1, context >= 0, repetitions >= 1, warmup >= 0 expected")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not torch.cuda.is_available():
        print("torch_decode.py: no CUDA device", file=sys.stderr)
        return 2
    if args.verify:
        return run_verify(args)
    return run_benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
