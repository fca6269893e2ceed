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

# --- bench16 (issue 16 rows, memory, protocol templates): server CPU per message -------------
# cpu_ticks PID: "utime stime" of the process (all threads), in clock ticks, from /proc/PID/stat.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12, $13 }' "/proc/$1/stat"; }
# cpu_per_message "U0 S0" "U1 S1" MESSAGES: "user system" µs of server CPU per message between
# two cpu_ticks samples (n/a when nothing was counted).
cpu_per_message() {
    local hz; hz="$(getconf CLK_TCK)"
    awk -v a="$1" -v b="$2" -v n="$3" -v hz="$hz" 'BEGIN {
        split(a, x, " "); split(b, y, " ");
        if (n + 0 <= 0) { print "n/a n/a"; exit }
        printf "%.3f %.3f\n", (y[1] - x[1]) / hz * 1e6 / n, (y[2] - x[2]) / hz * 1e6 / n }'
}
# wait_for_ws PORT PATH BENCH_BIN: until one echo round trip works (5 s), or fail.
wait_for_ws() {
    local i
    for i in $(seq 1 100); do
        "$3" echo "ws://127.0.0.1:$1$2" -c 1 -n 1 --quiet --connect-timeout 1s >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    return 1
}
# wait_for_port PORT: until something accepts TCP connections on 127.0.0.1:PORT (5 s).
wait_for_port() {
    local i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}
