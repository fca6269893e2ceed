#!/usr/bin/env bash
# Fan-out (broadcast) throughput and latency, and RSS per idle subscribed connection:
# switchboard-echo's /broadcast (io_uring and epoll, 1 shard) vs the Hummingbird peer's
# /broadcast (1 event-loop thread), both "every message goes to every connected client of
# /broadcast", driven by switchboard-bench in raw fanout mode. Markdown on stdout.
# CHANNEL_CASE="KxS" (default 1000x10; "" or 0 = off) adds K channels x S subscribers each:
# switchboard-bench --channels K puts subscriber i on /broadcast/<i % K> with one publisher
# per channel. Only the switchboard servers run it: the peer's /broadcast is one channel.
#
#   RUNS=3 DURATION=10s WARMUP=2s SUBSCRIBERS="100 1000 10000" SIZE=20 SERVER_CPU=0 BENCH_CPU=1
#   IDLE_CONNS=10000 CHANNEL_CASE=1000x10 SKIP_BUILD=0 BASE_PORT=18600
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS="${RUNS:-3}"; DURATION="${DURATION:-10s}"; WARMUP="${WARMUP:-2s}"
SUBSCRIBERS="${SUBSCRIBERS:-100 1000 10000}"; SIZE="${SIZE:-20}"
SERVER_CPU="${SERVER_CPU:-0}"; BENCH_CPU="${BENCH_CPU:-1}"; IDLE_CONNS="${IDLE_CONNS:-10000}"
SKIP_BUILD="${SKIP_BUILD:-0}"; BASE_PORT="${BASE_PORT:-18600}"; CHANNEL_CASE="${CHANNEL_CASE-1000x10}"
CH_K=""; CH_PER=""
if [[ -n "$CHANNEL_CASE" && "$CHANNEL_CASE" != 0 ]]; then
    [[ "$CHANNEL_CASE" =~ ^([1-9][0-9]*)x([1-9][0-9]*)$ ]] || { log "CHANNEL_CASE must look like 1000x10 (channels x subscribers per channel), got '$CHANNEL_CASE'"; exit 2; }
    CH_K="${BASH_REMATCH[1]}"; CH_PER="${BASH_REMATCH[2]}"
fi
bench_start release "switchboard-echo switchboard-bench peer-hummingbird"

start_server() { # name port cmd...
    local name="$1" port="$2"; shift 2
    start_pinned "$name" "$@"
    poll_until 10 ws_echo_ok "ws://127.0.0.1:$port/ws"
}

SERVERS=(
    "switchboard-uring|0|$ECHO_BIN --port @PORT@ --io-backend uring --shards 1"
    "switchboard-epoll|1|$ECHO_BIN --port @PORT@ --io-backend epoll --shards 1"
    "peer-hummingbird|2|$PEER_BIN --port @PORT@ --threads 1"
)
declare -A RATE P50 P99 SCPU IDLE
# RUNS fanout runs against the running server; medians into RATE/P50/P99/SCPU[key].
fanout_runs() { # key label port bench-args...
    local key="$1" label="$2" port="$3"; shift 3
    local rates=() p50s=() p99s=() scpus=() run out rate p50 p99 scpu got status failed=0
    for run in $(seq 1 "$RUNS"); do
        out="$WORK/${key//|/-}-$run.txt"
        status=0
        timeout 180 "$BENCH_BIN" fanout --raw "$@" -s "$SIZE" -d "$DURATION" --warmup "$WARMUP" \
            --cpu "$BENCH_CPU" --quiet --server-pid "$SERVER_PID" "ws://127.0.0.1:$port/broadcast" >"$out" 2>&1 || status=$?
        if [[ "$status" != 0 ]]; then
            # Missing or reordered deliveries, lost connections, nothing published: no figure.
            failed=1
            note_failure "$label run $run: $(run_failure_reason "$out" "$status")"
            continue
        fi
        rate="$(awk '/^  deliveries:/ { print $2 }' "$out")"
        p50="$(awk '/latency µs:/ { for (i = 1; i <= NF; i++) if ($i == "p50") print $(i + 1) }' "$out")"
        p99="$(awk '/latency µs:/ { for (i = 1; i <= NF; i++) if ($i == "p99") print $(i + 1) }' "$out")"
        scpu="$(awk '/server CPU:/ { sub(/.*server CPU: [0-9.]+ s \(/, ""); sub(/%\).*/, ""); print }' "$out")"
        got="$(awk '/expected deliveries/ { print $0 }' "$out")"
        log "$label run $run: ${rate:-?} deliveries/s p50 ${p50:-?} p99 ${p99:-?} server CPU ${scpu:-?}% ($got)"
        rates+=("${rate:-0}"); p50s+=("${p50:-nan}"); p99s+=("${p99:-nan}"); scpus+=("${scpu:-nan}")
    done
    if [[ "$failed" == 1 ]]; then
        RATE[$key]="failed"; P50[$key]="n/a"; P99[$key]="n/a"; SCPU[$key]="n/a"
        return 0
    fi
    RATE[$key]="$(printf '%s\n' "${rates[@]}" | median)"; P50[$key]="$(printf '%s\n' "${p50s[@]}" | median)"
    P99[$key]="$(printf '%s\n' "${p99s[@]}" | median)"; SCPU[$key]="$(printf '%s\n' "${scpus[@]}" | median)"
}
for entry in "${SERVERS[@]}"; do
    IFS='|' read -r name offset tmpl <<<"$entry"
    port=$((BASE_PORT + offset)); cmd="${tmpl//@PORT@/$port}"
    for subs in $SUBSCRIBERS; do
        # shellcheck disable=SC2086
        start_server "$name" "$port" $cmd || { note_failure "$name subs=$subs: the server did not start"; RATE["$name|$subs"]="failed"; continue; }
        fanout_runs "$name|$subs" "$name subs=$subs" "$port" --subscribers "$subs" --publishers 1
        stop_server
    done
    # K channels x S subscribers (/broadcast/<channel>, one publisher per channel).
    if [[ -n "$CH_K" ]]; then
        if [[ "$name" == peer-hummingbird ]]; then
            log "$name: skipping the ${CH_K}x${CH_PER} channel case (its /broadcast is a single channel)"
        else
            # shellcheck disable=SC2086
            if start_server "$name" "$port" $cmd; then
                fanout_runs "$name|ch" "$name channels=$CH_K x $CH_PER" "$port" --channels "$CH_K" --subscribers "$((CH_K * CH_PER))"
                stop_server
            else
                note_failure "$name channels=$CH_K x $CH_PER: the server did not start"
                RATE["$name|ch"]="failed"
            fi
        fi
    fi
    # RSS per idle subscribed connection: hold IDLE_CONNS sockets on /broadcast.
    # shellcheck disable=SC2086
    start_server "$name" "$port" $cmd || { note_failure "$name idle: the server did not start"; IDLE[$name]="FAILED"; continue; }
    sleep 0.5
    before="$(rss_kib "$SERVER_PID")"
    "$BENCH_BIN" connect -c "$IDLE_CONNS" -d 5s --cpu "$BENCH_CPU" --quiet "ws://127.0.0.1:$port/broadcast" >"$WORK/$name-idle.txt" 2>&1 &
    bpid=$!
    sleep 4
    during="$(rss_kib "$SERVER_PID")"
    status=0
    wait "$bpid" || status=$?
    if [[ "$status" != 0 ]]; then
        # Some of the connections never opened: an RSS per connection from them means nothing.
        IDLE[$name]="FAILED"
        note_failure "$name idle $IDLE_CONNS: $(run_failure_reason "$WORK/$name-idle.txt" "$status")"
    else
        IDLE[$name]="$(awk -v a="$before" -v b="$during" -v n="$IDLE_CONNS" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')"
    fi
    log "$name idle: RSS $before KiB -> $during KiB with $IDLE_CONNS subscribed connections"
    stop_server
done

echo "### Fan-out: every message to every subscriber of one channel (switchboard-bench fanout --raw)"
echo
echo "- Date: $(date -u +%Y-%m-%dT%H:%M:%SZ); \`nproc\` = $(nproc); kernel \`$(uname -r)\`; Switchboard \`$(cd "$MAIN_DIR" && git rev-parse --short HEAD)\`"
echo "- Servers pinned to CPU $SERVER_CPU, switchboard-bench to CPU $BENCH_CPU; 1 publisher (window 16), ${SIZE} B messages, ${WARMUP} warm-up + ${DURATION}, $RUNS runs, medians. Latency = publish→receive, HdrHistogram."
echo
echo '```'
for entry in "${SERVERS[@]}"; do IFS='|' read -r name offset tmpl <<<"$entry"; echo "taskset -c $SERVER_CPU ${tmpl//@PORT@/$((BASE_PORT + offset))}"; done
echo "$BENCH_BIN fanout --raw --subscribers N --publishers 1 -s $SIZE -d $DURATION --warmup $WARMUP --cpu $BENCH_CPU --server-pid PID ws://127.0.0.1:PORT/broadcast"
echo "$BENCH_BIN connect -c $IDLE_CONNS -d 5s --cpu $BENCH_CPU ws://127.0.0.1:PORT/broadcast   # RSS sampled from /proc/PID/status while held"
echo '```'
echo
fanout_table
if [[ -n "$CH_K" ]]; then
    echo
    echo "### Fan-out: $CH_K channels × $CH_PER subscribers (switchboard-bench fanout --raw --channels $CH_K)"
    echo
    echo "- Subscriber i on /broadcast/<i % $CH_K>, $CH_K publishers (publisher j on /broadcast/<j % $CH_K>, window 16 each), $((CH_K * CH_PER)) subscribers; expected deliveries counted per channel. Same pinning, size, durations and runs as above."
    echo "- peer-hummingbird: not run — its /broadcast is a single channel (no /broadcast/NAME)."
    echo
    echo '```'
    echo "$BENCH_BIN fanout --raw --channels $CH_K --subscribers $((CH_K * CH_PER)) -s $SIZE -d $DURATION --warmup $WARMUP --cpu $BENCH_CPU --server-pid PID ws://127.0.0.1:PORT/broadcast"
    echo '```'
    echo
    echo "| server | channels × subscribers | delivered msg/s | p50 µs | p99 µs | server CPU % |"
    echo "|---|---:|---:|---:|---:|---:|"
    for entry in "${SERVERS[@]}"; do
        IFS='|' read -r name _ _ <<<"$entry"; k="$name|ch"
        [[ "$name" == peer-hummingbird ]] && { echo "| $name | $CH_K × $CH_PER | n/a (single-channel /broadcast) | n/a | n/a | n/a |"; continue; }
        echo "| $name | $CH_K × $CH_PER | $(rate_cell "${RATE[$k]:-0}") | ${P50[$k]:-n/a} | ${P99[$k]:-n/a} | ${SCPU[$k]:-n/a} |"
    done
fi
echo
echo "| server | RSS per idle subscribed connection ($IDLE_CONNS held) |"
echo "|---|---:|"
for entry in "${SERVERS[@]}"; do
    IFS='|' read -r name _ _ <<<"$entry"; v="${IDLE[$name]:-n/a}"
    [[ "$v" =~ ^-?[0-9]+$ ]] && v="$v B"
    echo "| $name | $v |"
done
report_failures
