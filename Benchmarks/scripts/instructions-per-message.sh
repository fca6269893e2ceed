#!/usr/bin/env bash
# User-space instructions the server spends per echoed message, per fan-out delivery, per
# HTTP request or per WebSocket opening handshake (issue 16 items 1, 3, 6 and the HTTP row),
# counted by valgrind's callgrind: the figure that holds on a shared or loaded machine, where
# time does not. valgrind-echo (switchboard-echo's /ws echo, /broadcast and built-in /health on
# the same library code, with a synchronous main: valgrind 3.19 dies in the async main of
# switchboard-echo) runs under callgrind, its debug info stripped (valgrind 3.19 cannot read
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
#     in flight when wrk stops are counted too. connect: MESSAGES rounds, each opening CONNS
#     WebSockets to SIZE (the path, e.g. /ws) with `switchboard-bench connect` (TCP accept, the
#     upgrade request, the 101): the counters are zeroed before each round and dumped once the
#     bench holds them all (its "holding" line), so their close frames and closes are not
#     counted; the rounds' instructions are summed and divided by the upgrades the server
#     counted (its switchboard_ws_upgrades_total, read around each round). The warm-up is one
#     such round. OUT is the last round's profile (its upgrades are printed).
#     OUT: where the callgrind profile is kept (default: a temporary file, removed), for
#     `callgrind_annotate --inclusive=yes OUT`.
#   TLS=1 (echo and fanout): the messages go over wss:// to the server's TLS listener (a
#   throwaway certificate; TLS_RECORD_LAYER=openssl for OpenSSL's record layer instead of
#   Switchboard's own): what TLS adds per message, with the plaintext run as the baseline.
#   REPLY_CORK_BYTES: the server's `reply_cork_bytes` (epoll; 0 turns the reply cork off), to
#   count the cork against the queued path on the same build.
#   SHARDS=2: the server runs 2 shards (fan-out subscribers spread over both: the cross-shard
#   hop's cost per delivery; issue 16 item 5).
#   CALLGRIND_OPTS: more callgrind options, e.g. "--cache-sim=yes" (D1/LL misses per message,
#   simulated) or "--dump-instr=yes" (costs per instruction address, for objdump).
#   Needs release builds of valgrind-echo and switchboard-bench (ECHO_BIN, BENCH_BIN override)
#   and valgrind; http needs wrk and curl instead of switchboard-bench, connect needs curl.
#   Under valgrind the server runs ~50x slower, so each loop turn handles more messages than at
#   full speed: compare figures measured the same way, not with real runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
B="$1"; KIND="$2"; C="$3"; S="$4"; N="$5"; OUT="${6:-}"
BIN="${ECHO_BIN:-$ROOT/.build/release/valgrind-echo}"
BENCH="${BENCH_BIN:-$ROOT/.build/release/switchboard-bench}"
command -v valgrind >/dev/null || { echo "valgrind is required" >&2; exit 1; }
case $KIND in
    echo|fanout) ;;
    connect) command -v curl >/dev/null || { echo "curl is required" >&2; exit 1; } ;;
    http) for tool in wrk curl; do command -v $tool >/dev/null || { echo "$tool is required" >&2; exit 1; }; done ;;
    *) echo "KIND must be echo, fanout, http or connect" >&2; exit 2 ;;
esac
PORT=$((19900 + RANDOM % 400)); W=$(mktemp -d /tmp/instructions-per-message.XXXXXX)
objcopy --strip-debug "$BIN" "$W/server"
SCHEME=ws; WS_PORT=$PORT
if [[ "${TLS:-0}" == 1 ]]; then
    [[ $KIND == echo || $KIND == fanout ]] || { echo "TLS=1 is for echo and fanout" >&2; exit 2; }
    source "$ROOT/deploy/common.sh"
    make_test_certificate "$W" "instructions CA" >/dev/null 2>&1
    export TLS_CERT="$W/server.pem" TLS_KEY="$W/server.key"
    SCHEME=wss; WS_PORT=$((PORT + 1))
fi
valgrind --tool=callgrind --dump-instr=no ${CALLGRIND_OPTS:-} --callgrind-out-file="$W/cg.%p" "$W/server" $PORT "$B" "${SHARDS:-1}" >"$W/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true; rm -rf "$W"' EXIT
warm=$((N / 5 > 2000 ? N / 5 : 2000))
# http: the server's own request counter (one request per read of /metrics) gives the exact
# count, the requests wrk had in flight when it stopped included.
counter_total() {
    curl -sf "http://127.0.0.1:$PORT/metrics" | awk -v name="$1" '$1 ~ "^" name "([{]|$)" { s += $NF } END { print s + 0 }'
}
requests_total() { counter_total switchboard_http_requests_total; }
# connect: one round of CONNS WebSockets held for 5 s (under valgrind, time enough to dump the
# counters before the bench closes them); with an argument, the counters are zeroed first and
# dumped as soon as the bench reports that it holds them all. Returns when the server holds none
# (the reads of /metrics after the dump are not counted).
connect_round() {
    if [[ -n ${1:-} ]]; then callgrind_control -z $PID >/dev/null; fi
    # Emptied here, not by the bench's redirection: that runs after the fork, and the wait
    # below could see the last round's "holding" first.
    : >"$W/progress"
    "$BENCH" connect -c "$C" -d 5s --connect-timeout 60s "ws://127.0.0.1:$PORT$S" >"$W/bench" 2>"$W/progress" &
    local bench=$!
    if [[ -n ${1:-} ]]; then
        for _ in $(seq 1 1200); do grep -q holding "$W/progress" && break; kill -0 $bench 2>/dev/null || break; sleep 0.1; done
        callgrind_control -d $PID >/dev/null
    fi
    wait $bench || { cat "$W/bench"; exit 1; }
    for _ in $(seq 1 600); do (( $(counter_total switchboard_ws_open) == 0 )) && break; sleep 0.1; done
}
run_wrk() { wrk -t1 -c "$C" -d "${1}s" --timeout 30s "http://127.0.0.1:$PORT$S"; }
if [[ $KIND == http ]]; then
    for _ in $(seq 1 120); do curl -sf -o /dev/null "http://127.0.0.1:$PORT$S" && break; sleep 0.5; done
    run_wrk $((N / 5 > 2 ? N / 5 : 2)) >/dev/null 2>&1
    before=$(requests_total)
else
    for _ in $(seq 1 120); do "$BENCH" echo "$SCHEME://127.0.0.1:$WS_PORT/ws" -c 1 -n 1 --quiet --connect-timeout 5s >/dev/null 2>&1 && break; sleep 0.5; done
fi
if [[ $KIND == echo ]]; then
    "$BENCH" echo -c "$C" -s "$S" -n "$warm" --quiet --connect-timeout 60s "$SCHEME://127.0.0.1:$WS_PORT/ws" >/dev/null 2>&1
elif [[ $KIND == connect ]]; then
    connect_round
    before=$(counter_total switchboard_ws_upgrades_total)
fi
if [[ $KIND == connect ]]; then
    IR=0; MSGS=0
    for round in $(seq 1 "$N"); do
        connect_round measured
        sleep 1
        PROFILE="$W/cg.$PID.$round"  # callgrind numbers its dumps from 1
        ir=$(callgrind_annotate "$PROFILE" 2>/dev/null | awk '/PROGRAM TOTALS/ { v = $1; gsub(/,/, "", v); print v; exit }')
        after=$(counter_total switchboard_ws_upgrades_total)
        echo "  round $round: $((after - before)) upgrades, $ir instructions"
        IR=$((IR + ir)); MSGS=$((MSGS + after - before)); before=$after
    done
    echo "backend=$B kind=$KIND conns=$C size=$S messages=$MSGS instructions=$IR"
    awk -v ir="$IR" -v n="$MSGS" 'BEGIN { printf "  per handshake: %.0f instructions\n", ir / n }'
    if [[ -n "$OUT" ]]; then cp "$PROFILE" "$OUT"; fi
    exit 0
fi
callgrind_control -z $PID >/dev/null
if [[ $KIND == http ]]; then
    run_wrk "$N" >"$W/bench" 2>&1 || { cat "$W/bench"; exit 1; }
elif [[ $KIND == echo ]]; then
    "$BENCH" echo -c "$C" -s "$S" -n "$N" --connect-timeout 60s "$SCHEME://127.0.0.1:$WS_PORT/ws" >"$W/bench" 2>&1 || { cat "$W/bench"; exit 1; }
    MSGS=$(awk '/round trips:/ {print $3}' "$W/bench")
else
    "$BENCH" fanout --raw --subscribers "$C" --publishers 1 -s "$S" -n "$N" --connect-timeout 60s "$SCHEME://127.0.0.1:$WS_PORT/broadcast" >"$W/bench" 2>&1 || { cat "$W/bench"; exit 1; }
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
