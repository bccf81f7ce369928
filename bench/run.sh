#!/usr/bin/env bash
# Reproduces BENCHMARKS.md:  bench/run.sh [rpc|delivery|latency|single|connections|memory|unscraped|stats|all]
# Needs Debian's wrk for the rpc part (apt-get install wrk). Prints markdown tables on stdout,
# progress on stderr. BENCH_SECONDS, BENCH_ROUNDS, BENCH_CONNECTIONS tune the wrk runs.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "bench/run.sh needs wrk: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet --bin hookrpc --example bench
echo "## $(date -u +%Y-%m-%d) on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr)"
echo "hookrpc $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+changes')"
exec target/release/examples/bench "${1:-all}"
