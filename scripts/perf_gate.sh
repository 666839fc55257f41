#!/usr/bin/env bash
# CI performance gate: counts the instructions of the CPU gate benchmarks (bench/ridgeline_ci_bench:
# the KV manager, a scheduler step, a simulator replay, trace parsing, the planner's rate search,
# result encoding) under callgrind and compares them with the committed baseline
# (bench/baselines/cpu_instructions.json). The same binary on the same inputs executes the same
# instructions on any x86-64 machine, busy or idle, so the baseline recorded here holds on the CI
# machine; seconds did not (docs/compare.md, "CI gate"). Per-benchmark thresholds
# (bench/baselines/cpu_instruction_thresholds.json, none above 15 %) come from measured noise.
# Each benchmark is counted RIDGELINE_PERF_GATE_COUNTS times (default 2, separate processes) per run.
# A run passes when no benchmark reads "slower" (its median count above the baseline's by more than
# its threshold) or "too noisy" (its counts disagreeing by more than half the threshold); otherwise
# the gate runs once more, and that second run's verdict is final: "slower" or "too noisy" again
# fails (exit 1).
#   scripts/perf_gate.sh                       the gate (scripts/test.sh calls this)
#   scripts/perf_gate.sh --update-baseline     one run of 3 counts per benchmark, written as the
#                                              baseline with the build's compiler and valgrind
#   scripts/perf_gate.sh --measure-noise N [--write-thresholds]
#                                              N runs against the baseline, no retry: per benchmark
#                                              the largest |change|, the largest spread, verdicts,
#                                              and the threshold the rule gives (written to
#                                              bench/baselines/cpu_instruction_thresholds.json if
#                                              asked)
#   scripts/perf_gate.sh --check-injection [BM_name ...]
#                                              for each covered benchmark (or those named), the
#                                              gate with that path doing 20 % more work
#                                              (RIDGELINE_CI_BENCH_SLOWDOWN); each must fail with
#                                              that benchmark "slower"; exit 1 if one passes
#   scripts/perf_gate.sh --soak N [--log FILE] the gate N times on this tree; per-run verdicts and
#                                              times to FILE (default
#                                              docs/results/ci_gate/soak_<UTC date>.log); exit 1
#                                              if a run failed
# Environment: RIDGELINE_BUILD_DIR (default build), RIDGELINE_PERF_GATE=0 skips the gate,
# RIDGELINE_PERF_GATE_COUNTS (counts per benchmark and run, default 2), RIDGELINE_PERF_GATE_JOBS
# (callgrind processes at once, default nproc), RIDGELINE_PERF_GATE_RETRY_PAUSE (seconds before the
# rerun, default 0), RIDGELINE_PERF_GATE_OUT (default out/perf-gate),
# RIDGELINE_PERF_GATE_INJECT_FACTOR (default 1.2); for the gate's own test
# (tests/integration/perf_gate_test.py): RIDGELINE_PERF_GATE_THRESHOLDS (another thresholds file),
# RIDGELINE_PERF_GATE_BASELINE (another baseline), RIDGELINE_PERF_GATE_ONLY (space-separated
# benchmark names instead of the covered list), RIDGELINE_PERF_GATE_BUILD=0 (use the binaries as
# built).
set -euo pipefail
cd "$(dirname "$0")/.."

# To add a benchmark: write it in bench/ci_*.cpp with work_items() and timed_loop()
# (bench/ci_gate.hpp; add it to k_injectable there), list it here, then --update-baseline,
# --measure-noise 10 --write-thresholds, --check-injection BM_name, and commit the results.
binary=bench/ridgeline_ci_bench
covered=(
  BM_plan_rate_search               # `ridgeline plan` rate search, 1,000 requests (the command)
  BM_engine_kv_prefix_lookup        # KV manager: 100 Mooncake prompts against 2000 cached ones
  BM_engine_trace_parse_mooncake    # the committed Mooncake JSONL trace
  BM_engine_replay_mooncake         # 60 Mooncake requests through scheduler, KV, simulated executor
  BM_engine_scheduler_step          # one step of a 256-sequence batch with chunked prefill
  BM_engine_gpu_profile_parse       # a GPU profile document through its typed reader
  BM_engine_trace_parse_azure       # the committed Azure CSV trace
  BM_engine_kv_alloc_free           # KV manager: 32 sequences x 64 blocks allocated, hashed, freed
  BM_metrics_result_json_encode     # a 256-row result document to JSON text
  BM_metrics_prometheus_text_encode # 4 histograms of 30 buckets to exposition text
)  # longest first: the processes run nproc at a time
if [ -n "${RIDGELINE_PERF_GATE_ONLY:-}" ]; then  # the gate's own test: a cheap subset
  read -r -a covered <<<"$RIDGELINE_PERF_GATE_ONLY"
fi
baseline=${RIDGELINE_PERF_GATE_BASELINE:-bench/baselines/cpu_instructions.json}
thresholds=${RIDGELINE_PERF_GATE_THRESHOLDS:-bench/baselines/cpu_instruction_thresholds.json}

build=${RIDGELINE_BUILD_DIR:-build}
counts=${RIDGELINE_PERF_GATE_COUNTS:-2}
jobs=${RIDGELINE_PERF_GATE_JOBS:-$(nproc)}
out=${RIDGELINE_PERF_GATE_OUT:-out/perf-gate}
factor=${RIDGELINE_PERF_GATE_INJECT_FACTOR:-1.2}
pause=${RIDGELINE_PERF_GATE_RETRY_PAUSE:-0}
mode=gate runs=1 log="" names=() write_thresholds=0
case "${1:-}" in
  "") ;;
  --update-baseline) mode=update; counts=3 ;;
  --measure-noise)
    mode=noise; runs=${2:?--measure-noise needs a run count}
    [ "${3:-}" = --write-thresholds ] && write_thresholds=1 ;;
  --check-injection) mode=inject; shift; names=("$@") ;;
  --soak)
    mode=soak; runs=${2:?--soak needs a run count}
    if [ "${3:-}" = --log ]; then log=${4:?--log needs a file}; fi ;;
  *) echo "perf_gate: unknown argument $1 (see the top of $0)" >&2; exit 2 ;;
esac
for v in "$runs" "$counts" "$jobs"; do
  case "$v" in
    ''|*[!0-9]*|0) echo "perf_gate: run, count and job numbers must be positive integers" >&2
                   exit 2 ;;
  esac
done
if [ "$write_thresholds" = 1 ] && [ "$runs" -lt 10 ]; then
  echo "perf_gate: --write-thresholds needs at least 10 runs" >&2
  exit 2
fi
if [ "${RIDGELINE_PERF_GATE:-1}" = 0 ] && [ "$mode" = gate ]; then
  echo "perf_gate: skipped (RIDGELINE_PERF_GATE=0)"
  exit 0
fi
if [ -n "${RIDGELINE_CI_BENCH_SLOWDOWN:-}" ] && [ "$mode" != gate ]; then
  echo "perf_gate: RIDGELINE_CI_BENCH_SLOWDOWN is set; only a plain gate run takes it" >&2
  exit 2
fi
if ! command -v valgrind >/dev/null; then
  echo "perf_gate: valgrind not found (scripts/setup.sh installs it): the gate counts" \
       "instructions under callgrind" >&2
  exit 2
fi

if [ "${RIDGELINE_PERF_GATE_BUILD:-1}" != 0 ]; then
  cmake --build "$build" --target ridgeline "$(basename "$binary")" >/dev/null
fi
bench=$build/$binary
mkdir -p "$out"

count_one() {  # name k dir -> dir/name.k.{callgrind,iterations,json,log} and dir/name.k.child.*
  local n=$1 k=$2 d=$3
  RIDGELINE_CI_BENCH_COUNTED="$d/$n.$k.iterations" \
  RIDGELINE_CI_BENCH_CHILD_COUNTS="$d/$n.$k.child" \
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$d/$n.$k.callgrind" \
    "$bench" --benchmark_filter="^$n(/manual_time)?\$" --benchmark_min_time=1e-9 \
    --benchmark_repetitions=1 --benchmark_out="$d/$n.$k.json" --benchmark_out_format=json \
    >"$d/$n.$k.log" 2>&1 ||
    { tail -20 "$d/$n.$k.log"; echo "perf_gate: $n failed under callgrind ($d/$n.$k.log)"
      return 1; } >&2
}

# dir -> dir/counts.json: per covered benchmark, `counts` callgrind processes, `jobs` at a time;
# each count is the instructions of its timed iterations (children included) per iteration.
count_run() {
  local dir=$1 n k failed=0
  rm -rf "$dir" && mkdir -p "$dir"
  for n in "${covered[@]}"; do
    for k in $(seq 1 "$counts"); do
      while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || failed=1; done
      count_one "$n" "$k" "$dir" &
    done
  done
  while [ -n "$(jobs -rp)" ]; do wait -n || failed=1; done
  [ "$failed" -eq 0 ] || return 2
  python3 - "$dir" "$counts" "${covered[@]}" <<'EOF' || return 2
import glob, json, os, re, sys
dir, counts, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def totals(path):  # callgrind's totals line: the instructions (Ir) of that process
    with open(path) as f:
        for line in f:
            if line.startswith("totals:"):
                return int(line.split()[1])
    raise SystemExit("perf_gate: no totals in " + path)
out = {}
for n in names:
    per, items = [], None
    for k in range(1, counts + 1):
        base = os.path.join(dir, "%s.%d" % (n, k))
        runs = [b for b in json.load(open(base + ".json"))["benchmarks"]
                if b.get("run_type") == "iteration"]
        if len(runs) != 1 or runs[0].get("error_occurred"):
            raise SystemExit("perf_gate: %s failed: %s" % (
                n, runs[0].get("error_message", "?") if runs else "no result"))
        items = runs[0].get("work_items")
        iterations = int(open(base + ".iterations").read())
        instructions = totals(base + ".callgrind") + sum(
            totals(p) for p in glob.glob(base + ".child.*"))
        if iterations < 1 or instructions == 0:
            raise SystemExit("perf_gate: %s counted %d instructions in %d iterations (built "
                             "without valgrind/callgrind.h?)" % (n, instructions, iterations))
        per.append(instructions / iterations)
    out[n] = {"instructions_per_iteration": per, "work_items": items}
json.dump({"metric": "instructions per timed iteration (callgrind Ir)", "benchmarks": out},
          open(os.path.join(dir, "counts.json"), "w"), indent=1)
EOF
}

# dir -> dir/compare.{txt,json} and dir/summary.md; 0 pass, 1 slower, 3 too noisy, 2 error.
#   change = median(this run's counts) / median(the baseline's) - 1
#   spread = (largest - smallest) / smallest of one side's counts
#   verdict: "too noisy" if either side's spread > threshold / 2, else "slower" if change >
#   threshold, "faster" if change < -threshold, else "unchanged"
compare_run() {
  local dir=$1
  python3 - "$baseline" "$thresholds" "$dir" "${covered[@]}" <<'EOF'
import fnmatch, json, os, statistics, sys
base_path, thr_path, dir, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
try:
    base = json.load(open(base_path))["benchmarks"]
    thr = {k: v for k, v in json.load(open(thr_path)).items() if not k.startswith("_")}
except (OSError, ValueError, KeyError) as e:
    print("perf_gate: cannot read the baseline or thresholds: %s" % e, file=sys.stderr)
    sys.exit(2)
new = json.load(open(os.path.join(dir, "counts.json")))["benchmarks"]
def threshold(name):
    if name in thr:
        return thr[name]
    matches = [p for p in thr if fnmatch.fnmatchcase(name, p)]
    if not matches:
        print("perf_gate: no threshold for " + name, file=sys.stderr)
        sys.exit(2)
    return thr[max(matches, key=len)]
def spread(v):
    return (max(v) - min(v)) / min(v)
rows, counts = [], {"unchanged": 0, "slower": 0, "too_noisy": 0, "faster": 0}
for n in names:
    if n not in base:  # a covered benchmark without a baseline is a broken gate, not a pass
        print("perf_gate: %s has no baseline in %s" % (n, base_path), file=sys.stderr)
        sys.exit(2)
    b, c = base[n]["instructions_per_iteration"], new[n]["instructions_per_iteration"]
    t = threshold(n)
    change = statistics.median(c) / statistics.median(b) - 1
    sb, sn = spread(b), spread(c)
    verdict = ("too noisy" if max(sb, sn) > t / 2 else "slower" if change > t else
               "faster" if change < -t else "unchanged")
    counts[verdict.replace(" ", "_")] += 1
    rows.append({"name": n, "base": statistics.median(b), "new": statistics.median(c),
                 "change": change, "spread_base": sb, "spread_new": sn, "threshold": t,
                 "verdict": verdict})
json.dump({"metric": "instructions per timed iteration (callgrind Ir)", "rows": rows,
           "counts": counts}, open(os.path.join(dir, "compare.json"), "w"), indent=1)
head = ("benchmark", "base Ir", "new Ir", "change", "spread", "threshold", "verdict")
table = [head] + [(r["name"], "{:,.0f}".format(r["base"]), "{:,.0f}".format(r["new"]),
                   "%+.3f%%" % (100 * r["change"]),
                   "%.3f%%" % (100 * max(r["spread_base"], r["spread_new"])),
                   "%.0f%%" % (100 * r["threshold"]), r["verdict"]) for r in rows]
width = [max(len(row[i]) for row in table) for i in range(len(head))]
with open(os.path.join(dir, "compare.txt"), "w") as f:
    for row in table:
        f.write("  ".join(x.ljust(w) for x, w in zip(row, width)).rstrip() + "\n")
    f.write("%d slower, %d faster, %d unchanged, %d too noisy (instructions per iteration)\n" % (
        counts["slower"], counts["faster"], counts["unchanged"], counts["too_noisy"]))
with open(os.path.join(dir, "summary.md"), "w") as f:
    f.write("| " + " | ".join(head) + " |\n|---|---:|---:|---:|---:|---:|---|\n")
    for row in table[1:]:
        f.write("| " + " | ".join(row) + " |\n")
sys.exit(1 if counts["slower"] else 3 if counts["too_noisy"] else 0)
EOF
}

describe() {  # dir -> one line: the verdict counts and the benchmarks that were not unchanged
  python3 - "$1/compare.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
c = doc["counts"]
odd = ["%s %s (%+.3f%%, spread %.3f%%, threshold %.0f%%)" % (r["name"], r["verdict"],
       100 * r["change"], 100 * max(r["spread_base"], r["spread_new"]), 100 * r["threshold"])
       for r in doc["rows"] if r["verdict"] != "unchanged"]
print("%d unchanged, %d slower, %d too noisy, %d faster%s" % (c["unchanged"], c["slower"],
      c["too_noisy"], c["faster"], ("; " + "; ".join(odd)) if odd else ""))
EOF
}

# The gate: one run, and when it is not clean a second run whose verdict is final.
# dir -> 0 pass, 1 fail (slower or too noisy twice), 2 error. Sets gate_line (one line of text).
gate_line=""
gate() {
  local dir=$1 s=0 first
  count_run "$dir/run1" || return 2
  compare_run "$dir/run1" || s=$?
  [ "$s" -eq 2 ] && return 2
  first="run 1: $(describe "$dir/run1")"
  if [ "$s" -eq 0 ]; then gate_line="PASS; $first"; return 0; fi
  echo "perf_gate: run 1 $([ "$s" -eq 1 ] && echo "found a regression" || echo "was too noisy");" \
       "running again in $pause s" >&2
  sleep "$pause"
  s=0
  count_run "$dir/run2" || return 2
  compare_run "$dir/run2" || s=$?
  [ "$s" -eq 2 ] && return 2
  case "$s" in
    0) gate_line="PASS (rerun); $first | run 2: $(describe "$dir/run2")"; return 0 ;;
    *) gate_line="FAIL ($([ "$s" -eq 1 ] && echo slower || echo too noisy) on the rerun); $first"
       gate_line="$gate_line | run 2: $(describe "$dir/run2")"
       return 1 ;;
  esac
}

# Per benchmark over compare.json files: median, second largest and largest |change|, largest
# spread, verdicts, and the threshold rule (docs/compare.md, "CI gate"):
#   threshold = max(2 x the second largest |change|, 2.5 x the largest spread, 5 %), rounded up
#   to a whole percent; above 15 % the benchmark cannot be gated here (capped at 15 %, flagged).
# 2.5 x the spread keeps an unchanged tree clear of "too noisy" (spread > threshold / 2). With
# --write FILE CONDITIONS it also writes the thresholds file; exit 1 when one had to be capped.
noise_table() {
  python3 - "$@" <<'EOF'
import json, math, statistics, sys
args = sys.argv[1:]
write = conditions = None
if args[0] == "--write":
    write, conditions, args = args[1], args[2], args[3:]
rows = {}
for path in args:
    for r in json.load(open(path))["rows"]:
        rows.setdefault(r["name"], []).append(r)
print("| benchmark | runs | median \\|change\\| | 2nd largest | largest | max spread | verdicts | "
      "threshold now | rule gives |")
print("|---|---:|---:|---:|---:|---:|---|---:|---:|")
thresholds, measured, capped = {}, {}, []
for name in sorted(rows):
    rs = rows[name]
    ch = sorted(abs(r["change"]) for r in rs)
    second = ch[-2] if len(ch) > 1 else ch[-1]
    sp = [max(r["spread_base"], r["spread_new"]) for r in rs]
    verdicts = {}
    for r in rs:
        verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
    t = max(2 * second, 2.5 * max(sp), 0.05)
    t = math.ceil(round(t * 100, 6)) / 100
    rule = "%.0f%%" % (100 * t)
    if t > 0.15:
        capped.append(name)
        rule += " (> 15%: cannot gate)"
    thresholds[name] = min(t, 0.15)
    measured[name] = {"runs": len(rs), "max_change": ch[-1], "second_change": second,
                      "median_change": statistics.median(ch), "max_spread": max(sp)}
    print("| %s | %d | %.4f%% | %.4f%% | %.4f%% | %.4f%% | %s | %.0f%% | %s |" % (
        name, len(rs), 100 * statistics.median(ch), 100 * second, 100 * ch[-1], 100 * max(sp),
        ", ".join("%d %s" % (v, k) for k, v in sorted(verdicts.items())),
        100 * rs[0]["threshold"], rule))
if write:
    doc = {"_comment": "Per-benchmark thresholds of the CPU perf gate (scripts/perf_gate.sh: "
                       "instructions per timed iteration under callgrind), written by "
                       "--measure-noise N --write-thresholds. Rule: max(2 x the second largest "
                       "|change|, 2.5 x the largest spread of one run's counts, 5%) over the N "
                       "runs against the baseline, rounded up to a whole percent, never above 15% "
                       "(docs/compare.md, CI gate). Measured: " + conditions,
           "_measured": measured}
    doc.update(thresholds)
    doc["BM_*"] = 0.15  # a benchmark not measured yet: the ceiling, until it is
    with open(write, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print("perf_gate: thresholds written to " + write)
if capped:
    print("perf_gate: the rule gives more than 15% for " + ", ".join(capped) +
          ": capped at 15%; redesign or drop them (docs/compare.md)", file=sys.stderr)
    sys.exit(1)
EOF
}

conditions() {  # one line: when, where, how loaded
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) host $(hostname) cpus $(nproc)" \
       "load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

toolchain() {  # one line: what the counts depend on besides the source
  local cxx cuda=no
  cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null)
  [ -n "$(find "$build" -maxdepth 3 -name 'libridgeline_kernels_cuda.a' 2>/dev/null)" ] && cuda=yes
  echo "$("${cxx:-c++}" --version | head -1); $(valgrind --version); CUDA build: $cuda"
}

start=$(date +%s)
case "$mode" in
update)
  count_run "$out/baseline"
  python3 - "$out/baseline/counts.json" "$baseline" "$(conditions)" "$(toolchain)" \
    "$(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null ||
                                                        echo ' (dirty)')" <<'EOF'
import json, sys
counts, target, conditions, toolchain, tree = sys.argv[1:]
doc = json.load(open(counts))
doc["context"] = {"recorded": conditions, "toolchain": toolchain, "tree": tree,
                  "how": "scripts/perf_gate.sh --update-baseline: 3 callgrind processes per "
                         "benchmark; instructions of the timed iterations per iteration"}
with open(target, "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
EOF
  echo "perf_gate: baseline ($counts counts per benchmark) written to $baseline in" \
       "$(( $(date +%s) - start )) s; $(conditions)"
  echo "perf_gate: now --measure-noise 10 --write-thresholds, then commit both files"
  ;;

noise)
  start_conditions=$(conditions)
  echo "perf_gate: $runs runs against $baseline ($counts counts per benchmark); $start_conditions"
  files=()
  for i in $(seq 1 "$runs"); do
    count_run "$out/noise-$i" || exit 2
    s=0; compare_run "$out/noise-$i" || s=$?
    [ "$s" -eq 2 ] && exit 2
    echo "perf_gate: noise run $i/$runs: $(describe "$out/noise-$i")"
    files+=("$out/noise-$i/compare.json")
  done
  end_conditions=$(conditions)
  s=0
  if [ "$write_thresholds" = 1 ]; then
    measured="$runs runs of $counts counts per benchmark, from $start_conditions to"
    measured="$measured $end_conditions; $(toolchain)"
    noise_table --write "$thresholds" "$measured" "${files[@]}" | tee "$out/noise.md" || s=$?
  else
    noise_table "${files[@]}" | tee "$out/noise.md" || s=$?
  fi
  echo "perf_gate: $runs runs in $(( $(date +%s) - start )) s; $end_conditions;" \
       "table in $out/noise.md"
  exit "$s"
  ;;

inject)
  [ "${#names[@]}" -gt 0 ] || names=("${covered[@]}")
  missed=0
  for name in "${names[@]}"; do
    t0=$(date +%s) s=0
    RIDGELINE_CI_BENCH_SLOWDOWN="$name=$factor" gate "$out/inject/$name" || s=$?
    [ "$s" -eq 2 ] && exit 2
    final=$out/inject/$name/run2
    [ -f "$final/compare.json" ] || final=$out/inject/$name/run1
    verdict=$(python3 - "$final/compare.json" "$name" <<'EOF'
import json, sys
for r in json.load(open(sys.argv[1]))["rows"]:
    if r["name"] == sys.argv[2]:
        print("%s %+.3f%%" % (r["verdict"], 100 * r["change"]))
EOF
)
    if [ "$s" -eq 1 ] && [ "${verdict%% *}" = slower ]; then
      echo "perf_gate: injected x$factor into $name: caught ($verdict) in $(( $(date +%s) - t0 )) s"
    else
      echo "perf_gate: injected x$factor into $name: NOT caught (gate $gate_line)" >&2
      missed=$((missed + 1))
    fi
  done
  echo "perf_gate: injection check: $(( ${#names[@]} - missed )) of ${#names[@]} caught in" \
       "$(( $(date +%s) - start )) s"
  [ "$missed" -eq 0 ] || exit 1
  ;;

soak)
  log=${log:-docs/results/ci_gate/soak_$(date -u +%Y-%m-%d).log}
  mkdir -p "$(dirname "$log")"
  {
    echo "# scripts/perf_gate.sh --soak $runs: the gate on an unchanged tree, $runs times"
    dirty=$(git diff --quiet HEAD 2>/dev/null || echo ' (dirty)')
    echo "# tree $(git rev-parse HEAD 2>/dev/null || echo unknown)$dirty"
    echo "# build $build ($(toolchain)), $counts counts per benchmark, rerun pause $pause s," \
         "thresholds $thresholds, baseline $baseline"
    echo "# start $(conditions)"
  } >"$log"
  failed=0 files=()
  for i in $(seq 1 "$runs"); do
    t0=$(date +%s) s=0
    gate "$out/soak-$i" || s=$?
    [ "$s" -eq 2 ] && exit 2
    [ "$s" -eq 0 ] || failed=$((failed + 1))
    line="run $i/$runs: $(( $(date +%s) - t0 )) s, load $(cut -d' ' -f1 /proc/loadavg): $gate_line"
    echo "$line" | tee -a "$log"
    for f in "$out/soak-$i"/run*/compare.json; do files+=("$f"); done
  done
  {
    echo "# end $(conditions)"
    echo "# $((runs - failed)) of $runs passed in $(( $(date +%s) - start )) s"
    echo "# every run of every gate (reruns included) against the baseline:"
    { noise_table "${files[@]}" || true; } 2>&1 | sed 's/^/# /'
  } | tee -a "$log"
  [ "$failed" -eq 0 ] || exit 1
  ;;

gate)
  s=0
  gate "$out/gate" || s=$?
  [ "$s" -eq 2 ] && exit 2
  last=$out/gate/run2
  [ -f "$last/compare.json" ] || last=$out/gate/run1
  cat "$last/compare.txt"
  cp "$last/summary.md" "$out/summary.md"
  echo "perf_gate: $gate_line"
  echo "perf_gate: $(( $(date +%s) - start )) s; Markdown summary in $out/summary.md"
  if [ "$s" -eq 1 ]; then
    echo "perf_gate: FAILED against $baseline (a regression: fix it, or if intended" \
         "scripts/perf_gate.sh --update-baseline and commit it; too noisy twice: the counts of" \
         "one benchmark did not repeat, see docs/compare.md)" >&2
    exit 1
  fi
  ;;
esac
