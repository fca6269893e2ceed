#!/usr/bin/env bash
# Memory per idle WebSocket and the connection rate (issue 16 item 2): switchboard-echo, 1 shard,
# io_uring and epoll; switchboard-bench connect opens CONNS WebSockets (as fast as it can) from
# several loopback source addresses (one address has ~28k ephemeral ports toward one target),
# holds them for HOLD, and reads the server's VmRSS before the first connect and at the end of
# the hold. RSS per connection = (after - before) / established; the base RSS (before) is
# reported too. A run where any connection failed is FAILED, never a figure.
#
#   CONNS="10000 100000" HOLD=5s PATH_WS=/ws SERVER_CPU=0 BENCH_CPU=1 CONFIG=release SKIP_BUILD=0
#   BASE_PORT=18800 SOURCES=127.0.0.1-8 SET="" (extra --set key=value for the server, space-separated)
#   ECHO_BIN, BENCH_BIN override the binaries. Markdown on stdout.
#
# Needs a file limit above CONNS on both sides: the script raises `ulimit -n` (root with
# CAP_SYS_RESOURCE can raise the hard limit too). A count the limit cannot hold is not run: its
# cell reads "not measured (ulimit -n N)", and the log says so.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CONNS="${CONNS:-10000 100000}"; HOLD="${HOLD:-5s}"; PATH_WS="${PATH_WS:-/ws}"
SERVER_CPU="${SERVER_CPU:-0}"; BENCH_CPU="${BENCH_CPU:-1}"; CONFIG="${CONFIG:-release}"; SKIP_BUILD="${SKIP_BUILD:-0}"
BASE_PORT="${BASE_PORT:-18800}"; SOURCES="${SOURCES:-127.0.0.1-8}"; SET="${SET:-}"
bench_start "$CONFIG" "switchboard-echo switchboard-bench"
want=$(( $(echo "$CONNS" | tr ' ' '\n' | sort -n | tail -1) + 1024 ))
ulimit -Hn "$want" 2>/dev/null || true
ulimit -n "$want" 2>/dev/null || log "cannot raise the file limit to $want (ulimit -n $(ulimit -n)): large runs will fail"

declare -A PER BASE RATE SECS
set_args=()
for kv in $SET; do set_args+=(--set "$kv"); done
for backend in uring epoll; do
    for n in $CONNS; do
        port=$BASE_PORT; [[ "$backend" == epoll ]] && port=$((BASE_PORT + 1))
        key="$backend|$n"
        if (( $(ulimit -n) < n + 1024 )); then
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
report_failures
