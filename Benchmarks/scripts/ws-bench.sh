#!/usr/bin/env bash
# WebSocket echo throughput: Switchboard's switchboard-echo (io_uring and epoll, 1 shard) vs the
# Hummingbird peer's /ws (1 event-loop thread), driven by switchboard-bench. Prints a Markdown
# fragment on stdout; progress on stderr. See Benchmarks/README.md.
#
# Environment overrides (defaults are the documented protocol):
#   RUNS=3 DURATION=10s WARMUP=2s CONNS="100 1000" SIZES="20 1024" SERVER_CPU=0 BENCH_CPU=1
#   BASE_PORT=18500 CONFIG=release SKIP_BUILD=0 ONLY="" (space-separated server names to run, e.g. "peer-hummingbird")
#   ECHO_BIN, PEER_BIN, BENCH_BIN (prebuilt binaries; default: the CONFIG builds, echo_bench_start in lib.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${RUNS:-3}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
CONNS="${CONNS:-100 1000}"
SIZES="${SIZES:-20 1024}"
SERVER_CPU="${SERVER_CPU:-0}"
BENCH_CPU="${BENCH_CPU:-1}"
BASE_PORT="${BASE_PORT:-18500}"
CONFIG="${CONFIG:-release}"
SKIP_BUILD="${SKIP_BUILD:-0}"
ONLY="${ONLY:-}"

echo_bench_start ws-bench

# ---------------------------------------------------------------- servers
# name | port offset | command (port substituted for @PORT@)
ALL_SERVERS=(
    "switchboard-uring|0|$ECHO_BIN --port @PORT@ --io-backend uring --shards 1"
    "switchboard-epoll|1|$ECHO_BIN --port @PORT@ --io-backend epoll --shards 1"
    "peer-hummingbird|2|$PEER_BIN --port @PORT@ --threads 1"
)
SERVERS=()
for entry in "${ALL_SERVERS[@]}"; do
    name="${entry%%|*}"
    if [[ -z "$ONLY" || " $ONLY " == *" $name "* ]]; then
        bin="$(awk '{ print $1 }' <<<"${entry#*|*|}")"
        [[ -x "$bin" ]] || die "missing $bin (needed for $name)"
        SERVERS+=("$entry")
    fi
done
[[ ${#SERVERS[@]} -gt 0 ]] || die "no server selected (ONLY=$ONLY)"

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
declare -A RATE P50 P99 SCPU BCPU
RAW_ROWS=()

for entry in "${SERVERS[@]}"; do
    IFS='|' read -r name offset cmd_template <<<"$entry"
    port=$((BASE_PORT + offset))
    cmd="${cmd_template//@PORT@/$port}"
    for conns in $CONNS; do
        log "$name c=$conns: starting: taskset -c $SERVER_CPU $cmd"
        # shellcheck disable=SC2086
        if ! start_ws_server "$name" "ws://127.0.0.1:$port/ws" $cmd; then
            for size in $SIZES; do RATE["$name|$conns|$size"]="failed"; done
            note_failure "$name c=$conns: the server did not start"
            continue
        fi
        for size in $SIZES; do
            rates=(); p50s=(); p99s=(); scpus=(); bcpus=(); cell_failed=0
            for run in $(seq 1 "$RUNS"); do
                out="$WORK/$name-c$conns-s$size-run$run.txt"
                status=0
                run_echo "$out" "ws://127.0.0.1:$port/ws" "$conns" "$size" || status=$?
                if [[ "$status" != 0 ]]; then
                    # Never a figure from a failed run (lost connections, no round trips, timeout).
                    cell_failed=1
                    note_failure "$name c=$conns size=$size run $run: $(run_failure_reason "$out" "$status")"
                    RAW_ROWS+=("| $name | $conns | $size | $run | FAILED | | | | | $(awk '/connections:/ && /established/ { print $4 }' "$out") |")
                    continue
                fi
                rate="$ECHO_RATE" p50="$ECHO_P50" p99="$ECHO_P99" scpu="$ECHO_SCPU" bcpu="$ECHO_BCPU"
                failed="$(awk '/connections:/ && /established/ { print $4 }' "$out")"
                rates+=("$rate"); p50s+=("${p50:-nan}"); p99s+=("${p99:-nan}"); scpus+=("${scpu:-nan}"); bcpus+=("${bcpu:-nan}")
                RAW_ROWS+=("| $name | $conns | $size | $run | $rate | ${p50:-?} | ${p99:-?} | ${scpu:-?} | ${bcpu:-?} | ${failed:-?} |")
                log "  size $size run $run: $rate msg/s, p50 ${p50:-?} µs, p99 ${p99:-?} µs, server CPU ${scpu:-?}%, bench CPU ${bcpu:-?}%"
            done
            key="$name|$conns|$size"
            if [[ "$cell_failed" == 1 ]]; then
                RATE["$key"]="failed"; P50["$key"]="n/a"; P99["$key"]="n/a"; SCPU["$key"]="n/a"; BCPU["$key"]="n/a"
                continue
            fi
            RATE["$key"]="$(printf '%s\n' "${rates[@]}" | median)"
            P50["$key"]="$(printf '%s\n' "${p50s[@]}" | median)"
            P99["$key"]="$(printf '%s\n' "${p99s[@]}" | median)"
            SCPU["$key"]="$(printf '%s\n' "${scpus[@]}" | median)"
            BCPU["$key"]="$(printf '%s\n' "${bcpus[@]}" | median)"
        done
        stop_server
    done
done

# ---------------------------------------------------------------- report
fmt_int() { awk -v v="$1" 'BEGIN { if (v == "failed") print "FAILED"; else if (v == "nan" || v == "") print (v == "" ? "n/a" : v); else printf "%.0f", v }'; }

echo "### WebSocket echo throughput (switchboard-bench)"
echo
echo "- Date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "- Host: \`nproc\` = $(nproc), kernel \`$(uname -r)\`, CPU: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "- Load average (1/5/15 min) before the first run: $LOAD_START"
echo "- Toolchain: $(swift --version 2>/dev/null | head -1)"
echo "- Switchboard: \`$(cd "$MAIN_DIR" && git rev-parse --short HEAD 2>/dev/null || echo '?')\`"
echo "- Protocol: each server started pinned to CPU $SERVER_CPU and restarted for each connection count; readiness = one echo round trip on /ws. switchboard-bench pinned to CPU $BENCH_CPU (\`--cpu $BENCH_CPU\`, one client thread), closed loop with one message in flight per connection, ${WARMUP} warm-up (not counted) then ${DURATION} measured, $RUNS runs per cell; table values are medians. Server CPU % = utime+stime of the server (\`/proc/PID/stat\`) over the measured window; bench CPU % = the harness's own getrusage over the same window (100% = one core)."
echo "- Commands:"
echo
echo '```'
for entry in "${SERVERS[@]}"; do
    IFS='|' read -r name offset cmd_template <<<"$entry"
    echo "taskset -c $SERVER_CPU ${cmd_template//@PORT@/$((BASE_PORT + offset))}"
done
for conns in $CONNS; do for size in $SIZES; do
    echo "$(echo_cmd "ws://127.0.0.1:PORT/ws" "$conns" "$size") --server-pid SERVER_PID --json OUT.json"
done; done
echo '```'
echo
echo "| server | conns | size B | msg/s (median of $RUNS) | p50 µs | p99 µs | server CPU % | bench CPU % | ratio vs peer |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for conns in $CONNS; do
    for size in $SIZES; do
        peer="${RATE["peer-hummingbird|$conns|$size"]:-n/a}"
        for entry in "${SERVERS[@]}"; do
            IFS='|' read -r name _ _ <<<"$entry"
            key="$name|$conns|$size"
            rate="${RATE["$key"]:-failed}"
            ratio="$(awk -v a="$rate" -v b="$peer" 'BEGIN { if (a == "failed" || b == "failed" || b == "n/a" || b + 0 == 0) print "n/a"; else printf "%.2fx", a / b }')"
            echo "| $name | $conns | $size | $(fmt_int "$rate") | ${P50["$key"]:-n/a} | ${P99["$key"]:-n/a} | ${SCPU["$key"]:-n/a} | ${BCPU["$key"]:-n/a} | $ratio |"
        done
    done
done
echo
echo "<details><summary>Individual runs</summary>"
echo
echo "| server | conns | size B | run | msg/s | p50 µs | p99 µs | server CPU % | bench CPU % | failed conns |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${RAW_ROWS[@]}"
echo
echo "</details>"
report_failures
rm -rf "$WORK"
