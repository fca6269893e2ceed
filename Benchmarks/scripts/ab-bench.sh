#!/usr/bin/env bash
# Before/after comparison of two switchboard-echo builds on the echo and fan-out rows, side by
# side with the hummingbird peer, runs interleaved (A, B, peer, A, B, peer, ...) so that drift
# in the machine's load hits every server alike. Prints a Markdown table on stdout.
#
#   A_BIN=/path/to/old/switchboard-echo B_BIN=.build/release/switchboard-echo \
#   PEER_BIN=Benchmarks/.build/release/peer-hummingbird bash Benchmarks/scripts/ab-bench.sh
#
# Environment: RUNS=3 DURATION=5s WARMUP=1s BACKENDS="uring epoll" SERVER_CPU=0 BENCH_CPU=1
# BENCH_BIN (default .build/release/switchboard-bench), PEER_BIN (empty: no peer),
# CASES (default: "echo:100:1024 echo:1000:1024 echo:100:20 fanout:1000 fanout:10000"); a case
# "wss-echo:C:S" or "wss-fanout:N" runs over the servers' TLS listener (a throwaway certificate
# is made; port = the plain one + 50). A_ARGS / B_ARGS: extra switchboard-echo flags for each
# side, so one binary can be compared with itself under two settings, e.g.
#   A_BIN=$B A_ARGS="--set tls_record_layer=openssl" B_BIN=$B CASES="wss-echo:100:32 echo:100:32"
# Server CPU per message = (utime + stime of the server, from /proc/PID/stat, over the measured
# run) / messages; reported split into user and system. Messages per loop turn = messages / the
# server's switchboard_loop_turns_total over the run (its /metrics; n/a for the peer): user CPU
# per message follows how many messages a turn handles, which moves from run to run with the
# timing, not with the build (a turn costs ~1 µs of user time in a real run), so read the user
# column next to it. Messages per send = messages / switchboard_sends_total (socket writes):
# how many frames a write carried, which is what a fan-out's system time per delivery follows.
# A failed run (switchboard-bench exit status != 0) is printed as FAILED and
# makes the script exit 1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_start release ""  # builds nothing: the binaries to compare are given
RUNS="${RUNS:-3}"; DURATION="${DURATION:-5s}"; WARMUP="${WARMUP:-1s}"
BACKENDS="${BACKENDS:-uring epoll}"; SERVER_CPU="${SERVER_CPU:-0}"; BENCH_CPU="${BENCH_CPU:-1}"
BENCH_BIN="${BENCH_BIN:-$MAIN_DIR/.build/release/switchboard-bench}"
PEER_BIN="${PEER_BIN:-}"
CASES="${CASES:-echo:100:1024 echo:1000:1024 echo:100:20 fanout:1000 fanout:10000}"
: "${A_BIN:?A_BIN (the before build of switchboard-echo) is required}"
: "${B_BIN:?B_BIN (the after build of switchboard-echo) is required}"
for b in "$A_BIN" "$B_BIN" "$BENCH_BIN"; do [[ -x "$b" ]] || { echo "missing $b" >&2; exit 2; }; done
TICKS="$(getconf CLK_TCK)"
FAILED=0
A_ARGS="${A_ARGS:-}"; B_ARGS="${B_ARGS:-}"
TLS_ARGS=""
if [[ "$CASES" == *wss-* ]]; then
    make_test_certificate "$WORK" "ab-bench CA"
    TLS_ARGS="--set tls_certificate=$WORK/server.pem --set tls_private_key=$WORK/server.key --set tls_max_handshakes_per_shard=4096"
fi

start() { # name port cmd...
    local name="$1"; PORT="$2"; shift 2
    if [[ -n "$TLS_ARGS" && "$name" != peer-* ]]; then
        # shellcheck disable=SC2086
        set -- "$@" $TLS_ARGS --set "tls_port=$((PORT + 50))"
    fi
    start_pinned "$name" "$@" --host 127.0.0.1 --port "$PORT"
    poll_until 20 port_open "$PORT" && return 0
    echo "server $name did not start" >&2; cat "$WORK/$name.log" >&2; return 1
}


# run_case NAME CASE -> appends "rate user_us sys_us msgs_per_turn msgs_per_send" to $WORK/NAME.CASE
# (or FAILED)
run_case() {
    local name="$1" kase="$2" kind conns size url args
    IFS=: read -r kind conns size <<<"$kase"
    local base="ws://127.0.0.1:$PORT"
    if [[ "$kind" == wss-* ]]; then
        base="wss://127.0.0.1:$((PORT + 50))"
        kind="${kind#wss-}"
    fi
    if [[ "$kind" == echo ]]; then
        url="$base/ws"
        args=(echo -c "$conns" -s "$size" -w 1)
    else
        url="$base/broadcast"
        args=(fanout --raw --subscribers "$conns" --publishers 1 -s 20 --max-failed-connections 0)
    fi
    # Warm-up run, not counted (also lets the server touch its buffers).
    taskset -c "$BENCH_CPU" "$BENCH_BIN" "${args[@]}" -d "$WARMUP" -q "$url" >/dev/null 2>&1 || true
    local before after out rc=0
    local turns_before turns_after sends_before sends_after
    turns_before="$(metric_total "$PORT" switchboard_loop_turns_total)"; sends_before="$(metric_total "$PORT" switchboard_sends_total)"
    before="$(cpu_ticks "$SERVER_PID")"
    out="$(taskset -c "$BENCH_CPU" "$BENCH_BIN" "${args[@]}" -d "$DURATION" -q --json "$WORK/r.json" "$url" 2>&1)" || rc=$?
    after="$(cpu_ticks "$SERVER_PID")"
    turns_after="$(metric_total "$PORT" switchboard_loop_turns_total)"; sends_after="$(metric_total "$PORT" switchboard_sends_total)"
    if [[ $rc -ne 0 ]]; then
        echo "FAILED" >>"$WORK/$name.$kase"; FAILED=1
        echo "[$name $kase] FAILED: $(grep 'failed:' <<<"$out" | head -3)" >&2
        return
    fi
    python3 - "$WORK/r.json" "$before" "$after" "$TICKS" "$turns_before" "$turns_after" "$sends_before" "$sends_after" >>"$WORK/$name.$kase" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1])); b = sys.argv[2].split(); a = sys.argv[3].split(); hz = float(sys.argv[4])
msgs = d["messages"]["received"]
rate = d["messages"]["perSecond"]
user = (int(a[0]) - int(b[0])) / hz * 1e6 / max(msgs, 1)
sysc = (int(a[1]) - int(b[1])) / hz * 1e6 / max(msgs, 1)
def per(c0, c1):  # messages per count of a server counter over the run, n/a without it
    return f"{msgs / (float(c1) - float(c0)):.1f}" if "-" not in (c0, c1) and float(c1) > float(c0) else "n/a"
print(f"{rate:.0f} {user:.3f} {sysc:.3f} {per(sys.argv[5], sys.argv[6])} {per(sys.argv[7], sys.argv[8])}")
EOF
}

SERVERS=()
for backend in $BACKENDS; do
    SERVERS+=("before-$backend|$A_BIN --shards 1 --io-backend $backend $A_ARGS")
    SERVERS+=("after-$backend|$B_BIN --shards 1 --io-backend $backend $B_ARGS")
done
[[ -n "$PEER_BIN" ]] && SERVERS+=("peer-hummingbird|$PEER_BIN --threads 1")

BASE_PORT="${BASE_PORT:-18700}"
for run in $(seq 1 "$RUNS"); do
    index=0
    for entry in "${SERVERS[@]}"; do
        IFS='|' read -r name cmd <<<"$entry"
        index=$((index + 1))
        # shellcheck disable=SC2086
        start "$name" "$((BASE_PORT + index))" $cmd
        for kase in $CASES; do
            echo "[ab-bench] run $run $name $kase" >&2
            run_case "$name" "$kase"
        done
        stop_server
    done
done

# (n/a: a counter the server does not export, the peer or an older build: "n/a" if all are.)
median() { { grep -v '^n/a$' || true; } | sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "n/a"; else print a[int((NR + 1) / 2)] }'; }
echo "| case | server | msgs/s (median of $RUNS) | server µs/msg user | server µs/msg system | msgs per loop turn | msgs per send | after/before |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for kase in $CASES; do
    for entry in "${SERVERS[@]}"; do
        IFS='|' read -r name _ <<<"$entry"
        f="$WORK/$name.$kase"
        if grep -q FAILED "$f" 2>/dev/null; then echo "| $kase | $name | FAILED | | | | | |"; continue; fi
        rate="$(awk '{print $1}' "$f" | median)"; user="$(awk '{print $2}' "$f" | median)"; sysc="$(awk '{print $3}' "$f" | median)"
        turn="$(awk '{print $4}' "$f" | median)"; per_send="$(awk '{print $5}' "$f" | median)"
        ratio=""
        if [[ "$name" == after-* ]]; then
            b="$WORK/before-${name#after-}.$kase"
            if [[ -f "$b" ]] && ! grep -q FAILED "$b"; then
                ratio="$(awk '{print $1}' "$b" | median | awk -v r="$rate" '{ printf "%.2fx", r / $1 }')"
            fi
        fi
        echo "| $kase | $name | $rate | $user | $sysc | $turn | $per_send | $ratio |"
    done
done
exit "$FAILED"
