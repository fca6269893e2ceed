#!/usr/bin/env bash
# Issue 16's table, every row the in-repo harness can measure, for Switchboard (io_uring, epoll;
# switchboard-echo, 1 shard) and the Hummingbird peer (1 thread) in the same run, with the
# server's CPU per message split into user and system time (the figure that carries across
# machines and peers). Every load run is switchboard-bench (counts verified: a failed run is
# FAILED, never a figure) except HTTP /health (wrk). Medians of RUNS, interleaved: a row's run r on every server before its run r+1.
#
#   RUNS=3 DURATION=10s WARMUP=2s SERVER_CPU=0 BENCH_CPU=1 CONFIG=release SKIP_BUILD=0
#   BASE_PORT=18900 ONLY="" (server names) ONLY_ROWS="" (row ids, e.g. "echo100x20 chan1000")
#   IDLE_CONNS=10000 LATENCY_RATE=20000 LATENCY_FLAGS=--busy-poll FANLAT_RATE_1000=50 FANLAT_RATE_10000=5
#   (the latency rows' client polls without sleeping: a sleeping client's own wake-up per
#   message, ~45 µs on this VM, was half of every p50 and most of the half-peak p99; "" to
#   measure as before 2026-12-03)
#   ECHO_BIN, PEER_BIN, BENCH_BIN override the binaries. Markdown on stdout.
#   EXTRA_SERVERS="name:flags;name2:flags2" adds switchboard-echo servers (1 shard, TLS listener
#   as above) with extra flags, for an A/B in the same interleaved run, e.g.
#   EXTRA_SERVERS="uring-process-fds:--io-backend uring --set uring_direct_descriptors=false".
#   CPP_PEER_BIN=/path/to/peer-uws adds a column for a C++ peer built outside the repository
#   (uWebSockets on epoll, the issue's "C++ peer"; its code and build are not in this
#   repository). It takes `--port N --threads 1` and serves /health, /ws (echo), /broadcast and
#   /broadcast/NAME (every client of the path gets every message, the sender included), so it
#   runs every plaintext row, the channels row too.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS="${RUNS:-3}"; DURATION="${DURATION:-10s}"; WARMUP="${WARMUP:-2s}"
SERVER_CPU="${SERVER_CPU:-0}"; BENCH_CPU="${BENCH_CPU:-1}"; CONFIG="${CONFIG:-release}"; SKIP_BUILD="${SKIP_BUILD:-0}"
BASE_PORT="${BASE_PORT:-18900}"; ONLY="${ONLY:-}"; ONLY_ROWS="${ONLY_ROWS:-}"; IDLE_CONNS="${IDLE_CONNS:-10000}"; LATENCY_RATE="${LATENCY_RATE:-20000}"
LATENCY_FLAGS="${LATENCY_FLAGS---busy-poll}"
# The fan-out latency rows' publish rates: low enough that the busy-polling client keeps its
# schedule (at 500 publishes/s to 1,000 subscribers it fell behind on 86% of its sends, and the
# latency measured its own queue; at 50/s and 5/s it kept every send within 100 µs, 2026-12-05).
FANLAT_RATE_1000="${FANLAT_RATE_1000:-50}"; FANLAT_RATE_10000="${FANLAT_RATE_10000:-5}"
bench_start "$CONFIG" "switchboard-echo switchboard-bench peer-hummingbird"
# The wss:// rows: Switchboard's TLS listener (port + 50) with a throwaway certificate (the
# load generator does not verify it).
make_test_certificate "$WORK" "issue16-bench CA" >/dev/null 2>&1
TLS_SET="--set tls_certificate=$WORK/server.pem --set tls_private_key=$WORK/server.key --set tls_port=@TLSPORT@ --set tls_max_handshakes_per_shard=4096"

SERVERS=(
    "switchboard-uring|0|$ECHO_BIN --host 127.0.0.1 --port @PORT@ --io-backend uring --shards 1 --log-level warning $TLS_SET"
    "switchboard-epoll|1|$ECHO_BIN --host 127.0.0.1 --port @PORT@ --io-backend epoll --shards 1 --log-level warning $TLS_SET"
    "peer-hummingbird|2|$PEER_BIN --port @PORT@ --threads 1"
)
EXTRA_OFFSET=4
IFS=';' read -r -a EXTRAS <<<"${EXTRA_SERVERS:-}"
for extra in "${EXTRAS[@]}"; do
    [[ -n "$extra" ]] || continue
    [[ "$extra" == *:* ]] || die "EXTRA_SERVERS entry '$extra' is not name:flags"
    SERVERS+=("switchboard-${extra%%:*}|$EXTRA_OFFSET|$ECHO_BIN --host 127.0.0.1 --port @PORT@ --shards 1 --log-level warning $TLS_SET ${extra#*:}")
    EXTRA_OFFSET=$((EXTRA_OFFSET + 1))
done
if [[ -n "${CPP_PEER_BIN:-}" ]]; then
    [[ -x "$CPP_PEER_BIN" ]] || die "CPP_PEER_BIN=$CPP_PEER_BIN is not an executable"
    SERVERS+=("peer-cpp|3|$CPP_PEER_BIN --port @PORT@ --threads 1")
fi
# row id|label|kind|args — kind: echo C S, fanout N, channels CH N (N subscribers over CH channels,
# one publisher per channel), http C, idle N, latency C RATE, half C (p99 at half the echo peak),
# wssecho C S and wssfanout N (echo and fanout over wss://; the targets' "TLS within 1.3× of
# plaintext" compares them with echo100x32 and fan100), fanlat N RATE (item 4's publish-to-delivery
# latency: one publisher at RATE publishes/s to N subscribers, the client busy-polling; a run
# whose client fell behind its schedule says so in its cell, since its latency then includes
# the client's own queue)
ROWS=(
    "echo100x20|echo 100×20 B, msg/s|echo 100 20"
    "echo100x1k|echo 100×1 KiB, msg/s|echo 100 1024"
    "echo1000x1k|echo 1000×1 KiB, msg/s|echo 1000 1024"
    "echo1000x20|echo 1000×20 B, msg/s (item 3's user CPU at 1,000 connections)|echo 1000 20"
    "fan100|fan-out 1 → 100, deliveries/s|fanout 100"
    "fan1000|fan-out 1 → 1,000, deliveries/s|fanout 1000"
    "fan10000|fan-out 1 → 10,000, deliveries/s|fanout 10000"
    "chan1000|fan-out 1,000 channels × 10, deliveries/s|channels 1000 10000"
    "health|HTTP GET /health, 100 conns, requests/s|http 100"
    "healthclose|HTTP GET /health with Connection: close (a new connection per request), 100 conns, requests/s|httpclose 100"
    "idle|RSS per idle WebSocket, $IDLE_CONNS held (base RSS, its anonymous part)|idle $IDLE_CONNS"
    "lat|echo latency at $LATENCY_RATE msg/s, 100 conns, p50 / p99 µs|latency 100 $LATENCY_RATE"
    "half|echo p99 at 50% of the server's own 100×20 B peak, µs|half 100"
    "fanlat1000|fan-out 1 → 1,000, publish-to-delivery latency at $FANLAT_RATE_1000 publishes/s, p50 / p99 / p99.9 µs|fanlat 1000 $FANLAT_RATE_1000"
    "fanlat10000|fan-out 1 → 10,000, publish-to-delivery latency at $FANLAT_RATE_10000 publishes/s, p50 / p99 / p99.9 µs|fanlat 10000 $FANLAT_RATE_10000"
    "echo100x32|echo 100×32 B, msg/s (the plaintext of the wss:// echo row)|echo 100 32"
    "wssecho100x32|echo 100×32 B over wss:// (TLS 1.3), msg/s|wssecho 100 32"
    "wssfan100|fan-out 1 → 100 over wss:// (TLS 1.3), deliveries/s|wssfanout 100"
)

start() { # name port cmd...
    local name="$1" port="$2"; shift 2
    taskset -c "$SERVER_CPU" "$@" >"$WORK/$name.log" 2>&1 &
    SERVER_PID=$!
    if [[ "$name" == peer-* ]]; then wait_for_port "$port" && wait_for_ws "$port" /ws "$BENCH_BIN"; else wait_for_ws "$port" /ws "$BENCH_BIN"; fi
}
field() { awk -v k="$2" '{ for (i = 1; i <= NF; i++) if ($i == k) { v = $(i + 1); gsub(/[,;]/, "", v); print v; exit } }' "$1"; }
# run_bench OUT args...: switchboard-bench with the server's CPU split on its own line.
run_bench() { local out="$1"; shift; timeout 600 "$BENCH_BIN" "$@" --cpu "$BENCH_CPU" --quiet --server-pid "$SERVER_PID" >"$out" 2>&1; }

declare -A VAL USR SYS STEAL RUN_VALS RUN_USERS RUN_SYSTEMS FAILED_KEY
# Row by row, and within a row run by run across the servers (run 1 of each, then run 2, ...):
# the host's steal drifts over minutes, and in a server-major order (every row of one server,
# then the next server) the servers of a row were measured in different weather: at 08:45 on
# 12-02 the steal on the server's CPU went from 3 to 270 ticks per run within one server's
# block. Interleaved, each row's servers share the minutes they are measured in.
for row in "${ROWS[@]}"; do
    IFS='|' read -r id label spec <<<"$row"
    read -r kind a b <<<"$spec"
    [[ -n "$ONLY_ROWS" && " $ONLY_ROWS " != *" $id "* ]] && continue
    for run in $(seq 1 "$RUNS"); do
        for entry in "${SERVERS[@]}"; do
            IFS='|' read -r name offset tmpl <<<"$entry"
            [[ -n "$ONLY" && " $ONLY " != *" $name "* ]] && continue
            key="$name|$id"
            [[ "${FAILED_KEY[$key]:-0}" == 1 ]] && continue
            # The Hummingbird peer's /broadcast is one channel (no /broadcast/NAME).
            if [[ "$kind" == channels && "$name" == peer-hummingbird ]]; then VAL[$key]="n/a (one channel only)"; continue; fi
            if [[ "$kind" == wss* && "$name" == peer-* ]]; then VAL[$key]="n/a (no TLS listener)"; continue; fi
            # uWebSockets and Hummingbird answer a `Connection: close` request without that
            # header and then close, so wrk counts every request's close as a read error
            # (checked 2026-12-04: both peers' responses carry no Connection header).
            if [[ "$kind" == httpclose && "$name" == peer-* ]]; then VAL[$key]="n/a (closes without a Connection: close header: wrk counts a read error per request)"; continue; fi
            port=$((BASE_PORT + offset)); cmd="${tmpl//@PORT@/$port}"; cmd="${cmd//@TLSPORT@/$((port + 50))}"
            # shellcheck disable=SC2086
            if ! start "$name" "$port" $cmd; then note_failure "$key: the server did not start ($(tail -1 "$WORK/$name.log"))"; FAILED_KEY[$key]=1; stop_server; continue; fi
            out="$WORK/$name-$id-$run.txt"; status=0; v=""; u=""; s=""
            read -r steal0 csteal0 <<<"$(steal_ticks)"  # the server's CPU (SERVER_CPU), the client's
            # The wss* kinds are echo and fanout over the TLS listener.
            base="ws://127.0.0.1:$port"; [[ "$kind" == wss* ]] && base="wss://127.0.0.1:$((port + 50))"
            case "$kind" in
            echo|wssecho)
                run_bench "$out" echo -c "$a" -s "$b" -d "$DURATION" --warmup "$WARMUP" "$base/ws" || status=$?
                v="$(awk '/round trips:/ { for (i = 1; i <= NF; i++) if ($i == "=") print $(i + 1) }' "$out")" ;;
            fanout|wssfanout)
                run_bench "$out" fanout --raw --subscribers "$a" --publishers 1 -s 20 -d "$DURATION" --warmup "$WARMUP" "$base/broadcast" || status=$?
                v="$(awk '/^  deliveries:/ { print $2 }' "$out")" ;;
            channels)
                run_bench "$out" fanout --raw --channels "$a" --subscribers "$b" -s 20 -d "$DURATION" --warmup "$WARMUP" "ws://127.0.0.1:$port/broadcast" || status=$?
                v="$(awk '/^  deliveries:/ { print $2 }' "$out")" ;;
            http|httpclose)
                headers=(); [[ "$kind" == httpclose ]] && headers=(-H "Connection: close")
                t0="$(cpu_ticks "$SERVER_PID")"
                timeout 600 taskset -c "$BENCH_CPU" wrk -t1 -c "$a" -d "$DURATION" "${headers[@]}" "http://127.0.0.1:$port/health" >"$out" 2>&1 || status=$?
                t1="$(cpu_ticks "$SERVER_PID")"
                n="$(awk '/requests in/ { print $1 }' "$out")"
                if grep -q "Non-2xx\|Socket errors" "$out"; then status=1; echo "  failed: wrk reported errors: $(grep -h 'Non-2xx\|Socket errors' "$out")" >>"$out"; fi
                v="$(awk '/Requests\/sec/ { printf "%.0f", $2 }' "$out")"
                read -r u s <<<"$(cpu_per_message "$t0" "$t1" "${n:-0}")" ;;
            idle)
                run_bench "$out" connect -c "$a" -d 5s --source-addresses 127.0.0.1-4 "ws://127.0.0.1:$port/ws" || status=$?
                v="$(awk '/server RSS:/ { for (i = 1; i <= NF; i++) if ($i == "per") print $(i - 2) }' "$out") B ($(awk '/server RSS:/ { printf "%.1f MB", $3 / 1024; for (i = 1; i <= NF; i++) if ($i == "anonymous") printf ", %.1f MB anonymous", $(i + 1) / 1024 }' "$out"))" ;;
            latency)
                # shellcheck disable=SC2086
                run_bench "$out" latency $LATENCY_FLAGS -c "$a" -r "$b" -s 20 -d "$DURATION" --warmup "$WARMUP" "ws://127.0.0.1:$port/ws" || status=$?
                v="$(field "$out" p50) / $(field "$out" p99)" ;;
            fanlat)
                # shellcheck disable=SC2086
                run_bench "$out" fanout $LATENCY_FLAGS --raw --subscribers "$a" --publishers 1 -s 20 -r "$b" -d "$DURATION" --warmup "$WARMUP" \
                    --source-addresses 127.0.0.1-4 "ws://127.0.0.1:$port/broadcast" || status=$?
                v="$(field "$out" p50) / $(field "$out" p99) / $(field "$out" p99.9)$(client_late "$out")" ;;
            half)
                peak="${VAL["$name|echo100x20"]:-0}"; rate="$(awk -v p="$peak" 'BEGIN { printf "%.0f", p / 2 }')"
                if [[ "$rate" == 0 ]]; then echo "  failed: no 100×20 B peak to halve" >"$out"; status=1
                else
                    # shellcheck disable=SC2086
                    run_bench "$out" latency $LATENCY_FLAGS -c "$a" -r "$rate" -s 20 -d "$DURATION" --warmup "$WARMUP" "ws://127.0.0.1:$port/ws" || status=$?
                    v="$(field "$out" p99)"
                fi ;;
            esac
            read -r steal csteal <<<"$(steal_ticks)"; steal=$((steal - steal0)); csteal=$((csteal - csteal0))
            # The client's steal, and with --busy-poll its own long turns: a tail it shares.
            stalls="$(awk '/client loop \(busy-poll\):/ { print $4 }' "$out" 2>/dev/null || true)"
            STEAL[$key]="${STEAL[$key]:-}${STEAL[$key]:+ }$steal/$csteal${stalls:+ ($stalls stalls)}"
            stop_server
            if [[ "$status" != 0 ]]; then note_failure "$key run $run: $(run_failure_reason "$out" "$status")"; FAILED_KEY[$key]=1; continue; fi
            if [[ "$kind" != http && "$kind" != httpclose ]]; then
                u="$(awk '/server CPU split:/ { for (i = 1; i <= NF; i++) if ($i == "user" && $(i + 1) ~ /^[0-9.]+$/ && $(i + 2) == "system") print $(i + 1) }' "$out")"
                s="$(awk '/server CPU split:/ { for (i = 1; i <= NF; i++) if ($i == "system" && $(i - 2) == "user") print $(i + 1) }' "$out")"
            fi
            RUN_VALS[$key]+="$v"$'\n'; RUN_USERS[$key]+="${u:-n/a}"$'\n'; RUN_SYSTEMS[$key]+="${s:-n/a}"$'\n'
            log "$key run $run: $v (server µs/msg user ${u:-n/a} system ${s:-n/a}; steal on CPU $SERVER_CPU / $BENCH_CPU $steal / $csteal ticks${stalls:+; client turns of 500 µs or more $stalls})"
        done
    done
    for entry in "${SERVERS[@]}"; do
        name="${entry%%|*}"; key="$name|$id"
        [[ -n "$ONLY" && " $ONLY " != *" $name "* ]] && continue
        if [[ "${FAILED_KEY[$key]:-0}" == 1 ]]; then VAL[$key]="FAILED"; continue; fi
        [[ -n "${RUN_VALS[$key]:-}" ]] || continue  # n/a for this server (set above)
        mapfile -t vals < <(printf '%s' "${RUN_VALS[$key]}")
        if [[ "$kind" == echo || "$kind" == fanout || "$kind" == channels || "$kind" == http || "$kind" == httpclose || "$kind" == wss* || "$kind" == half ]]; then
            VAL[$key]="$(printf '%s\n' "${vals[@]}" | median)"
        elif [[ "$kind" == latency || "$kind" == fanlat ]]; then
            # "p50 / p99": the run with the median p99 (with an even count, the upper one).
            VAL[$key]="$(printf '%s\n' "${vals[@]}" | sort -t/ -k2 -g | awk '{ v[NR] = $0 } END { print v[int(NR / 2) + 1] }')"
        else
            VAL[$key]="${vals[$(( ${#vals[@]} / 2 ))]}"  # text figures: the middle run
        fi
        USR[$key]="$(printf '%s' "${RUN_USERS[$key]}" | { grep -v n/a || true; } | median)"; SYS[$key]="$(printf '%s' "${RUN_SYSTEMS[$key]}" | { grep -v n/a || true; } | median)"
    done
done

echo "### Issue 16's table (switchboard-bench, wrk for /health)"
echo
echo "- Date: $(date -u +%Y-%m-%dT%H:%M:%SZ); \`nproc\` = $(nproc); kernel \`$(uname -r)\`; Switchboard \`$(cd "$MAIN_DIR" && git rev-parse --short HEAD)\` ($CONFIG); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- Servers pinned to CPU $SERVER_CPU, load generator to CPU $BENCH_CPU; ${WARMUP} warm-up + ${DURATION}; $RUNS run(s) per row, interleaved across the servers (run 1 of each, then run 2, ...), medians. Cells: figure, then server CPU per message in µs as user + system (from /proc/PID/stat over the measured window; /health over the whole wrk run)."
echo
echo '```'
for entry in "${SERVERS[@]}"; do IFS='|' read -r name offset tmpl <<<"$entry"; t="${tmpl//@PORT@/$((BASE_PORT + offset))}"; echo "taskset -c $SERVER_CPU ${t//@TLSPORT@/$((BASE_PORT + offset + 50))}"; done
echo "$BENCH_BIN echo -c C -s S -d $DURATION --warmup $WARMUP --cpu $BENCH_CPU --server-pid PID ws://127.0.0.1:PORT/ws"
echo "$BENCH_BIN fanout --raw --subscribers N --publishers 1 -s 20 -d $DURATION --warmup $WARMUP --cpu $BENCH_CPU --server-pid PID ws://127.0.0.1:PORT/broadcast"
echo "(wss:// rows: the same commands with wss://127.0.0.1:PORT+50, the servers' TLS listener)"
echo "$BENCH_BIN fanout --raw --channels 1000 --subscribers 10000 -s 20 -d $DURATION --warmup $WARMUP --cpu $BENCH_CPU --server-pid PID ws://127.0.0.1:PORT/broadcast"
echo "taskset -c $BENCH_CPU wrk -t1 -c 100 -d $DURATION [-H 'Connection: close'] http://127.0.0.1:PORT/health"
echo "$BENCH_BIN connect -c $IDLE_CONNS -d 5s --source-addresses 127.0.0.1-4 --cpu $BENCH_CPU --server-pid PID ws://127.0.0.1:PORT/ws"
echo "$BENCH_BIN latency $LATENCY_FLAGS -c 100 -r RATE -s 20 -d $DURATION --warmup $WARMUP --cpu $BENCH_CPU --server-pid PID ws://127.0.0.1:PORT/ws"
echo "$BENCH_BIN fanout $LATENCY_FLAGS --raw --subscribers N --publishers 1 -s 20 -r RATE -d $DURATION --warmup $WARMUP --source-addresses 127.0.0.1-4 --cpu $BENCH_CPU --server-pid PID ws://127.0.0.1:PORT/broadcast"
echo '```'
echo
names=(); for entry in "${SERVERS[@]}"; do n="${entry%%|*}"; [[ -n "$ONLY" && " $ONLY " != *" $n "* ]] || names+=("$n"); done
printf '| scenario |'; for n in "${names[@]}"; do printf ' %s |' "$n"; done; echo
printf '|---|'; for _ in "${names[@]}"; do printf -- '---:|'; done; echo
for row in "${ROWS[@]}"; do
    IFS='|' read -r id label _ <<<"$row"
    [[ -n "$ONLY_ROWS" && " $ONLY_ROWS " != *" $id "* ]] && continue
    printf '| %s |' "$label"
    for n in "${names[@]}"; do
        k="$n|$id"; cell="${VAL[$k]:-n/a}"
        if [[ "$cell" != FAILED && -n "${USR[$k]:-}" && "${USR[$k]}" != nan ]]; then cell="$cell ($(awk -v u="${USR[$k]}" -v s="${SYS[$k]}" 'BEGIN { printf "%.2f + %.2f µs", u, s }'))"; fi
        printf ' %s |' "$cell"
    done
    echo
done
# The latency rows' steal time, run by run: their tails follow it (see steal_ticks in lib.sh).
for row in "${ROWS[@]}"; do
    IFS='|' read -r id label spec <<<"$row"; read -r kind _ <<<"$spec"
    [[ "$kind" == latency || "$kind" == half ]] || continue
    [[ -n "$ONLY_ROWS" && " $ONLY_ROWS " != *" $id "* ]] && continue
    line="- Steal time on CPU $SERVER_CPU (server) / $BENCH_CPU (client) per run, in ticks of 1/$(getconf CLK_TCK) s (with --busy-poll: the client's loop turns of 500 µs or more), $label:"
    for n in "${names[@]}"; do line="$line $n ${STEAL["$n|$id"]:-n/a};"; done
    echo "${line%;}"
done
# TLS against plaintext, server CPU per message (user + system), per Switchboard server.
ratio() { # server tls-row plain-row
    local t="$1|$2" p="$1|$3"
    if [[ -n "${USR[$t]:-}" && -n "${USR[$p]:-}" && "${VAL[$t]}" != FAILED && "${VAL[$p]}" != FAILED ]]; then
        awk -v tu="${USR[$t]}" -v ts="${SYS[$t]}" -v pu="${USR[$p]}" -v ps="${SYS[$p]}" 'BEGIN { if (pu + ps > 0) printf "%.2f×", (tu + ts) / (pu + ps); else printf "n/a" }'
    else printf 'n/a'; fi
}
echo
if [[ -z "$ONLY_ROWS" || " $ONLY_ROWS " == *" wssecho100x32 "* || " $ONLY_ROWS " == *" wssfan100 "* ]]; then
    for n in "${names[@]}"; do
        [[ "$n" == peer-* ]] && continue
        echo "- $n, TLS against plaintext, server CPU per message: echo $(ratio "$n" wssecho100x32 echo100x32), fan-out 1 → 100 $(ratio "$n" wssfan100 fan100) (target: within 1.3×)"
    done
fi
# One server against another run by run (keys "name|row"): with RUNS > 1, " (paired by run:
# median R× rate, C× CPU; rate per run r1 r2 ...)" from the per-run figures, or nothing with one run or a
# missing figure. Run i of every server ran back to back (the loop above interleaves them).
paired() {
    local k="$1" p="$2"
    (( RUNS > 1 )) || return 0
    paste <(printf '%s' "${RUN_VALS[$k]:-}") <(printf '%s' "${RUN_USERS[$k]:-}") <(printf '%s' "${RUN_SYSTEMS[$k]:-}") \
          <(printf '%s' "${RUN_VALS[$p]:-}") <(printf '%s' "${RUN_USERS[$p]:-}") <(printf '%s' "${RUN_SYSTEMS[$p]:-}") | awk -F'\t' '
        function median(a, n,   i, j, t) {
            for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        $1 ~ /^[0-9.]+$/ && $4 ~ /^[0-9.]+$/ && $4 > 0 {
            n++; r[n] = $1 / $4; list = list sprintf("%s%.2f", n > 1 ? " " : "", r[n])
            if ($2 ~ /^[0-9.]+$/ && $5 ~ /^[0-9.]+$/ && $5 + $6 > 0) { m++; c[m] = ($2 + $3) / ($5 + $6) }
        }
        END {
            if (n < 2) exit
            printf " (paired by run: median %.2f× rate", median(r, n)
            if (m >= 2) printf ", %.2f× CPU", median(c, m)
            printf "; rate per run %s)", list
        }'
}
# Against the C++ peer, row by row: rate and server CPU per message (user + system) as ratios.
if [[ -n "${CPP_PEER_BIN:-}" && ( -z "$ONLY" || " $ONLY " == *" peer-cpp "* ) ]]; then
    echo "- Against the C++ peer (peer-cpp) in the same run, Switchboard's rate / the peer's, and its server CPU per message / the peer's (lower is better):"
    for row in "${ROWS[@]}"; do
        IFS='|' read -r id label spec <<<"$row"; read -r kind _ <<<"$spec"
        [[ -n "$ONLY_ROWS" && " $ONLY_ROWS " != *" $id "* ]] && continue
        [[ "$kind" == echo || "$kind" == fanout || "$kind" == channels || "$kind" == http || "$kind" == httpclose ]] || continue
        p="peer-cpp|$id"; line="  - $label:"
        for n in "${names[@]}"; do
            [[ "$n" == peer-* ]] && continue
            k="$n|$id"
            if [[ "${VAL[$k]:-FAILED}" == FAILED || "${VAL[$p]:-FAILED}" == FAILED || -z "${USR[$k]:-}" || -z "${USR[$p]:-}" ]]; then line="$line $n n/a;"; continue; fi
            line="$line $n $(awk -v a="${VAL[$k]}" -v b="${VAL[$p]}" -v au="${USR[$k]}" -v as="${SYS[$k]}" -v bu="${USR[$p]}" -v bs="${SYS[$p]}" \
                'BEGIN { printf "%.2f× rate, %.2f× CPU", (b > 0 ? a / b : 0), (bu + bs > 0 ? (au + as) / (bu + bs) : 0) }')$(paired "$k" "$p");"
        done
        echo "${line%;}"
    done
    echo "  - Paired: run i of a server against run i of the peer (run i of every server runs back to back, in the table's order), so both saw nearly the same host state; the median of those per-run ratios, and each run's rate ratio. This host swings between states (~134k and ~174k echoes/s, RESULTS 2026-12-05 00:19), and a median of the figures across states compares how each server's runs split between them, not the servers."
fi
report_failures
