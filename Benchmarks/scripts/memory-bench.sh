#!/usr/bin/env bash
# Memory per idle WebSocket and the connection rate (issue 16 item 2): switchboard-echo, 1 shard,
# io_uring and epoll; switchboard-bench connect opens CONNS WebSockets (as fast as it can) from
# several loopback source addresses (one address has ~28k ephemeral ports toward one target),
# holds them for HOLD, and reads the server's VmRSS before the first connect and at the end of
# the hold. RSS per connection = (after - before) / established; the base RSS (before) is
# reported too. A run where any connection failed is FAILED, never a figure.
#
#   CONNS="10000 100000" HOLD=5s HOLD_MANY=20s PATH_WS=/ws SERVER_CPU=0 BENCH_CPU=1 CONFIG=release
#   SKIP_BUILD=0 BASE_PORT=18800 SOURCES=127.0.0.1-8 SET="" (extra --set key=value for the server,
#   space-separated) IDLE_READ_S=3 (the many-connection rows: seconds between the last client
#   holding and the RSS reading). ECHO_BIN, BENCH_BIN override the binaries. Markdown on stdout.
#
# Descriptors: the script raises `ulimit -n` as far as it may (root with CAP_SYS_RESOURCE can
# raise the hard limit too). A count that does not fit under it in one process:
# - io_uring: the server holds its sockets as direct descriptors (uring_direct_descriptors, on
#   by default), which cost no process descriptor, but the kernel caps each shard's table at
#   the limit: the server gets ceil(N / (limit - 2048)) shards (max_connections_per_shard =
#   limit - 2048, every slot in the table), and the load comes from ceil(N / (limit - 1024))
#   switchboard-bench processes, each from eight source addresses of its own. The script reads the
#   server's RSS once every client is holding, and the rate is N over the slowest client's
#   connect time (they start together).
# - epoll needs a process descriptor per connection: the cell reads "not measured (ulimit -n N)".
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CONNS="${CONNS:-10000 100000}"; HOLD="${HOLD:-5s}"; HOLD_MANY="${HOLD_MANY:-20s}"; PATH_WS="${PATH_WS:-/ws}"
SERVER_CPU="${SERVER_CPU:-0}"; BENCH_CPU="${BENCH_CPU:-1}"; CONFIG="${CONFIG:-release}"; SKIP_BUILD="${SKIP_BUILD:-0}"
BASE_PORT="${BASE_PORT:-18800}"; SOURCES="${SOURCES:-127.0.0.1-8}"; SET="${SET:-}"; IDLE_READ_S="${IDLE_READ_S:-3}"
bench_start "$CONFIG" "switchboard-echo switchboard-bench"
want=$(( $(echo "$CONNS" | tr ' ' '\n' | sort -n | tail -1) + 1024 ))
ulimit -Hn "$want" 2>/dev/null || true
ulimit -n "$want" 2>/dev/null || log "cannot raise the file limit to $want (ulimit -n $(ulimit -n)): larger counts run on io_uring only, split over shards and client processes (see the header)"

declare -A PER BASE RATE SECS
set_args=()
for kv in $SET; do set_args+=(--set "$kv"); done

# many_connections KEY PORT N: io_uring with more connections than one process has descriptors
# (see the header): shards and client processes sized by the limit. Fills PER, BASE, RATE, SECS.
MANY_LAYOUT=""
many_connections() {
    local key="$1" port="$2" n="$3" limit per_shard shards per_client clients k count ports
    limit=$(ulimit -n); per_shard=$((limit - 2048)); per_client=$((limit - 1024))
    shards=$(( (n + per_shard - 1) / per_shard )); clients=$(( (n + per_client - 1) / per_client ))
    ports=$(awk '{ print $2 - $1 + 1 }' /proc/sys/net/ipv4/ip_local_port_range)
    if (( shards > 255 || clients > 31 || (n + clients - 1) / clients > ports * 8 )); then
        PER[$key]="not measured (ulimit -n $limit)"; log "$key: skipped, $shards shards and $clients clients needed"; return
    fi
    start_pinned "$key" "$ECHO_BIN" --host 127.0.0.1 --port "$port" --io-backend uring --shards "$shards" \
        --set max_connections_per_shard=$per_shard --set idle_timeout_ms=600000 --set uring_direct_descriptors=true "${set_args[@]}"
    if ! poll_until 10 --pid "$SERVER_PID" ws_echo_ok "ws://127.0.0.1:$port$PATH_WS"; then note_failure "$key: the server did not start ($(tail -1 "$WORK/$key.log"))"; PER[$key]=FAILED; stop_server; return; fi
    sleep 0.5
    local before anon_before after pids=() outs=() status failed=""
    before=$(rss_kib "$SERVER_PID" VmRSS); anon_before=$(rss_kib "$SERVER_PID" RssAnon)
    for ((k = 0; k < clients; k++)); do
        count=$(( n / clients + (k < n % clients ? 1 : 0) ))
        outs+=("$WORK/uring-$n-client$k.txt")
        # Progress lines on: a "holding" line says the client has all its connections. Eight
        # source addresses each: connect's search for a free ephemeral port costs more the more
        # ports of one (source, target) pair are taken (__inet_check_established was 29% of all
        # CPU with 15,000 connections from one address, and 100,000 took 80 s).
        timeout 600 "$BENCH_BIN" connect -c "$count" -d "$HOLD_MANY" --cpu "$BENCH_CPU" \
            --source-addresses "127.0.0.$((k * 8 + 1))-$((k * 8 + 8))" "ws://127.0.0.1:$port$PATH_WS" >"${outs[$k]}" 2>&1 &
        pids+=($!)
    done
    all_holding() { local o; for o in "${outs[@]}"; do grep -q '] holding' "$o" || return 1; done; }
    # Idle, as in the one-process rows (read at the end of their hold): a shard gives its
    # receive pool's pages back once no receive used it for 1 s (UringShard.idleTrimMilliseconds,
    # checked every tick), so the reading is taken IDLE_READ_S after the last client held (well
    # inside HOLD_MANY); the reading at that moment, the handshakes' pools still resident, is
    # logged and printed beside it.
    local at_hold=""
    if poll_until 300 --pid "$SERVER_PID" all_holding; then
        at_hold=$(rss_kib "$SERVER_PID" VmRSS)
        sleep "$IDLE_READ_S"
        after=$(rss_kib "$SERVER_PID" VmRSS)
    else failed="not every client got to holding its connections"; fi
    for ((k = 0; k < clients; k++)); do
        status=0; wait "${pids[$k]}" || status=$?
        [[ "$status" == 0 ]] || failed="${failed:+$failed; }client $k: $(run_failure_reason "${outs[$k]}" "$status")"
    done
    stop_server
    MANY_LAYOUT="$n: $shards shards, max_connections_per_shard=$per_shard; $clients switchboard-bench processes, eight source addresses each (127.0.0.1-$((clients * 8))), hold $HOLD_MANY"
    [[ -n "$at_hold" ]] && MANY_LAYOUT="$MANY_LAYOUT; at the moment the last client held, before the pools' trim: $(( (at_hold - before) * 1024 / n )) B per connection"
    if [[ -n "$failed" ]]; then note_failure "$key: $failed"; PER[$key]=FAILED; return; fi
    local established secs
    established=$(awk '/connections:/ && /established/ { s += $2 } END { print s + 0 }' "${outs[@]}")
    if [[ "$established" != "$n" ]]; then note_failure "$key: $established of $n established"; PER[$key]=FAILED; return; fi
    secs=$(awk '/opened in/ { for (i = 1; i <= NF; i++) if ($i == "in") print $(i + 1) }' "${outs[@]}" | sort -g | tail -1)
    PER[$key]=$(( (after - before) * 1024 / n ))
    BASE[$key]="$before ($anon_before anonymous)"
    SECS[$key]="$secs"
    RATE[$key]=$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
    log "$key: server RSS $before KiB before, $after KiB holding, ${PER[$key]} B per connection; opened in $secs s ($MANY_LAYOUT)"
}
for backend in uring epoll; do
    for n in $CONNS; do
        port=$BASE_PORT; [[ "$backend" == epoll ]] && port=$((BASE_PORT + 1))
        key="$backend|$n"
        if (( $(ulimit -n) < n + 1024 )); then
            if [[ "$backend" == uring ]]; then many_connections "$key" "$port" "$n"; continue; fi
            # Not a failed run: this machine cannot hold that many descriptors in one process.
            PER[$key]="not measured (ulimit -n $(ulimit -n))"; log "$key: skipped, ulimit -n $(ulimit -n) < $((n + 1024))"; continue
        fi
        start_pinned "$key" "$ECHO_BIN" --host 127.0.0.1 --port "$port" --io-backend "$backend" --shards 1 \
            --set max_connections_per_shard=$((want * 2)) --set idle_timeout_ms=600000 "${set_args[@]}"
        if ! poll_until 10 --pid "$SERVER_PID" ws_echo_ok "ws://127.0.0.1:$port$PATH_WS"; then note_failure "$key: the server did not start ($(tail -1 "$WORK/$key.log"))"; PER[$key]=FAILED; stop_server; continue; fi
        sleep 0.5
        out="$WORK/$backend-$n.txt"; status=0
        timeout 600 "$BENCH_BIN" connect -c "$n" -d "$HOLD" --cpu "$BENCH_CPU" --quiet --server-pid "$SERVER_PID" \
            --source-addresses "$SOURCES" "ws://127.0.0.1:$port$PATH_WS" >"$out" 2>&1 || status=$?
        stop_server
        if [[ "$status" != 0 ]]; then note_failure "$key: $(run_failure_reason "$out" "$status")"; PER[$key]=FAILED; continue; fi
        PER[$key]="$(awk '/server RSS:/ { for (i = 1; i <= NF; i++) if ($i == "per") print $(i - 2) }' "$out")"
        BASE[$key]="$(awk '/server RSS:/ { b = $3; for (i = 1; i <= NF; i++) if ($i == "anonymous") b = b " (" $(i + 1) " anonymous)"; print b }' "$out")"
        RATE[$key]="$(awk -F'[()]' '/opened in/ { split($2, a, " "); print a[1] }' "$out")"
        SECS[$key]="$(awk '/opened in/ { for (i = 1; i <= NF; i++) if ($i == "in") print $(i + 1) }' "$out")"
        log "$key: $(grep 'server RSS' "$out" | sed 's/^ *//'); $(grep 'opened in' "$out" | sed 's/^ *//')"
    done
done

echo "### Memory per idle WebSocket and connection rate (switchboard-bench connect)"
echo
echo "- Date: $(date -u +%Y-%m-%dT%H:%M:%SZ); \`nproc\` = $(nproc); kernel \`$(uname -r)\`; Switchboard \`$(cd "$MAIN_DIR" && git rev-parse --short HEAD)\` ($CONFIG); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- switchboard-echo, 1 shard, pinned to CPU $SERVER_CPU; switchboard-bench on CPU $BENCH_CPU from sources $SOURCES; path $PATH_WS; hold $HOLD. RSS = VmRSS of the server before the first connect and at the end of the hold; the base RSS's anonymous part is RssAnon (the rest is pages of the binary and shared libraries)."
echo
echo '```'
echo "taskset -c $SERVER_CPU $ECHO_BIN --host 127.0.0.1 --port PORT --io-backend uring|epoll --shards 1 --set max_connections_per_shard=$((want * 2)) --set idle_timeout_ms=600000${SET:+ $SET}"
echo "$BENCH_BIN connect -c N -d $HOLD --cpu $BENCH_CPU --server-pid PID --source-addresses $SOURCES ws://127.0.0.1:PORT$PATH_WS"
echo '```'
echo
echo "| backend | connections | RSS per connection | base RSS, its anonymous part (KiB) | opened in (s) | connections/s |"
echo "|---|---:|---:|---:|---:|---:|"
for backend in uring epoll; do
    for n in $CONNS; do
        k="$backend|$n"
        echo "| $backend | $n | ${PER[$k]:-n/a}$([[ "${PER[$k]:-}" =~ ^[0-9] ]] && echo " B") | ${BASE[$k]:-n/a} | ${SECS[$k]:-n/a} | ${RATE[$k]:-n/a} |"
    done
done
if [[ -n "$MANY_LAYOUT" ]]; then
    echo
    echo "More connections than one process has descriptors (\`ulimit -n\` $(ulimit -n)): io_uring only, the server's sockets as direct descriptors (\`uring_direct_descriptors\`); $MANY_LAYOUT. RSS read ${IDLE_READ_S} s after every client held all its connections (idle: the receive pools trim after 1 s without a receive); the rate is N over the slowest client's connect time."
fi
report_failures
