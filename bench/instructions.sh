#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: unlike req/s on a shared machine,
# the count is the same from run to run, so it shows what a code change costs or saves.
#
#   bench/instructions.sh            # the unknown-method ceiling, getWebhookById, addWebhook, addEvent
#   HOOKRPC_BIN=/path/to/hookrpc bench/instructions.sh     # another build, e.g. an older commit
#
# Needs valgrind and wrk (apt-get install valgrind wrk). The server runs under callgrind (about
# 50 times slower); wrk keeps 32 connections busy for BENCH_SECONDS (6) per call, after a 2 s
# warm-up that is not counted. Every thread of the server is counted: the HTTP workers, the
# writer thread and the delivery engine.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in valgrind callgrind_control wrk; do
  command -v "$tool" >/dev/null || { echo "needs $tool: apt-get install valgrind wrk" >&2; exit 1; }
done
bin=${HOOKRPC_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --quiet --bin hookrpc
  bin=target/release/hookrpc
fi
work=$(mktemp -d)
valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
  "$bin" serve --listen 127.0.0.1:0 --db "$work/db" \
  --max-concurrent-calls 1000 --max-webhooks 10000000 >"$work/stdout" 2>"$work/stderr" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do grep -q '^listening on ' "$work/stdout" && break; sleep 0.2; done
key=$(sed -n 's/^created account default with full-access key: //p' "$work/stdout")
addr=$(sed -n 's/^listening on //p' "$work/stdout")
[ -n "$key" ] && [ -n "$addr" ] || { echo "server did not start" >&2; cat "$work/stderr" >&2; exit 1; }

call() { echo "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":[\"$key\",$2]}"; }
call addWebhook '{"object":"contact","event":"subscribed","url":"http://127.0.0.1:9/x"}' |
  curl -s -H 'content-type: application/json' -d @- "http://$addr/" >/dev/null

measure() { # name, body, [expect-error]
  printf '%s\n' "$2" >"$work/body.json"
  wrk -t1 -c32 -d2s -s bench/rpc.lua "http://$addr/" -- "$work/body.json" ${3:-} >/dev/null
  callgrind_control -z "$server" >/dev/null 2>&1
  local result requests
  result=$(wrk -t1 -c32 -d"${BENCH_SECONDS:-6}s" -s bench/rpc.lua "http://$addr/" -- "$work/body.json" ${3:-} | grep '^RESULT')
  requests=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$result")
  rm -f "$work"/callgrind.out*
  callgrind_control -d "$server" >/dev/null 2>&1
  sleep 0.5
  local total
  total=$(callgrind_annotate "$work"/callgrind.out* 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
  printf '| %s | %s | %s |\n' "$1" "$requests" "$((total / requests))"
}

echo "| call | requests counted | instructions per request |"
echo "|---|---:|---:|"
measure "unknown method (-32601)" "$(call noSuchMethod 1)" expect-error
measure getWebhookById "$(call getWebhookById 1)"
measure "addWebhook (durable)" "$(call addWebhook '{"object":"contact","event":"subscribed","url":"http://127.0.0.1:9/new/{n}"}')"
measure "addEvent (durable; no webhook matches)" "$(call addEvent '{"object":"list","event":"bulk_updated","list_id":7,"data":{"rows":42}}')"
