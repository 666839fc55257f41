#!/usr/bin/env python3
"""The figures of docs/serving.md from the outputs of scripts/serving_study.sh.

  scripts/serving_summary.py OUT_DIR [--markdown]

Reads whichever parts are there (azure, mooncake, chat, prefix, overhead with sweep, preempt,
memcheck) and prints each figure with how it was computed. Exit status 2 on unreadable input.
"""
import gzip
import json
import os
import statistics
import sys


def load(out, name):
    path = os.path.join(out, name)
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path += ".gz"
    if not os.path.exists(path):
        return None
    try:
        with (gzip.open(path, "rt") if path.endswith(".gz") else open(path)) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"serving_summary: {path}: {e}", file=sys.stderr)
        sys.exit(2)


def row_of(doc):
    return doc["rows"][0]


def accounting(name, doc):
    r = row_of(doc)
    m = r["measured"]
    req = m["requests"]
    lost = r["requests"] - r["finished"] - r["rejected"] - m["cancelled"]
    finished = [i for i, o in enumerate(req["outcome"]) if o == "finished"]
    unrecorded = sum(1 for i in finished if req["ttft_seconds"][i] < 0 or req["e2e_seconds"][i] < 0)
    lines = [f"{name}: {r['requests']} requests: {r['finished']} finished, {r['rejected']} rejected "
             f"{r['rejected_by_reason']}, {m['cancelled']} cancelled, {lost} lost; "
             f"{unrecorded} finished without a recorded latency; wall {m['wall_seconds']:.1f} s, "
             f"{r['steps']} steps, mean running {m['mean_running']:.1f}, peak {r['peak_running']}, "
             f"peak KV blocks {r['peak_used_blocks']} of {r['capacity_blocks']}"]
    for d in ("ttft_seconds", "tpot_seconds", "e2e_seconds"):
        q = r[d]
        if q["count"]:
            lines.append(f"  {d}: p50 {q['p50']*1e3:.1f} ms, p90 {q['p90']*1e3:.1f} ms, "
                         f"p99 {q['p99']*1e3:.1f} ms (n={q['count']})")
    lag = m["submit_lag_seconds"]
    if lag["count"]:
        lines.append(f"  submission lag: p50 {lag['p50']*1e3:.3f} ms, p99 {lag['p99']*1e3:.3f} ms, "
                     f"max {lag['max']*1e3:.3f} ms")
    for d in ("step_gpu_seconds", "step_host_seconds", "step_gap_seconds"):
        q = m[d]
        if q["count"]:
            lines.append(f"  {d}: p50 {q['p50']*1e6:.1f} us, p90 {q['p90']*1e6:.1f} us (n={q['count']})")
    return lines, lost == 0 and unrecorded == 0


def hit_rates(name, doc):
    r = row_of(doc)
    m = r["measured"]
    diff = 100 * (r["token_hit_rate"] - m["simulated_token_hit_rate"])
    return [f"{name}: prefix hit rate (tokens) measured {100*r['token_hit_rate']:.2f}%, kv's "
            f"simulation of the same window and pool {100*m['simulated_token_hit_rate']:.2f}% "
            f"({diff:+.2f} points); blocks {100*r['block_hit_rate']:.2f}% vs "
            f"{100*m['simulated_block_hit_rate']:.2f}%"], abs(diff) <= 0.5


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    ok = {}
    for name in ("azure", "mooncake", "chat", "preempt", "hosttier"):
        doc = load(out, name + ".json")
        if doc is None:
            continue
        lines, ok[name + " accounted"] = accounting(name, doc)
        print("\n".join(lines))
        if name in ("mooncake", "chat"):
            lines, ok[name + " hit rate within 0.5 points"] = hit_rates(name, doc)
            print("\n".join(lines))
        if name == "hosttier":
            r = row_of(doc)
            st = r["measured"]["steps"]
            loaded, saved = sum(st["blocks_to_gpu"]), sum(st["blocks_to_host"])
            copy = sum(st["copy_seconds"])
            print(f"  host tier: {r['hit_tokens_tier2']} prompt tokens served from host memory, "
                  f"{saved} blocks saved and {loaded} loaded in {copy*1e3:.1f} ms of copies "
                  f"({r['capacity_blocks']} GPU blocks)")
            ok["host tier exercised"] = r["hit_tokens_tier2"] > 0 and loaded > 0
        if name == "preempt":
            r = row_of(doc)
            print(f"  preemptions {r['preemptions']}, evictions {r['evictions_tier1']}, "
                  f"tokens recomputed after preemption {r['preempted_tokens_recomputed']}")
            ok["preempt exercised"] = r["preemptions"] > 0 and r["finished"] == r["requests"]
    warm, cold = load(out, "prefix_warm.json"), load(out, "prefix_cold.json")
    if warm and cold:
        w, c = warm["rows"][0]["measured"]["requests"], cold["rows"][0]["measured"]["requests"]
        hits = [w["ttft_seconds"][i] for i in range(len(w["id"])) if w["cached_tokens"][i] > 0]
        colds = [c["ttft_seconds"][i] for i in range(len(c["id"])) if c["cached_tokens"][i] == 0]
        if hits and colds:
            mh, mc = statistics.median(hits), statistics.median(colds)
            print(f"prefix: TTFT with 7,680 cached + 256 new tokens: median {mh*1e3:.1f} ms of "
                  f"{len(hits)} ({', '.join(f'{x*1e3:.1f}' for x in hits)}); cold: median "
                  f"{mc*1e3:.1f} ms of {len(colds)} ({', '.join(f'{x*1e3:.1f}' for x in colds)}); "
                  f"ratio {100*mh/mc:.1f}%")
            ok["prefix hit TTFT <= 15% of cold"] = mh <= 0.15 * mc
    sw = load(out, "sweep_decode64.json")
    for name in ("overhead", "overhead_overlap"):
        ov = load(out, name + ".json")
        if not (ov and sw):
            continue
        st = ov["rows"][0]["measured"]["steps"]
        n = len(st["start_seconds"])
        idx = [i for i in range(n - 1) if st["decode_tokens"][i] == 64 and st["prefill_tokens"][i] == 0]
        # A decode step's wall time: from its start to the next step's start (host work included).
        wall = [st["start_seconds"][i + 1] - st["start_seconds"][i] for i in idx]
        gaps = [st["gap_seconds"][i] for i in idx if st["gap_seconds"][i] >= 0]
        fwd = [st["gpu_seconds"][i] for i in idx]
        srow = sw["rows"][0]
        if wall:
            replay_tps = 64 / statistics.median(wall)
            sweep_tps = srow["tokens_per_second"]
            print(f"{name}: {len(idx)} decode steps at batch 64 (contexts 448..576): median wall "
                  f"step {statistics.median(wall)*1e3:.3f} ms, forward {statistics.median(fwd)*1e3:.3f} ms, "
                  f"replay {replay_tps:.0f} tok/s against the sweep's {sweep_tps:.0f} tok/s at batch 64, "
                  f"context 512 ({100*(replay_tps/sweep_tps-1):+.1f}%); GPU idle between forward "
                  f"passes: median {statistics.median(gaps)*1e6:.1f} us, p90 "
                  f"{sorted(gaps)[int(0.9*(len(gaps)-1))]*1e6:.1f} us")
            ok[name + " within 5%"] = replay_tps >= 0.95 * sweep_tps
            ok[name + " median gap <= 30 us"] = statistics.median(gaps) <= 30e-6
    for name in ("memcheck", "memtests"):
        log = os.path.join(out, name + ".log")
        if os.path.exists(log):
            text = open(log).read()
            summary = [l for l in text.splitlines() if "ERROR SUMMARY" in l]
            passed = [l for l in text.splitlines() if "PASSED" in l or "FAILED" in l]
            print(f"{name}: {summary[-1].strip() if summary else 'no summary line'}"
                  + (f"; {passed[-1].strip()}" if passed else ""))
            ok[name + " clean"] = bool(summary) and "0 errors" in summary[-1]
    print()
    for k, v in ok.items():
        print(f"{'MET ' if v else 'MISS'} {k}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
