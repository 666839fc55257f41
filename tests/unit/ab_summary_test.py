#!/usr/bin/env python3
"""scripts/ab_summary.py: passes the committed refactor A/B, fails a slower new build, refuses
one-sided or unreadable input."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "ab_summary.py")
RUNS = os.path.join(ROOT, "docs", "results", "refactor_ab", "runs")


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


def sweep(path, seconds):
    row = {"phase": "decode", "batch": 64, "context": 512, "step_seconds": {"median": seconds}}
    with open(path, "w") as f:
        json.dump({"schema": "ridgeline.sweep/v1", "rows": [row]}, f)


def main():
    failures = []
    r = run(RUNS)
    if r.returncode != 0 or "prefill" not in r.stdout:
        failures.append(f"committed A/B: rc {r.returncode}\n{r.stdout}{r.stderr}")
    with tempfile.TemporaryDirectory() as d:
        for rep, (a, b) in enumerate([(0.010, 0.0102), (0.010, 0.0103), (0.011, 0.0102)], 1):
            sweep(os.path.join(d, f"a_{rep}_decode.json"), a)
            sweep(os.path.join(d, f"b_{rep}_decode.json"), b)
        r = run(d)  # medians 10.0 ms vs 10.2 ms: 2% slower
        if r.returncode != 1 or "FAIL" not in r.stdout or "+2.00%" not in r.stdout:
            failures.append(f"2% slower not failed: rc {r.returncode}\n{r.stdout}{r.stderr}")
        r = run(d, "--threshold", "3")
        if r.returncode != 0:
            failures.append(f"2% slower failed a 3% threshold: rc {r.returncode}\n{r.stdout}")
        for rep in (1, 2, 3):
            os.remove(os.path.join(d, f"b_{rep}_decode.json"))
        r = run(d)
        if r.returncode != 2 or "one side" not in r.stderr:
            failures.append(f"one-sided input: rc {r.returncode}\n{r.stderr}")
        with open(os.path.join(d, "b_1_decode.json"), "w") as f:
            f.write("{not json")
        r = run(d)
        if r.returncode != 2 or "b_1_decode.json" not in r.stderr:
            failures.append(f"unreadable input: rc {r.returncode}\n{r.stderr}")
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
