#!/usr/bin/env bash
# Runs the standard benchmark matrix against Switchboard, the Hummingbird peer and (with
# CPP_PEER_BIN) the C++ peer in one go, and writes its report into Benchmarks/RESULTS.md.
#   CPP_PEER_BIN=/path/to/peer-uws bash Benchmarks/scripts/run-all.sh
# Each script builds what it needs (release) unless SKIP_BUILD=1, pins servers to CPU 0 and the
# load generators to CPU 1, and reports medians of RUNS (default 3) runs; RUNS, DURATION and
# WARMUP set here reach every script, and the report's first lines say which were set.
# RESULTS.md holds one block written by this script, between the markers RESULTS_BEGIN_MARK and
# RESULTS_END_MARK (lib.sh), and the dated sections recorded by hand after it, each with its
# command: the script replaces its own block and keeps the rest of the file byte for byte (the
# whole previous file is also kept as RESULTS.md.prev). A file without the markers gets the
# block after its title paragraph.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$HERE/../RESULTS.md"
TMP="$(mktemp)"
source "$HERE/lib.sh"  # splice_report, RESULTS_BEGIN_MARK
FAILED=()
{
    echo "## The standard matrix: \`run-all.sh\`, $(date -u '+%Y-%m-%d %H:%M') UTC, \`$(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo unknown)\`"
    echo
    echo "Command: \`${RUNS:+RUNS=$RUNS }${DURATION:+DURATION=$DURATION }${WARMUP:+WARMUP=$WARMUP }${SKIP_BUILD:+SKIP_BUILD=$SKIP_BUILD }${CPP_PEER_BIN:+CPP_PEER_BIN=$CPP_PEER_BIN }bash Benchmarks/scripts/run-all.sh\`."
    echo "Servers pinned to CPU 0, load generators to CPU 1 (\`taskset\`), every peer measured in"
    echo "the same run. On this machine kind the two vCPUs share roughly one physical core's worth"
    echo "of time, so server and load generator compete: read every rate with the CPU columns."
    echo "Benchmarks never run as tests."
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
    # With a window of 64 messages in flight: the default 16 measures each publish's round trip
    # through Redis (~1M deliveries/s per node), 64 the nodes (2.1M, RESULTS 2026-12-05 13:24).
    # CLUSTER_PEAK_ARGS="" measures the default window.
    PEAK_ARGS="${CLUSTER_PEAK_ARGS---window 64}" bash "$HERE/cluster-bench.sh" || FAILED+=(cluster-bench.sh)
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
if ! splice_report "$OUT" "$TMP" >"$TMP.spliced"; then
    rm -f "$TMP.spliced"; mv "$TMP" "$OUT.failed"
    echo "$OUT's run-all.sh markers are broken: $OUT left as it was, the report is in $OUT.failed" >&2
    exit 1
fi
mv "$TMP.spliced" "$OUT"
rm -f "$TMP"
echo "wrote the run-all.sh block of $OUT" >&2
