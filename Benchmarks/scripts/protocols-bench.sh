#!/usr/bin/env bash
# The protocol templates of switchboard-bench (issue 16 item 8) against Switchboard's own
# servers, io_uring and epoll, 1 shard: connection-broker pairs (switchboard), broadcaster fan-out
# with REST publish (switchboard with broadcaster_enabled), RPC in its three request forms
# (switchboard-rpc-example). Every reply is verified by the template: a failed run is FAILED,
# never a figure. Server CPU per message (user + system) from /proc/PID/stat.
#
#   DURATION=10s WARMUP=2s PAIRS=50 WINDOW=8 SUBSCRIBERS=1000 SERVER_CPU=0 BENCH_CPU=1
#   CONFIG=release SKIP_BUILD=0 BASE_PORT=18950. SWITCHBOARD_BIN, RPC_BIN, BENCH_BIN override.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DURATION="${DURATION:-10s}"; WARMUP="${WARMUP:-2s}"; PAIRS="${PAIRS:-50}"; WINDOW="${WINDOW:-8}"; SUBSCRIBERS="${SUBSCRIBERS:-1000}"
SERVER_CPU="${SERVER_CPU:-0}"; BENCH_CPU="${BENCH_CPU:-1}"; CONFIG="${CONFIG:-release}"; SKIP_BUILD="${SKIP_BUILD:-0}"; BASE_PORT="${BASE_PORT:-18950}"
bench_start "$CONFIG" "switchboard switchboard-rpc-example switchboard-bench"

SECRET="protocols-bench-secret-of-32-bytes!!"
API_KEY="protocols-bench-api-key"
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
token() { # scope
    local now header claims
    now="$(date +%s)"
    header="$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | b64url)"
    claims="$(printf '{"sub":"bench","aud":"broadcaster","exp":%d,"iat":%d,"authorizedChannels":["bench"],"scope":["%s"]}' "$((now + 86400))" "$now" "$1" | b64url)"
    printf '%s' "$header.$claims.$(printf '%s' "$header.$claims" | openssl dgst -sha256 -hmac "$SECRET" -binary | b64url)"
}
SUB_TOKEN="$(token subscribe)"

# name|server command (@PORT@, @BACKEND@)|template arguments
CASES=(
    "broker|$SWITCHBOARD_BIN --host 127.0.0.1 --port @PORT@ --io-backend @BACKEND@ --shards 1 --log-level warning|broker --pairs $PAIRS -w $WINDOW -s 32 ws://127.0.0.1:@PORT@/"
    "broadcaster-rest|$SWITCHBOARD_BIN --host 127.0.0.1 --port @PORT@ --io-backend @BACKEND@ --shards 1 --log-level warning --set broadcaster_enabled=true --set broadcaster_jwt_secret=$SECRET --set broadcaster_api_keys=$API_KEY --set ws_permessage_deflate=false|broadcaster --subscribers $SUBSCRIBERS --token $SUB_TOKEN --api-key $API_KEY -s 20 -q ws://127.0.0.1:@PORT@/broadcaster/websocket"
    "rpc|$RPC_BIN --host 127.0.0.1 --port @PORT@ --io-backend @BACKEND@ --shards 1 --log-level warning|rpc --pairs $PAIRS -w $WINDOW -s 32 ws://127.0.0.1:@PORT@/"
)

ROWS=()
for backend in uring epoll; do
    for entry in "${CASES[@]}"; do
        IFS='|' read -r name server args <<<"$entry"
        port=$((BASE_PORT + ${#ROWS[@]}))
        server="${server//@PORT@/$port}"; server="${server//@BACKEND@/$backend}"; args="${args//@PORT@/$port}"
        # shellcheck disable=SC2086
        taskset -c "$SERVER_CPU" $server >"$WORK/$name-$backend.log" 2>&1 &
        SERVER_PID=$!
        if ! wait_for_port "$port"; then note_failure "$name $backend: the server did not start ($(tail -1 "$WORK/$name-$backend.log"))"; stop_server; ROWS+=("| $name | $backend | FAILED | | | |"); continue; fi
        out="$WORK/$name-$backend.txt"; status=0
        # shellcheck disable=SC2086
        timeout 600 "$BENCH_BIN" $args -d "$DURATION" --warmup "$WARMUP" --cpu "$BENCH_CPU" --server-pid "$SERVER_PID" >"$out" 2>&1 || status=$?
        stop_server
        if [[ "$status" != 0 ]]; then note_failure "$name $backend: $(run_failure_reason "$out" "$status")"; ROWS+=("| $name | $backend | FAILED | | | |"); continue; fi
        if [[ "$name" == broadcaster-* ]]; then
            rate="$(awk '/^  deliveries:/ { print $2 }' "$out")"
            lat="$(awk '/latency µs:/ { for (i = 1; i <= NF; i++) { if ($i == "p50") a = $(i + 1); if ($i == "p99") b = $(i + 1) } print a " / " b }' "$out")"
            cpu="$(awk '/server CPU split:/ { for (i = 1; i <= NF; i++) { if ($i == "user" && $(i + 2) == "system") u = $(i + 1); if ($i == "system" && $(i - 2) == "user") s = $(i + 1) } printf "%s + %s", u, s }' "$out")"
            ROWS+=("| $name | $backend | deliveries $rate/s | $lat | $cpu | verified per subscriber |")
        else
            # One line per phase (rpc: client, server, remote-client).
            while IFS='|' read -r phase rate lat cpu; do
                [[ -z "$phase" ]] && continue
                ROWS+=("| $name $phase | $backend | $rate msg/s | $lat | $cpu | every reply verified |")
            done < <(awk '
                /^  [a-z -]+: sent [0-9]+, completed/ { sub(/^  /, ""); split($0, h, ":"); phase = h[1]; for (i = 1; i <= NF; i++) if ($i == "=") rate = $(i + 1) }
                /^    latency µs/ { a = ""; b = ""; for (i = 1; i <= NF; i++) { if ($i == "p50") a = $(i + 1); if ($i == "p99") b = $(i + 1) } }
                /µs per message/ { c = ""; for (i = 1; i <= NF; i++) if ($i == "=") c = $(i + 1) " + " $(i + 3); print phase "|" rate "|" a " / " b "|" c }' "$out")
        fi
        log "$name $backend: $(grep -E 'result:' "$out" | sed 's/^ *//')"
    done
done

echo "### Protocol templates (switchboard-bench broker | broadcaster | rpc)"
echo
echo "- Date: $(date -u +%Y-%m-%dT%H:%M:%SZ); \`nproc\` = $(nproc); Switchboard \`$(cd "$MAIN_DIR" && git rev-parse --short HEAD)\` ($CONFIG); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- 1 shard pinned to CPU $SERVER_CPU, switchboard-bench (one client thread) to CPU $BENCH_CPU; ${WARMUP} warm-up + ${DURATION} per phase. broker: $PAIRS pairs, window $WINDOW each way, rate = deliveries/s (both directions), latency send → delivery; broadcaster: $SUBSCRIBERS subscribers, REST publish (window 16); rpc: $PAIRS pairs, window $WINDOW per client, each form in turn."
echo "- Server CPU per message, µs user + system: broadcaster, over the measured window per delivery; broker and rpc, over each phase (warm-up and drain included) per message answered in it."
echo
echo '```'
for entry in "${CASES[@]}"; do IFS='|' read -r name server args <<<"$entry"; echo "taskset -c $SERVER_CPU ${server//@BACKEND@/uring|epoll}"; echo "$BENCH_BIN $args -d $DURATION --warmup $WARMUP --cpu $BENCH_CPU --server-pid PID"; done | sed "s/$SUB_TOKEN/TOKEN/g"
echo '```'
echo
echo "| template | backend | rate | p50 / p99 µs | server CPU µs/msg | checks |"
echo "|---|---|---:|---:|---:|---|"
printf '%s\n' "${ROWS[@]}"
report_failures
