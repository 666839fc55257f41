#!/usr/bin/env python3
"""Verdict of an A/B run of scripts/ab_sweep.sh.

For every (phase, batch, context) point: the median over repetitions of each run's median step
time, per side (a = old build, b = new build), the spread over repetitions (min..max of the run
medians) and the change of b against a. A point whose new median is more than THRESHOLD percent
slower fails; the exit status is 1 when any point fails, 2 on unreadable input.

  scripts/ab_summary.py OUT_DIR [--threshold 1.0] [--markdown]
"""
import argparse
import glob
import json
import os
import re
import statistics
import sys


def load(out_dir):
    runs = {}  # (side, point) -> [median seconds per repetition]
    pattern = re.compile(r"^([ab])_(\d+)_(decode|prefill)\.json$")
    for path in sorted(glob.glob(os.path.join(out_dir, "*.json"))):
        m = pattern.match(os.path.basename(path))
        if not m:
            continue
        side = m.group(1)
        try:
            with open(path) as f:
                doc = json.load(f)
            for row in doc["rows"]:
                point = (row["phase"], int(row["batch"]), int(row["context"]))
                runs.setdefault((side, point), []).append(float(row["step_seconds"]["median"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"ab_summary: {path}: unreadable sweep result ({e})", file=sys.stderr)
            sys.exit(2)
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--threshold", type=float, default=1.0, help="percent slower that fails")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()
    runs = load(args.out_dir)
    points = sorted({p for (_, p) in runs})
    if not points:
        print(f"ab_summary: no a_*/b_* sweep results in {args.out_dir}", file=sys.stderr)
        return 2
    rows, failed = [], False
    for point in points:
        a, b = runs.get(("a", point), []), runs.get(("b", point), [])
        if not a or not b:
            print(f"ab_summary: {point} has runs on one side only", file=sys.stderr)
            return 2
        ma, mb = statistics.median(a), statistics.median(b)
        change = 100.0 * (mb - ma) / ma
        verdict = "FAIL" if change > args.threshold else "ok"
        failed |= verdict == "FAIL"
        rows.append((point, len(a), ma, min(a), max(a), mb, min(b), max(b), change, verdict))
    if args.markdown:
        print("| phase | batch | context | reps | old median ms (min..max) | new median ms (min..max) | change | verdict |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for (ph, bs, ctx), n, ma, a0, a1, mb, b0, b1, ch, v in rows:
            print(f"| {ph} | {bs} | {ctx} | {n} | {ma*1e3:.3f} ({a0*1e3:.3f}..{a1*1e3:.3f}) | "
                  f"{mb*1e3:.3f} ({b0*1e3:.3f}..{b1*1e3:.3f}) | {ch:+.2f}% | {v} |")
    else:
        print(f"{'phase':8} {'batch':>5} {'ctx':>5} {'reps':>4} {'old ms':>9} {'new ms':>9} {'change':>8}  verdict")
        for (ph, bs, ctx), n, ma, _, _, mb, _, _, ch, v in rows:
            print(f"{ph:8} {bs:5d} {ctx:5d} {n:4d} {ma*1e3:9.3f} {mb*1e3:9.3f} {ch:+7.2f}%  {v}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
