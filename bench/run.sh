#!/usr/bin/env bash
# Reproduces BENCHMARKS.md:  bench/run.sh [rpc|delivery|latency|single|connections|memory|unscraped|stats|soak|svix|svix-latency|all] [DB]
# DB: a PostgreSQL server's url (postgres://…/postgres, e.g. from scripts/postgres start) to
# run on PostgreSQL, each server on a fresh database there; BENCH_NODES=2 runs two nodes on it
# (calls go to the first, both deliver). Without DB: SQLite.
# Needs Debian's wrk for the rpc part (apt-get install wrk). Prints markdown tables on stdout,
# progress on stderr. BENCH_SECONDS, BENCH_ROUNDS, BENCH_CONNECTIONS tune the wrk runs.
# svix, svix-latency: the same as single and latency against Svix's server (SVIX_BIN, and DB);
# bench/svix.sh runs them beside hookrpc round by round.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-all}" in rpc|all)
  command -v wrk >/dev/null || { echo "bench/run.sh needs wrk: apt-get install wrk" >&2; exit 1; } ;;
esac
cargo build --release --quiet --bin hookrpc --example bench
echo "## $(date -u +%Y-%m-%d) on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr)"
echo "hookrpc $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+changes')"
if [ -n "${2:-}" ]; then
  export BENCH_DB="$2"
  echo "on PostgreSQL $(psql "$2" -XAtc 'SHOW server_version'), ${BENCH_NODES:-1} node(s)"
else
  echo "on SQLite"
fi
exec target/release/examples/bench "${1:-all}"
