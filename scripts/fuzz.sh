#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ with clang (-fsanitize=fuzzer,address,undefined) and runs
# each for N seconds (default 120) from the seed corpus in fuzz/corpus/. Not part of CI; crashes
# land in fuzz/crashes/ and belong in a unit test once fixed.
#   scripts/fuzz.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-120}
out=build-fuzz
mkdir -p "$out" fuzz/crashes
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
       -Iengine/include -Ikernels/include -Icore/include -Iperfmodel/include)
sources=(engine/src/workload.cpp engine/src/kv_cache.cpp perfmodel/src/model.cpp core/src/dtype.cpp
         engine/src/checkpoint.cpp engine/src/decoder.cpp kernels/cpu/numeric.cpp
         core/src/files.cpp core/src/text.cpp)
for target in fuzz/*_fuzz.cpp; do
  name=$(basename "$target" .cpp)
  clang++ "${flags[@]}" "$target" "${sources[@]}" -o "$out/$name"
  work=fuzz/corpus-$name
  mkdir -p "$work"
  echo "fuzz: $name for ${seconds}s"
  "$out/$name" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=4096 \
    -artifact_prefix=fuzz/crashes/ "$work" fuzz/corpus
done
