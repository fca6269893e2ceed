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

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGE_DIR="$(cd "$BENCH_DIR/../Integrations/SwitchboardHummingbird" && pwd)"

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

log() { echo "[hummingbird-router-bench] $*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in wrk taskset curl awk; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [[ "$SKIP_BUILD" != 1 ]]; then
    log "building hummingbird-router-bench ($CONFIG) in $PACKAGE_DIR"
    (cd "$PACKAGE_DIR" && swift build -c "$CONFIG" --product hummingbird-router-bench >&2)
fi
BIN="$PACKAGE_DIR/.build/$CONFIG/hummingbird-router-bench"
[[ -x "$BIN" ]] || die "missing $BIN"

WORK="$(mktemp -d /tmp/hummingbird-router-bench.XXXXXX)"
CLK_TCK="$(getconf CLK_TCK)"
SERVER_PID=""
trap cleanup EXIT

cpu_ticks() {
    local stat rest
    stat="$(cat "/proc/$1/stat")"
    rest="${stat##*) }"
    awk '{ print $12 + $13 }' <<<"$rest"
}

# start NAME PORT CMD...: pinned to SERVER_CPU, waits for GET /hello == 200.
start() {
    local name="$1" port="$2"; shift 2
    taskset -c "$SERVER_CPU" "$@" >"$WORK/$name.log" 2>&1 &
    SERVER_PID=$!
    local i code
    for i in $(seq 1 400); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            wait "$SERVER_PID" 2>/dev/null || true
            SERVER_PID=""
            log "$name exited during startup; log:"; sed 's/^/    /' "$WORK/$name.log" >&2
            return 1
        fi
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/hello" || true)"
        [[ "$code" == 200 ]] && return 0
        sleep 0.05
    done
    log "$name did not answer /hello with 200 within 20 s"
    stop_server
    return 1
}

wrk_cmd() { echo "taskset -c $WRK_CPU wrk -t1 -c$1 -d${3:-$DURATION} http://127.0.0.1:$2/hello"; }

SERVERS=(
    "Hummingbird router served by Switchboard|0|$BIN --server switchboard --port @PORT@ --threads $THREADS"
    "Hummingbird on its own server|1|$BIN --server hummingbird --port @PORT@ --threads $THREADS"
)
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
declare -A RPS CPU_US
RAW_ROWS=()

for entry in "${SERVERS[@]}"; do
    IFS='|' read -r name offset template <<<"$entry"
    port=$((BASE_PORT + offset))
    cmd="${template//@PORT@/$port}"
    for conns in $CONNS; do
        log "$name c=$conns: $cmd"
        # shellcheck disable=SC2086
        if ! start "$name" "$port" $cmd; then
            RPS["$name|$conns"]="failed"; CPU_US["$name|$conns"]="failed"
            note_failure "$name c=$conns: the server did not start"
            continue
        fi
        if [[ -n "$WARMUP" && "$WARMUP" != 0 ]]; then
            # shellcheck disable=SC2046
            $(wrk_cmd "$conns" "$port" "$WARMUP") >/dev/null 2>&1 || true
        fi
        rps_list=(); cpu_list=(); cell_failed=0
        for run in $(seq 1 "$RUNS"); do
            out="$WORK/run-$offset-c$conns-$run.txt"
            before="$(cpu_ticks "$SERVER_PID")"
            status=0
            # shellcheck disable=SC2046
            timeout 60 $(wrk_cmd "$conns" "$port") >"$out" 2>&1 || status=$?
            after="$(cpu_ticks "$SERVER_PID")"
            rps="$(awk '/^Requests\/sec:/ { print $2 }' "$out")"
            reqs="$(awk '/ requests in / { print $1 }' "$out")"
            lat="$(awk '/^    Latency/ { print $2 }' "$out")"
            non2xx="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")"
            sockerr="$(awk '/Socket errors:/ { sub(/^ *Socket errors: */, ""); print }' "$out")"
            us_per_req="$(awk -v a="$after" -v b="$before" -v t="$CLK_TCK" -v n="${reqs:-0}" \
                'BEGIN { if (n > 0) printf "%.2f", (a - b) / t * 1e6 / n; else print "nan" }')"
            rps="${rps:-0}"
            if [[ "$status" != 0 || -n "$non2xx" ]]; then
                cell_failed=1
                note_failure "$name c=$conns run $run: wrk exit status $status, non-2xx/3xx ${non2xx:-0} (see $out)"
            fi
            rps_list+=("$rps"); cpu_list+=("$us_per_req")
            RAW_ROWS+=("| $name | $conns | $run | $rps | ${reqs:-0} | ${lat:-?} | $us_per_req | ${sockerr:-none} | ${non2xx:-0} |")
            log "  run $run: $rps req/s, ${us_per_req} µs CPU/req"
        done
        RPS["$name|$conns"]="$(printf '%s\n' "${rps_list[@]}" | median)"
        CPU_US["$name|$conns"]="$(printf '%s\n' "${cpu_list[@]}" | median)"
        if [[ "$cell_failed" == 1 ]]; then RPS["$name|$conns"]="failed"; CPU_US["$name|$conns"]="failed"; fi
        stop_server
    done
done

fmt_int() { awk -v v="$1" 'BEGIN { if (v == "failed" || v == "nan") print v; else printf "%.0f", v }'; }
echo "### Hummingbird router: served by Switchboard vs on its own server (wrk, \`GET /hello\`)"
echo
echo "- Date: $(date -u +%Y-%m-%dT%H:%M:%SZ), build: $CONFIG, threads/shards: $THREADS"
echo "- Host: \`nproc\` = $(nproc), kernel \`$(uname -r)\`; load average before the first run: $LOAD_START"
echo "- Switchboard: \`$(cd "$BENCH_DIR/.." && git rev-parse --short HEAD 2>/dev/null || echo '?')\`, Hummingbird $(awk '/"identity" : "hummingbird"/ { f = 1 } f && /"version"/ { gsub(/[",]/, ""); print $3; exit }' "$PACKAGE_DIR/Package.resolved" 2>/dev/null || echo '?')"
echo "- Protocol: each server pinned to CPU $SERVER_CPU, wrk to CPU $WRK_CPU; $RUNS runs of $DURATION per connection count after a ${WARMUP:-0} warm-up; medians. µs CPU per request: the server's utime+stime delta / requests."
echo
echo "| server | conns | req/s median ($RUNS runs) | µs CPU per request | ratio vs Hummingbird's server |"
echo "|---|---:|---:|---:|---:|"
for conns in $CONNS; do
    peer="${RPS["Hummingbird on its own server|$conns"]:-failed}"
    for entry in "${SERVERS[@]}"; do
        IFS='|' read -r name _ _ <<<"$entry"
        rps="${RPS["$name|$conns"]:-failed}"
        ratio="$(awk -v a="$rps" -v b="$peer" 'BEGIN { if (a == "failed" || b == "failed" || b + 0 == 0) print "n/a"; else printf "%.2fx", a / b }')"
        echo "| $name | $conns | $(fmt_int "$rps") | ${CPU_US["$name|$conns"]:-failed} | $ratio |"
    done
done
echo
echo "<details><summary>Individual runs</summary>"
echo
echo "| server | conns | run | req/s | requests | latency avg | µs CPU/req | wrk socket errors | non-2xx |"
echo "|---|---:|---:|---:|---:|---:|---:|---|---:|"
printf '%s\n' "${RAW_ROWS[@]}"
echo
echo "</details>"
report_failures
rm -rf "$WORK"
