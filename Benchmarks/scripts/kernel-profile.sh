#!/usr/bin/env bash
# Where an echo's kernel time goes, for Switchboard and a peer measured the same way: the
# kernel is ~93% of an echo's server CPU on loopback, so after user space (callgrind:
# instructions-per-message.sh) this is the place to look (issue 16 items 3 and 6).
#
# For each server in SERVERS, two runs of `switchboard-bench echo -c CONNS -s SIZE` (server
# pinned to SERVER_CPU, load generator to BENCH_CPU), with perf attached to the server for the
# whole of each:
#   - `perf stat` of the syscall tracepoints of the calls an echo makes: per echoed message;
#   - `perf record -e cpu-clock` (no build-id cache): the top symbols, kernel and user, in
#     nanoseconds per echoed message (their share of the samples × the server's CPU time over
#     the run ÷ its messages).
# Then, for the first two servers, the symbols whose cost per message differs most.
#
#   CONNS=1000 SIZE=20 SERVERS="epoll peer" bash Benchmarks/scripts/kernel-profile.sh
#
# SERVERS: uring, epoll (switchboard-echo, ECHO_BIN) and/or peer (PEER_CPP_BIN, default
# /work/peer-uws/peer-uws: a C++ peer built outside the repository, see RESULTS.md), each once.
# TOP (default 30) symbols are listed. DURATION (default 6s) is each bench run, after a 1 s
# warm-up that is counted too.
#
# Read rates from other scripts, not from this one: the syscall tracepoints slow every system
# call while `perf stat` runs, and while `perf record` samples Switchboard (threads that sleep
# in epoll_wait or io_uring_enter, unlike a single-threaded peer) its rate dips by up to half.
# The shares and the counts per message are what this script is for. Needs perf and
# permission to trace (root, or perf_event_paranoid <= 1 with tracefs readable).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CONNS="${CONNS:-1000}"; SIZE="${SIZE:-20}"; SERVERS="${SERVERS:-epoll peer}"; TOP="${TOP:-30}"
DURATION="${DURATION:-6s}"; SERVER_CPU="${SERVER_CPU:-0}"; BENCH_CPU="${BENCH_CPU:-1}"
PEER_CPP_BIN="${PEER_CPP_BIN:-/work/peer-uws/peer-uws}"
bench_start release "switchboard-echo switchboard-bench" perf
PORT=$((21000 + RANDOM % 800))
# The system calls an echo server makes per message (a named list: enabling every syscall
# tracepoint takes perf seconds, which would shift its window out of the run).
SYSCALLS="$(printf 'syscalls:sys_enter_%s,' read recvfrom recvmsg write writev sendto sendmsg epoll_wait epoll_pwait epoll_ctl io_uring_enter futex)"
SYSCALLS="${SYSCALLS%,}"

start() { # server
    case "$1" in
        uring|epoll) taskset -c "$SERVER_CPU" "$ECHO_BIN" --host 127.0.0.1 --port "$PORT" --io-backend "$1" --shards 1 --log-level warning >"$WORK/$1.log" 2>&1 & ;;
        peer) [[ -x "$PEER_CPP_BIN" ]] || die "no peer at $PEER_CPP_BIN (PEER_CPP_BIN)"
              taskset -c "$SERVER_CPU" "$PEER_CPP_BIN" --port "$PORT" --threads 1 >"$WORK/$1.log" 2>&1 & ;;
        *) die "unknown server $1 (uring, epoll, peer)" ;;
    esac
    SERVER_PID=$!
    wait_for_ws "$PORT" /ws "$BENCH_BIN" || die "$1 did not answer on port $PORT"
}

# messages OUT: every message of a bench run (its per-second lines, warm-up included).
messages() { awk '/^\[[0-9.]+s\] (warm-up|measuring) *msgs\/s/ { s += $4 } END { print s + 0 }' "$1"; }

# measured SERVER KIND COMMAND...: one bench run with COMMAND (a perf invocation ending in
# `-p`) attached to the server for all of it; perf is stopped (SIGINT) when the bench exits.
# Sets RUN_MESSAGES and RUN_CPU_NS (the server's CPU time over the run).
measured() {
    local server="$1" kind="$2" out="$WORK/$1.$2.bench" perf t0 t1; shift 2
    "$@" "$SERVER_PID" >/dev/null 2>&1 &
    perf=$!
    sleep 1  # perf attached before the first message
    t0="$(cpu_ticks "$SERVER_PID")"
    timeout 120 "$BENCH_BIN" echo -c "$CONNS" -s "$SIZE" -d "$DURATION" --warmup 1s --cpu "$BENCH_CPU" "ws://127.0.0.1:$PORT/ws" >"$out" 2>&1 \
        || die "$server: switchboard-bench failed: $(tail -3 "$out")"
    t1="$(cpu_ticks "$SERVER_PID")"
    kill -INT "$perf"; wait "$perf" 2>/dev/null || true
    grep -q "result: PASSED" "$out" || die "$server: the bench run did not pass"
    RUN_MESSAGES="$(messages "$out")"
    RUN_CPU_NS="$(awk -v a="$t0" -v b="$t1" -v t="$(getconf CLK_TCK)" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.0f", (y[1] + y[2] - x[1] - x[2]) / t * 1e9 }')"
    [[ "$RUN_MESSAGES" -gt 0 && "$RUN_CPU_NS" -gt 0 ]] || die "$server: no messages or no server CPU in the $kind run"
}

declare -A PER_MESSAGE
for server in $SERVERS; do
    # Two runs on one server process: system calls first, then samples. Each perf covers a
    # whole run (connections opened once, before: the server's listener is warm), so counts
    # and messages come from the same window with nothing to align.
    start "$server"
    measured "$server" stat perf stat -x, -e "$SYSCALLS" -o "$WORK/$server.stat" -p
    stat_messages="$RUN_MESSAGES"
    measured "$server" record perf record -q -N -B -e cpu-clock -F 4000 -o "$WORK/$server.data" -p
    record_messages="$RUN_MESSAGES"; cpu_ns="$RUN_CPU_NS"
    stop_server
    echo "### $server: echo $CONNS × $SIZE B"
    echo
    echo "System calls per message (perf stat over a whole run: $stat_messages messages, the connections' opening included):"
    echo
    awk -F, -v m="$stat_messages" '$1 + 0 > 0 && m > 0 { sub(/^syscalls:sys_enter_/, "", $3); printf "- %s: %.3f\n", $3, $1 / m }' "$WORK/$server.stat" | sort -t: -k2 -gr | awk -F': ' '$2 >= 0.001'
    echo
    echo "Top symbols, ns per message (perf record over a whole run: server CPU $((cpu_ns / 1000000)) ms, $record_messages messages):"
    echo
    perf report -i "$WORK/$server.data" --sort sym --stdio 2>/dev/null | awk '/^ *[0-9.]+%/ { sub(/%/, "", $1); name = $3; for (i = 4; i <= NF; i++) name = name " " $i; print $1 "\t" name }' >"$WORK/$server.syms"
    awk -F'\t' -v c="$cpu_ns" -v m="$record_messages" -v top="$TOP" 'NR <= top && m > 0 { printf "- %.0f ns (%.2f%%) %s\n", $1 / 100 * c / m, $1, substr($2, 1, 90) }' "$WORK/$server.syms"
    echo
    PER_MESSAGE[$server]="$cpu_ns $record_messages"
done

set -- $SERVERS
if [[ $# -ge 2 ]]; then
    read -r ca ma <<<"${PER_MESSAGE[$1]}"; read -r cb mb <<<"${PER_MESSAGE[$2]}"
    echo "### Differences, $1 − $2, ns per message (the 15 largest each way)"
    echo
    awk -F'\t' -v ca="$ca" -v ma="$ma" -v cb="$cb" -v mb="$mb" '
        FNR == 1 { f++ }
        f == 1 { a[$2] = $1 / 100 * ca / ma; seen[$2] = 1 }
        f == 2 { b[$2] = $1 / 100 * cb / mb; seen[$2] = 1 }
        END { for (k in seen) printf "%+.0f\t%.0f\t%.0f\t%s\n", a[k] - b[k], a[k], b[k], substr(k, 1, 80) }' \
        "$WORK/$1.syms" "$WORK/$2.syms" | sort -g >"$WORK/diff"
    { tail -15 "$WORK/diff" | sort -gr; echo "…"; head -15 "$WORK/diff"; } | awk -F'\t' -v x="$1" -v y="$2" '$0 == "…" { print "- …"; next } { printf "- %s ns: %s (%s %s, %s %s)\n", $1, $4, x, $2, y, $3 }'
fi
