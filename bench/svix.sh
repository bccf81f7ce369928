#!/usr/bin/env bash
# hookrpc beside Svix, round by round on the same machine and the same PostgreSQL server.
#
#   SVIX_BIN=/path/to/svix-server bench/svix.sh ROUNDS DB
#
# DB: a PostgreSQL server's admin url (e.g. from scripts/postgres start). Each round runs, one
# after the other so that the machine's noise falls on all alike: `single` (one event per call
# from 32 callers, one per request) on hookrpc with SQLite, hookrpc on PostgreSQL (one node)
# and Svix on PostgreSQL; then `latency` (publish→receive at 1,000 events/s) the same three
# ways. Prints one line per round: deliveries/s, then p99 ms. Needs `cargo build --release
# --bin hookrpc --example bench` first; BENCHMARKS.md says how Svix's server was built.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=$1 db=$2
: "${SVIX_BIN:?SVIX_BIN: the svix-server to run}"
export HOOKRPC_BIN=${HOOKRPC_BIN:-target/release/hookrpc}
bench=target/release/examples/bench
# The figure quoted from each run's table row: deliveries/s of `single`, p99 ms of `latency`.
figure() { "$@" 2>/dev/null | tail -1 | awk -F'|' '{print $5 + 0}'; }
echo "# $(date -u '+%Y-%m-%d %H:%M') UTC, hookrpc $(git rev-parse --short HEAD), $(nproc) cores"
echo "| round | single: SQLite | hookrpc PG | Svix PG | latency p99 ms: SQLite | hookrpc PG | Svix PG |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for round in $(seq "$rounds"); do
  s=$(figure env -u BENCH_DB $bench single)
  h=$(figure env BENCH_DB="$db" $bench single)
  x=$(figure env BENCH_DB="$db" $bench svix)
  ls=$(figure env -u BENCH_DB $bench latency)
  lh=$(figure env BENCH_DB="$db" $bench latency)
  lx=$(figure env BENCH_DB="$db" $bench svix-latency)
  echo "| $round $(date -u +%H:%M) | $s | $h | $x | $ls | $lh | $lx |"
done
