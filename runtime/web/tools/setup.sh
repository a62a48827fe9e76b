#!/usr/bin/env bash
# Installs what the web runtime's tests and demo need, into ignored places:
#   runtime/web/node_modules/   onnxruntime-web, playwright-core, typescript (npm ci: the versions in package-lock.json)
#   /usr/bin/chromium           Debian's Chromium, for the headless browser tests (apt-get, when run as root)
# Idempotent: a stamp file makes a rerun a no-op. Each failure prints one line to stderr.
set -euo pipefail

WEB="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STAMP="$WEB/node_modules/.mobilevision-ok"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

die() { echo "web setup: $*" >&2; exit 1; }

command -v node >/dev/null 2>&1 || die "node not found; install Node.js >= 20 (e.g. apt-get install nodejs npm)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
(( node_major >= 20 )) || die "node $(node -v) is too old; need >= 20"

lock_sum="$(sha256sum "$WEB/package-lock.json" | cut -d' ' -f1)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$lock_sum" ]]; then
  command -v npm >/dev/null 2>&1 || die "npm not found; install npm (it ships with Node.js)"
  err="$(mktemp)"
  trap 'rm -f "$err"' EXIT
  (cd "$WEB" && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>"$err") \
    || die "npm ci failed in $WEB: $(grep -E '^npm (error|ERR!)' "$err" | grep -vE ' (code|syscall|errno) |complete log' | head -n1)"
  echo "$lock_sum" > "$STAMP"
fi

if [[ ! -x "$CHROMIUM" ]]; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; } \
      || die "apt-get install chromium failed; install Chromium and set CHROMIUM=/path/to/chromium"
  else
    die "Chromium not found at $CHROMIUM; install it (sudo apt-get install chromium) or set CHROMIUM=/path/to/chromium"
  fi
fi
