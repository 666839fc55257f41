#!/usr/bin/env python3
"""Writes the Grafana dashboards in grafana/dashboards/ from the panel lists below (run it after
editing them: python3 dashboards/generate.py). Every panel's PromQL is evaluated against a real
Prometheus by tests/integration/prometheus_test.sh, so an expression that returns nothing or NaN
fails CI. Ratios divide by `(... > 0)` and quantiles keep only series with observations in the
window, so idle phases drop out instead of showing NaN."""
import json
import os

DS = {"type": "prometheus", "uid": "ridgeline-prometheus"}
RI = "$__rate_interval"


def rate(m, by=""):
    return f"sum{' by (' + by + ')' if by else ''} (rate({m}[{RI}]))"


def per(num, den, by=""):
    """num / den over the same window, only where den > 0."""
    return f"{rate(num, by)} / ({rate(den, by)} > 0)"


def quantile(q, hist, by=""):
    keys = (by + ", le") if by else "le"
    on = f"on({by})" if by else "on()"
    return (f"histogram_quantile({q}, {rate(hist + '_bucket', keys)} and {on} "
            f"({rate(hist + '_count', by)} > 0))")


def target(expr, legend, ref):
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref}


def panel(title, unit, targets, description, kind="timeseries", w=12, h=8):
    return {"type": kind, "title": title, "description": description, "datasource": DS,
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
            "targets": [target(e, l, chr(ord("A") + i)) for i, (e, l) in enumerate(targets)],
            "gridPos": {"w": w, "h": h}}


def dashboard(uid, title, description, panels):
    x = y = 0
    for i, p in enumerate(panels):
        p["id"] = i + 1
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y = 0, y + h
        p["gridPos"].update({"x": x, "y": y})
        x += w
    return {"uid": uid, "title": title, "description": description, "tags": ["ridgeline"],
            "timezone": "browser", "schemaVersion": 39, "version": 1, "editable": True,
            "refresh": "5s", "time": {"from": "now-15m", "to": "now"},
            "templating": {"list": []}, "annotations": {"list": []}, "panels": panels}


STEP = "ridgeline_step_duration_seconds"
FLOPS_RATE = per("ridgeline_flops_total", STEP + "_sum", "phase")
BYTES_RATE = per("ridgeline_dram_bytes_total", STEP + "_sum", "phase")

roofline = dashboard(
    "ridgeline-roofline", "Roofline & efficiency",
    "Achieved FLOP/s and DRAM bytes/s against the GPU's ceilings, and each phase's arithmetic "
    "intensity against the ridge point (docs/metrics.md).",
    [
        panel("Achieved FLOP/s by phase vs peak", "flops",
              [(FLOPS_RATE, "achieved {{phase}}"),
               ("max by (dtype) (ridgeline_peak_flops_per_second)", "peak {{dtype}}")],
              "achieved = FLOPs / busy step seconds of the phase over the window"),
        panel("Achieved DRAM bandwidth by phase vs peak", "Bps",
              [(BYTES_RATE, "achieved {{phase}}"),
               ("max(ridgeline_peak_dram_bytes_per_second)", "peak")],
              "achieved = DRAM bytes / busy step seconds of the phase over the window"),
        panel("Share of peak FLOP/s by phase", "percentunit",
              [(f"({FLOPS_RATE}) / on() group_left() max(ridgeline_peak_flops_per_second)",
                "{{phase}}")],
              "achieved FLOP/s / peak FLOP/s (compute dtype)"),
        panel("Share of peak DRAM bandwidth by phase", "percentunit",
              [(f"({BYTES_RATE}) / on() group_left() "
                "max(ridgeline_peak_dram_bytes_per_second)", "{{phase}}")],
              "achieved bytes/s / peak bytes/s"),
        panel("Arithmetic intensity by phase vs ridge point", "none",
              [(per("ridgeline_flops_total", "ridgeline_dram_bytes_total", "phase"), "{{phase}}"),
               ("max by (dtype) (ridgeline_ridge_point_flops_per_byte)", "ridge point {{dtype}}")],
              "intensity = FLOPs / DRAM bytes; below the ridge point a phase is memory-bound, "
              "above it compute-bound", w=24),
        panel("GPU SM clock", "hertz",
              [("max by (gpu) (ridgeline_gpu_sm_clock_hertz)", "SM gpu {{gpu}}"),
               ("max by (gpu) (ridgeline_gpu_sm_clock_max_hertz)", "max gpu {{gpu}}")],
              "NVML SM clock against its peak (GPU runs only)", w=8),
        panel("GPU power", "watt",
              [("max by (gpu) (ridgeline_gpu_power_watts)", "power gpu {{gpu}}"),
               ("max by (gpu) (ridgeline_gpu_power_limit_watts)", "limit gpu {{gpu}}")],
              "NVML board power against the enforced limit (GPU runs only)", w=8),
        panel("GPU throttle reasons", "none",
              [("max by (gpu, reason) (ridgeline_gpu_throttle_reason)", "{{reason}} gpu {{gpu}}")],
              "1 while an NVML clocks-event reason is active (GPU runs only)", w=8),
    ])

batch = dashboard(
    "ridgeline-batch", "Batch & throughput",
    "Batch size, queue, tokens per second and step-time quantiles by phase.",
    [
        panel("Batch size and queue", "none",
              [("max(ridgeline_batch_size)", "batch (last step)"),
               ("max(ridgeline_requests_running)", "running"),
               ("max(ridgeline_requests_waiting)", "waiting")],
              "sequences in the last step; requests running and waiting"),
        panel("Tokens per second", "none",
              [(rate("ridgeline_generation_tokens_total"), "output tokens/s"),
               (rate("ridgeline_prompt_tokens_total"), "prompt tokens/s computed")],
              "rate of the token counters (simulated runs: per simulated second x --pace)"),
        panel("Step time p50 by phase", "s",
              [(quantile(0.5, STEP, "phase"), "p50 {{phase}}")], "median step duration"),
        panel("Step time p99 by phase", "s",
              [(quantile(0.99, STEP, "phase"), "p99 {{phase}}")], "99th percentile step duration"),
        panel("Steps per second by phase", "none",
              [(rate(STEP + "_count", "phase"), "{{phase}}")], "engine steps per second"),
        panel("Requests per second by outcome", "reqps",
              [(rate("ridgeline_requests_total", "outcome"), "{{outcome}}")],
              "requests leaving the engine"),
    ])

kv = dashboard(
    "ridgeline-kv", "KV cache",
    "KV cache usage and blocks by state, prefix-cache hit rate, evictions and preemptions.",
    [
        panel("KV cache usage", "percentunit",
              [("max(ridgeline_kv_cache_usage_ratio)", "used / capacity")],
              "used blocks / (used + cached + free)"),
        panel("KV blocks by state", "none",
              [("sum by (state) (ridgeline_kv_cache_blocks)", "{{state}}")],
              "used (referenced), cached (evictable prefix), free"),
        panel("Prefix-cache hit rate (tokens)", "percentunit",
              [(per("ridgeline_prefix_cache_hits_tokens_total",
                    "ridgeline_prefix_cache_queries_tokens_total"), "hit rate")],
              "prompt tokens served from cache / prompt tokens looked up"),
        panel("Prefix-cache lookups and hits", "none",
              [(rate("ridgeline_prefix_cache_queries_tokens_total"), "looked-up tokens/s"),
               (rate("ridgeline_prefix_cache_hits_tokens_total"), "hit tokens/s")],
              "token rates"),
        panel("Evictions and preemptions", "none",
              [(rate("ridgeline_kv_cache_evictions_total"), "evictions/s"),
               (rate("ridgeline_preemptions_total"), "preemptions/s")],
              "cached blocks evicted; sequences preempted (recompute)", w=24),
    ])

slo = dashboard(
    "ridgeline-slo", "Latency SLO",
    "TTFT, TPOT, ITL and E2E quantiles against the SLO lines, and goodput.",
    [
        panel("TTFT quantiles vs SLO", "s",
              [(quantile(0.5, "ridgeline_time_to_first_token_seconds"), "p50"),
               (quantile(0.99, "ridgeline_time_to_first_token_seconds"), "p99"),
               ("max(ridgeline_slo_ttft_seconds)", "SLO")],
              "TTFT = first output token time - arrival"),
        panel("TPOT quantiles vs SLO", "s",
              [(quantile(0.5, "ridgeline_time_per_output_token_seconds"), "p50"),
               (quantile(0.99, "ridgeline_time_per_output_token_seconds"), "p99"),
               ("max(ridgeline_slo_tpot_seconds)", "SLO")],
              "TPOT = (E2E - TTFT) / (output_tokens - 1)"),
        panel("ITL quantiles", "s",
              [(quantile(0.5, "ridgeline_inter_token_latency_seconds"), "p50"),
               (quantile(0.99, "ridgeline_inter_token_latency_seconds"), "p99")],
              "gap between consecutive output tokens of a request"),
        panel("E2E quantiles", "s",
              [(quantile(0.5, "ridgeline_e2e_request_latency_seconds"), "p50"),
               (quantile(0.99, "ridgeline_e2e_request_latency_seconds"), "p99")],
              "E2E = last token time - arrival"),
        panel("Goodput", "reqps",
              [(rate("ridgeline_requests_slo_met_total"), "goodput (req/s within SLO)"),
               (rate('ridgeline_requests_total{outcome="finished"}'), "finished req/s")],
              "finished requests per second with TTFT <= SLO_ttft and TPOT <= SLO_tpot"),
        panel("Share of requests within SLO", "percentunit",
              [(per("ridgeline_requests_slo_met_total",
                    'ridgeline_requests_total{outcome="finished"}'), "within SLO")],
              "goodput / finished requests"),
    ])

serving = dashboard(
    "ridgeline-serving", "Serving",
    "What a fleet is run by, side by side: running batch and KV-cache usage against TTFT and TPOT "
    "percentiles, prefix hit rate, preemptions and ops:byte per step (ridgeline replay, or kv's "
    "simulation; docs/serving.md).",
    [
        panel("Running batch and queue", "none",
              [("max(ridgeline_requests_running)", "running"),
               ("max(ridgeline_requests_waiting)", "waiting"),
               ("max(ridgeline_batch_size)", "sequences in the last step")],
              "requests running and waiting after each step; sequences in the last step"),
        panel("KV-cache usage", "percentunit",
              [("max(ridgeline_kv_cache_usage_ratio)", "used / capacity"),
               ('max(ridgeline_kv_cache_blocks{state="cached"}) / on() '
                "(sum(ridgeline_kv_cache_blocks) > 0)", "cached (evictable prefixes) / capacity")],
              "used blocks / all blocks; cached prefix blocks / all blocks"),
        panel("TTFT p50 / p99 vs SLO", "s",
              [(quantile(0.5, "ridgeline_time_to_first_token_seconds"), "p50"),
               (quantile(0.99, "ridgeline_time_to_first_token_seconds"), "p99"),
               ("max(ridgeline_slo_ttft_seconds)", "SLO")],
              "TTFT = first output token time - scheduled arrival"),
        panel("TPOT p50 / p99 vs SLO", "s",
              [(quantile(0.5, "ridgeline_time_per_output_token_seconds"), "p50"),
               (quantile(0.99, "ridgeline_time_per_output_token_seconds"), "p99"),
               ("max(ridgeline_slo_tpot_seconds)", "SLO")],
              "TPOT = (E2E - TTFT) / (output_tokens - 1)"),
        panel("Prefix-cache hit rate (tokens)", "percentunit",
              [(per("ridgeline_prefix_cache_hits_tokens_total",
                    "ridgeline_prefix_cache_queries_tokens_total"), "hit rate")],
              "prompt tokens served from cache / prompt tokens looked up", w=8),
        panel("Preemptions and evictions", "none",
              [(rate("ridgeline_preemptions_total"), "preemptions/s"),
               (rate("ridgeline_kv_cache_evictions_total"), "evictions/s")],
              "sequences preempted (recomputed later); cached blocks reused", w=8),
        panel("Ops:byte per step by phase", "none",
              [(per("ridgeline_flops_total", "ridgeline_dram_bytes_total", "phase"), "{{phase}}"),
               ("max by (dtype) (ridgeline_ridge_point_flops_per_byte)", "ridge point {{dtype}}")],
              "counted FLOPs / counted DRAM bytes of the steps; below the ridge point a step is "
              "memory-bound", w=8),
        panel("Tokens per second", "none",
              [(rate("ridgeline_generation_tokens_total"), "output tokens/s"),
               (rate("ridgeline_prompt_tokens_total"), "prompt tokens/s computed")],
              "rate of the token counters", w=24),
    ])

here = os.path.dirname(os.path.abspath(__file__))
for name, d in [("roofline", roofline), ("batch", batch), ("kv_cache", kv), ("latency_slo", slo),
                ("serving", serving)]:
    with open(os.path.join(here, "grafana", "dashboards", f"ridgeline_{name}.json"), "w") as f:
        json.dump(d, f, indent=2)
        f.write("\n")
