#!/usr/bin/env bash
# One Hummingbird router, two servers: "Hummingbird router served by Switchboard" (the
# SwitchboardHummingbird one-port adapter: shards parse, the router runs in a task, the answer
# comes back on the deferred-response path) vs "Hummingbird on its own server" (NIO), same
# route, same run. wrk on GET /hello; prints a Markdown fragment on stdout, progress on stderr.
#
# Environment overrides (defaults are the documented protocol):
#   RUNS=3 DURATION=10s CONNS="100 1000" WARMUP=2s SERVER_CPU=0 WRK_CPU=1 THREADS=1
#   BASE_PORT=18500 SKIP_BUILD=0 CONFIG=release
# Smoke run (seconds, not a figure to quote): RUNS=1 DURATION=2s WARMUP=0 CONNS=10 CONFIG=debug
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${RUNS:-3}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-100 1000}"
WARMUP="${WARMUP:-2s}"
SERVER_CPU="${SERVER_CPU:-0}"
WRK_CPU="${WRK_CPU:-1}"
THREADS="${THREADS:-1}"
BASE_PORT="${BASE_PORT:-18500}"
SKIP_BUILD="${SKIP_BUILD:-0}"
CONFIG="${CONFIG:-release}"

bench_start "$CONFIG" hummingbird-router-bench "wrk taskset curl awk"
PACKAGE_DIR="$MAIN_DIR/Integrations/SwitchboardHummingbird"
BIN="$ROUTER_BIN"
[[ -x "$BIN" ]] || die "missing $BIN"
CLK_TCK="$(getconf CLK_TCK)"

SERVERS=(
    "Hummingbird router served by Switchboard|0|$BIN --server switchboard --port @PORT@ --threads $THREADS"
    "Hummingbird on its own server|1|$BIN --server hummingbird --port @PORT@ --threads $THREADS"
)
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
declare -A RPS USER_US SYS_US CPU_US
RAW_ROWS=()

for entry in "${SERVERS[@]}"; do
    IFS='|' read -r name offset template <<<"$entry"
    port=$((BASE_PORT + offset))
    cmd="${template//@PORT@/$port}"
    for conns in $CONNS; do
        key="$name|$conns"
        log "$name c=$conns: taskset -c $SERVER_CPU $cmd"
        # shellcheck disable=SC2086
        if ! http_start_server "$name" "$port" /hello $cmd; then
            RPS["$key"]="failed"; USER_US["$key"]="failed"; SYS_US["$key"]="failed"; CPU_US["$key"]="failed"
            note_failure "$name c=$conns: the server did not start"
            continue
        fi
        if [[ -n "$WARMUP" && "$WARMUP" != 0 ]]; then
            # shellcheck disable=SC2046
            $(wrk_cmd "$conns" "$port" /hello "$WARMUP") >/dev/null 2>&1 || true
        fi
        rps_list=(); user_list=(); sys_list=(); cpu_list=(); cell_failed=0
        for run in $(seq 1 "$RUNS"); do
            out="$WORK/run-$offset-c$conns-$run.txt"
            wrk_measure "$conns" "$port" /hello "$out"
            if [[ "$RUN_STATUS" != 0 || -n "$RUN_NON2XX" ]]; then
                cell_failed=1
                note_failure "$name c=$conns run $run: wrk exit status $RUN_STATUS, non-2xx/3xx ${RUN_NON2XX:-0} (see $out)"
            fi
            rps_list+=("$RUN_RPS"); user_list+=("$RUN_USER_US"); sys_list+=("$RUN_SYS_US"); cpu_list+=("$RUN_CPU_US")
            RAW_ROWS+=("| $name | $conns | $run | $RUN_RPS | $RUN_REQS | $RUN_LAT | $RUN_USER_US | $RUN_SYS_US | $RUN_STEAL | $RUN_SOCKERR | ${RUN_NON2XX:-0} |")
            log "  run $run: $RUN_RPS req/s, CPU/req ${RUN_USER_US} µs user + ${RUN_SYS_US} µs system, steal $RUN_STEAL s"
        done
        RPS["$key"]="$(printf '%s\n' "${rps_list[@]}" | median)"
        USER_US["$key"]="$(printf '%s\n' "${user_list[@]}" | median)"
        SYS_US["$key"]="$(printf '%s\n' "${sys_list[@]}" | median)"
        CPU_US["$key"]="$(printf '%s\n' "${cpu_list[@]}" | median)"
        if [[ "$cell_failed" == 1 ]]; then RPS["$key"]="failed"; USER_US["$key"]="failed"; SYS_US["$key"]="failed"; CPU_US["$key"]="failed"; fi
        stop_server
    done
done

fmt_int() { awk -v v="$1" 'BEGIN { if (v == "failed" || v == "nan") print v; else printf "%.0f", v }'; }
echo "### Hummingbird router: served by Switchboard vs on its own server (wrk, \`GET /hello\`)"
echo
echo "- Date: $(date -u +%Y-%m-%dT%H:%M:%SZ), build: **$CONFIG**, threads/shards: $THREADS"
echo "- Host: \`nproc\` = $(nproc), kernel \`$(uname -r)\`; load average before the first run: $LOAD_START"
echo "- Switchboard: \`$(cd "$BENCH_DIR/.." && git rev-parse --short HEAD 2>/dev/null || echo '?')\`, Hummingbird $(awk '/"identity" : "hummingbird"/ { f = 1 } f && /"version"/ { gsub(/[",]/, ""); print $3; exit }' "$PACKAGE_DIR/Package.resolved" 2>/dev/null || echo '?')"
echo "- Protocol: each server pinned to CPU $SERVER_CPU (all its threads: shards, the router's tasks, NIO's event loop), wrk to CPU $WRK_CPU; started, waited for (\`curl /hello\` until 200), warmed up with one ${WARMUP:-0} wrk run (not counted), then $RUNS runs of $DURATION per connection count, then SIGTERM; medians. Server CPU per request: utime and stime deltas of \`/proc/PID/stat\` around each run / requests completed."
echo "- Commands:"
echo
echo '```'
for entry in "${SERVERS[@]}"; do
    IFS='|' read -r name offset template <<<"$entry"
    echo "taskset -c $SERVER_CPU ${template//@PORT@/$((BASE_PORT + offset))}"
done
for conns in $CONNS; do echo "$(wrk_cmd "$conns" PORT /hello)"; done
echo '```'
echo
echo "| server | conns | req/s median ($RUNS runs) | server CPU µs/request: user | system | total | req/s vs Hummingbird's server |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for conns in $CONNS; do
    peer="${RPS["Hummingbird on its own server|$conns"]:-failed}"
    for entry in "${SERVERS[@]}"; do
        IFS='|' read -r name _ _ <<<"$entry"
        key="$name|$conns"
        rps="${RPS["$key"]:-failed}"
        ratio="$(awk -v a="$rps" -v b="$peer" 'BEGIN { if (a == "failed" || b == "failed" || b + 0 == 0) print "n/a"; else printf "%.2fx", a / b }')"
        echo "| $name | $conns | $(fmt_int "$rps") | ${USER_US["$key"]:-failed} | ${SYS_US["$key"]:-failed} | ${CPU_US["$key"]:-failed} | $ratio |"
    done
done
echo
echo "<details><summary>Individual runs</summary>"
echo
echo "| server | conns | run | req/s | requests | latency avg | µs user/req | µs system/req | steal s (server/wrk CPU) | wrk socket errors | non-2xx |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
printf '%s\n' "${RAW_ROWS[@]}"
echo
echo "</details>"
report_failures
rm -rf "$WORK"
