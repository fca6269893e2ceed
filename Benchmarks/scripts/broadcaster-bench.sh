#!/usr/bin/env bash
# The broadcaster protocol's fan-out: one publisher → every subscriber of one channel, at
# SUBSCRIBERS subscribers, deliveries/s and publish→receive latency (p50/p99), with counts and
# per-subscriber order verified by switchboard-bench (a failed run is FAILED, never a figure).
#
# - switchboard (uring, epoll; --shards SHARDS) with broadcaster_enabled: every subscriber sends
#   `auth` (an HS256 token made here) and `subscribe`, and counts as subscribed once both replies
#   arrived (--setup-replies 2). PUBLISH=rest (default): one publisher POSTs each message to
#   {base}/publish with the API key on a keep-alive connection (window 16; every answer must be
#   200). PUBLISH=ws: it sends `auth` (publish scope) once, then WebSocket `publish` calls.
# - peer-hummingbird --threads THREADS: its /broadcast (every message to every client, the
#   nearest it can do: no auth, no JSON envelope), with the same subscriber counts.
#
#   RUNS=3 DURATION=10s WARMUP=2s SUBSCRIBERS="1000 10000" SIZE=20 SHARDS=1 THREADS=1
#   SERVER_CPU=0 BENCH_CPU=1 CONFIG=release SKIP_BUILD=0 BASE_PORT=18700 ONLY="" PUBLISH=rest
#   SWITCHBOARD_BIN, PEER_BIN, BENCH_BIN override the binaries. Markdown on stdout.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS="${RUNS:-3}"; DURATION="${DURATION:-10s}"; WARMUP="${WARMUP:-2s}"
SUBSCRIBERS="${SUBSCRIBERS:-1000 10000}"; SIZE="${SIZE:-20}"; SHARDS="${SHARDS:-1}"; THREADS="${THREADS:-1}"
SERVER_CPU="${SERVER_CPU:-0}"; BENCH_CPU="${BENCH_CPU:-1}"; CONFIG="${CONFIG:-release}"
SKIP_BUILD="${SKIP_BUILD:-0}"; BASE_PORT="${BASE_PORT:-18700}"; ONLY="${ONLY:-}"; PUBLISH="${PUBLISH:-rest}"
[[ "$PUBLISH" == rest || "$PUBLISH" == ws ]] || { log "PUBLISH must be rest or ws, got '$PUBLISH'"; exit 2; }
bench_start "$CONFIG" "switchboard switchboard-bench peer-hummingbird@release"

SECRET="broadcaster-bench-secret-of-32-bytes!"
API_KEY="broadcaster-bench-api-key"
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
token() { # scope JSON array
    local now header claims signature
    now="$(date +%s)"
    header="$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | b64url)"
    claims="$(printf '{"sub":"bench","aud":"broadcaster","exp":%d,"iat":%d,"authorizedChannels":["bench"],"scope":%s}' \
        "$((now + 86400))" "$now" "$1" | b64url)"
    signature="$(printf '%s' "$header.$claims" | openssl dgst -sha256 -hmac "$SECRET" -binary | b64url)"
    printf '%s' "$header.$claims.$signature"
}
SUB_TOKEN="$(token '["subscribe"]')"
PUB_TOKEN="$(token '["publish"]')"

start_server() { # name port cmd...
    local name="$1" port="$2"; shift 2
    start_pinned "$name" "$@"
    poll_until 20 --pid "$SERVER_PID" http_ok "http://127.0.0.1:$port/health"
}

SERVERS=(
    "switchboard-uring|0|$SWITCHBOARD_BIN --host 127.0.0.1 --port @PORT@ --io-backend uring --shards $SHARDS --log-level warning --set broadcaster_enabled=true --set broadcaster_jwt_secret=$SECRET --set broadcaster_api_keys=$API_KEY --set ws_permessage_deflate=false"
    "switchboard-epoll|1|$SWITCHBOARD_BIN --host 127.0.0.1 --port @PORT@ --io-backend epoll --shards $SHARDS --log-level warning --set broadcaster_enabled=true --set broadcaster_jwt_secret=$SECRET --set broadcaster_api_keys=$API_KEY --set ws_permessage_deflate=false"
    "peer-hummingbird|2|$PEER_BIN --port @PORT@ --threads $THREADS"
)
bench_args() { # name -> the protocol part of the switchboard-bench command line
    if [[ "$1" == peer-hummingbird ]]; then
        printf '%s\n' --raw
    else
        printf '%s\n' --subscribe-template "{\"id\":1,\"method\":\"auth\",\"params\":{\"token\":\"$SUB_TOKEN\"}}" \
            --subscribe-template '{"id":2,"method":"subscribe","params":{"channel":"bench"}}' --setup-replies 2
        if [[ "$PUBLISH" == rest ]]; then
            printf '%s\n' --publish-http /broadcaster/publish --publish-http-header "Authorization: Bearer $API_KEY" \
                --publish-template '{"channel":"bench","event":"e","payload":"{{payload}}"}'
        else
            printf '%s\n' --publisher-setup "{\"id\":1,\"method\":\"auth\",\"params\":{\"token\":\"$PUB_TOKEN\"}}" \
                --publish-template '{"id":2,"method":"publish","params":{"channel":"bench","event":"e","payload":"{{payload}}"}}'
        fi
    fi
}
url() { [[ "$1" == peer-hummingbird ]] && echo "ws://127.0.0.1:$2/broadcast" || echo "ws://127.0.0.1:$2/broadcaster/websocket"; }

declare -A RATE P50 P99 SCPU
for entry in "${SERVERS[@]}"; do
    IFS='|' read -r name offset tmpl <<<"$entry"
    [[ -n "$ONLY" && " $ONLY " != *" $name "* ]] && continue
    port=$((BASE_PORT + offset)); cmd="${tmpl//@PORT@/$port}"
    mapfile -t args < <(bench_args "$name")
    for subs in $SUBSCRIBERS; do
        key="$name|$subs"
        # shellcheck disable=SC2086
        if ! start_server "$name" "$port" $cmd; then
            note_failure "$name subs=$subs: the server did not start ($(tail -1 "$WORK/$name.log"))"; RATE[$key]="failed"; stop_server; continue
        fi
        rates=(); p50s=(); p99s=(); scpus=(); failed=0
        for run in $(seq 1 "$RUNS"); do
            out="$WORK/$name-$subs-$run.txt"; status=0
            timeout 300 "$BENCH_BIN" fanout "${args[@]}" --subscribers "$subs" --publishers 1 -s "$SIZE" -d "$DURATION" \
                --warmup "$WARMUP" --cpu "$BENCH_CPU" --quiet --server-pid "$SERVER_PID" "$(url "$name" "$port")" >"$out" 2>&1 || status=$?
            if [[ "$status" != 0 ]]; then
                failed=1; note_failure "$name subs=$subs run $run: $(run_failure_reason "$out" "$status")"; continue
            fi
            rates+=("$(awk '/^  deliveries:/ { print $2 }' "$out")")
            p50s+=("$(awk '/latency µs:/ { for (i = 1; i <= NF; i++) if ($i == "p50") print $(i + 1) }' "$out")")
            p99s+=("$(awk '/latency µs:/ { for (i = 1; i <= NF; i++) if ($i == "p99") print $(i + 1) }' "$out")")
            scpus+=("$(awk '/server CPU:/ { sub(/.*server CPU: [0-9.]+ s \(/, ""); sub(/%\).*/, ""); print }' "$out")")
            log "$name subs=$subs run $run: ${rates[-1]} deliveries/s p50 ${p50s[-1]} µs p99 ${p99s[-1]} µs server CPU ${scpus[-1]}% ($(awk '/expected deliveries/' "$out"))"
        done
        stop_server
        if [[ "$failed" == 1 ]]; then RATE[$key]="failed"; continue; fi
        RATE[$key]="$(printf '%s\n' "${rates[@]}" | median)"; P50[$key]="$(printf '%s\n' "${p50s[@]}" | median)"
        P99[$key]="$(printf '%s\n' "${p99s[@]}" | median)"; SCPU[$key]="$(printf '%s\n' "${scpus[@]}" | median)"
    done
done

echo "### Broadcaster protocol fan-out: publish → every subscriber of one channel"
echo
echo "- Date: $(date -u +%Y-%m-%dT%H:%M:%SZ); \`nproc\` = $(nproc); kernel \`$(uname -r)\`; Switchboard \`$(cd "$MAIN_DIR" && git rev-parse --short HEAD)\` ($CONFIG); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- Switchboard publisher: $([[ "$PUBLISH" == rest ]] && echo "REST (POST /broadcaster/publish, keep-alive)" || echo "WebSocket publish calls"); the peer's publisher sends raw WebSocket messages."
echo "- Servers pinned to CPU $SERVER_CPU, switchboard-bench to CPU $BENCH_CPU; 1 publisher (window 16), ${SIZE} B payload markers, ${WARMUP} warm-up + ${DURATION}, $RUNS run(s), medians. Latency = publish→receive (HdrHistogram), counts and per-subscriber order verified."
echo
echo '```'
for entry in "${SERVERS[@]}"; do IFS='|' read -r name offset tmpl <<<"$entry"; echo "taskset -c $SERVER_CPU ${tmpl//@PORT@/$((BASE_PORT + offset))}"; done
echo "$BENCH_BIN fanout $(bench_args switchboard | sed "s/.*/'&'/" | paste -sd' ') --subscribers N --publishers 1 -s $SIZE -d $DURATION --warmup $WARMUP --cpu $BENCH_CPU --server-pid PID ws://127.0.0.1:PORT/broadcaster/websocket"
echo "$BENCH_BIN fanout --raw --subscribers N --publishers 1 -s $SIZE -d $DURATION --warmup $WARMUP --cpu $BENCH_CPU --server-pid PID ws://127.0.0.1:PORT/broadcast   # peer"
echo '```'
echo
fanout_table
report_failures
