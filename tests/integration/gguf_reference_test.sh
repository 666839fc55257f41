#!/usr/bin/env bash
# The GGUF reference check: files written by ridgeline's independent GGUF test writer
# (tests/support/gguf_writer.hpp) must read the same in ridgeline's reader (engine/gguf.hpp) and in
# Hugging Face's @huggingface/gguf parser: header, every metadata key and the tensor table.
#  1. installs the npm package pinned in gguf_reference/package-lock.json with `npm ci` into
#     CACHE_DIR (once: a later run with the same lockfile reuses it);
#  2. writes tiny Llama files (F32, F16, Q8_0, Q4_0; GGUF v2 and v3) with ridgeline_gguf_tool;
#  3. dumps each through ridgeline's reader and compares with the reference (compare.mjs);
#  4. a cut file and one with a wrong magic: the tool exits 2 with one line (the reference refuses
#     the wrong magic too); and compare.mjs itself must report a dump compared with another file.
# A CI requirement: it fails (exit 1), never skips, when node or npm is missing or the npm
# registry cannot be reached, and says so.
#   tests/integration/gguf_reference_test.sh build/tests/ridgeline_gguf_tool build/gguf_reference
set -euo pipefail
tool=$(realpath "${1:?usage: gguf_reference_test.sh RIDGELINE_GGUF_TOOL CACHE_DIR}")
cache=${2:?cache dir}
here=$(cd "$(dirname "$0")" && pwd)
ref="$here/gguf_reference"

# shellcheck source=npm_pinned.sh
. "$here/npm_pinned.sh"
require_node 20 @huggingface/gguf

# 1. The pinned package, installed again only when the lockfile changes.
npm_install_pinned "$ref" "$cache"
cache=$npm_cache

# 2 and 3. Each file, both readers.
work="$cache/files"
rm -rf "$work"
mkdir -p "$work"
for spec in "tiny f32 3" "tiny f16 3" "tiny q8_0 3" "tiny q4_0 3" "tiny-mha q8_0 2" \
            "tiny-mha q4_0 3" "tiny-gpu q4_0 3"; do
  read -r preset type version <<<"$spec"
  f="$work/$preset-$type-v$version.gguf"
  "$tool" write "$f" "$preset" "$type" "$version" || fail "could not write $f"
  "$tool" dump "$f" >"$f.json" || fail "ridgeline's reader refused $f"
  node "$ref/compare.mjs" "$cache/node_modules" "$f" "$f.json" ||
    fail "ridgeline's reader and @huggingface/gguf disagree on $f (above)"
done

# The comparison can fail: the dump of one file against another file must show differences.
if node "$ref/compare.mjs" "$cache/node_modules" "$work/tiny-q4_0-v3.gguf" \
     "$work/tiny-q8_0-v3.gguf.json" >"$work/mismatch.out"; then
  fail "compare.mjs found no difference between a Q8_0 dump and a Q4_0 file"
fi
grep -q "tensor blk.0.attn_q.weight type" "$work/mismatch.out" ||
  fail "compare.mjs did not name the tensor type difference: $(cat "$work/mismatch.out")"

# 4. Malformed files: one line and exit code 2 from ridgeline. The reference must refuse the bad
# magic too (it is lenient about a cut file: it reads past the end as if more would come).
good="$work/tiny-q8_0-v3.gguf"
head -c 200 "$good" >"$work/cut.gguf"
printf 'GGML' | cat - <(tail -c +5 "$good") >"$work/magic.gguf"
for bad in cut magic; do
  set +e
  "$tool" dump "$work/$bad.gguf" >"$work/$bad.out" 2>"$work/$bad.err"
  rc=$?
  set -e
  [ "$rc" -eq 2 ] || fail "$bad.gguf: exit code $rc, expected 2"
  [ "$(wc -l <"$work/$bad.err")" -eq 1 ] || fail "$bad.gguf: not one line: $(cat "$work/$bad.err")"
  echo "ridgeline: $(cat "$work/$bad.err")"
  [ "$bad" = magic ] || continue
  if node -e "
    const { gguf } = require('$cache/node_modules/@huggingface/gguf');
    gguf('$work/$bad.gguf', { allowLocalFile: true }).then(() => process.exit(0), (e) => {
      console.log('@huggingface/gguf: ' + e.message); process.exit(1); });"; then
    fail "@huggingface/gguf accepted $bad.gguf"
  fi
done
echo "ok: ridgeline's GGUF reader agrees with @huggingface/gguf on every file"
