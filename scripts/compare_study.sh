#!/usr/bin/env bash
# The compare study (docs/compare.md): how often `ridgeline compare` raises a false alarm on A/A
# comparisons and how often it catches an injected slowdown, on this machine, at given settings.
# Runs BM_ci_known_cost (a dependent integer chain whose work RIDGELINE_CI_BENCH_SCALE scales)
# with R repetitions as separate processes, interleaving baseline and slowed-down runs in time, then
# compares: A/A pairs (base 2i-1 vs base 2i) and trials (base i vs slowed i) for each slowdown.
#   scripts/compare_study.sh [--pairs 30] [--trials 60] [--slowdowns "1.02 1.03 1.05 1.07 1.10"]
#       [--reps 10] [--min-time 0.05] [--metrics "auto real_time"] [--thresholds "0.03 0.05"]
#       [--out out/compare-study] [--reuse]        (--reuse: compare the runs already in --out)
# Needs a build (scripts/build.sh or RIDGELINE_BUILD_DIR) with ridgeline and ridgeline_ci_bench.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${RIDGELINE_BUILD_DIR:-build}
pairs=30 trials=60 reps=10 min_time=0.05 out=out/compare-study reuse=0
slowdowns="1.02 1.03 1.05 1.07 1.10"
metrics="auto real_time"
thresholds="0.03 0.05"
while [ $# -gt 0 ]; do
  case "$1" in
    --pairs) pairs=$2; shift 2 ;;
    --trials) trials=$2; shift 2 ;;
    --slowdowns) slowdowns=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --min-time) min_time=$2; shift 2 ;;
    --metrics) metrics=$2; shift 2 ;;
    --thresholds) thresholds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --reuse) reuse=1; shift ;;
    *) echo "compare_study: unknown argument $1" >&2; exit 2 ;;
  esac
done
bench=$build/bench/ridgeline_ci_bench
ridgeline=$build/cli/ridgeline
for b in "$bench" "$ridgeline"; do
  [ -x "$b" ] || { echo "compare_study: $b not built (scripts/build.sh)" >&2; exit 2; }
done
mkdir -p "$out"
bases=$(( 2 * pairs > trials ? 2 * pairs : trials ))

run_one() {  # scale, output file
  RIDGELINE_CI_BENCH_SCALE=$1 "$bench" --benchmark_filter='^BM_ci_known_cost$' \
    --benchmark_repetitions="$reps" --benchmark_min_time="$min_time" \
    --benchmark_out="$2" --benchmark_out_format=json >/dev/null 2>>"$out/bench-stderr.log"
}

if [ "$reuse" -eq 0 ]; then
  start=$(date +%s)
  for i in $(seq 1 "$bases"); do
    run_one 1.0 "$out/base-$i.json"
    if [ "$i" -le "$trials" ]; then
      for s in $slowdowns; do run_one "$s" "$out/slow-$s-$i.json"; done
    fi
  done
  echo "compare_study: $(( $(date +%s) - start )) s of runs ($bases base runs," \
       "$trials per slowdown, $reps repetitions, min time $min_time s), load: $(cut -d' ' -f1-3 /proc/loadavg)"
fi

verdict() {  # base, new, metric, threshold -> the verdict word (compare exits 1 on "slower")
  { "$ridgeline" compare "$1" "$2" --metric "$3" --threshold "$4" --json 2>/dev/null || true; } \
    | sed -n 's/.*"verdict": "\(.*\)".*/\1/p' | head -n 1
}

echo
echo "| metric | threshold | A/A false alarms | A/A too noisy | $(for s in $slowdowns; do printf '%s | ' "+$(awk "BEGIN{printf \"%g\", ($s-1)*100}")% flagged"; done)"
echo "|---|---:|---:|---:|$(for s in $slowdowns; do printf -- '---:|'; done)"
for m in $metrics; do
  for t in $thresholds; do
    alarms=0 noisy=0
    for j in $(seq 1 "$pairs"); do
      v=$(verdict "$out/base-$((2 * j - 1)).json" "$out/base-$((2 * j)).json" "$m" "$t")
      case "$v" in slower|faster) alarms=$((alarms + 1)) ;; "too noisy") noisy=$((noisy + 1)) ;; esac
    done
    row="| $m | $t | $alarms / $pairs | $noisy / $pairs |"
    for s in $slowdowns; do
      hits=0
      for i in $(seq 1 "$trials"); do
        [ "$(verdict "$out/base-$i.json" "$out/slow-$s-$i.json" "$m" "$t")" = slower ] && hits=$((hits + 1))
      done
      row="$row $hits / $trials |"
    done
    echo "$row"
  done
done
