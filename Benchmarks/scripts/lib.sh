# Shared by the benchmark scripts (sourced). The caller defines log() and sets SERVER_PID.

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# SIGTERM, up to 5 s to exit, then SIGKILL.
stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        log "pid $SERVER_PID ignored SIGTERM for 5 s, sending SIGKILL"
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# For `trap cleanup EXIT`: never leave a server behind.
cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}

# Failed runs. A run that fails (non-zero exit: switchboard-bench's verdict, a timeout, wrk's
# error) is never turned into a figure: its cell reads FAILED, the reason is logged, and the
# script ends with report_failures, which lists them in the report and exits 1 (so run-all.sh
# and any caller see the failure).
FAILURES=()
note_failure() { FAILURES+=("$*"); log "FAILED: $*"; }
# run_failure_reason OUTPUT_FILE STATUS: switchboard-bench's "failed:" lines, else the status.
run_failure_reason() {
    local reason
    reason="$(sed -n 's/^  failed: //p' "$1" | paste -sd ';' - || true)"
    [[ "$2" == 124 ]] && reason="timed out${reason:+; $reason}"
    echo "${reason:-exit status $2 (see $1)}"
}
# Call last: prints the failures (Markdown) and exits 1 when there were any; keeps $WORK for them.
report_failures() {
    [[ ${#FAILURES[@]} -eq 0 ]] && return 0
    echo
    echo "**${#FAILURES[@]} run(s) FAILED: their cells read FAILED, not a figure** (outputs kept in \`$WORK\`):"
    echo
    printf -- '- %s\n' "${FAILURES[@]}"
    log "${#FAILURES[@]} run(s) failed; outputs kept in $WORK"
    exit 1
}

# ---------------------------------------------------------------- WebSocket echo (ws-bench.sh, tls-bench.sh)
# These use BENCH_BIN, WORK, SERVER_CPU, BENCH_CPU, DURATION and WARMUP from the caller.

# start_ws_server NAME URL CMD... : starts CMD pinned to SERVER_CPU (output in $WORK/NAME.log),
# sets SERVER_PID and waits up to 10 s until one WebSocket echo round trip on URL (ws:// or
# wss://) works. Returns 1, with no server left running, when it exits or never answers.
start_ws_server() {
    local name="$1" url="$2"; shift 2
    taskset -c "$SERVER_CPU" "$@" >"$WORK/$name.log" 2>&1 &
    SERVER_PID=$!
    local i
    for i in $(seq 1 200); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            wait "$SERVER_PID" 2>/dev/null || true
            SERVER_PID=""
            log "$name exited during startup; log:"; sed 's/^/    /' "$WORK/$name.log" >&2
            return 1
        fi
        if "$BENCH_BIN" echo "$url" -c 1 -n 1 --quiet --connect-timeout 1s >/dev/null 2>&1; then return 0; fi
        sleep 0.05
    done
    log "$name did not answer a WebSocket echo on $url within 10 s"
    stop_server
    return 1
}

# echo_cmd URL CONNS SIZE: the command line of one measured echo run (closed loop, one message
# in flight per connection, switchboard-bench's thread pinned to BENCH_CPU).
echo_cmd() {
    echo "$BENCH_BIN echo $1 --connections $2 --size $3 --duration $DURATION --warmup $WARMUP --cpu $BENCH_CPU --quiet"
}

# run_echo OUT URL CONNS SIZE: one measured echo run against SERVER_PID (output in OUT and
# OUT.json), bounded by ECHO_TIMEOUT_S (default 120). On success sets the run's figures:
# ECHO_RATE (round trips/s), ECHO_P50 and ECHO_P99 (µs), ECHO_SCPU and ECHO_BCPU (server and
# bench CPU, % of one core), ECHO_SUSER_US and ECHO_SSYS_US (server user and system CPU per round
# trip, µs). Returns switchboard-bench's status (124: timed out); a failed run sets nothing.
run_echo() {
    local out="$1" status=0
    # shellcheck disable=SC2046
    timeout "${ECHO_TIMEOUT_S:-120}" $(echo_cmd "$2" "$3" "$4") --server-pid "$SERVER_PID" --json "$out.json" >"$out" 2>&1 || status=$?
    [[ $status == 0 ]] || return "$status"
    ECHO_RATE="$(awk '/round trips:/ { for (i = 1; i <= NF; i++) if ($i == "msg/s,") print $(i - 1) }' "$out")"
    ECHO_P50="$(awk '/latency µs:/ { for (i = 1; i <= NF; i++) if ($i == "p50") print $(i + 1) }' "$out")"
    ECHO_P99="$(awk '/latency µs:/ { for (i = 1; i <= NF; i++) if ($i == "p99") print $(i + 1) }' "$out")"
    ECHO_SCPU="$(awk '/server CPU:/ { sub(/.*server CPU: [0-9.]+ s \(/, ""); sub(/%\).*/, ""); print }' "$out")"
    ECHO_BCPU="$(awk '/client CPU:/ { sub(/.*client CPU: [0-9.]+ s \(/, ""); sub(/% of one core.*/, ""); print }' "$out")"
    # "round trips: N in T s", "server CPU: ... user U s, system S s": CPU seconds per round trip.
    read -r ECHO_SUSER_US ECHO_SSYS_US < <(awk '
        /round trips:/ { n = $3 }
        /server CPU:/ { for (i = 1; i <= NF; i++) { if ($i == "user") u = $(i + 1); if ($i == "system") s = $(i + 1) } }
        END { if (n > 0 && u != "") printf "%.2f %.2f\n", u * 1e6 / n, s * 1e6 / n; else print "nan nan" }' "$out")
    ECHO_RATE="${ECHO_RATE:-0}"
}

# proc_cpu_ticks PID: "utime stime" of a process (all threads) in clock ticks, from /proc/PID/stat.
proc_cpu_ticks() {
    awk '{ sub(/.*\) /, ""); print $12, $13 }' "/proc/$1/stat"
}
