#!/usr/bin/env bash
# Starts Prometheus (Debian's `prometheus` package) on loopback with the project's configuration
# and rules: it scrapes a ridgeline command serving --metrics-address 127.0.0.1:9464 and a
# Pushgateway on 127.0.0.1:9091. Data goes to a temporary directory removed on exit.
#   scripts/prometheus.sh [--port 9090] [--target 127.0.0.1:9464]
#   ridgeline kv --generator sessions=300 --metrics-address 127.0.0.1:9464 --pace 10 --hold 600
# Then open http://127.0.0.1:9090 (or Grafana with dashboards/grafana/provisioning).
set -euo pipefail
cd "$(dirname "$0")/.."
port=9090
target=127.0.0.1:9464
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    *) echo "usage: scripts/prometheus.sh [--port N] [--target HOST:PORT]" >&2; exit 2 ;;
  esac
done
command -v prometheus >/dev/null || {
  echo "prometheus not found: sudo scripts/setup.sh (installs Debian's prometheus)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The config names its rule files relative to itself; point them at the repository's copies.
sed -e "s|127.0.0.1:9464|$target|" -e "s|  - rules/|  - $PWD/dashboards/prometheus/rules/|" \
  dashboards/prometheus/prometheus.yml >"$work/prometheus.yml"
echo "prometheus: http://127.0.0.1:$port scraping $target (Ctrl-C stops it)"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$port" --log.level=warn &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT INT TERM
wait "$pid"
