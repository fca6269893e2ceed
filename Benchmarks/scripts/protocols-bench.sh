#!/usr/bin/env bash
# The protocol templates of switchboard-bench (issue 16 item 8) against Switchboard's own
# servers, io_uring and epoll, 1 shard: connection-broker pairs (switchboard), broadcaster fan-out
# with REST publish (switchboard with broadcaster_enabled), RPC in its three request forms
# (switchboard-rpc-example). Every reply is verified by the template: a failed run is FAILED,
# never a figure. Server CPU per message (user + system) from /proc/PID/stat.
#
# RUNS rounds, interleaved (round r runs every case on both backends before round r + 1);
# each cell is the median of its rounds (p50, p99 and the CPU split each on their own), with
# the rate of every round beside it.
#
#   RUNS=3 DURATION=10s WARMUP=2s PAIRS=50 WINDOW=8 SUBSCRIBERS=1000 SERVER_CPU=0 BENCH_CPU=1
#   CONFIG=release SKIP_BUILD=0 BASE_PORT=18950. SWITCHBOARD_BIN, RPC_BIN, BENCH_BIN override.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS="${RUNS:-3}"; DURATION="${DURATION:-10s}"; WARMUP="${WARMUP:-2s}"; PAIRS="${PAIRS:-50}"; WINDOW="${WINDOW:-8}"; SUBSCRIBERS="${SUBSCRIBERS:-1000}"
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

# Per row (name|backend|phase, in first-seen order): the runs' "rate p50 p99 user system" lines,
# or FAILED. Interleaved: round r runs every case on both backends before round r + 1.
KEYS=(); declare -A RECORDS KIND
add_record() { # key kind record
    [[ -n "${RECORDS[$1]+set}" ]] || { KEYS+=("$1"); RECORDS[$1]=""; KIND[$1]="$2"; }
    [[ "${RECORDS[$1]}" == FAILED ]] || RECORDS[$1]+="$3"$'\n'
}
fail_row() { [[ -n "${RECORDS[$1]+set}" ]] || { KEYS+=("$1"); KIND[$1]="${2:-}"; }; RECORDS[$1]=FAILED; }
for run in $(seq 1 "$RUNS"); do
    index=0
    for entry in "${CASES[@]}"; do
        for backend in uring epoll; do
            IFS='|' read -r name server args <<<"$entry"
            port=$((BASE_PORT + index)); index=$((index + 1))
            server="${server//@PORT@/$port}"; server="${server//@BACKEND@/$backend}"; args="${args//@PORT@/$port}"
            # shellcheck disable=SC2086
            taskset -c "$SERVER_CPU" $server >"$WORK/$name-$backend-run$run.log" 2>&1 &
            SERVER_PID=$!
            if ! wait_for_port "$port"; then note_failure "$name $backend run $run: the server did not start ($(tail -1 "$WORK/$name-$backend-run$run.log"))"; stop_server; fail_row "$name|$backend|"; continue; fi
            out="$WORK/$name-$backend-run$run.txt"; status=0
            # shellcheck disable=SC2086
            timeout 600 "$BENCH_BIN" $args -d "$DURATION" --warmup "$WARMUP" --cpu "$BENCH_CPU" --server-pid "$SERVER_PID" >"$out" 2>&1 || status=$?
            stop_server
            if [[ "$status" != 0 ]]; then note_failure "$name $backend run $run: $(run_failure_reason "$out" "$status")"; fail_row "$name|$backend|"; continue; fi
            if [[ "$name" == broadcaster-* ]]; then
                add_record "$name|$backend|" deliveries "$(awk '
                    /^  deliveries:/ { r = $2 }
                    /latency µs:/ { for (i = 1; i <= NF; i++) { if ($i == "p50") a = $(i + 1); if ($i == "p99") b = $(i + 1) } }
                    /server CPU split:/ { for (i = 1; i <= NF; i++) { if ($i == "user" && $(i + 2) == "system") u = $(i + 1); if ($i == "system" && $(i - 2) == "user") s = $(i + 1) } }
                    function v(x) { return x == "" ? "n/a" : x }
                    END { print v(r), v(a), v(b), v(u), v(s) }' "$out")"
            else
                # One line per phase (rpc: client, server, remote-client).
                while IFS='|' read -r phase record; do
                    [[ -z "$phase" ]] && continue
                    add_record "$name|$backend|$phase" messages "$record"
                done < <(awk '
                    /^  [a-z -]+: sent [0-9]+, completed/ { sub(/^  /, ""); split($0, h, ":"); phase = h[1]; for (i = 1; i <= NF; i++) if ($i == "=") rate = $(i + 1) }
                    /^    latency µs/ { a = ""; b = ""; for (i = 1; i <= NF; i++) { if ($i == "p50") a = $(i + 1); if ($i == "p99") b = $(i + 1) } }
                    function v(x) { return x == "" ? "n/a" : x }
                    /µs per message/ { u = ""; s = ""; for (i = 1; i <= NF; i++) if ($i == "=") { u = $(i + 1); s = $(i + 3) }; print phase "|" v(rate) " " v(a) " " v(b) " " v(u) " " v(s) }' "$out")
            fi
            log "$name $backend run $run: $(grep -E 'result:' "$out" | sed 's/^ *//')"
        done
    done
done

# column KEY N: the median of field N (1 rate, 2 p50, 3 p99, 4 user, 5 system) over KEY's runs.
column() { printf '%s' "${RECORDS[$1]}" | awk -v n="$2" '$n ~ /^[0-9.]+$/ { print $n }' | median; }
ROWS=()
for key in "${KEYS[@]}"; do
    IFS='|' read -r name backend phase <<<"$key"
    label="$name${phase:+ $phase}"
    if [[ "${RECORDS[$key]}" == FAILED ]]; then ROWS+=("| $label | $backend | FAILED | | | | |"); continue; fi
    rates="$(printf '%s' "${RECORDS[$key]}" | awk '{ printf "%s%s", (NR > 1 ? " " : ""), $1 }')"
    rate="$(column "$key" 1 | awk '{ printf ($1 ~ /^[0-9.]+$/ ? "%.0f" : "%s"), $1 }')"
    if [[ "${KIND[$key]}" == deliveries ]]; then rate="deliveries $rate/s"; checks="verified per subscriber"
    else rate="$rate msg/s"; checks="every reply verified"; fi
    ROWS+=("| $label | $backend | $rate | $(column "$key" 2) / $(column "$key" 3) | $(column "$key" 4) + $(column "$key" 5) | $rates | $checks |")
done

echo "### Protocol templates (switchboard-bench broker | broadcaster | rpc)"
echo
echo "- Date: $(date -u +%Y-%m-%dT%H:%M:%SZ); \`nproc\` = $(nproc); Switchboard \`$(cd "$MAIN_DIR" && git rev-parse --short HEAD)\` ($CONFIG); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- 1 shard pinned to CPU $SERVER_CPU, switchboard-bench (one client thread) to CPU $BENCH_CPU; ${WARMUP} warm-up + ${DURATION} per phase; medians of $RUNS interleaved round(s). broker: $PAIRS pairs, window $WINDOW each way, rate = deliveries/s (both directions), latency send → delivery; broadcaster: $SUBSCRIBERS subscribers, REST publish (window 16); rpc: $PAIRS pairs, window $WINDOW per client, each form in turn."
echo "- Server CPU per message, µs user + system: broadcaster, over the measured window per delivery; broker and rpc, over each phase (warm-up and drain included) per message answered in it."
echo
echo '```'
for entry in "${CASES[@]}"; do IFS='|' read -r name server args <<<"$entry"; echo "taskset -c $SERVER_CPU ${server//@BACKEND@/uring|epoll}"; echo "$BENCH_BIN $args -d $DURATION --warmup $WARMUP --cpu $BENCH_CPU --server-pid PID"; done | sed "s/$SUB_TOKEN/TOKEN/g"
echo '```'
echo
echo "| template | backend | rate | p50 / p99 µs | server CPU µs/msg | rate per round | checks |"
echo "|---|---|---:|---:|---:|---|---|"
printf '%s\n' "${ROWS[@]}"
report_failures
