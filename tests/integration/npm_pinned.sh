# Sourced by the integration checks that run a reference from the npm registry (GGUF, tokenizer,
# openai client): `fail`, a Node.js version check, and the install of a pinned package set.
# A CI requirement shared by all of them: they fail (exit 1), never skip, when node or npm is
# missing or the registry cannot be reached, and say so.

fail() {
  echo "FAIL: $*"
  exit 1
}

# require_node MAJOR WHY: node and npm present, Node.js at least MAJOR.
require_node() {
  local bin major
  for bin in node npm; do
    command -v "$bin" >/dev/null ||
      fail "$bin is not installed; this check needs Node.js $1 or later and npm (the CI image has them)"
  done
  major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge "$1" ] || fail "Node.js $(node --version) is too old ($2 needs $1 or later)"
}

# npm_install_pinned PACKAGE_DIR CACHE_DIR: `npm ci` of PACKAGE_DIR's package.json and
# package-lock.json into CACHE_DIR, again only when the lockfile changed since the last install
# that finished (CACHE_DIR/installed.lock). Sets npm_cache to CACHE_DIR's absolute path.
npm_install_pinned() {
  local pkg=$1
  mkdir -p "$2"
  npm_cache=$(cd "$2" && pwd)
  if cmp -s "$pkg/package-lock.json" "$npm_cache/installed.lock" &&
     [ -d "$npm_cache/node_modules" ]; then
    return 0
  fi
  rm -rf "$npm_cache/node_modules" "$npm_cache/installed.lock"
  cp "$pkg/package.json" "$pkg/package-lock.json" "$npm_cache/"
  echo "npm ci into $npm_cache (packages pinned in $pkg/package-lock.json)"
  if ! (cd "$npm_cache" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error \
        >"$npm_cache/npm.log" 2>&1); then
    tail -20 "$npm_cache/npm.log"
    rm -rf "$npm_cache/node_modules"
    fail "npm ci could not install the packages pinned in $pkg (is the npm registry reachable?)"
  fi
  cp "$pkg/package-lock.json" "$npm_cache/installed.lock"
}
