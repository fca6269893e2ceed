# Shared by the benchmark scripts (sourced). Defines log() and die(), prefixed with the
# script's name ([ws-bench] ...; stderr), and poll_until/port_open (deploy/common.sh). The
# caller sets SERVER_PID (bench_start empties it).
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/common.sh"
BENCH_SCRIPT_NAME="$(basename "$0" .sh)"
log() { echo "[$BENCH_SCRIPT_NAME] $*" >&2; }
die() { log "error: $*"; exit 1; }

# bench_start CONFIG "PRODUCT..." ["TOOL..."]: the start the benchmark scripts share.
# - each TOOL must be on PATH (checked before anything is built);
# - raises the open-file limit (65536, or the hard limit);
# - sets BENCH_DIR (Benchmarks/) and MAIN_DIR (the repository);
# - unless SKIP_BUILD=1, builds each PRODUCT with `swift build -c CONFIG` (PRODUCT@CONFIG2: in
#   CONFIG2) in its package: peer-hummingbird in BENCH_DIR, hummingbird-router-bench in
#   Integrations/SwitchboardHummingbird, the others in MAIN_DIR;
# - sets each PRODUCT's path in its variable (switchboard SWITCHBOARD_BIN, switchboard-echo
#   ECHO_BIN, switchboard-bench BENCH_BIN, switchboard-rpc-example RPC_BIN, peer-hummingbird
#   PEER_BIN, hummingbird-router-bench ROUTER_BIN) unless the caller set it (prebuilt binaries);
# - makes WORK (/tmp/NAME.XXXXXX), empties SERVER_PID and sets `trap cleanup EXIT`.
bench_start() {
    local config="$1" products="$2" tools="${3:-}" tool product name build_config dir var
    for tool in $tools; do
        command -v "$tool" >/dev/null || die "$tool not found"
    done
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    MAIN_DIR="$(cd "$BENCH_DIR/.." && pwd)"
    for product in $products; do
        name="${product%@*}"; build_config="$config"
        [[ "$product" == *@* ]] && build_config="${product#*@}"
        case "$name" in
            peer-hummingbird) dir="$BENCH_DIR"; var=PEER_BIN ;;
            hummingbird-router-bench) dir="$MAIN_DIR/Integrations/SwitchboardHummingbird"; var=ROUTER_BIN ;;
            switchboard) dir="$MAIN_DIR"; var=SWITCHBOARD_BIN ;;
            switchboard-echo) dir="$MAIN_DIR"; var=ECHO_BIN ;;
            switchboard-bench) dir="$MAIN_DIR"; var=BENCH_BIN ;;
            switchboard-rpc-example) dir="$MAIN_DIR"; var=RPC_BIN ;;
            *) die "bench_start: unknown product $name" ;;
        esac
        if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
            log "building $name ($build_config) in $dir"
            (cd "$dir" && swift build -c "$build_config" --product "$name" >&2)
        fi
        [[ -n "${!var:-}" ]] || printf -v "$var" '%s' "$dir/.build/$build_config/$name"
    done
    WORK="$(mktemp -d "/tmp/$BENCH_SCRIPT_NAME.XXXXXX")"
    SERVER_PID=""
    trap cleanup EXIT
}

# metric_total PORT NAME: the server's counter NAME so far, summed over shards, or "-" when it
# has no such metric (the peer, an older build).
metric_total() {
    local v
    v="$(curl -sf --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null |
        awk -v m="$2" '{ k = $1; sub(/[{].*/, "", k) } k == m { s += $NF; n++ } END { if (n) printf "%.0f\n", s }' || true)"
    echo "${v:--}"
}

# median: the median of the numbers on stdin, one per line ("nan" for none). With an even count,
# the mean of the middle two, printed in full (awk's default "%.6g" had printed 3,097,340.5
# deliveries/s as "3.09734e+06").
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.10g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# samples LIST: the words of a space-separated list, one per line (none for an empty list), for
# `median` (the scripts that run in rounds keep each figure's runs as such a list).
samples() { tr ' ' '\n' <<<"$1" | { grep -v '^$' || true; }; }

# SIGTERM, up to 5 s to exit, then SIGKILL.
# rss_kib PID [FIELD]: VmRSS (or FIELD of /proc/PID/status, e.g. RssAnon) of the process, in KiB.
rss_kib() { awk -v f="${2:-VmRSS}:" '$1 == f { print $2 }' "/proc/$1/status"; }

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
# A peer's failed run (its name starts with "peer-": the peer lost deliveries, refused
# connections) is the peer's result, not the harness's: its cell reads FAILED and it is listed
# separately, but it does not fail the script (run-all.sh would otherwise throw away every
# Switchboard figure of the run because the comparison server dropped messages).
FAILURES=()
PEER_FAILURES=()
note_failure() {
    if [[ "$1" == peer-* ]]; then PEER_FAILURES+=("$*"); log "peer FAILED: $*"; else FAILURES+=("$*"); log "FAILED: $*"; fi
}
# run_failure_reason OUTPUT_FILE STATUS: switchboard-bench's "failed:" lines, else the status.
run_failure_reason() {
    local reason
    reason="$(sed -n 's/^  failed: //p' "$1" | paste -sd ';' - || true)"
    [[ "$2" == 124 ]] && reason="timed out${reason:+; $reason}"
    echo "${reason:-exit status $2 (see $1)}"
}
# client_late OUTPUT_FILE: " (client late on X of Y sends)" when an open-loop run's client left
# sends 100 µs or more behind its schedule (switchboard-bench's "schedule:" line), else nothing.
# Such a run's latency includes the client's own queue, not only the server's.
client_late() {
    awk '/^  schedule: [0-9]+ of [0-9]+ sends left/ { if ($2 > 0) printf " (client late on %s of %s sends)", $2, $4 }' "$1"
}
# Call last: prints the failures (Markdown) and exits 1 when there were any; keeps $WORK for them.
report_failures() {
    if [[ ${#PEER_FAILURES[@]} -gt 0 ]]; then
        echo
        echo "**${#PEER_FAILURES[@]} run(s) of a peer FAILED (the peer's result: its cells read FAILED)** (outputs kept in \`$WORK\`):"
        echo
        printf -- '- %s\n' "${PEER_FAILURES[@]}"
    fi
    [[ ${#FAILURES[@]} -eq 0 ]] && return 0
    echo
    echo "**${#FAILURES[@]} run(s) FAILED: their cells read FAILED, not a figure** (outputs kept in \`$WORK\`):"
    echo
    printf -- '- %s\n' "${FAILURES[@]}"
    log "${#FAILURES[@]} run(s) failed; outputs kept in $WORK"
    exit 1
}

# ---------------------------------------------------------------- fan-out tables
# (broadcaster-bench.sh, fanout-bench.sh.)
# rate_cell RATE: a rate cell: the number, or FAILED (never a figure from a failed run).
rate_cell() { awk -v v="${1:-0}" 'BEGIN { if (v == "failed") print "FAILED"; else printf "%.0f", v }'; }

# fanout_table: the Markdown table of the fan-out runs: a row per SUBSCRIBERS count and SERVERS
# entry ("name|..."; one that ONLY leaves out is skipped), from RATE, P50, P99 and SCPU keyed
# "name|subscribers", with the rate's ratio to peer-hummingbird's.
fanout_table() {
    local subs peer entry name k ratio
    echo "| server | subscribers | delivered msg/s | p50 µs | p99 µs | server CPU % | ratio vs peer |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for subs in $SUBSCRIBERS; do
        peer="${RATE["peer-hummingbird|$subs"]:-0}"
        for entry in "${SERVERS[@]}"; do
            IFS='|' read -r name _ _ <<<"$entry"; k="$name|$subs"
            [[ -n "${ONLY:-}" && " ${ONLY:-} " != *" $name "* ]] && continue
            ratio="$(awk -v a="${RATE[$k]:-0}" -v b="$peer" 'BEGIN { if (a == "failed" || b == "failed" || b + 0 == 0) print "n/a"; else printf "%.2fx", a / b }')"
            echo "| $name | $subs | $(rate_cell "${RATE[$k]:-0}") | ${P50[$k]:-n/a} | ${P99[$k]:-n/a} | ${SCPU[$k]:-n/a} | $ratio |"
        done
    done
}

# ---------------------------------------------------------------- HTTP servers under wrk
# (http-bench.sh, hummingbird-router-bench.sh.) The caller sets WORK, SERVER_CPU, WRK_CPU,
# CLK_TCK (getconf CLK_TCK) and DURATION.

# proc_cpu_ticks PID: "USER SYSTEM" clock ticks of a process, all threads (fields 14 and 15 of
# /proc/PID/stat, parsed after the last ')' because comm may contain spaces).
proc_cpu_ticks() {
    local stat rest
    stat="$(cat "/proc/$1/stat")"
    rest="${stat##*) }"
    awk '{ print $12, $13 }' <<<"$rest"
}

# Steal ticks of the server's and the load generator's CPUs (SERVER_CPU, and WRK_CPU or
# BENCH_CPU; the hypervisor took the vCPU away): "SERVER LOADGEN" (/proc/stat's 8th value, in clock ticks). A tail-latency figure means little without the
# steal of its run: on this VM p99 went from 0.8 ms with none to 16 ms with 4% of the run.
steal_ticks() { awk -v a="cpu$SERVER_CPU" -v b="cpu${WRK_CPU:-${BENCH_CPU:-}}" '$1 == a { x = $9 } $1 == b { y = $9 } END { print x, y }' /proc/stat; }

# ---------------------------------------------------------------- starting a server
# start_pinned NAME CMD...: starts CMD pinned to SERVER_CPU, output in $WORK/NAME.log; sets SERVER_PID.
start_pinned() {
    local name="$1"; shift
    taskset -c "$SERVER_CPU" "$@" >"$WORK/$name.log" 2>&1 &
    SERVER_PID=$!
}

# await_server NAME SECONDS WHAT PROBE...: waits until PROBE succeeds (poll_until) while
# SERVER_PID, started as NAME (start_pinned), runs. Returns 1, with no server left running,
# when it exits first (its log is shown) or never answers ("NAME did not answer WHAT").
await_server() {
    local name="$1" seconds="$2" what="$3"; shift 3
    poll_until "$seconds" --pid "$SERVER_PID" "$@" && return 0
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        log "$name did not answer $what within $seconds s"
        stop_server
    else
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
        log "$name exited during startup; log:"; sed 's/^/    /' "$WORK/$name.log" >&2
    fi
    return 1
}

# http_ok URL: GET URL answers 200 (within 1 s).
http_ok() { [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1" || true)" == 200 ]]; }

# ws_echo_ok URL: one WebSocket echo round trip on URL (ws:// or wss://) works (BENCH_BIN).
ws_echo_ok() { "$BENCH_BIN" echo "$1" -c 1 -n 1 --quiet --connect-timeout 1s >/dev/null 2>&1; }

# http_start_server NAME PORT PATH CMD...: starts CMD pinned to SERVER_CPU (output in
# $WORK/NAME.log), sets SERVER_PID, and waits up to 20 s for `GET PATH` to answer 200.
http_start_server() {
    local name="$1" port="$2" path="$3"; shift 3
    start_pinned "$name" "$@"
    await_server "$name" 20 "$path with 200" http_ok "http://127.0.0.1:$port$path"
}

# wrk_cmd CONNS PORT PATH [DURATION]: the pinned wrk command line (one thread).
wrk_cmd() { echo "taskset -c $WRK_CPU wrk -t1 -c$1 -d${4:-$DURATION} http://127.0.0.1:$2$3"; }

# wrk_measure CONNS PORT PATH OUT: one wrk run against SERVER_PID, output kept in OUT. Sets
# RUN_STATUS (wrk's exit status), RUN_RPS, RUN_REQS, RUN_LAT (average), RUN_SOCKERR, RUN_NON2XX,
# RUN_CPU_S (server user+system seconds), RUN_USER_US / RUN_SYS_US / RUN_CPU_US (server CPU
# µs per request: user, system, both) and RUN_STEAL ("SERVER/WRK" steal seconds).
wrk_measure() {
    local conns="$1" port="$2" path="$3" out="$4" before after steal_before steal_after
    before="$(proc_cpu_ticks "$SERVER_PID")"; steal_before="$(steal_ticks)"
    RUN_STATUS=0
    # shellcheck disable=SC2046
    timeout 60 $(wrk_cmd "$conns" "$port" "$path") >"$out" 2>&1 || RUN_STATUS=$?
    after="$(proc_cpu_ticks "$SERVER_PID")"; steal_after="$(steal_ticks)"
    RUN_RPS="$(awk '/^Requests\/sec:/ { print $2 }' "$out")"; RUN_RPS="${RUN_RPS:-0}"
    RUN_REQS="$(awk '/ requests in / { print $1 }' "$out")"; RUN_REQS="${RUN_REQS:-0}"
    RUN_LAT="$(awk '/^    Latency/ { print $2 }' "$out")"; RUN_LAT="${RUN_LAT:-?}"
    RUN_SOCKERR="$(awk '/Socket errors:/ { sub(/^ *Socket errors: */, ""); print }' "$out")"; RUN_SOCKERR="${RUN_SOCKERR:-none}"
    RUN_NON2XX="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")"
    read -r RUN_CPU_S RUN_USER_US RUN_SYS_US RUN_CPU_US < <(awk -v b="$before" -v a="$after" -v t="$CLK_TCK" -v n="$RUN_REQS" 'BEGIN {
        split(b, x, " "); split(a, y, " "); u = (y[1] - x[1]) / t; s = (y[2] - x[2]) / t
        if (n > 0) printf "%.2f %.2f %.2f %.2f\n", u + s, u * 1e6 / n, s * 1e6 / n, (u + s) * 1e6 / n
        else printf "%.2f nan nan nan\n", u + s }')
    RUN_STEAL="$(awk -v b="$steal_before" -v a="$steal_after" -v t="$CLK_TCK" 'BEGIN { split(b, x, " "); split(a, y, " "); printf "%.2f/%.2f", (y[1] - x[1]) / t, (y[2] - x[2]) / t }')"
}

# --- bench16 (issue 16 rows, memory, protocol templates): server CPU per message -------------
# cpu_ticks PID: "utime stime" of the process (all threads), in clock ticks (proc_cpu_ticks above).
cpu_ticks() { proc_cpu_ticks "$1"; }
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
wait_for_ws() { BENCH_BIN="$3" poll_until 5 ws_echo_ok "ws://127.0.0.1:$1$2"; }
# wait_for_port PORT: until something accepts TCP connections on 127.0.0.1:PORT (5 s).
wait_for_port() { poll_until 5 port_open "$1"; }

# ---------------------------------------------------------------- RESULTS.md's run-all.sh block
# run-all.sh writes its report between these two lines of RESULTS.md and nothing else; the
# dated sections recorded by hand stay as they are (SwitchboardBenchTests checks splice_report).
RESULTS_BEGIN_MARK='<!-- run-all.sh: begin (the block up to the end marker is rewritten by Benchmarks/scripts/run-all.sh) -->'
RESULTS_END_MARK='<!-- run-all.sh: end -->'
# splice_report FILE REPORT: FILE with REPORT between the markers, in place of the block there
# was; without markers, after FILE's title paragraph (the lines before its first "## "
# heading); without FILE, a title and the block. On stdout. Fails (status 1, nothing useful
# on stdout) when FILE has more than one marker of a kind, or a begin without an end.
splice_report() {
    if [[ ! -f "$1" ]]; then
        printf '# Benchmark results\n\n%s\n' "$RESULTS_BEGIN_MARK"; cat "$2"; printf '%s\n' "$RESULTS_END_MARK"
        return
    fi
    awk -v begin="$RESULTS_BEGIN_MARK" -v end="$RESULTS_END_MARK" -v report="$2" '
        function block(  line) {
            print begin
            while ((getline line < report) > 0) print line
            close(report)
            print end
            done = 1
        }
        NR == FNR { if ($0 == begin) marked++; if ($0 == end) ended++; next }   # first pass: the markers
        FNR == 1 && (marked > 1 || marked != ended) {
            print "splice_report: " marked + 0 " begin and " ended + 0 " end markers (one of each, or none)" > "/dev/stderr"
            failed = 1; exit 1
        }
        marked && $0 == begin { block(); skipping = 1; next }
        skipping { if ($0 == end) skipping = 0; next }
        !marked && !done && /^## / { block(); print "" }
        { print }
        END { if (!done && !failed) block() }
    ' "$1" "$1"
}

# ---------------------------------------------------------------- one echo server, sampled (user-tsc.sh, user-samples-ab.sh)
# These measure a server's user time over a window of one echo run, by a sampler that runs
# beside the load: the TSC counter file's reader, or perf. They use BENCH_BIN, WORK,
# SERVER_CPU and BENCH_CPU from the caller.

# sampled_echo_start NAME PORT BACKEND BINARY [VAR=VALUE...]: starts BINARY pinned to
# SERVER_CPU on 127.0.0.1:PORT with the VAR=VALUE pairs in its environment: the C++ peer
# (`--port N --threads 1`) when BACKEND is "peer", otherwise switchboard-echo on BACKEND (uring
# or epoll) with one shard. Waits up to 20 s for an echo on /ws; dies when it does not start.
sampled_echo_start() {
    local name="$1" port="$2" backend="$3" binary="$4"; shift 4
    [[ -x "$binary" ]] || die "$name: $binary is not an executable"
    if [[ "$backend" == peer ]]; then
        start_pinned server env "$@" "$binary" --port "$port" --threads 1
    else
        start_pinned server env "$@" "$binary" --host 127.0.0.1 --port "$port" --io-backend "$backend" \
            --shards 1 --log-level warning --set max_connections_per_shard=30000
    fi
    await_server "$name" 20 /ws ws_echo_ok "ws://127.0.0.1:$port/ws" || die "$name did not start"
}

# sampled_echo_run NAME PORT CONNS SIZE DURATION SAMPLER...: one closed-loop echo run
# (`switchboard-bench echo`, 1 s warm-up, then DURATION measured) against the server
# sampled_echo_start started on PORT, while SAMPLER (a command or function; it times its own
# window from the run's start) runs in the background with its output in $WORK/sampler.out.
# Then waits for the sampler and stops the server. Sets SAMPLED_RATE (echoes/s) and
# SAMPLED_OUT (switchboard-bench's output); dies, with no server left, when the run or the
# sampler fails.
sampled_echo_run() {
    local name="$1" port="$2" conns="$3" size="$4" duration="$5" sampler
    shift 5
    "$@" >"$WORK/sampler.out" 2>&1 &
    sampler=$!
    SAMPLED_OUT="$WORK/bench.out"
    if ! "$BENCH_BIN" echo -c "$conns" -s "$size" -d "$duration" --warmup 1s --cpu "$BENCH_CPU" \
            --server-pid "$SERVER_PID" "ws://127.0.0.1:$port/ws" >"$SAMPLED_OUT" 2>&1; then
        wait "$sampler" || true; stop_server; sed 's/^/    /' "$SAMPLED_OUT" >&2; die "$name: the run failed"
    fi
    wait "$sampler" || { stop_server; sed 's/^/    /' "$WORK/sampler.out" >&2; die "$name: the sampler failed"; }
    stop_server
    SAMPLED_RATE="$(grep -oE '[0-9.]+ msg/s' "$SAMPLED_OUT" | tail -1 | cut -d' ' -f1)"
    [[ -n "$SAMPLED_RATE" ]] || die "$name: no rate in switchboard-bench's output"
}

# ---------------------------------------------------------------- WebSocket echo (ws-bench.sh, tls-bench.sh)
# These use BENCH_BIN, WORK, SERVER_CPU, BENCH_CPU, DURATION and WARMUP from the caller.

# echo_bench_start NAME TOOL...: bench_start for the echo scripts (NAME: log prefix and WORK's
# name): switchboard-echo and switchboard-bench, and peer-hummingbird when ONLY is empty or
# names it, in CONFIG; each TOOL (and taskset, awk) required. PEER_BIN is set even when the
# peer is not built; BENCH_BIN must exist. The caller sets CONFIG, SKIP_BUILD, ONLY.
echo_bench_start() {
    BENCH_SCRIPT_NAME="$1"; shift
    local products="switchboard-echo switchboard-bench"
    if [[ -z "$ONLY" || " $ONLY " == *" peer-hummingbird "* ]]; then products+=" peer-hummingbird"; fi
    bench_start "$CONFIG" "$products" "taskset awk $*"
    PEER_BIN="${PEER_BIN:-$BENCH_DIR/.build/$CONFIG/peer-hummingbird}"
    [[ -x "$BENCH_BIN" ]] || die "missing $BENCH_BIN"
}

# start_ws_server NAME URL CMD... : starts CMD pinned to SERVER_CPU (output in $WORK/NAME.log),
# sets SERVER_PID and waits up to 10 s until one WebSocket echo round trip on URL (ws:// or
# wss://) works. Returns 1, with no server left running, when it exits or never answers.
start_ws_server() {
    local name="$1" url="$2"; shift 2
    start_pinned "$name" "$@"
    await_server "$name" 10 "a WebSocket echo on $url" ws_echo_ok "$url"
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

