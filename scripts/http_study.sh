#!/usr/bin/env bash
# The GPU measurements of docs/serving.md's "Over HTTP" section, each part writing its JSON and
# log into OUT_DIR:
#   scripts/http_study.sh RIDGELINE_BIN OUT_DIR PART...
# Parts (llama-3-8b, bf16, random weights, one GPU; the server on 127.0.0.1 only):
#   ab        the first 180 s of data/traces/azure_llm_2023_conv.csv twice: through
#             `ridgeline replay` (no HTTP), then through `ridgeline load` against `ridgeline serve
#             --record` (the server's own stamps of every request, for the HTTP layer's share);
#             `replay` and `http` are its two halves (TAG names http's files, LOAD_ARGS adds load
#             options)
#   findmax   `ridgeline load --find-max` against `ridgeline serve`: Poisson arrivals of the
#             trace's first 1,000 requests' lengths, SLO p99 TTFT <= 2 s and p99 TPOT <= 50 ms
#   confirm   60-second runs at the rate findmax found and at -5% / +5% of it (FINDMAX_JSON: the
#             findmax result, default OUT_DIR/findmax.json.gz; or CONFIRM_RATE: that rate), one
#             fresh server each
#   smi       start logging the GPU's clocks, power and throttle reasons every 0.5 s (smi.csv)
#   samplingbench  bench/kernels_bench's sampling benchmarks (KERNELS_BENCH: its binary), 10
#             repetitions: what temperature sampling costs per decode step
#   clientbench  bench/load_client_bench (CLIENT_BENCH: its binary) on two idle cores, 3 runs
# MODEL, VOCAB and AB_SECONDS change the model (llama-3-8b), its vocabulary (128256) and the ab
# window (180 s): the script's own check runs tiny-gpu, 777 and a few seconds on a CPU.
# FINDMAX_START, _PRECISION, _LEVELS and _REQUESTS set findmax's search (16 req/s, 0.04: the
# +5% confirmation run lies beyond the lowest rate that missed, 9 levels, 1,000 requests a level;
# set _REQUESTS to about 60 x the expected answer so that levels near it last as long as the
# 60-second confirmation runs, docs/load.md).
set -uo pipefail
[ $# -ge 3 ] || { echo "usage: scripts/http_study.sh RIDGELINE_BIN OUT_DIR PART..." >&2; exit 2; }
bin=$1 out=$2
shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
trace=$here/data/traces/azure_llm_2023_conv.csv
slo=ttft_p99=2s,tpot_p99=50ms
port=${HTTP_STUDY_PORT:-8411}
url=http://127.0.0.1:$port
model=${MODEL:-llama-3-8b}
mkdir -p "$out"
log() { echo "http_study: $*" | tee -a "$out/commands.txt"; }
run() {  # name, then the command's arguments
  local name=$1
  shift
  log "$name: ridgeline $*"
  local t0=$SECONDS
  "$bin" "$@" >"$out/$name.log" 2>&1
  log "$name: rc=$? in $((SECONDS - t0)) s"
}
server_pid=
start_server() {  # name, then serve's extra arguments
  local name=$1
  shift
  log "$name: ridgeline serve --model $model --ignore-eos --address 127.0.0.1:$port $*"
  "$bin" serve --model "$model" --ignore-eos --address "127.0.0.1:$port" "$@" \
    >"$out/$name.log" 2>&1 &
  server_pid=$!
  local t0=$SECONDS
  until python3 - "$url/health" <<'EOF' 2>/dev/null; do
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=1).read()
EOF
    if ! kill -0 "$server_pid" 2>/dev/null; then log "$name: the server exited"; return 1; fi
    if [ $((SECONDS - t0)) -gt 120 ]; then log "$name: no /health in 120 s"; return 1; fi
    sleep 0.5
  done
  log "$name: ready in $((SECONDS - t0)) s"
}
stop_server() {
  [ -n "$server_pid" ] || return 0
  kill -INT "$server_pid"
  wait "$server_pid"
  log "server stopped: rc=$?"
  server_pid=
}
trap stop_server EXIT
load() {  # name, then load's arguments
  run "$1" load --url "$url" --model "$model" --vocab "${VOCAB:-128256}" "${@:2}"
}
for part in "$@"; do
  case $part in
    ab | replay)
      run ab_replay replay --model "$model" --trace "$trace" --duration "${AB_SECONDS:-180}" \
        -o "$out/ab_replay.json.gz"
      [ "$part" = ab ] || continue
      ;;&
    ab | http)
      # LOAD_ARGS: more load options (e.g. --temperature -1); TAG names the files (ab)
      tag=${TAG:-ab}
      start_server "${tag}_serve" --record "$out/${tag}_serve_record.json.gz" || continue
      # shellcheck disable=SC2086
      load "${tag}_load" --trace "$trace" --duration "${AB_SECONDS:-180}" ${LOAD_ARGS:-} \
        -o "$out/${tag}_load.json.gz"
      stop_server ;;
    findmax)
      start_server findmax_serve || continue
      load findmax --trace "$trace" --requests "${FINDMAX_REQUESTS:-1000}" --find-max --slo "$slo" \
        --find-max-start "${FINDMAX_START:-16}" --find-max-precision "${FINDMAX_PRECISION:-0.04}" \
        --find-max-levels "${FINDMAX_LEVELS:-9}" -o "$out/findmax.json.gz"
      stop_server ;;
    confirm)
      f=${FINDMAX_JSON:-$out/findmax.json.gz}
      if [ -n "${CONFIRM_RATE:-}" ]; then
        r=$CONFIRM_RATE
        log "confirm: rate $r from CONFIRM_RATE"
      else
        r=$(python3 -c "import gzip,json,sys; print(json.load(gzip.open(sys.argv[1]))['load']['find_max']['max_rate_per_second'])" "$f") ||
          { log "confirm: no find-max answer in $f"; continue; }
      fi
      for x in 0.95 1.00 1.05; do
        rate=$(python3 -c "print(f'{$r * $x:.4g}')")
        n=$(python3 -c "print(round($rate * 60))")
        start_server "confirm_${x}_serve" || continue
        load "confirm_$x" --trace "$trace" --requests "$n" --rate "$rate" --slo "$slo" \
          -o "$out/confirm_$x.json.gz"
        stop_server
      done ;;
    smi)
      nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu,clocks_event_reasons.active \
        --format=csv -lms 500 >"$out/smi.csv" 2>&1 &
      log "smi: logging to smi.csv (pid $!)" ;;
    samplingbench)
      log "samplingbench: ${KERNELS_BENCH:-build/bench/ridgeline_kernels_bench} --benchmark_filter=sampling"
      "${KERNELS_BENCH:-build/bench/ridgeline_kernels_bench}" --benchmark_filter=sampling \
        --benchmark_repetitions=10 --benchmark_format=json >"$out/sampling_bench.json" \
        2>"$out/sampling_bench.log"
      log "samplingbench: rc=$?" ;;
    clientbench)
      for i in 1 2 3; do
        log "clientbench $i: ${CLIENT_BENCH:-build/bench/ridgeline_load_client_bench} --ridgeline $bin"
        "${CLIENT_BENCH:-build/bench/ridgeline_load_client_bench}" --ridgeline "$bin" \
          >"$out/clientbench_$i.json" 2>"$out/clientbench_$i.log"
        log "clientbench $i: rc=$?"
      done ;;
    *) echo "http_study: unknown part '$part'" >&2; exit 2 ;;
  esac
done
