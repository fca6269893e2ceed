#!/usr/bin/env bash
# TLS cost: WebSocket echo over wss:// at 100 and 1,000 connections and full TLS handshakes per
# second, Switchboard's switchboard-echo (OpenSSL 3 on the shards, memory BIOs) next to the
# Hummingbird peer with swift-nio-ssl (BoringSSL), plus Switchboard's own plaintext echo from the
# same run so the TLS cost is visible. Driven by switchboard-bench (its wss:// client: a full
# handshake per connection, no resumption, no certificate verification; loopback only).
# Prints a Markdown fragment on stdout; progress on stderr.
#
# Environment overrides:
#   RUNS=3 DURATION=10s WARMUP=2s CONNS="100 1000" SIZE=32 HANDSHAKES=2000 SHARDS=1
#   SERVER_CPU=0 BENCH_CPU=1 BASE_PORT=18600 CONFIG=release SKIP_BUILD=0 ONLY="" (e.g. "switchboard")
#   ECHO_BIN, PEER_BIN, BENCH_BIN (prebuilt binaries)
# A smoke run on a loaded machine: RUNS=1 DURATION=3s WARMUP=1s CONFIG=debug
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MAIN_DIR="$(cd "$BENCH_DIR/.." && pwd)"

RUNS="${RUNS:-3}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
CONNS="${CONNS:-100 1000}"
SIZE="${SIZE:-32}"
HANDSHAKES="${HANDSHAKES:-2000}"
SHARDS="${SHARDS:-1}"
SERVER_CPU="${SERVER_CPU:-0}"
BENCH_CPU="${BENCH_CPU:-1}"
BASE_PORT="${BASE_PORT:-18600}"
CONFIG="${CONFIG:-release}"
SKIP_BUILD="${SKIP_BUILD:-0}"
ONLY="${ONLY:-}"

log() { echo "[tls-bench] $*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in taskset awk openssl; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [[ "$SKIP_BUILD" != 1 ]]; then
    log "building switchboard-echo and switchboard-bench ($CONFIG) in $MAIN_DIR"
    (cd "$MAIN_DIR" && swift build -c "$CONFIG" --product switchboard-echo >&2)
    (cd "$MAIN_DIR" && swift build -c "$CONFIG" --product switchboard-bench >&2)
    if [[ -z "$ONLY" || " $ONLY " == *" peer-hummingbird "* ]]; then
        log "building peer-hummingbird ($CONFIG) in $BENCH_DIR"
        (cd "$BENCH_DIR" && swift build -c "$CONFIG" --product peer-hummingbird >&2)
    fi
fi
ECHO_BIN="${ECHO_BIN:-$MAIN_DIR/.build/$CONFIG/switchboard-echo}"
PEER_BIN="${PEER_BIN:-$BENCH_DIR/.build/$CONFIG/peer-hummingbird}"
BENCH_BIN="${BENCH_BIN:-$MAIN_DIR/.build/$CONFIG/switchboard-bench}"
[[ -x "$BENCH_BIN" ]] || die "missing $BENCH_BIN"

WORK="$(mktemp -d /tmp/tls-bench.XXXXXX)"
SERVER_PID=""
trap cleanup EXIT

# A throwaway CA and a certificate for 127.0.0.1 (no key is committed).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=tls-bench CA" \
    -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$WORK/server.ext"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -set_serial 1 -days 2 \
    -extfile "$WORK/server.ext" -out "$WORK/server.pem" 2>/dev/null

# start_server NAME URL CMD... : starts the server pinned to SERVER_CPU and waits until one
# echo round trip on URL works.
start_server() {
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
    log "$name did not answer an echo on $url within 10 s"
    stop_server
    return 1
}

# measure LABEL KIND(echo|handshake) URL [CONNS]: RUNS runs, prints the median figure.
measure() {
    local label="$1" kind="$2" url="$3" conns="${4:-}" run out status figures=()
    for run in $(seq 1 "$RUNS"); do
        out="$WORK/$label-$run.txt"
        status=0
        if [[ "$kind" == echo ]]; then
            timeout 300 taskset -c "$BENCH_CPU" "$BENCH_BIN" echo "$url" --connections "$conns" --size "$SIZE" \
                --duration "$DURATION" --warmup "$WARMUP" --quiet >"$out" 2>&1 || status=$?
            [[ $status == 0 ]] && figures+=("$(sed -n 's/.*= \([0-9.]*\) msg\/s.*/\1/p' "$out")")
        else
            timeout 300 taskset -c "$BENCH_CPU" "$BENCH_BIN" connect "$url" --connections "$HANDSHAKES" \
                --duration 1s --quiet >"$out" 2>&1 || status=$?
            [[ $status == 0 ]] && figures+=("$(sed -n 's/.*opened in [0-9.]* s (\([0-9.]*\) conn\/s).*/\1/p' "$out")")
        fi
        if [[ $status != 0 ]]; then note_failure "$label run $run: $(run_failure_reason "$out" "$status")"; echo FAILED; return; fi
    done
    printf '%s\n' "${figures[@]}" | median
}

declare -A RESULT
if [[ -z "$ONLY" || " $ONLY " == *" switchboard "* ]]; then
    PLAIN=$BASE_PORT TLS=$((BASE_PORT + 1))
    log "switchboard-echo: plain :$PLAIN, TLS :$TLS, $SHARDS shard(s)"
    if start_server switchboard "wss://127.0.0.1:$TLS/ws" "$ECHO_BIN" --host 127.0.0.1 --port "$PLAIN" --shards "$SHARDS" \
            --set "tls_port=$TLS" --set "tls_certificate=$WORK/server.pem" --set "tls_private_key=$WORK/server.key" \
            --set "tls_max_handshakes_per_shard=4096"; then
        for c in $CONNS; do
            RESULT[sb-plain-$c]="$(measure "switchboard-plain-$c" echo "ws://127.0.0.1:$PLAIN/ws" "$c")"
            RESULT[sb-tls-$c]="$(measure "switchboard-tls-$c" echo "wss://127.0.0.1:$TLS/ws" "$c")"
        done
        RESULT[sb-hs]="$(measure switchboard-handshakes handshake "wss://127.0.0.1:$TLS/ws")"
        stop_server
    else
        note_failure "switchboard-echo did not start"
    fi
fi
if [[ -z "$ONLY" || " $ONLY " == *" peer-hummingbird "* ]]; then
    PEER=$((BASE_PORT + 2))
    if [[ -x "$PEER_BIN" ]] && start_server peer-hummingbird "wss://127.0.0.1:$PEER/ws" "$PEER_BIN" --host 127.0.0.1 --port "$PEER" \
            --threads 1 --tls-certificate "$WORK/server.pem" --tls-key "$WORK/server.key"; then
        for c in $CONNS; do RESULT[hb-tls-$c]="$(measure "hummingbird-tls-$c" echo "wss://127.0.0.1:$PEER/ws" "$c")"; done
        RESULT[hb-hs]="$(measure hummingbird-handshakes handshake "wss://127.0.0.1:$PEER/ws")"
        stop_server
    else
        note_failure "peer-hummingbird ($PEER_BIN) did not start"
    fi
fi

echo "TLS echo ($SIZE B messages, window 1) and full handshakes (TCP + TLS + WebSocket upgrade, $HANDSHAKES connections), median of $RUNS run(s) of $DURATION, $CONFIG build, server on CPU $SERVER_CPU, client on CPU $BENCH_CPU:"
echo
echo "| server | $(for c in $CONNS; do printf 'echo msg/s @%s conns | ' "$c"; done)handshakes/s |"
echo "|---|$(for c in $CONNS; do printf -- '---|'; done)---|"
echo "| Switchboard plaintext (ws://) | $(for c in $CONNS; do printf '%s | ' "${RESULT[sb-plain-$c]:-}"; done)– |"
echo "| Switchboard TLS (wss://, OpenSSL 3) | $(for c in $CONNS; do printf '%s | ' "${RESULT[sb-tls-$c]:-}"; done)${RESULT[sb-hs]:-} |"
echo "| Hummingbird TLS (swift-nio-ssl) | $(for c in $CONNS; do printf '%s | ' "${RESULT[hb-tls-$c]:-}"; done)${RESULT[hb-hs]:-} |"
report_failures
rm -rf "$WORK"
