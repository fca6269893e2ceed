#!/usr/bin/env bash
# User-space instructions the server spends per echoed message, per fan-out delivery or per
# HTTP request (issue 16 items 1, 3, 6 and the HTTP row), counted by valgrind's callgrind: the
# figure that holds on a shared or loaded machine, where time does not. valgrind-echo
# (switchboard-echo's /ws echo, /broadcast and built-in /health on the same library code, with
# a synchronous main: valgrind 3.19 dies in the async main of switchboard-echo) runs under
# callgrind, its debug info stripped (valgrind 3.19 cannot read
# Swift 6's DWARF 5), with no Foundation (valgrind cannot run it); switchboard-bench (wrk for
# http) drives the messages from outside valgrind. The counters are zeroed after a warm-up and
# dumped after the measured run, so start-up, handshakes and the warm-up are left out.
#
#   instructions-per-message.sh BACKEND KIND CONNS SIZE MESSAGES [OUT]
#     BACKEND uring|epoll; KIND echo (MESSAGES round trips over CONNS connections) or fanout
#     (MESSAGES publishes to CONNS subscribers of /broadcast, raw, 1 publisher), or http
#     (keep-alive `GET SIZE` requests over CONNS connections for MESSAGES seconds, wrk -t1: SIZE
#     is the path, e.g. /health). http counts the requests the server received (its
#     switchboard_http_requests_total, read before and after), not wrk's, so the requests still
#     in flight when wrk stops are counted too.
#     OUT: where the callgrind profile is kept (default: a temporary file, removed), for
#     `callgrind_annotate --inclusive=yes OUT`.
#   SHARDS=2: the server runs 2 shards (fan-out subscribers spread over both: the cross-shard
#   hop's cost per delivery; issue 16 item 5).
#   Needs release builds of valgrind-echo and switchboard-bench (ECHO_BIN, BENCH_BIN override)
#   and valgrind; http needs wrk and curl instead of switchboard-bench. Under valgrind the server
#   runs ~50x slower, so each loop turn handles more messages than at full speed: compare
#   figures measured the same way, not with real runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
B="$1"; KIND="$2"; C="$3"; S="$4"; N="$5"; OUT="${6:-}"
BIN="${ECHO_BIN:-$ROOT/.build/release/valgrind-echo}"
BENCH="${BENCH_BIN:-$ROOT/.build/release/switchboard-bench}"
command -v valgrind >/dev/null || { echo "valgrind is required" >&2; exit 1; }
case $KIND in
    echo|fanout) ;;
    http) for tool in wrk curl; do command -v $tool >/dev/null || { echo "$tool is required" >&2; exit 1; }; done ;;
    *) echo "KIND must be echo, fanout or http" >&2; exit 2 ;;
esac
PORT=$((19900 + RANDOM % 400)); W=$(mktemp -d /tmp/instructions-per-message.XXXXXX)
objcopy --strip-debug "$BIN" "$W/server"
valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$W/cg.%p" "$W/server" $PORT "$B" "${SHARDS:-1}" >"$W/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true; rm -rf "$W"' EXIT
warm=$((N / 5 > 2000 ? N / 5 : 2000))
# http: the server's own request counter (one request per read of /metrics) gives the exact
# count, the requests wrk had in flight when it stopped included.
requests_total() {
    curl -sf "http://127.0.0.1:$PORT/metrics" | awk '/^switchboard_http_requests_total/ { s += $NF } END { print s + 0 }'
}
run_wrk() { wrk -t1 -c "$C" -d "${1}s" --timeout 30s "http://127.0.0.1:$PORT$S"; }
if [[ $KIND == http ]]; then
    for _ in $(seq 1 120); do curl -sf -o /dev/null "http://127.0.0.1:$PORT$S" && break; sleep 0.5; done
    run_wrk $((N / 5 > 2 ? N / 5 : 2)) >/dev/null 2>&1
    before=$(requests_total)
else
    for _ in $(seq 1 120); do "$BENCH" echo "ws://127.0.0.1:$PORT/ws" -c 1 -n 1 --quiet --connect-timeout 5s >/dev/null 2>&1 && break; sleep 0.5; done
fi
if [[ $KIND == echo ]]; then
    "$BENCH" echo -c "$C" -s "$S" -n "$warm" --quiet --connect-timeout 60s "ws://127.0.0.1:$PORT/ws" >/dev/null 2>&1
fi
callgrind_control -z $PID >/dev/null
if [[ $KIND == http ]]; then
    run_wrk "$N" >"$W/bench" 2>&1 || { cat "$W/bench"; exit 1; }
elif [[ $KIND == echo ]]; then
    "$BENCH" echo -c "$C" -s "$S" -n "$N" --connect-timeout 60s "ws://127.0.0.1:$PORT/ws" >"$W/bench" 2>&1 || { cat "$W/bench"; exit 1; }
    MSGS=$(awk '/round trips:/ {print $3}' "$W/bench")
else
    "$BENCH" fanout --raw --subscribers "$C" --publishers 1 -s "$S" -n "$N" --connect-timeout 60s "ws://127.0.0.1:$PORT/broadcast" >"$W/bench" 2>&1 || { cat "$W/bench"; exit 1; }
    MSGS=$(awk '/expected deliveries/ { for (i = 1; i <= NF; i++) if ($i == "received") { v = $(i + 1); gsub(/,/, "", v); print v } }' "$W/bench")
fi
callgrind_control -d $PID >/dev/null
sleep 1
if [[ $KIND == http ]]; then
    # Minus the request that reads the counter after the dump (the one before was counted
    # before the zeroing, and is not in the profile).
    MSGS=$(( $(requests_total) - before - 1 ))
fi
PROFILE=$(ls -t "$W"/cg.$PID* | grep -v "cg.$PID\$" | head -1)
IR=$(callgrind_annotate "$PROFILE" 2>/dev/null | awk '/PROGRAM TOTALS/ { v = $1; gsub(/,/, "", v); print v; exit }')
echo "backend=$B kind=$KIND conns=$C size=$S messages=$MSGS instructions=$IR"
case $KIND in echo) UNIT=echo ;; fanout) UNIT=delivery ;; http) UNIT=request ;; esac
awk -v ir="$IR" -v n="$MSGS" -v unit="$UNIT" 'BEGIN { printf "  per %s: %.0f instructions\n", unit, ir / n }'
if [[ -n "$OUT" ]]; then cp "$PROFILE" "$OUT"; fi
