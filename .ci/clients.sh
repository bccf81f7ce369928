#!/usr/bin/env bash
# Issue 4's client checks against a live server on an ephemeral port:
#   1. schema/openrpc.json against the official OpenRPC meta-schema (npm @open-rpc/schema-utils-js)
#   2. examples/php/demo.php: the Vision6-style PHP client (php-cli from Debian)
#   3. examples/js/demo.mjs: a client driven by the OpenRPC document (npm @open-rpc/client-js)
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v php >/dev/null; then
  echo "installing php-cli from Debian"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends php-cli >/dev/null
fi
php --version | head -1
node --version

(cd examples/js && npm ci --no-audit --no-fund --loglevel=error)
node examples/js/validate-openrpc.mjs

cargo build --quiet
work=$(mktemp -d)
target/debug/hookrpc serve --listen 127.0.0.1:0 --db "$work/hookrpc.db" >"$work/stdout" 2>"$work/stderr" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

for _ in $(seq 1 100); do
  grep -q '^listening on ' "$work/stdout" && break
  kill -0 "$server" 2>/dev/null || { cat "$work/stderr"; exit 1; }
  sleep 0.1
done
key=$(sed -n 's/^created account default with full-access key: //p' "$work/stdout")
addr=$(sed -n 's/^listening on //p' "$work/stdout")
[ -n "$key" ] && [ -n "$addr" ] || { echo "server did not start"; cat "$work/stderr"; exit 1; }

echo "--- PHP (Vision6 Api style) against http://$addr/api/jsonrpcserver.php?version=3.3"
php examples/php/demo.php "http://$addr/api/jsonrpcserver.php?version=3.3" "$key"

echo "--- JavaScript (driven by rpc.discover) against http://$addr/"
node examples/js/demo.mjs "http://$addr/" "$key"
