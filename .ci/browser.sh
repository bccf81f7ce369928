#!/usr/bin/env bash
# Issue 13, item 4: the dashboard in a real browser. Debian's Chromium, headless, driven by
# puppeteer-core (tests/browser/, pinned by its lockfile) against the debug binary on an
# ephemeral port and a receiver on 127.0.0.1: sign in through #key=, create webhooks, a
# delivery that succeeds, failures retried from the UI, the chart, a standard key's read-only
# portal. Installs chromium when it is missing; prints the folder of screenshots it saved.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v chromium >/dev/null; then
  echo "installing chromium from Debian"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
# (Debian's launcher script complains about its own arithmetic on some systems: harmless.)
chromium --version 2>/dev/null
node --version

(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
cargo build --quiet
shots=$(mktemp -d "${TMPDIR:-/tmp}/hookrpc-screenshots-XXXXXX")
CHROMIUM=$(command -v chromium) node tests/browser/dashboard.mjs "${CARGO_TARGET_DIR:-target}/debug/hookrpc" "$shots"
