#!/usr/bin/env bash
# Per-message cost of the server, in figures that survive a loaded machine (issue 16 items 1, 3,
# 6): user and system CPU (/proc/PID/stat ticks), system calls by name (perf tracepoints,
# counted in the kernel) and malloc calls (an LD_PRELOAD counter, malloc-count.c) per echoed
# message or per fan-out delivery. Throughput and latency lines are printed but mean nothing
# on a shared machine.
#
#   cpu-per-message.sh BACKEND KIND CONNS SIZE MESSAGES
#     BACKEND uring|epoll; KIND echo (MESSAGES round trips over CONNS connections) or fanout
#     (MESSAGES publishes to CONNS subscribers of /broadcast, raw, 1 publisher).
#   Needs release builds of switchboard-echo and switchboard-bench, perf (tracepoints only:
#   no hardware counters needed), gcc, taskset. ECHO_BIN, BENCH_BIN override the binaries.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
B="$1"; KIND="$2"; C="$3"; S="$4"; N="$5"
BIN="${ECHO_BIN:-$ROOT/.build/release/switchboard-echo}"
BENCH="${BENCH_BIN:-$ROOT/.build/release/switchboard-bench}"
PORT=$((19500 + RANDOM % 400)); W=$(mktemp -d /tmp/cpu-per-message.XXXXXX)
gcc -O2 -shared -fPIC -o "$W/malloc-count.so" "$ROOT/Benchmarks/scripts/malloc-count.c" -lpthread
MALLOC_COUNT_FILE=$W/m LD_PRELOAD=$W/malloc-count.so taskset -c 0 "$BIN" --host 127.0.0.1 --port $PORT --io-backend $B --shards 1 --log-level warning >$W/server.log 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true; rm -rf "$W"' EXIT
for i in $(seq 1 100); do "$BENCH" echo "ws://127.0.0.1:$PORT/ws" -c 1 -n 1 --quiet --connect-timeout 1s >/dev/null 2>&1 && break; sleep 0.05; done
ticks() { local s; s="$(cat /proc/$PID/stat)"; s="${s##*) }"; awk '{print $12, $13}' <<<"$s"; }
# warm-up
if [[ $KIND == echo ]]; then "$BENCH" echo -c "$C" -s "$S" -n 20000 --quiet "ws://127.0.0.1:$PORT/ws" >/dev/null 2>&1; fi
sleep 0.2
read -r u0 s0 < <(ticks); read -r m0 f0 < $W/m
perf stat -x, -e raw_syscalls:sys_enter,syscalls:sys_enter_read,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendmsg -p $PID -o $W/perf 2>/dev/null &
PP=$!
sleep 0.3
if [[ $KIND == echo ]]; then
  "$BENCH" echo -c "$C" -s "$S" -n "$N" --cpu 1 "ws://127.0.0.1:$PORT/ws" >$W/bench 2>&1 || { cat $W/bench; exit 1; }
  MSGS=$(awk '/round trips:/ {print $3}' $W/bench)
else
  "$BENCH" fanout --raw --subscribers "$C" --publishers 1 -s "$S" -n "$N" --cpu 1 "ws://127.0.0.1:$PORT/broadcast" >$W/bench 2>&1 || { cat $W/bench; exit 1; }
  MSGS=$(awk '/expected deliveries/ { for (i = 1; i <= NF; i++) if ($i == "received") { v = $(i + 1); gsub(/,/, "", v); print v } }' $W/bench)
fi
sleep 0.2
kill -INT $PP; wait $PP 2>/dev/null || true
read -r u1 s1 < <(ticks); sleep 0.1; read -r m1 f1 < $W/m
HZ=$(getconf CLK_TCK)
echo "backend=$B kind=$KIND conns=$C size=$S messages=$MSGS"
grep -E "rate|round trips|deliveries|p99|latency" $W/bench | head -4
awk -v u=$((u1-u0)) -v s=$((s1-s0)) -v hz=$HZ -v n=$MSGS -v m=$((m1-m0)) 'BEGIN { printf "  per msg: user %.3f us, system %.3f us, mallocs %.2f\n", u/hz*1e6/n, s/hz*1e6/n, m/n }'
awk -F, -v n=$MSGS '$1 ~ /^[0-9]+$/ { split($3, a, ":"); printf "  %s %.3f/msg\n", a[2], $1/n }' $W/perf
