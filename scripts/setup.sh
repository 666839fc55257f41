#!/usr/bin/env bash
# Installs ridgeline's build and test dependencies from Debian's packages (idempotent; needs root
# for apt-get). The CUDA toolkit 13 is expected at /usr/local/cuda and is not installed here.
#   sudo scripts/setup.sh
set -euo pipefail

packages=(
  build-essential cmake ninja-build git pkg-config
  libbenchmark-dev libgtest-dev libgmock-dev
  prometheus-cpp-dev nlohmann-json3-dev libcli11-dev libsqlite3-dev
  zlib1g-dev                # results named *.json.gz (replay's per-step series) read and written
  libicu-dev                # the tokenizer: each tokenizer.json's own regex and Unicode normalizers
  libevent-dev              # serve's HTTP server and load's client: one event loop, no thread per request
  libssl-dev                # load: https URLs (libevent_openssl needs OpenSSL's headers and libraries)
  clang libclang-rt-14-dev  # libFuzzer for scripts/fuzz.sh (Debian 12's clang is 14)
  prometheus prometheus-pushgateway curl  # tests/integration/prometheus_test.sh (real servers)
  python3                   # scripts/check_layers.py (the layer check, a unit test)
  valgrind                  # the CI performance gate counts instructions under callgrind (and its header)
  libjs-chart.js            # Chart.js 3.9, inlined into `ridgeline report` pages
  chromium                  # headless browser for tests/integration/report_browser_test.sh
  nodejs                    # Node.js + npm: tokenizer and GGUF reference checks, openai client test
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages already installed"
else
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages: ${missing[*]}" >&2
    echo "setup: run as root (sudo scripts/setup.sh) so apt-get can install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup: CUDA $(/usr/local/cuda/bin/nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p') at /usr/local/cuda"
else
  echo "setup: no CUDA toolkit at /usr/local/cuda: CUDA targets will be skipped (CPU build only)"
fi
