#!/usr/bin/env python3
"""The HTTP layer's share of a `ridgeline load` run against `ridgeline serve --record` on one host.

    scripts/http_overhead.py LOAD.json.gz SERVE_RECORD.json.gz [--replay REPLAY.json.gz] [-o OUT.json]

Joins each finished request of the load result (ridgeline.kv/v1, config.executor "http") with the
server's record of it (ridgeline.serve_record/v1) by X-Request-Id (load sends its sample id), and
splits what the client measured into the engine's part and the HTTP layer's. Both processes stamp
the same steady clock (CLOCK_MONOTONIC), so the differences are exact up to the stamps' placement:

  uplink        = server arrival (request parsed, tokenized, submitted) - client write
  server TTFT   = engine's first token (end of the step that sampled it) - server arrival
  handoff       = start of the first engine step after the arrival - server arrival (a part of
                  server TTFT: the engine thread's wake-up when idle, else the step in flight;
                  only with a record that has the engine's steps)
  first write   = server's first content write - engine's first token (HTTP thread wake-up,
                  detokenize, JSON, evbuffer)
  downlink      = client's first content read - server's first content write
  HTTP TTFT     = client TTFT - server TTFT  (= uplink + first write + downlink)
  server TPOT   = (engine's last token - engine's first token) / (output tokens - 1)
  HTTP per token = client TPOT - server TPOT
  HTTP E2E      = client E2E - (engine's last token - server arrival)

Percentiles use linear interpolation (numpy's default, as core's quantile does).

With --replay (a `ridgeline replay` result of the same window) and a record that has the engine's
steps, the two engines' steps are set side by side per kind (decode only, or with prefill) and
batch size: forward pass (gpu_seconds, CUDA events), GPU idle before it (gap_seconds) and the
step period (the time from one step's end to the next one's, what a decoding request waits per
token), medians per bucket.
"""
import argparse
import bisect
import gzip
import json
import sys


def read(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def quantile(xs, q):
    s = sorted(xs)
    if not s:
        return None
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary(xs):
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "mean": sum(xs) / len(xs), "p50": quantile(xs, 0.5),
            "p90": quantile(xs, 0.9), "p99": quantile(xs, 0.99), "max": max(xs)}


BUCKETS = ((1, 4), (5, 8), (9, 16), (17, 32), (33, 64), (65, 1 << 30))


def step_table(steps, ends):
    """steps: columns with gpu_seconds, gap_seconds, sequences, prefill_tokens; ends: each step's
    end (seconds). -> {(kind, bucket): {"n", "gpu", "gap", "period"}} of medians."""
    groups = {}
    for j in range(len(ends)):
        kind = "decode" if steps["prefill_tokens"][j] == 0 else "prefill"
        b = next(i for i, (lo, hi) in enumerate(BUCKETS) if lo <= steps["sequences"][j] <= hi)
        g = groups.setdefault((kind, b), {"gpu": [], "gap": [], "period": []})
        g["gpu"].append(steps["gpu_seconds"][j])
        if steps["gap_seconds"][j] >= 0:
            g["gap"].append(steps["gap_seconds"][j])
        if j > 0:
            g["period"].append(ends[j] - ends[j - 1])
    return {k: {"n": len(v["gpu"]), **{m: quantile(v[m], 0.5) for m in ("gpu", "gap", "period")}}
            for k, v in groups.items()}


def compare_steps(replay_path, rec):
    doc = read(replay_path)
    if doc.get("schema") != "ridgeline.kv/v1" or not doc["rows"] or \
            "steps" not in doc["rows"][0].get("measured", {}):
        sys.exit(f"{replay_path}: not a ridgeline replay result (ridgeline.kv/v1 with measured steps)")
    st = doc["rows"][0]["measured"]["steps"]
    rends = [st["start_seconds"][j] + st["host_seconds"][j] + st["gpu_seconds"][j]
             for j in range(len(st["start_seconds"]))]
    ss = rec["steps"]
    rt, stab = step_table(st, rends), step_table(ss, ss["end_seconds"])
    out = []
    print("\nsteps, medians (us): replay | serve")
    print("| kind | batch | steps | forward | GPU idle before | period | serve/replay period |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for key in sorted(set(rt) | set(stab)):
        a, b = rt.get(key), stab.get(key)
        lo, hi = BUCKETS[key[1]]
        label = f"{lo}-{hi}" if hi < (1 << 30) else f"{lo}+"
        def f(x, m):
            return "-" if x is None or x[m] is None else f"{x[m] * 1e6:.0f}"
        ratio = "-"
        if a and b and a["period"] and b["period"]:
            ratio = f"{b['period'] / a['period']:.3f}"
        print(f"| {key[0]} | {label} | {a['n'] if a else 0} / {b['n'] if b else 0} | "
              f"{f(a, 'gpu')} / {f(b, 'gpu')} | {f(a, 'gap')} / {f(b, 'gap')} | "
              f"{f(a, 'period')} / {f(b, 'period')} | {ratio} |")
        out.append({"kind": key[0], "batch": label, "replay": a, "serve": b})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("load")
    ap.add_argument("record")
    ap.add_argument("--replay", help="a replay result of the same window: steps side by side")
    ap.add_argument("-o", "--output")
    a = ap.parse_args()
    doc, rec = read(a.load), read(a.record)
    if doc.get("schema") != "ridgeline.kv/v1" or doc["config"].get("executor") != "http":
        sys.exit(f"{a.load}: not a ridgeline load result (ridgeline.kv/v1, executor http)")
    if rec.get("schema") != "ridgeline.serve_record/v1":
        sys.exit(f"{a.record}: not a ridgeline.serve_record/v1 file")
    r = rec["requests"]
    server = {}
    for i, cid in enumerate(r["client_id"]):
        if r["outcome"][i] == "finished" and cid:
            server.setdefault(cid, []).append(i)
    rows = doc["rows"]
    if len(rows) != 1:
        sys.exit(f"{a.load}: {len(rows)} levels; give a run of one level")
    http = rows[0]["measured"]["http"]
    epoch = http["epoch_steady_seconds"]
    s = http["samples"]
    cols = {k: [] for k in ("uplink", "handoff", "server_ttft", "first_write", "downlink", "http_ttft",
                            "client_ttft", "server_tpot", "client_tpot", "http_per_token",
                            "http_e2e", "last_write")}
    unmatched = ambiguous = 0
    starts = sorted(rec.get("steps", {}).get("start_seconds", []))
    for i, rid in enumerate(s["id"]):
        end = s["end_seconds"][i]
        c0, c1 = s["chunk_offsets"][i], s["chunk_offsets"][i + 1]
        if s["status"][i] != 200 or end < 0 or c1 <= c0:
            continue
        idx = server.get(str(rid), [])
        if not idx:
            unmatched += 1
            continue
        if len(idx) > 1:
            ambiguous += 1
            continue
        j = idx[0]
        sent = epoch + s["sent_seconds"][i]
        first = epoch + s["chunk_seconds"][c0]
        last = epoch + s["chunk_seconds"][c1 - 1]
        n = r["output_tokens"][j]
        arr, ft, lt = r["arrival_seconds"][j], r["first_token_seconds"][j], r["last_token_seconds"][j]
        fw, lw = r["first_write_seconds"][j], r["last_write_seconds"][j]
        cols["uplink"].append(arr - sent)
        k = bisect.bisect_left(starts, arr)
        if k < len(starts) and starts[k] <= ft:
            cols["handoff"].append(starts[k] - arr)
        cols["server_ttft"].append(ft - arr)
        cols["first_write"].append(fw - ft)
        cols["downlink"].append(first - fw)
        cols["client_ttft"].append(first - sent)
        cols["http_ttft"].append((first - sent) - (ft - arr))
        cols["last_write"].append(lw - lt)
        cols["http_e2e"].append((last - sent) - (lt - arr))
        if n > 1:
            stpot = (lt - ft) / (n - 1)
            ctpot = (last - first) / (n - 1)
            cols["server_tpot"].append(stpot)
            cols["client_tpot"].append(ctpot)
            cols["http_per_token"].append(ctpot - stpot)
    out = {"load": a.load, "record": a.record, "matched": len(cols["uplink"]),
           "unmatched": unmatched, "ambiguous": ambiguous,
           "definitions": __doc__.split("\n\n")[2],
           "seconds": {k: summary(v) for k, v in cols.items()}}
    print(f"{out['matched']} requests matched by X-Request-Id ({unmatched} without a server record, "
          f"{ambiguous} ambiguous)")
    print("| quantity | mean | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|")
    for k, v in out["seconds"].items():
        if v["n"] == 0:
            continue
        unit, f = ("ms", 1e3) if k in ("server_ttft", "client_ttft", "server_tpot", "client_tpot") \
            else ("us", 1e6)
        print(f"| {k} ({unit}) | " + " | ".join(f"{v[q] * f:.1f}" for q in
                                                   ("mean", "p50", "p90", "p99", "max")) + " |")
    if a.replay:
        if not rec.get("steps", {}).get("end_seconds"):
            sys.exit(f"{a.record}: no engine steps (written by a server before --record kept them)")
        out["steps"] = compare_steps(a.replay, rec)
    if a.output:
        with open(a.output, "w") as fo:
            json.dump(out, fo, indent=1)


if __name__ == "__main__":
    main()
