#!/usr/bin/env bash
# Browser test of `ridgeline report`: builds a report from real outputs (`ridgeline kv` and
# `ridgeline plan` run here on small inputs, and the committed GPU results), opens it in headless Chromium (Debian's `chromium`), and checks what the page recorded on its
# <body> after drawing: no errors (window.onerror, unhandled rejections, console.error), every
# chart created, and every chart canvas with rendered points and ink. Also fails on "Uncaught"
# or console errors in Chromium's own log. Screenshots and the DOM are kept as test artifacts.
#   tests/integration/report_browser_test.sh RIDGELINE_BINARY SOURCE_DIR ARTIFACT_DIR
# Exits 0 on success, 1 on failure; skips (exit 77, CTest SKIP_RETURN_CODE) only when chromium is
# not installed, saying so. CI installs it through scripts/setup.sh.
set -euo pipefail

bin=${1:?usage: report_browser_test.sh RIDGELINE_BINARY SOURCE_DIR ARTIFACT_DIR}
src=${2:?source dir}
art=${3:?artifact dir}

browser=""
for b in chromium chromium-browser; do
  if command -v "$b" >/dev/null 2>&1; then browser=$(command -v "$b"); break; fi
done
if [ -z "$browser" ]; then
  echo "SKIP: chromium is not installed (apt-get install chromium, or scripts/setup.sh)"
  exit 77
fi

rm -rf "$art"
mkdir -p "$art"
art=$(cd "$art" && pwd)
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT

fail=0
check() {  # check NAME CONDITION-RESULT MESSAGE
  if [ "$2" = ok ]; then echo "ok: $1"; else echo "FAIL: $1: $3"; fail=1; fi
}

# 1. The report from every result kind: a GPU profile, a sweep, a kv run, a replay (the cpu
# executor), a plan, a divergence comparison and a roofline document. kv, replay and plan run here
# (CPU, seconds); the rest are the committed H100 results.
"$bin" kv --no-progress --generator requests=300,system=1024,system_prompts=3,rate=20,seed=5 \
  --model llama-3-8b --gpu h100-sxm --capacity unlimited,20%,5%,2%,1% -o "$art/kv.json" >/dev/null
"$bin" plan --no-progress --model llama-3-8b --gpu h100-sxm,l40s,t4 \
  --workload rate=2,requests=150,prompt=fixed:512,output=fixed:64 \
  --slo ttft_p99=2s,tpot_p99=60ms --qps 20 --price 2.5 -o "$art/plan.json" >/dev/null
"$bin" replay --no-progress --cpu -o "$art/replay.json.gz" \
  --generator requests=40,rate=40,prompt=uniform:8:120,output=uniform:2:16,system=48,system_prompts=2,seed=4 \
  >/dev/null 2>&1
"$bin" report --no-progress "$src"/perfmodel/profiles/h100-sxm.json \
  "$src"/docs/results/h100-sxm_sweep.json "$art/kv.json" "$art/plan.json" "$art/replay.json.gz" \
  "$src"/docs/results/diverge/h100_vs_h200_b1.json "$src"/docs/results/h100-sxm_roofline.json \
  --title "ridgeline report (test)" -o "$art/report.html" --data "$art/report_data.json"

# Chromium flags: headless without a sandbox (CI runs as root), no GPU, no first-run chatter,
# a private profile, a virtual time budget so the page's scripts finish before the DOM is dumped.
flags=(--headless=new --no-sandbox --disable-gpu --no-first-run --no-default-browser-check
       --disable-extensions --hide-scrollbars --user-data-dir="$profile"
       --virtual-time-budget=10000 --enable-logging=stderr --v=0)
url="file://$art/report.html"

timeout 120 "$browser" "${flags[@]}" --window-size=1400,1000 --dump-dom "$url" \
  >"$art/report.dom.html" 2>"$art/chromium.log" || { echo "FAIL: chromium --dump-dom exited $?"; cat "$art/chromium.log" | tail -20; exit 1; }

body=$(grep -o '<body[^>]*>' "$art/report.dom.html" | head -1 || true)
attr() { sed -n "s/.*$1=\"\([^\"]*\)\".*/\1/p" <<<"$body"; }
ready=$(attr data-ready)
errors=$(attr data-errors)
expected=$(attr data-charts-expected)
rendered=$(attr data-charts-rendered)
echo "page: ready=$ready errors=$errors charts expected=$expected rendered=$rendered"

check "page finished drawing" "$([ "$ready" = 1 ] && echo ok)" "data-ready is '$ready'"
check "no page errors" "$([ "$errors" = 0 ] && echo ok)" \
  "$errors error(s): $(sed -n '/id="errors"/,/<\/pre>/p' "$art/report.dom.html" | head -20)"
# profile: roofline + working set; sweep: throughput + TPOT; kv: hit rate + 3 CDFs (and the
# replay's); serving: 4 series; diverge: 1.
check "every chart kind present" "$([ "${expected:-0}" -ge 13 ] && echo ok)" \
  "expected at least 13 charts, the page made ${expected:-0}"
check "every chart rendered" "$([ -n "$expected" ] && [ "$expected" = "$rendered" ] && echo ok)" \
  "$rendered of $expected charts have drawn points"

# Per canvas: points > 0 and ink (non-transparent pixels) above a few axis lines' worth.
while read -r canvas; do
  name=$(sed -n 's/.*data-chart="\([^"]*\)".*/\1/p' <<<"$canvas")
  points=$(sed -n 's/.*data-points="\([0-9]*\)".*/\1/p' <<<"$canvas")
  ink=$(sed -n 's/.*data-ink="\([0-9]*\)".*/\1/p' <<<"$canvas")
  check "chart $name has marks ($points points, $ink ink pixels)" \
    "$([ "${points:-0}" -gt 0 ] && [ "${ink:-0}" -gt 5000 ] && echo ok)" "no rendered marks"
done < <(grep -o '<canvas[^>]*>' "$art/report.dom.html")

for id in roofline working-set sweep kv serving plan divergence environment; do
  check "section $id" "$(grep -q "<section id=\"$id\"" "$art/report.dom.html" && echo ok)" \
    "missing from the page"
done

# Chromium's own log: uncaught exceptions and console errors of the page.
if grep -E 'Uncaught|CONSOLE.*(error|Error)' "$art/chromium.log" >"$art/console_errors.txt"; then
  check "no console errors in chromium's log" fail "$(head -5 "$art/console_errors.txt")"
else
  check "no console errors in chromium's log" ok ""
fi

# The page must not reach for the network: no http(s) URLs in src/href attributes.
if grep -Eo '(src|href)="https?://[^"]*"' "$art/report.html" | head -3 | grep -q .; then
  check "self-contained" fail "$(grep -Eo '(src|href)="https?://[^"]*"' "$art/report.html" | head -3)"
else
  check "self-contained (no network URLs)" ok ""
fi

# Screenshots: the top of the page and the whole page in one tall window.
timeout 120 "$browser" "${flags[@]}" --window-size=1400,1000 --screenshot="$art/report_top.png" \
  "$url" 2>>"$art/chromium.log" >/dev/null || true
timeout 120 "$browser" "${flags[@]}" --window-size=1400,7000 --screenshot="$art/report_full.png" \
  "$url" 2>>"$art/chromium.log" >/dev/null || true
for shot in report_top.png report_full.png; do
  check "screenshot $shot" "$([ -s "$art/$shot" ] && echo ok)" "not written"
done

# 2. Unknown schemas and missing files are one-line errors with the documented exit codes.
set +e
echo '{"schema": "ridgeline.nonsense/v9", "rows": []}' >"$art/unknown.json"
"$bin" report "$art/unknown.json" -o "$art/unknown.html" 2>"$art/unknown.err"
code=$?
set -e
check "unknown schema exits 2 with one line" \
  "$([ $code = 2 ] && [ "$(wc -l <"$art/unknown.err")" = 1 ] && echo ok)" \
  "exit $code, stderr: $(cat "$art/unknown.err")"

# 3. The checks can fail: with a Chart.js stand-in that throws, the page must report errors and
#    no rendered charts.
echo 'var Chart = function () { throw new Error("stub Chart.js for the test"); };
Chart.register = function () {};' >"$art/broken_chart.js"
"$bin" report "$src"/docs/results/h100-sxm_sweep.json --chart-js "$art/broken_chart.js" \
  -o "$art/broken.html" >/dev/null
timeout 120 "$browser" "${flags[@]}" --dump-dom "file://$art/broken.html" \
  >"$art/broken.dom.html" 2>>"$art/chromium.log" || true
body=$(grep -o '<body[^>]*>' "$art/broken.dom.html" | head -1 || true)
check "a broken page is caught" \
  "$([ "$(attr data-errors)" != 0 ] && [ "$(attr data-charts-rendered)" = 0 ] && echo ok)" \
  "errors=$(attr data-errors) rendered=$(attr data-charts-rendered)"

echo "artifacts in $art"
if [ $fail -ne 0 ]; then
  echo "report browser test FAILED (see above; artifacts in $art)"
  exit 1
fi
echo "report browser test passed"
