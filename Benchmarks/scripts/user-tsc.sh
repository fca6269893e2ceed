#!/usr/bin/env bash
# Issue 16 item 3 (user CPU per echoed message at most 0.3 µs, at 100 and 1,000 connections) by
# the time-stamp counter: each server's event-loop thread counts the cycles between returning
# from one system call and entering the next (Sources/CLiburing/sb_user_tsc.h), so kernel exit
# time, which the tick and perf's samples both charge to user space on this machine, stays out.
# Switchboard is a measurement build (-DSB_USER_TSC, built here under .build-usertsc); the C++
# peer runs under the LD_PRELOAD library Benchmarks/usertsc/preload.c, which wraps its system
# calls with the same hooks. Servers are interleaved per run (uring, epoll, peer, then run 2, ...).
#
#   CPP_PEER_BIN=/work/peer-uws/peer-uws RUNS=3 CONNS="100 1000" bash Benchmarks/scripts/user-tsc.sh
#
# Per cell it prints the rate, the user time per echo by the counter (with the counted system
# calls per echo, the /proc user and system columns of the same run for comparison), the same
# split by phase (the stretches from a call of one kind, receive/send/wait/other, to the next:
# on epoll, receive>send is a message's handling, send>receive the step to the next ready
# connection) and the medians.
# Environment: RUNS=3, CONNS="100 1000", SIZE=20, DURATION=5s (measured; the counter reads 3 s
# of it from 0.5 s in), SERVERS="uring epoll peer" (peer needs CPP_PEER_BIN), SERVER_CPU=0
# BENCH_CPU=1, SKIP_BUILD=1 to reuse .build-usertsc. Exits 1 when a run fails.
# A/B of two measurement builds: a server may be NAME=BACKEND:BINARY, e.g.
#   cp .build-usertsc/release/switchboard-echo /tmp/a-echo   # before the change
#   SERVERS="a=epoll:/tmp/a-echo epoll" CONNS=1000 RUNS=7 bash Benchmarks/scripts/user-tsc.sh
# and the last line gives the second's user time over the first's, per run (the host drifts
# between runs more than most changes move the figure).
set -euo pipefail
BENCH_SCRIPT_NAME=user-tsc
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_start release "switchboard-bench" "taskset gcc python3 awk"
RUNS="${RUNS:-3}"; CONNS="${CONNS:-100 1000}"; SIZE="${SIZE:-20}"; DURATION="${DURATION:-5s}"
SERVERS="${SERVERS:-uring epoll peer}"; SERVER_CPU="${SERVER_CPU:-0}"; BENCH_CPU="${BENCH_CPU:-1}"
WINDOW_START=1.5; WINDOW_SECONDS=3  # after the 1 s warm-up and half a second of the window
grep -qw constant_tsc /proc/cpuinfo && grep -qw nonstop_tsc /proc/cpuinfo \
    || die "the TSC is not constant and nonstop here: its cycles are not time"
TSC_ECHO="$MAIN_DIR/.build-usertsc/release/switchboard-echo"
if [[ "${SKIP_BUILD:-0}" != 1 || ! -x "$TSC_ECHO" ]]; then
    log "building the measurement build of switchboard-echo (-DSB_USER_TSC) in .build-usertsc"
    (cd "$MAIN_DIR" && swift build -c release --product switchboard-echo --scratch-path .build-usertsc -Xcc -DSB_USER_TSC >&2)
fi
PRELOAD="$WORK/usertsc-preload.so"
gcc -O2 -Wall -shared -fPIC -DSB_USER_TSC -o "$PRELOAD" "$BENCH_DIR/usertsc/preload.c" -ldl
if [[ " $SERVERS " == *" peer "* ]]; then
    : "${CPP_PEER_BIN:?CPP_PEER_BIN: the C++ peer (or SERVERS without peer)}"
    [[ -x "$CPP_PEER_BIN" ]] || die "CPP_PEER_BIN=$CPP_PEER_BIN is not an executable"
fi

one_run() { # SERVER CONNS -> "rate user-µs syscalls-per-echo proc-user-µs+proc-system-µs phases"
    local server="$1" conns="$2" port=$((18500 + RANDOM % 400)) counters="$WORK/counters"
    rm -f "$counters"
    local name="$server" backend="$server" binary="$TSC_ECHO" environment=(SB_USER_TSC_FILE="$counters")
    if [[ "$server" == *=*:* ]]; then
        name="${server%%=*}"; backend="${server#*=}"; binary="${backend#*:}"; backend="${backend%%:*}"
    elif [[ "$server" == peer ]]; then
        binary="$CPP_PEER_BIN"; environment+=(LD_PRELOAD="$PRELOAD")
    fi
    sampled_echo_start "$name" "$port" "$backend" "$binary" "${environment[@]}"
    sampled_echo_run "$name" "$port" "$conns" "$SIZE" "$DURATION" \
        python3 "$BENCH_DIR/scripts/user-tsc-window.py" "$counters" "$WINDOW_START" "$WINDOW_SECONDS"
    local seconds syscalls user_seconds tsc_rate phases rate="$SAMPLED_RATE" proc_user
    read -r seconds syscalls user_seconds _ tsc_rate phases <"$WORK/sampler.out"
    proc_user="$(grep -oE 'per message µs: user [0-9.]+ system [0-9.]+' "$SAMPLED_OUT" | tail -1 | awk '{ print $(NF - 2) "+" $NF }')"
    # Per phase (the stretches between a call of one kind and the next of another): µs of user
    # time per echo, and stretches per echo.
    awk -v r="$rate" -v s="$seconds" -v n="$syscalls" -v u="$user_seconds" -v p="$proc_user" -v hz="$tsc_rate" -v ph="$phases" \
        'BEGIN { e = r * s; printf "%.0f %.3f %.2f %s ", r, u / e * 1e6, n / e, p
                 k = split(ph, items, " "); out = ""
                 for (i = 1; i <= k; i++) { split(items[i], f, ":"); out = out sprintf("%s%s=%.3f/%.2f", (i > 1 ? "," : ""), f[1], f[2] / hz / e * 1e6, f[3] / e) }
                 print (out == "" ? "-" : out) }'
}

declare -A RATE USER CALLS PROC SYSTEM
RATIOS=""
m() { tr ' ' '\n' <<<"$1" | grep . | median; }  # the median of a space-separated list
read -r -a SERVER_LIST <<<"$SERVERS"
for run in $(seq 1 "$RUNS"); do
    for conns in $CONNS; do
        for server in "${SERVER_LIST[@]}"; do
            read -r rate user calls proc phases <<<"$(one_run "$server" "$conns")"
            echo "run $run ${server%%=*} ${conns}x$SIZE: $rate echoes/s, user $user µs per echo by TSC ($calls counted system calls per echo), /proc user+system ${proc/+/ + } µs"
            echo "    by phase (user µs per echo / stretches per echo): ${phases//,/, }"
            key="${server%%=*} $conns"
            RATE[$key]+="$rate "; USER[$key]+="$user "; CALLS[$key]+="$calls "; PROC[$key]+="${proc%+*} "; SYSTEM[$key]+="${proc#*+} "
            [[ "$server" == "${SERVER_LIST[0]}" ]] && first_user="$user"
            [[ "$server" == "${SERVER_LIST[1]:-}" ]] && RATIOS+="$(awk -v a="$first_user" -v b="$user" 'BEGIN { printf "%.3f", b / a }') "
        done
    done
done
echo
echo "| server | connections | echoes/s | user µs per echo, TSC (runs) | counted syscalls per echo | /proc user µs per echo | /proc system µs per echo |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for conns in $CONNS; do
    for server in "${SERVER_LIST[@]}"; do
        server="${server%%=*}"; key="$server $conns"
        echo "| $server | $conns | $(m "${RATE[$key]}") | $(m "${USER[$key]}") (${USER[$key]% }) | $(m "${CALLS[$key]}") | $(m "${PROC[$key]}") | $(m "${SYSTEM[$key]}") |"
    done
done
if (( ${#SERVER_LIST[@]} >= 2 )); then
    echo
    echo "${SERVER_LIST[1]%%=*} over ${SERVER_LIST[0]%%=*}, user time per echo by TSC, per run and cell: median $(m "$RATIOS"); $RATIOS"
fi
