#!/usr/bin/env bash
# Integration test against a real Prometheus and Pushgateway (Debian's packages), on loopback:
#  1. `ridgeline replay --cpu` serves a generated chat workload in real time through the serving
#     loop on the cpu executor (tiny model) and serves /metrics;
#     Prometheus scrapes it every second with the project's config and rules;
#  2. every PromQL expression of every dashboard panel is evaluated through the HTTP API and must
#     return a non-empty, finite result (GPU telemetry panels: only when the exporter has GPU
#     series, i.e. NVML is present; otherwise they must still evaluate without error);
#  3. `promtool check metrics` on the scraped text reports nothing; `promtool check rules` and
#     `promtool test rules` pass;
#  4. `ridgeline kv --push` to a Pushgateway; the values read back match the run's JSON.
# Every process started here is stopped on exit. Exit 77 (skip) only when a binary is missing.
#   tests/integration/prometheus_test.sh build/cli/ridgeline
set -euo pipefail
ridgeline=$(realpath "${1:?usage: prometheus_test.sh path/to/ridgeline}")
root=$(cd "$(dirname "$0")/../.." && pwd)
for bin in prometheus promtool prometheus-pushgateway curl python3; do
  if ! command -v "$bin" >/dev/null; then
    echo "SKIP: $bin not installed (scripts/setup.sh installs prometheus, prometheus-pushgateway, curl)"
    exit 77
  fi
done

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done
  exit 1
}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_for() {  # wait_for SECONDS COMMAND...: polls every 0.5 s
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.5
  done
}
t0=$SECONDS
exporter_port=$(free_port)
prom_port=$(free_port)
pgw_port=$(free_port)
prom="http://127.0.0.1:$prom_port"
pgw="http://127.0.0.1:$pgw_port"

# 3 (static half): the rules and their unit tests.
promtool check rules "$root"/dashboards/prometheus/rules/*.yml >"$work/check_rules.log" 2>&1 ||
  fail "promtool check rules"
promtool test rules "$root/dashboards/prometheus/tests/ridgeline_rules_test.yml" \
  >"$work/test_rules.log" 2>&1 || fail "promtool test rules"
echo "ok: promtool check rules, promtool test rules"

# The project's config with this run's ports, 1 s scrapes and the repository's rule files.
sed -e "s|127.0.0.1:9464|127.0.0.1:$exporter_port|" -e "s|127.0.0.1:9091|127.0.0.1:$pgw_port|" \
  -e "s|scrape_interval: .*|scrape_interval: 1s|" -e "s|evaluation_interval: .*|evaluation_interval: 1s|" \
  -e "s|  - rules/|  - $root/dashboards/prometheus/rules/|" \
  "$root/dashboards/prometheus/prometheus.yml" >"$work/prometheus.yml"
promtool check config "$work/prometheus.yml" >"$work/check_config.log" 2>&1 || fail "promtool check config"

# Debian's build persists to /var/lib/prometheus/pushgateway.data by default: keep ours private.
prometheus-pushgateway --web.listen-address="127.0.0.1:$pgw_port" \
  --persistence.file="$work/pushgateway.data" >"$work/pushgateway.log" 2>&1 &
pids+=($!)
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
pids+=($!)

wait_for 30 curl -sf "$prom/-/ready" || fail "Prometheus not ready within 30 s"
wait_for 30 curl -sf "$pgw/-/ready" || fail "Pushgateway not ready within 30 s"

# The workload, started once Prometheus is ready so that several scrapes land while it runs:
# about 30 s of chat sessions with shared system prompts served for real on the cpu executor,
# then the exporter stays up so Prometheus scrapes the final values too.
"$ridgeline" replay --cpu -o "$work/replay_live.json" \
  --generator sessions=40,rate=2,turns=uniform:2:4,think=exp:2,system=128,system_prompts=2,message=lognormal:40:0.5,output=lognormal:16:0.5,seed=7 \
  --metrics-address "127.0.0.1:$exporter_port" --hold 60 --slo-ttft 1 --slo-tpot 0.05 \
  >"$work/ridgeline.log" 2>&1 &
ridgeline_pid=$!
pids+=($ridgeline_pid)
wait_for 20 curl -sf "http://127.0.0.1:$exporter_port/metrics" || fail "exporter not serving"
echo "ok: Prometheus, Pushgateway and the exporter are up ($((SECONDS - t0)) s)"

query() {  # query EXPR -> JSON of /api/v1/query
  curl -sf --data-urlencode "query=$1" "$prom/api/v1/query"
}
nonempty() { python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["data"]["result"] else 1)'; }
# Done when the run has finished, 10 scrapes succeeded and at least 3 saw the counters move (the
# workload is bursty: think times leave idle seconds).
scraped_enough() {
  grep -q "metrics: holding" "$work/ridgeline.log" &&
    query 'sum_over_time(up{job="ridgeline"}[2m]) >= 10' | nonempty &&
    query 'changes(ridgeline_generation_tokens_total{job="ridgeline"}[2m]) >= 3' | nonempty
}
wait_for 60 scraped_enough || fail "the run did not finish with 10 good scrapes within 60 s: $(query "changes(ridgeline_generation_tokens_total[2m])"; query "up")"
sleep 2  # two more scrapes of the final values
echo "ok: run finished, scraped ($((SECONDS - t0)) s)"

# 3: the scraped text passes promtool's linter with nothing to say.
curl -sf "http://127.0.0.1:$exporter_port/metrics" >"$work/scrape.txt"
lint=$(promtool check metrics <"$work/scrape.txt" 2>&1) || fail "promtool check metrics: $lint"
[ -z "$lint" ] || fail "promtool check metrics reported: $lint"
echo "ok: promtool check metrics on $(grep -c '^ridgeline_' "$work/scrape.txt") samples: nothing reported"

# 2: every dashboard expression through the HTTP API.
python3 - "$prom" "$work/scrape.txt" "$root"/dashboards/grafana/dashboards/*.json <<'PY' || fail "dashboard queries"
import json, math, sys, urllib.parse, urllib.request
prom, scrape, files = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3:]
has_gpu = "\nridgeline_gpu_" in scrape
checked = skipped = 0
bad = []
for path in files:
    dash = json.load(open(path))
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            expr = t["expr"].replace("$__rate_interval", "1m").replace("$__interval", "5s")
            url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            reply = json.load(urllib.request.urlopen(url, timeout=10))
            where = f'{dash["title"]} / {panel["title"]}: {expr}'
            if reply.get("status") != "success":
                bad.append(f"{where}: {reply}")
                continue
            result = reply["data"]["result"]
            if "ridgeline_gpu_" in expr and not has_gpu:
                skipped += 1  # no NVML here: the query must evaluate, the series cannot exist
                continue
            values = [float(s["value"][1]) for s in result]
            if not values:
                bad.append(f"{where}: empty result")
            elif not all(math.isfinite(v) for v in values):
                bad.append(f"{where}: non-finite {values}")
            checked += 1
for b in bad:
    print("  " + b)
print(f"ok: {checked} dashboard expressions non-empty and finite"
      + (f"; {skipped} GPU-telemetry expressions evaluated but not required (no NVML series)"
         if skipped else "") if not bad else f"{len(bad)} expressions failed")
sys.exit(1 if bad else 0)
PY

# Recording rules produce values from the live data too.
for rule in job_instance:ridgeline_prefix_cache_hit_ratio:rate5m \
  job_instance:ridgeline_time_per_output_token_seconds:p99_rate5m; do
  query "$rule" | python3 -c 'import json,sys,math; r=json.load(sys.stdin)["data"]["result"]; sys.exit(0 if r and all(math.isfinite(float(s["value"][1])) for s in r) else 1)' ||
    fail "recording rule $rule has no finite value"
done
echo "ok: recording rules evaluate on live data"
kill "$ridgeline_pid" 2>/dev/null || true

# 4: push a batch run to the Pushgateway and read the values back.
instance="it-$$"
"$ridgeline" kv --generator requests=50,rate=5,seed=3 --capacity unlimited \
  -o "$work/kv_push.json" --push "$pgw" --job ridgeline_ci --instance "$instance" \
  >"$work/push.log" 2>&1 || fail "ridgeline kv --push"
curl -sf "$pgw/metrics" >"$work/pushgateway.txt" || fail "reading the Pushgateway"
python3 - "$work/pushgateway.txt" "$work/kv_push.json" "$instance" <<'PY' || fail "pushed values"
import json, sys
text, doc, instance = open(sys.argv[1]).read(), json.load(open(sys.argv[2])), sys.argv[3]
row = doc["rows"][0]
want = {
    f'ridgeline_requests_total{{instance="{instance}",job="ridgeline_ci",outcome="finished"}}': row["finished"],
    f'ridgeline_prefix_cache_queries_tokens_total{{instance="{instance}",job="ridgeline_ci"}}': row["lookup_tokens"],
    f'ridgeline_time_to_first_token_seconds_count{{instance="{instance}",job="ridgeline_ci"}}': row["finished"],
}
got = {}
for line in text.splitlines():
    if line.startswith("ridgeline_"):
        name, value = line.rsplit(" ", 1)
        got[name] = float(value)
bad = [f"{k}: pushed {got.get(k)} want {v}" for k, v in want.items() if got.get(k) != float(v)]
for b in bad:
    print("  " + b)
if not bad:
    print(f"ok: pushed values read back from the Pushgateway ({len(want)} checked against the run's JSON)")
sys.exit(1 if bad else 0)
PY
# ... and Prometheus scrapes them from the Pushgateway with the pushed job label kept.
pushed_in_prometheus() {
  query "ridgeline_requests_total{job=\"ridgeline_ci\",instance=\"$instance\",outcome=\"finished\"}" |
    python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["data"]["result"] else 1)'
}
wait_for 10 pushed_in_prometheus || fail "Prometheus did not scrape the pushed group"
echo "ok: Prometheus scraped the pushed group (honor_labels)"
echo "PASS in $((SECONDS - t0)) s"
