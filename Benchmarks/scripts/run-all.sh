#!/usr/bin/env bash
# Runs the standard benchmark matrix against Switchboard and the Hummingbird peer in one go and
# writes Benchmarks/RESULTS.md (the previous file is kept as RESULTS.md.prev).
#   bash Benchmarks/scripts/run-all.sh
# Each script builds what it needs (release) unless SKIP_BUILD=1, pins servers to CPU 0 and the
# load generators to CPU 1, and reports medians of RUNS (default 3) runs.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$HERE/../RESULTS.md"
TMP="$(mktemp)"
FAILED=()
{
    echo "# Benchmark results"
    echo
    echo "Written by \`bash Benchmarks/scripts/run-all.sh\` on $(date -u +%Y-%m-%d). Servers pinned to CPU 0,"
    echo "load generators to CPU 1 (\`taskset\`), peer measured in the same run. On this machine kind"
    echo "the two vCPUs share roughly one physical core's worth of time, so server and load generator"
    echo "compete: read every rate with the CPU columns. Benchmarks never run as tests."
    echo
    # Issue 16: its table (every row the harness measures, peer in the same run, server CPU
    # per message user + system), memory per idle WebSocket at 10,000 and 100,000 connections
    # with the connection rate, and the protocol templates (bench16).
    bash "$HERE/issue16-bench.sh" || FAILED+=(issue16-bench.sh)
    echo
    # Item 3 by the time-stamp counter (user time without the kernel's exit time, which /proc's
    # column above includes), with the C++ peer when CPP_PEER_BIN names it.
    echo "### Issue 16 item 3: user time per echo by the time-stamp counter (user-tsc.sh)"
    echo
    echo '```'
    SERVERS="uring epoll${CPP_PEER_BIN:+ peer}" bash "$HERE/user-tsc.sh" || FAILED+=(user-tsc.sh)
    echo '```'
    echo
    bash "$HERE/memory-bench.sh" || FAILED+=(memory-bench.sh)
    echo
    # Items 4 and 5: fan-out with 1 and 2 shards (CPU per delivery ratio, latency at a fixed rate).
    bash "$HERE/shards-bench.sh" || FAILED+=(shards-bench.sh)
    echo
    bash "$HERE/protocols-bench.sh" || FAILED+=(protocols-bench.sh)
    echo
    bash "$HERE/http-bench.sh" || FAILED+=(http-bench.sh)
    echo
    bash "$HERE/ws-bench.sh" || FAILED+=(ws-bench.sh)
    echo
    bash "$HERE/fanout-bench.sh" || FAILED+=(fanout-bench.sh)
    echo
    # The targets' TLS row (server CPU per message against plaintext, from the same run) and
    # cross-node fan-out through a real Redis (deliveries/s per node).
    bash "$HERE/tls-bench.sh" || FAILED+=(tls-bench.sh)
    echo
    bash "$HERE/cluster-bench.sh" || FAILED+=(cluster-bench.sh)
    # The list of failed scripts leaves the group through a file (the group's output is the report).
    : >"$TMP.failed"
    for f in "${FAILED[@]}"; do echo "$f" >>"$TMP.failed"; done
} >"$TMP"
# A failed run (its script exits 1 and lists why) never becomes RESULTS.md: the report is kept
# next to it as RESULTS.md.failed and this script exits 1.
if [[ -s "$TMP.failed" ]]; then
    mv "$TMP" "$OUT.failed"
    echo "benchmark runs FAILED in: $(paste -sd ' ' "$TMP.failed"); $OUT left as it was, the report is in $OUT.failed" >&2
    rm -f "$TMP.failed"
    exit 1
fi
rm -f "$TMP.failed"
[ -f "$OUT" ] && cp "$OUT" "$OUT.prev"
mv "$TMP" "$OUT"
echo "wrote $OUT" >&2
