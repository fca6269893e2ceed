#!/usr/bin/env bash
# Issue 16 items 4 and 5: fan-out with 1 and 2 shards. For 1 → 1,000 and 1 → 10,000
# subscribers of one channel (switchboard-echo's /broadcast, one publisher), on io_uring and
# epoll, with --shards 1 and --shards 2:
#   - throughput (publish as fast as the window allows): deliveries/s and the server's CPU per
#     delivery, user + system, from /proc/PID/stat (all shards' threads together);
#   - publish-to-delivery latency at a fixed publish rate (RATE_1000, RATE_10000 publishes/s):
#     p50 / p99 / p99.9 in µs, from each message's send time to its arrival at a subscriber.
# With 2 shards, half the subscribers live on the shard that does not own the publisher's
# socket, so every publish also crosses the shards' rings: the 2-shard CPU per delivery over the
# 1-shard one is the cost of that hop (item 5: within 10%).
#
# At full speed the publisher is closed-loop (switchboard-bench's window: 16 messages its ack
# subscriber has not received), and what a delivery costs follows how many frames each socket
# write carries (column "deliveries per socket write", from the server's counters). With 2
# shards the fan-out is a two-stage pipeline; when the ack subscriber sits on the second stage,
# two batches share the window and each write carries 8 frames instead of 16, which doubles
# the system time per delivery whatever the hop costs (seen at 1 → 10,000, and not in every
# run: it follows where the connections land). So the table also gives the CPU per delivery at
# the fixed latency rate, where both shard counts get the same publishes per turn.
#
# Placement: every server thread (acceptor and all shards) pinned to SERVER_CPUS (default "0":
# the same CPU budget as the single shard, so the ratio compares work, not parallelism; the two
# shards then take turns on one CPU), the load generator to BENCH_CPU. SERVER_CPUS=0,1 shows
# parallel shards instead (then the load generator shares a CPU with one of them).
# Every run is switchboard-bench: deliveries counted and per-subscriber order verified; a
# failed run is FAILED, never a figure. Medians of RUNS. Markdown on stdout.
#
#   RUNS=3 DURATION=10s WARMUP=2s SERVER_CPUS=0 BENCH_CPU=1 SKIP_BUILD=0 BASE_PORT=18700
#   SUBSCRIBERS="1000 10000" RATE_1000=500 RATE_10000=50 BACKENDS="uring epoll" SHARDS="1 2"
#   PEAK_ARGS="" (more switchboard-bench flags for the full-speed runs, e.g. "--window 256")
#   LATENCY_FLAGS=--busy-poll (the fixed-rate runs' client polls without sleeping: with a
#   sleeping client the p99 at 10,000 subscribers was twice as high for every server, the C++
#   peer too, RESULTS.md 2026-12-03; "" to measure as before)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS="${RUNS:-3}"; DURATION="${DURATION:-10s}"; WARMUP="${WARMUP:-2s}"
SERVER_CPUS="${SERVER_CPUS:-0}"; BENCH_CPU="${BENCH_CPU:-1}"; SKIP_BUILD="${SKIP_BUILD:-0}"
BASE_PORT="${BASE_PORT:-18700}"; SUBSCRIBERS="${SUBSCRIBERS:-1000 10000}"
RATE_1000="${RATE_1000:-500}"; RATE_10000="${RATE_10000:-50}"
BACKENDS="${BACKENDS:-uring epoll}"; SHARDS="${SHARDS:-1 2}"; PEAK_ARGS="${PEAK_ARGS:-}"
LATENCY_FLAGS="${LATENCY_FLAGS---busy-poll}"
bench_start release "switchboard-echo switchboard-bench"

rate_for() { local v="RATE_$1"; echo "${!v:-}"; }
for n in $SUBSCRIBERS; do [[ -n "$(rate_for "$n")" ]] || die "no publish rate for $n subscribers: set RATE_$n"; done

start() { # port backend shards
    taskset -c "$SERVER_CPUS" "$ECHO_BIN" --host 127.0.0.1 --port "$1" --io-backend "$2" --shards "$3" \
        --set max_connections_per_shard=30000 --log-level warning >"$WORK/server-$2-$3.log" 2>&1 &
    SERVER_PID=$!
    wait_for_ws "$1" /ws "$BENCH_BIN"
}
run_bench() { local out="$1"; shift; timeout 600 "$BENCH_BIN" "$@" --cpu "$BENCH_CPU" --quiet --server-pid "$SERVER_PID" >"$out" 2>&1; }
split() { # out -> "user system" µs per delivery
    awk '/server CPU split:/ { u = ""; s = ""; for (i = 1; i <= NF; i++) { if ($i == "user" && $(i + 2) == "system") u = $(i + 1); if ($i == "system" && $(i - 2) == "user") s = $(i + 1) } print u, s }' "$1"
}
percentile() { awk -v k="$2" '/latency µs:/ { for (i = 1; i <= NF; i++) if ($i == k) print $(i + 1) }' "$1"; }

declare -A RATE USR SYS LAT PERSEND WAKES FIXED
port="$BASE_PORT"
for backend in $BACKENDS; do
    for shards in $SHARDS; do
        for n in $SUBSCRIBERS; do
            key="$backend|$shards|$n"
            rates=(); users=(); systems=(); lats=(); sends=(); wakeups=(); fixed_cpu=(); failed=0
            for run in $(seq 1 "$RUNS"); do
                port=$((port + 1))
                if ! start "$port" "$backend" "$shards"; then note_failure "$key: the server did not start ($(tail -1 "$WORK/server-$backend-$shards.log"))"; failed=1; stop_server; break; fi
                out="$WORK/$backend-$shards-$n-$run-peak.txt"; status=0
                d0="$(metric_total "$port" switchboard_fanout_deliveries_total)"; s0="$(metric_total "$port" switchboard_sends_total)"
                w0="$(metric_total "$port" switchboard_doorbell_wakeups_total)"
                # shellcheck disable=SC2086
                run_bench "$out" fanout --raw --subscribers "$n" --publishers 1 -s 20 -d "$DURATION" --warmup "$WARMUP" $PEAK_ARGS \
                    --source-addresses 127.0.0.1-4 "ws://127.0.0.1:$port/broadcast" || status=$?
                if [[ "$status" != 0 ]]; then stop_server; note_failure "$key run $run (peak): $(run_failure_reason "$out" "$status")"; failed=1; break; fi
                rates+=("$(awk '/^  deliveries:/ { print $2 }' "$out")")
                # Frames per socket write and doorbell wake-ups per 1,000 deliveries, from the
                # server's counters over the run (warm-up included): what system time follows.
                read -r per_send wakes <<<"$(awk -v d0="$d0" -v d1="$(metric_total "$port" switchboard_fanout_deliveries_total)" \
                    -v s0="$s0" -v s1="$(metric_total "$port" switchboard_sends_total)" \
                    -v w0="$w0" -v w1="$(metric_total "$port" switchboard_doorbell_wakeups_total)" \
                    'BEGIN { if (d0 == "-" || s0 == "-" || s1 <= s0) { print "n/a n/a"; exit }
                             printf "%.1f %.2f\n", (d1 - d0) / (s1 - s0), (w0 == "-" ? 0 : (w1 - w0) * 1000 / (d1 - d0)) }')"
                sends+=("$per_send"); wakeups+=("$wakes")
                read -r u s <<<"$(split "$out")"; users+=("${u:-nan}"); systems+=("${s:-nan}")
                out="$WORK/$backend-$shards-$n-$run-latency.txt"; status=0
                # shellcheck disable=SC2086
                run_bench "$out" fanout $LATENCY_FLAGS --raw --subscribers "$n" --publishers 1 -s 20 -r "$(rate_for "$n")" -d "$DURATION" --warmup "$WARMUP" \
                    --source-addresses 127.0.0.1-4 "ws://127.0.0.1:$port/broadcast" || status=$?
                stop_server
                if [[ "$status" != 0 ]]; then note_failure "$key run $run (latency): $(run_failure_reason "$out" "$status")"; failed=1; break; fi
                lats+=("$(percentile "$out" p50) / $(percentile "$out" p99) / $(percentile "$out" p99.9)")
                # CPU per delivery at the fixed rate too: there both shard counts get the same
                # publishes per turn, whatever the load generator's window does at full speed.
                read -r fu fs <<<"$(split "$out")"; fixed_cpu+=("$(awk -v u="${fu:-nan}" -v s="${fs:-nan}" 'BEGIN { printf "%.3f", u + s }')")
                log "$key run $run: ${rates[-1]} deliveries/s (server µs/delivery user ${u:-?} system ${s:-?}); at $(rate_for "$n")/s p50/p99/p99.9 ${lats[-1]} µs"
            done
            if [[ "$failed" == 1 ]]; then RATE[$key]="FAILED"; continue; fi
            RATE[$key]="$(printf '%s\n' "${rates[@]}" | median)"
            USR[$key]="$(printf '%s\n' "${users[@]}" | median)"; SYS[$key]="$(printf '%s\n' "${systems[@]}" | median)"
            FIXED[$key]="$(printf '%s\n' "${fixed_cpu[@]}" | median)"
            PERSEND[$key]="$(printf '%s\n' "${sends[@]}" | { grep -v n/a || true; } | median)"; WAKES[$key]="$(printf '%s\n' "${wakeups[@]}" | { grep -v n/a || true; } | median)"
            # Latency triples: the run whose p99 is the median one.
            LAT[$key]="$(printf '%s\n' "${lats[@]}" | sort -t/ -k2 -g | sed -n "$(( (${#lats[@]} + 1) / 2 ))p")"
        done
    done
done

echo "### Fan-out with 1 and 2 shards: throughput, CPU per delivery, publish-to-delivery latency (shards-bench.sh)"
echo
echo "- Date: $(date -u +%Y-%m-%dT%H:%M:%SZ); \`nproc\` = $(nproc); kernel \`$(uname -r)\`; Switchboard \`$(cd "$MAIN_DIR" && git rev-parse --short HEAD)\` (release); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- Server threads pinned to CPU(s) $SERVER_CPUS, load generator to CPU $BENCH_CPU; ${WARMUP} warm-up + ${DURATION}; $RUNS run(s), medians (latency: the run with the median p99). CPU per delivery: the whole server process (all shards) over the deliveries received."
echo
echo '```'
echo "taskset -c $SERVER_CPUS $ECHO_BIN --host 127.0.0.1 --port PORT --io-backend uring|epoll --shards 1|2 --set max_connections_per_shard=30000"
echo "$BENCH_BIN fanout --raw --subscribers N --publishers 1 -s 20 -d $DURATION --warmup $WARMUP${PEAK_ARGS:+ $PEAK_ARGS} --source-addresses 127.0.0.1-4 --cpu $BENCH_CPU --server-pid PID ws://127.0.0.1:PORT/broadcast"
echo "$BENCH_BIN fanout${LATENCY_FLAGS:+ $LATENCY_FLAGS} --raw --subscribers N --publishers 1 -s 20 -r RATE -d $DURATION --warmup $WARMUP --source-addresses 127.0.0.1-4 --cpu $BENCH_CPU --server-pid PID ws://127.0.0.1:PORT/broadcast"
echo '```'
echo
echo "| backend | subscribers | shards | deliveries/s | server µs per delivery (user + system) | 2 shards / 1 shard, CPU per delivery | deliveries per socket write | doorbell wake-ups per 1,000 deliveries | publishes/s for latency | p50 / p99 / p99.9 µs | server µs per delivery at that rate | 2 shards / 1 shard at that rate |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for backend in $BACKENDS; do
    for n in $SUBSCRIBERS; do
        for shards in $SHARDS; do
            key="$backend|$shards|$n"
            if [[ "${RATE[$key]:-}" == FAILED || -z "${RATE[$key]:-}" ]]; then
                echo "| $backend | $n | $shards | FAILED | | | | | $(rate_for "$n") | | | |"; continue
            fi
            cpu="$(awk -v u="${USR[$key]}" -v s="${SYS[$key]}" 'BEGIN { printf "%.3f + %.3f = %.3f", u, s, u + s }')"
            ratio=""
            one="$backend|1|$n"
            if [[ "$shards" != 1 && -n "${USR[$one]:-}" && "${RATE[$one]}" != FAILED ]]; then
                ratio="$(awk -v u="${USR[$key]}" -v s="${SYS[$key]}" -v u1="${USR[$one]}" -v s1="${SYS[$one]}" 'BEGIN { if (u1 + s1 > 0) printf "%.2f", (u + s) / (u1 + s1) }')"
            fi
            fixed_ratio=""
            if [[ "$shards" != 1 && -n "${FIXED[$one]:-}" && "${RATE[$one]}" != FAILED ]]; then
                fixed_ratio="$(awk -v a="${FIXED[$key]}" -v b="${FIXED[$one]}" 'BEGIN { if (b > 0) printf "%.2f", a / b }')"
            fi
            echo "| $backend | $n | $shards | $(rate_cell "${RATE[$key]}") | $cpu | $ratio | ${PERSEND[$key]} | ${WAKES[$key]} | $(rate_for "$n") | ${LAT[$key]} | ${FIXED[$key]} | $fixed_ratio |"
        done
    done
done
report_failures
