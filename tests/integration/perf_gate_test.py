#!/usr/bin/env python3
"""The CI performance gate's own test: scripts/perf_gate.sh and the slowdown injection of
bench/ridgeline_ci_bench, run for real (callgrind instruction counts of a cheap subset of the
covered benchmarks, RIDGELINE_PERF_GATE_ONLY) against baselines and thresholds chosen so that each
verdict is forced:

  - every covered benchmark is reachable by RIDGELINE_CI_BENCH_SLOWDOWN (x1.2 gives 20 % more work
    items, counted by the binary), the covered list and the binary's k_injectable agree, and a
    misspelt name or a bad factor is an error;
  - a clean run against a baseline counted from this build passes at once (no rerun), with both
    counts of each benchmark equal (the gate's premise: the count repeats);
  - a baseline whose counts disagree ("too noisy") reruns and fails;
  - a benchmark made 3 x slower reruns and fails, with that benchmark "slower";
  - a covered benchmark missing from the baseline is an error (exit 2), not a pass.

Whether a 20 % slowdown of every covered path is caught at the real thresholds:
scripts/perf_gate.sh --check-injection (docs/compare.md, "CI gate").

  python3 tests/integration/perf_gate_test.py --source . --build build
CTest runs it as `perf_gate` (label integration).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

ARGS = None


def read_text(path):
    with open(path) as f:
        return f.read()


def read_json(path):
    with open(path) as f:
        return json.load(f)


def covered_in_script():
    text = read_text(os.path.join(ARGS.source, "scripts", "perf_gate.sh"))
    block = re.search(r"^covered=\(\n(.*?)^\)", text, re.S | re.M).group(1)
    return [line.split()[0] for line in block.splitlines() if line.split()]


def injectable_in_binary():
    text = read_text(os.path.join(ARGS.source, "bench", "ci_gate.hpp"))
    block = re.search(r"k_injectable = \{(.*?)\};", text, re.S).group(1)
    return re.findall(r'"(BM_\w+)"', block)


def run_bench(names, slowdown=None):
    env = dict(os.environ)
    env.pop("RIDGELINE_CI_BENCH_SLOWDOWN", None)
    if slowdown is not None:
        env["RIDGELINE_CI_BENCH_SLOWDOWN"] = slowdown
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.json")
        p = subprocess.run(
            [os.path.join(ARGS.build, "bench", "ridgeline_ci_bench"),
             "--benchmark_filter=^(%s)(/manual_time)?$" % "|".join(names),
             "--benchmark_min_time=0.001", "--benchmark_out=" + out,
             "--benchmark_out_format=json"],
            env=env, capture_output=True, text=True)
        doc = read_json(out) if p.returncode == 0 else None
    return p, doc


SUBSET = ["BM_engine_kv_alloc_free", "BM_metrics_prometheus_text_encode"]


def gate_env(tmp, thresholds, baseline=None, slowdown=None):
    path = os.path.join(tmp, "thresholds.json")
    with open(path, "w") as f:
        json.dump(thresholds, f)
    env = dict(os.environ)
    env.pop("RIDGELINE_CI_BENCH_SLOWDOWN", None)
    env.pop("RIDGELINE_PERF_GATE", None)
    env.update({"RIDGELINE_BUILD_DIR": ARGS.build, "RIDGELINE_PERF_GATE_BUILD": "0",
                "RIDGELINE_PERF_GATE_THRESHOLDS": path,
                "RIDGELINE_PERF_GATE_BASELINE": baseline or os.path.join(tmp, "baseline.json"),
                "RIDGELINE_PERF_GATE_OUT": os.path.join(tmp, "out"),
                "RIDGELINE_PERF_GATE_ONLY": " ".join(SUBSET),
                "RIDGELINE_PERF_GATE_COUNTS": "2"})
    if slowdown is not None:
        env["RIDGELINE_CI_BENCH_SLOWDOWN"] = slowdown
    return env


def perf_gate(env, *args):
    return subprocess.run([os.path.join(ARGS.source, "scripts", "perf_gate.sh")] + list(args),
                          env=env, capture_output=True, text=True, cwd=ARGS.source)


def gate(tmp, thresholds, baseline=None, slowdown=None):
    p = perf_gate(gate_env(tmp, thresholds, baseline, slowdown))
    return p, os.path.join(tmp, "out", "gate")


def counted_baseline(tmp):
    """A baseline counted from this build (--update-baseline on the subset)."""
    p = perf_gate(gate_env(tmp, {"BM_*": 0.95}), "--update-baseline")
    if p.returncode != 0:
        raise AssertionError(p.stdout + p.stderr)
    return read_json(os.path.join(tmp, "baseline.json"))


def verdicts(compare_json):
    return {r["name"]: r["verdict"] for r in read_json(compare_json)["rows"]}


class Injection(unittest.TestCase):
    def test_covered_list_matches_the_binary(self):
        self.assertEqual(sorted(covered_in_script()), sorted(injectable_in_binary()))
        self.assertGreaterEqual(len(covered_in_script()), 10)

    def test_every_covered_benchmark_does_20_percent_more_work(self):
        names = covered_in_script()
        plain_p, plain = run_bench(names)
        self.assertEqual(plain_p.returncode, 0, plain_p.stderr)
        slow_p, slow = run_bench(names, ",".join(n + "=1.2" for n in names))
        self.assertEqual(slow_p.returncode, 0, slow_p.stderr)

        def items(doc):
            return {b["run_name"].replace("/manual_time", ""): b["work_items"]
                    for b in doc["benchmarks"] if not b.get("error_occurred")}
        before, after = items(plain), items(slow)
        for n in names:
            self.assertIn(n, before, "%s did not run (or failed)" % n)
            self.assertIn(n, after, "%s did not run slowed down (or failed)" % n)
            self.assertEqual(after[n], round(before[n] * 1.2), n)
            self.assertAlmostEqual(after[n] / before[n], 1.2, delta=1e-9, msg=n)

    def test_bad_names_and_factors_are_errors(self):
        for bad in ["BM_engine_kv_alloc_fre=1.2", "BM_engine_kv_alloc_free=0.5",
                    "BM_engine_kv_alloc_free=x", "BM_engine_kv_alloc_free"]:
            p, _ = run_bench(["BM_ci_known_cost"], bad)
            self.assertEqual(p.returncode, 2, bad)
            self.assertIn("RIDGELINE_CI_BENCH_SLOWDOWN", p.stderr, bad)


class Gate(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.baseline = counted_baseline(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def write_baseline(self, tmp, scale=None):
        doc = json.loads(json.dumps(self.baseline))
        if scale:
            for b in doc["benchmarks"].values():
                v = b["instructions_per_iteration"]
                b["instructions_per_iteration"] = [v[0], v[0] * scale]
        path = os.path.join(tmp, "baseline.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        return path

    def test_baseline_counts_repeat(self):
        for name in SUBSET:
            v = self.baseline["benchmarks"][name]["instructions_per_iteration"]
            self.assertEqual(len(v), 3, name)
            self.assertGreater(v[0], 1e5, name)
            self.assertEqual(len(set(v)), 1, "%s: %s" % (name, v))

    def test_clean_run_passes_without_rerun(self):
        with tempfile.TemporaryDirectory() as tmp:
            p, out = gate(tmp, {"BM_*": 0.05}, self.write_baseline(tmp))
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertIn("perf_gate: PASS; run 1:", p.stdout)
            self.assertFalse(os.path.exists(os.path.join(out, "run2")))
            v = verdicts(os.path.join(out, "run1", "compare.json"))
            self.assertEqual(sorted(v), sorted(SUBSET))
            self.assertEqual(set(v.values()), {"unchanged"})
            for r in read_json(os.path.join(out, "run1", "compare.json"))["rows"]:
                self.assertEqual(r["spread_new"], 0, r["name"])
                self.assertEqual(r["change"], 0, r["name"])

    def test_too_noisy_reruns_then_fails(self):
        with tempfile.TemporaryDirectory() as tmp:
            # Baseline counts 60 % apart: spread above half of any threshold up to 100 %.
            p, out = gate(tmp, {"BM_*": 0.95}, self.write_baseline(tmp, scale=1.6))
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertIn("run 1 was too noisy; running again", p.stderr)
            self.assertIn("perf_gate: FAIL (too noisy on the rerun)", p.stdout)
            for run in ("run1", "run2"):
                v = verdicts(os.path.join(out, run, "compare.json"))
                self.assertEqual(set(v.values()), {"too noisy"}, run)

    def test_slower_reruns_then_fails(self):
        with tempfile.TemporaryDirectory() as tmp:
            p, out = gate(tmp, {"BM_*": 0.95}, self.write_baseline(tmp),
                          "BM_engine_kv_alloc_free=3")
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertIn("run 1 found a regression; running again", p.stderr)
            self.assertIn("perf_gate: FAIL (slower on the rerun)", p.stdout)
            for run in ("run1", "run2"):
                v = verdicts(os.path.join(out, run, "compare.json"))
                self.assertEqual(v["BM_engine_kv_alloc_free"], "slower", run)
                self.assertEqual(v["BM_metrics_prometheus_text_encode"], "unchanged", run)

    def test_missing_baseline_entry_is_an_error(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = self.write_baseline(tmp)
            doc = read_json(path)
            del doc["benchmarks"]["BM_metrics_prometheus_text_encode"]
            with open(path, "w") as f:
                json.dump(doc, f)
            p, _ = gate(tmp, {"BM_*": 0.95}, path)
            self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
            self.assertIn("BM_metrics_prometheus_text_encode has no baseline", p.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--build", required=True)
    ARGS, rest = parser.parse_known_args()
    ARGS.source = os.path.abspath(ARGS.source)
    ARGS.build = os.path.abspath(ARGS.build)
    unittest.main(argv=[sys.argv[0]] + rest)
