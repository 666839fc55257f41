#!/usr/bin/env bash
# The official `openai` npm client (pinned in openai_client/package-lock.json) against
# `ridgeline serve` on the cpu executor with a tiny model: lists models, completes and streams
# text and chat completions, log-probabilities (--max-logprobs 5), and gets the documented errors
# (docs/serving.md). The package is
# installed once into CACHE_DIR with `npm ci`. A CI requirement: fails, never skips, when npm or
# Node.js is missing.
#   tests/integration/openai_client_test.sh RIDGELINE_BINARY CACHE_DIR
set -euo pipefail
bin=${1:?usage: openai_client_test.sh RIDGELINE_BINARY CACHE_DIR}
cache=${2:?cache dir}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=npm_pinned.sh
. "$here/npm_pinned.sh"
require_node 18 the openai package
npm_install_pinned "$here/openai_client" "$cache"
cache=$npm_cache
cp "$here/openai_client/client_test.mjs" "$cache/"

log=$(mktemp)
"$bin" serve --model tiny-gpu --cpu --max-logprobs 5 --address 127.0.0.1:0 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
url=""
for _ in $(seq 1 100); do
  url=$(sed -n 's/^serve: listening on \(http:[^ ]*\).*/\1/p' "$log")
  [ -n "$url" ] && break
  kill -0 $pid 2>/dev/null || { echo "FAIL: the server exited"; cat "$log"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "FAIL: the server did not say where it listens"; cat "$log"; exit 1; }
echo "server at $url"
node "$cache/client_test.mjs" "$url" tiny-gpu
kill -TERM $pid
wait $pid || { echo "FAIL: the server did not exit cleanly on SIGTERM"; cat "$log"; exit 1; }
grep -q "serve: stopped" "$log" || { echo "FAIL: no 'stopped' line"; cat "$log"; exit 1; }
echo "ok: the server stopped on SIGTERM"
