#!/usr/bin/env bash
# CPU time per event of each kind of process during `bench single` (or `bench latency`), binaries
# side by side.
#
#   bench/cpu-per-event.sh ROUNDS NAME=BINARY [NAME=BINARY ...]
#
# Runs `target/release/examples/bench single` ROUNDS times for each binary in turn (so that the
# machine's noise falls on all of them alike), with BENCH_DB passed through (unset: SQLite).
# For each run it reads every process's CPU time from /proc/PID/stat 3 s and 8 s into the
# run, and divides what the server ("hookrpc"), PostgreSQL ("postgres") and the benchmark's
# callers and receiver ("bench") used in those 5 s by the events delivered in them (the run's
# deliveries/s × 5). With BENCH_MODE=latency it runs `bench latency` instead (addEvent at a
# steady 1,000 events/s, so 5,000 events in the window) and also prints each run's row (events,
# p50, p90, p99, max ms, requests). Each BINARY must be named `hookrpc` (its process name is what is counted),
# e.g. copy an older build to /tmp/old/hookrpc. Needs `cargo build --release --bin hookrpc
# --example bench` first.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=$1; shift
mode=${BENCH_MODE:-single}
case $mode in single | latency) ;; *) echo "BENCH_MODE: single or latency, not $mode" >&2; exit 2 ;; esac
snap() {
  local p comm times
  for p in /proc/[0-9]*; do
    read -r comm < "$p/comm" 2>/dev/null || continue
    times=$(cut -d' ' -f14,15 "$p/stat" 2>/dev/null) || continue
    echo "${p#/proc/} $comm $times"
  done
}
tick_ms=$((1000 / $(getconf CLK_TCK)))
out=$(mktemp)
trap 'rm -f "$out" "$out".*' EXIT
for _ in $(seq "$rounds"); do
  for pair in "$@"; do
    name=${pair%%=*}; binary=${pair#*=}
    HOOKRPC_BIN=$binary target/release/examples/bench "$mode" >"$out" 2>&1 &
    sleep 3; snap >"$out.before"; sleep 5; snap >"$out.after"; wait
    case $mode in
      single) rate=$(tail -1 "$out" | awk -F'|' '{print $5 + 0}') ;;
      latency) rate=1000; echo "$name: $(tail -1 "$out")" ;;  # events, p50, p90, p99, max ms, requests
    esac
    awk -v rate="$rate" -v name="$name" -v tick="$tick_ms" '
      NR == FNR { before[$1] = $3 + $4; next }
      ($1 in before) { cpu[$2] += $3 + $4 - before[$1] }
      END {
        events = rate * 5
        printf "%-10s %6d deliveries/s   CPU ms per event: hookrpc %.3f  postgres %.3f  bench %.3f\n",
          name, rate, cpu["hookrpc"] * tick / events, cpu["postgres"] * tick / events, cpu["bench"] * tick / events
      }' "$out.before" "$out.after"
  done
done
