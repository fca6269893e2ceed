#!/usr/bin/env bash
# HTTP /health throughput: Switchboard (io_uring and epoll, 1 shard) vs the Hummingbird peer
# (1 event-loop thread). Builds both, runs wrk, prints a Markdown fragment on stdout.
# Progress goes to stderr. See Benchmarks/README.md.
#
# Environment overrides (defaults are the documented protocol):
#   RUNS=3 DURATION=10s CONNS="100 1000" WARMUP=2s SERVER_CPU=0 WRK_CPU=1
#   BASE_PORT=18400 SKIP_BUILD=0
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${RUNS:-3}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-100 1000}"
WARMUP="${WARMUP:-2s}"
SERVER_CPU="${SERVER_CPU:-0}"
WRK_CPU="${WRK_CPU:-1}"
BASE_PORT="${BASE_PORT:-18400}"
SKIP_BUILD="${SKIP_BUILD:-0}"

# Tools, the open-file limit (wrk -c1000 needs > 1000 fds), the release builds, WORK.
bench_start release "switchboard peer-hummingbird" "wrk taskset curl awk"
[[ -x "$SWITCHBOARD_BIN" ]] || die "missing $SWITCHBOARD_BIN"
[[ -x "$PEER_BIN" ]] || die "missing $PEER_BIN"
CLK_TCK="$(getconf CLK_TCK)"

wrk_health() { wrk_cmd "$1" "$2" /health "${3:-}"; }

# ---------------------------------------------------------------- servers
# name | port offset | command (port substituted for @PORT@)
SERVERS=(
    "switchboard-uring|0|$SWITCHBOARD_BIN --port @PORT@ --shards 1 --io-backend uring"
    "switchboard-epoll|1|$SWITCHBOARD_BIN --port @PORT@ --shards 1 --io-backend epoll"
    "peer-hummingbird|2|$PEER_BIN --port @PORT@ --threads 1"
)

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
declare -A RPS CPU_US
RAW_ROWS=()

for entry in "${SERVERS[@]}"; do
    IFS='|' read -r name offset cmd_template <<<"$entry"
    port=$((BASE_PORT + offset))
    cmd="${cmd_template//@PORT@/$port}"
    for conns in $CONNS; do
        log "$name c=$conns: starting: taskset -c $SERVER_CPU $cmd"
        # shellcheck disable=SC2086
        if ! http_start_server "$name" "$port" /health $cmd; then
            RPS["$name|$conns"]="failed"; CPU_US["$name|$conns"]="failed"
            note_failure "$name c=$conns: the server did not start"
            continue
        fi
        if [[ -n "$WARMUP" && "$WARMUP" != 0 ]]; then
            # shellcheck disable=SC2046
            $(wrk_health "$conns" "$port" "$WARMUP") >/dev/null 2>&1 || true
        fi
        rps_list=(); cpu_list=(); cell_failed=0
        for run in $(seq 1 "$RUNS"); do
            out="$WORK/$name-c$conns-run$run.txt"
            wrk_measure "$conns" "$port" /health "$out"
            if [[ "$RUN_STATUS" != 0 || -n "$RUN_NON2XX" ]]; then
                # wrk failed, or some answers were errors: the run gives no figure.
                cell_failed=1
                note_failure "$name c=$conns run $run: wrk exit status $RUN_STATUS, non-2xx/3xx responses ${RUN_NON2XX:-0} (see $out)"
            fi
            rps_list+=("$RUN_RPS"); cpu_list+=("$RUN_CPU_US")
            RAW_ROWS+=("| $name | $conns | $run | $RUN_RPS | $RUN_REQS | $RUN_LAT | $RUN_CPU_S | $RUN_CPU_US | $RUN_STEAL | $RUN_SOCKERR | ${RUN_NON2XX:-0} |")
            log "  run $run: $RUN_RPS req/s, $RUN_REQS requests, server CPU ${RUN_CPU_S}s, ${RUN_CPU_US} µs/req, steal $RUN_STEAL s"
        done
        RPS["$name|$conns"]="$(printf '%s\n' "${rps_list[@]}" | median)"
        CPU_US["$name|$conns"]="$(printf '%s\n' "${cpu_list[@]}" | median)"
        if [[ "$cell_failed" == 1 ]]; then RPS["$name|$conns"]="failed"; CPU_US["$name|$conns"]="failed"; fi
        stop_server
    done
done

# ---------------------------------------------------------------- report
fmt_int() { awk -v v="$1" 'BEGIN { if (v == "failed" || v == "nan") print v; else printf "%.0f", v }'; }

WARMUP_TEXT=""
if [[ -n "$WARMUP" && "$WARMUP" != 0 ]]; then
    WARMUP_TEXT="warmed up with one ${WARMUP} wrk run at the same connection count (not counted), "
fi
echo "### HTTP \`GET /health\` throughput (wrk)"
echo
echo "- Date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "- Host: \`nproc\` = $(nproc), kernel \`$(uname -r)\`, CPU: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "- Load average (1/5/15 min) before the first run: $LOAD_START"
echo "- Toolchain: $(swift --version 2>/dev/null | head -1)"
echo "- Switchboard: \`$(cd "$MAIN_DIR" && git rev-parse --short HEAD 2>/dev/null || echo '?')\`$(cd "$MAIN_DIR" && [[ -n "$(git --no-optional-locks status --porcelain -- Sources Package.swift 2>/dev/null)" ]] && echo ' (+ uncommitted changes)' || true), peer: Hummingbird $(awk '/"identity" : "hummingbird"/ { f = 1 } f && /"version"/ { gsub(/[",]/, ""); print $3; exit }' "$BENCH_DIR/Package.resolved" 2>/dev/null || echo '?')"
echo "- Protocol: each server started pinned to CPU $SERVER_CPU, waited for (\`curl /health\` until 200), ${WARMUP_TEXT}then measured $RUNS times, then SIGTERM + wait; restarted for each connection count. wrk pinned to CPU $WRK_CPU. Server CPU = utime+stime from \`/proc/PID/stat\` (all threads) before/after each run; µs CPU per request = that delta / requests completed in the run. Table values are medians of the $RUNS runs."
echo "- Commands:"
echo
echo '```'
for entry in "${SERVERS[@]}"; do
    IFS='|' read -r name offset cmd_template <<<"$entry"
    port=$((BASE_PORT + offset))
    echo "taskset -c $SERVER_CPU ${cmd_template//@PORT@/$port}"
done
for conns in $CONNS; do
    echo "$(wrk_health "$conns" PORT)"
done
echo '```'
echo
echo "| server | conns | req/s median ($RUNS runs) | µs CPU per request | ratio vs peer |"
echo "|---|---:|---:|---:|---:|"
for conns in $CONNS; do
    peer="${RPS["peer-hummingbird|$conns"]:-failed}"
    for entry in "${SERVERS[@]}"; do
        IFS='|' read -r name _ _ <<<"$entry"
        rps="${RPS["$name|$conns"]:-failed}"
        cpu="${CPU_US["$name|$conns"]:-failed}"
        ratio="$(awk -v a="$rps" -v b="$peer" 'BEGIN { if (a == "failed" || b == "failed" || b + 0 == 0) print "n/a"; else printf "%.2fx", a / b }')"
        echo "| $name | $conns | $(fmt_int "$rps") | $cpu | $ratio |"
    done
done
echo
echo "<details><summary>Individual runs</summary>"
echo
echo "| server | conns | run | req/s | requests | latency avg | server CPU s | µs CPU/req | steal s (server/wrk CPU) | wrk socket errors | non-2xx |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
printf '%s\n' "${RAW_ROWS[@]}"
echo
echo "</details>"
report_failures
rm -rf "$WORK"
