#!/usr/bin/env bash
# TLS cost: WebSocket echo over wss:// at 100 and 1,000 connections and full TLS handshakes per
# second, Switchboard's switchboard-echo (OpenSSL 3 on the shards, memory BIOs) next to the
# Hummingbird peer with swift-nio-ssl (BoringSSL), plus Switchboard's own plaintext echo from the
# same run so the TLS cost is visible. Driven by switchboard-bench (its wss:// client: a full
# handshake per connection, no resumption, no certificate verification; loopback only).
# Server CPU per message and per handshake is given as user and system time apart: TLS adds
# user time (crypto), the socket calls are system time.
# Prints a Markdown fragment on stdout; progress on stderr.
#
# Environment overrides:
#   RUNS=3 DURATION=10s WARMUP=2s CONNS="100 1000" SIZE=32 HANDSHAKES=2000 SHARDS=1 IO_BACKEND=uring
#   SERVER_CPU=0 BENCH_CPU=1 BASE_PORT=18600 CONFIG=release SKIP_BUILD=0 ONLY="" (e.g. "switchboard")
#   ECHO_BIN, PEER_BIN, BENCH_BIN (prebuilt binaries)
# A smoke run on a loaded machine: RUNS=1 DURATION=3s WARMUP=1s
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${RUNS:-3}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
CONNS="${CONNS:-100 1000}"
SIZE="${SIZE:-32}"
HANDSHAKES="${HANDSHAKES:-2000}"
SHARDS="${SHARDS:-1}"
IO_BACKEND="${IO_BACKEND:-uring}"
SERVER_CPU="${SERVER_CPU:-0}"
BENCH_CPU="${BENCH_CPU:-1}"
BASE_PORT="${BASE_PORT:-18600}"
CONFIG="${CONFIG:-release}"
SKIP_BUILD="${SKIP_BUILD:-0}"
ONLY="${ONLY:-}"
# 1,000 TLS handshakes come before the warm-up of a run: give a debug build time for them.
ECHO_TIMEOUT_S=300

echo_bench_start tls-bench openssl
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
TICKS_PER_SECOND="$(getconf CLK_TCK)"

# A throwaway CA and a certificate for 127.0.0.1 (no key is committed).
make_test_certificate "$WORK" "tls-bench CA"

# Cells: RESULT[KEY] is the median figure or FAILED, KEY = row|column.
declare -A RESULT

# Per-run figures, KEY = row|conns|field: space-separated, run by run.
declare -A RUNS_OF
# echo_run ROW URL CONNS RUN: one echo run (run_echo), its figures appended to RUNS_OF; a failed
# run marks the cell FAILED and the row's later runs are skipped.
echo_run() {
    local row="$1" url="$2" conns="$3" run="$4" out status=0
    [[ "${RESULT[$row|$conns|rate]:-}" == FAILED ]] && return 0
    out="$WORK/$row-c$conns-run$run.txt"
    run_echo "$out" "$url" "$conns" "$SIZE" || status=$?
    if [[ $status != 0 ]]; then
        note_failure "$row c=$conns run $run: $(run_failure_reason "$out" "$status")"
        RESULT[$row|$conns|rate]=FAILED
        return 0
    fi
    log "  $row c=$conns run $run: $ECHO_RATE msg/s, server CPU $ECHO_SCPU% ($ECHO_SUSER_US µs user + $ECHO_SSYS_US µs system per message), p99 $ECHO_P99 µs, bench CPU $ECHO_BCPU%"
    RUNS_OF[$row|$conns|rate]+="$ECHO_RATE "; RUNS_OF[$row|$conns|scpu]+="${ECHO_SCPU:-nan} "
    RUNS_OF[$row|$conns|user]+="$ECHO_SUSER_US "; RUNS_OF[$row|$conns|system]+="$ECHO_SSYS_US "; RUNS_OF[$row|$conns|p99]+="${ECHO_P99:-nan} "
}

# echo_medians ROW CONNS: the runs' medians into RESULT[ROW|CONNS|...] (unless the cell FAILED).
echo_medians() {
    local row="$1" conns="$2" field
    [[ "${RESULT[$row|$conns|rate]:-}" == FAILED || -z "${RUNS_OF[$row|$conns|rate]:-}" ]] && return 0
    for field in rate scpu user system p99; do
        RESULT[$row|$conns|$field]="$(samples "${RUNS_OF[$row|$conns|$field]}" | median)"
    done
}

# tls_over_plain CONNS: server CPU per message (user + system) over TLS / over plaintext, run by
# run (each TLS run came right after the plaintext run of its round): "median (per run r1 r2 ...)".
tls_over_plain() {
    local c="$1" ratios
    ratios="$(paste <(samples "${RUNS_OF[sb-tls|$c|user]:-}") <(samples "${RUNS_OF[sb-tls|$c|system]:-}") \
                    <(samples "${RUNS_OF[sb-plain|$c|user]:-}") <(samples "${RUNS_OF[sb-plain|$c|system]:-}") | awk -F'\t' '
        $1 ~ /^[0-9.]+$/ && $2 ~ /^[0-9.]+$/ && $3 ~ /^[0-9.]+$/ && $4 ~ /^[0-9.]+$/ && $3 + $4 > 0 { printf "%.6f ", ($1 + $2) / ($3 + $4) }')"
    if [[ -z "$ratios" ]]; then printf 'n/a'; return; fi
    printf '%.2f× (per run %s)' "$(samples "$ratios" | median)" "$(samples "$ratios" | xargs printf '%.2f\n' | paste -sd ' ')"
}

# measure_handshakes ROW URL: RUNS runs of HANDSHAKES connections opened as fast as the client
# can (each a TCP connect, a full TLS handshake and the WebSocket upgrade), then closed. The
# rate is switchboard-bench's (established / time to open them all); the server's CPU is read
# from /proc around the whole run, so per handshake it includes the connection's teardown.
measure_handshakes() {
    local row="$1" url="$2" run out status before after u s rates=() users=() systems=() clients=()
    for run in $(seq 1 "$RUNS"); do
        out="$WORK/$row-handshakes-run$run.txt"
        status=0
        before="$(proc_cpu_ticks "$SERVER_PID")"
        { /usr/bin/time -f '%U %S' -o "$out.time" timeout 300 "$BENCH_BIN" connect "$url" --connections "$HANDSHAKES" \
            --duration 200ms --cpu "$BENCH_CPU" --quiet >"$out" 2>&1; } || status=$?
        after="$(proc_cpu_ticks "$SERVER_PID")"
        if [[ $status != 0 ]]; then
            note_failure "$row handshakes run $run: $(run_failure_reason "$out" "$status")"
            RESULT[$row|hs|rate]=FAILED
            return
        fi
        rates+=("$(sed -n 's/.*opened in [0-9.]* s (\([0-9.]*\) conn\/s).*/\1/p' "$out")")
        read -r u s < <(awk -v b="$before" -v a="$after" -v n="$HANDSHAKES" -v hz="$TICKS_PER_SECOND" 'BEGIN {
            split(b, x, " "); split(a, y, " "); printf "%.0f %.0f\n", (y[1] - x[1]) / hz * 1e6 / n, (y[2] - x[2]) / hz * 1e6 / n }')
        users+=("$u"); systems+=("$s")
        clients+=("$(awk '{ printf "%.0f", ($1 + $2) * 1e6 / n }' n="$HANDSHAKES" "$out.time")")
        log "  $row handshakes run $run: ${rates[-1]} conn/s, server $u µs user + $s µs system per connection, client ${clients[-1]} µs"
    done
    RESULT[$row|hs|rate]="$(printf '%s\n' "${rates[@]}" | median)"
    RESULT[$row|hs|user]="$(printf '%s\n' "${users[@]}" | median)"
    RESULT[$row|hs|system]="$(printf '%s\n' "${systems[@]}" | median)"
    RESULT[$row|hs|client]="$(printf '%s\n' "${clients[@]}" | median)"
}

SB_CMD=("$ECHO_BIN" --host 127.0.0.1 --port "$BASE_PORT" --io-backend "$IO_BACKEND" --shards "$SHARDS"
    --set "tls_port=$((BASE_PORT + 1))" --set "tls_certificate=$WORK/server.pem" --set "tls_private_key=$WORK/server.key"
    --set "tls_max_handshakes_per_shard=4096")
PEER_CMD=("$PEER_BIN" --host 127.0.0.1 --port "$((BASE_PORT + 2))" --threads 1
    --tls-certificate "$WORK/server.pem" --tls-key "$WORK/server.key")
if [[ -z "$ONLY" || " $ONLY " == *" switchboard "* ]]; then
    log "switchboard-echo ($IO_BACKEND, $SHARDS shard(s)): plain :$BASE_PORT, TLS :$((BASE_PORT + 1))"
    if start_ws_server switchboard "wss://127.0.0.1:$((BASE_PORT + 1))/ws" "${SB_CMD[@]}"; then
        # Interleaved: each round runs plaintext, then TLS, on the same process, so the ratio
        # of a round compares one host state (this host drifts by ±15% within minutes).
        for c in $CONNS; do
            for run in $(seq 1 "$RUNS"); do
                echo_run sb-plain "ws://127.0.0.1:$BASE_PORT/ws" "$c" "$run"
                echo_run sb-tls "wss://127.0.0.1:$((BASE_PORT + 1))/ws" "$c" "$run"
            done
            echo_medians sb-plain "$c"; echo_medians sb-tls "$c"
        done
        measure_handshakes sb-tls "wss://127.0.0.1:$((BASE_PORT + 1))/ws"
        stop_server
    else
        note_failure "switchboard-echo did not start"
    fi
fi
if [[ -z "$ONLY" || " $ONLY " == *" peer-hummingbird "* ]]; then
    log "peer-hummingbird (1 event-loop thread): TLS :$((BASE_PORT + 2))"
    if [[ -x "$PEER_BIN" ]] && start_ws_server peer-hummingbird "wss://127.0.0.1:$((BASE_PORT + 2))/ws" "${PEER_CMD[@]}"; then
        for c in $CONNS; do
            for run in $(seq 1 "$RUNS"); do echo_run hb-tls "wss://127.0.0.1:$((BASE_PORT + 2))/ws" "$c" "$run"; done
            echo_medians hb-tls "$c"
        done
        measure_handshakes hb-tls "wss://127.0.0.1:$((BASE_PORT + 2))/ws"
        stop_server
    else
        note_failure "peer-hummingbird ($PEER_BIN) did not start"
    fi
fi

cell() { local v="${RESULT[$1]:-}"; [[ -z "$v" || "$v" == nan ]] && v="–"; printf '%s' "$v"; }
fmt_rate() { local v="${RESULT[$1]:-}"; case "$v" in ""|nan) printf '–' ;; FAILED) printf 'FAILED' ;; *) printf '%.0f' "$v" ;; esac; }
declare -A NAMES=([sb-plain]="Switchboard plaintext (ws://)" [sb-tls]="Switchboard TLS (wss://, OpenSSL 3)" [hb-tls]="Hummingbird TLS (swift-nio-ssl)")

echo "### TLS (wss://) echo and handshakes (tls-bench.sh)"
echo
echo "- Date: $(date -u +%Y-%m-%dT%H:%M:%SZ); load average (1/5/15 min) before the first run: $LOAD_START"
echo "- Host: \`nproc\` = $(nproc), kernel \`$(uname -r)\`, OpenSSL $(openssl version | awk '{ print $2 }'); Switchboard \`$(cd "$MAIN_DIR" && git rev-parse --short HEAD 2>/dev/null || echo '?')\`, $CONFIG builds"
echo "- Servers pinned to CPU $SERVER_CPU (Switchboard: $IO_BACKEND, $SHARDS shard; Hummingbird: 1 event-loop thread), switchboard-bench to CPU $BENCH_CPU. Echo: $SIZE B messages, one in flight per connection, $WARMUP warm-up then $DURATION measured; handshakes: $HANDSHAKES connections opened as fast as the client goes (TCP + full TLS handshake, no resumption + WebSocket upgrade), then closed. Medians of $RUNS run(s); Switchboard's plaintext and TLS echo runs interleaved (a round runs each once)."
echo "- Server CPU per message = the server's user and system time over the measured window / round trips; per handshake = its time over the whole connect run (teardown included) / connections."
echo "- Commands: \`taskset -c $SERVER_CPU ${SB_CMD[*]}\`, \`taskset -c $SERVER_CPU ${PEER_CMD[*]}\`, \`$(echo_cmd "URL" CONNS "$SIZE") --server-pid PID\`, \`$BENCH_BIN connect URL --connections $HANDSHAKES --duration 200ms --cpu $BENCH_CPU\`"
echo
echo "| server | conns | echo msg/s | server CPU % | server µs user / msg | server µs system / msg | p99 µs |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for c in $CONNS; do
    for row in sb-plain sb-tls hb-tls; do
        [[ -n "${RESULT[$row|$c|rate]:-}" ]] || continue
        echo "| ${NAMES[$row]} | $c | $(fmt_rate "$row|$c|rate") | $(cell "$row|$c|scpu") | $(cell "$row|$c|user") | $(cell "$row|$c|system") | $(cell "$row|$c|p99") |"
    done
done
echo
for c in $CONNS; do
    [[ -n "${RESULT[sb-tls|$c|rate]:-}" && -n "${RESULT[sb-plain|$c|rate]:-}" ]] || continue
    echo "- Switchboard at $c connections, server CPU per message over TLS against plaintext, paired by round: $(tls_over_plain "$c") (target: within 1.3×)"
done
echo
echo "| server | full handshakes/s | server µs user / handshake | server µs system / handshake | client µs CPU / handshake |"
echo "|---|---:|---:|---:|---:|"
for row in sb-tls hb-tls; do
    [[ -n "${RESULT[$row|hs|rate]:-}" ]] || continue
    echo "| ${NAMES[$row]} | $(fmt_rate "$row|hs|rate") | $(cell "$row|hs|user") | $(cell "$row|hs|system") | $(cell "$row|hs|client") |"
done
report_failures
rm -rf "$WORK"
