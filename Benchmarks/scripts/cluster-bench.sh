#!/usr/bin/env bash
# Cluster fan-out (issue 13): one channel published on node A, SUBSCRIBERS subscribers on each
# of nodes A, B and C (three switchboard-echo processes, cluster_engine = redis, one local
# redis-server), next to one node in memory with the same total (3 x SUBSCRIBERS) from the
# same run. Markdown on stdout.
#
# switchboard-bench takes one target, so the cluster run is three clients at once:
#   - `fanout` on A: SUBSCRIBERS subscribers + 1 publisher on ws://A/broadcast/bench. Its
#     deliveries/s and publish-to-delivery p50/p99 are A's subscribers' (every publish, A's
#     own included, goes through Redis's script and comes back: the latency is the cluster's);
#   - `connect` on B and on C: SUBSCRIBERS idle sockets each on the same channel, which read
#     and discard. B's and C's deliveries/s come from their own switchboard_fanout_deliveries_total
#     over the fanout run, divided by its publishing time (warm-up + measured window: until
#     2026-12-05 by the whole run, A's connects and closes included, which read B and C 2-8%
#     low); their drops (switchboard_ws_messages_dropped_total) are reported.
# Redis CPU per publish: redis-server's utime + stime (/proc/PID/stat) over the fanout run,
# divided by the scripts Redis ran (INFO commandstats: evalsha + eval calls).
#
# RUNS rounds, interleaved: round r runs the single node, then the cluster, before round r + 1
# (every server stays up); the table gives medians, then every round.
#
#   RUNS=3 SUBSCRIBERS=1000 DURATION=10s WARMUP=2s SIZE=64 SHARDS=1 BUILD=release SKIP_BUILD=0
#   BASE_PORT=18700 PEAK_ARGS="" bash Benchmarks/scripts/cluster-bench.sh
# PEAK_ARGS: more switchboard-bench fanout flags for both setups' runs, e.g. "--window 64": the
# publisher keeps 16 messages in flight by default, and over the cluster each one's round
# trip through Redis bounds the publish rate, so the default measures the window as much as
# the nodes.
# Needs redis-server and redis-cli (Debian: redis-server, redis-tools).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS="${RUNS:-3}"; SUBSCRIBERS="${SUBSCRIBERS:-1000}"; DURATION="${DURATION:-10s}"; WARMUP="${WARMUP:-2s}"; SIZE="${SIZE:-64}"
SHARDS="${SHARDS:-1}"; BUILD="${BUILD:-release}"; SKIP_BUILD="${SKIP_BUILD:-0}"; BASE_PORT="${BASE_PORT:-18700}"; PEAK_ARGS="${PEAK_ARGS:-}"
[[ "$SUBSCRIBERS" =~ ^[1-9][0-9]*$ ]] || { log "SUBSCRIBERS must be a positive integer, got '$SUBSCRIBERS'"; exit 2; }
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { log "RUNS must be a positive integer, got '$RUNS'"; exit 2; }
[[ "$BUILD" == release || "$BUILD" == debug ]] || { log "BUILD must be release or debug, got '$BUILD'"; exit 2; }
for tool in redis-server redis-cli; do
    command -v "$tool" >/dev/null || { log "$tool is required (apt-get install redis-server redis-tools)"; exit 1; }
done
bench_start "$BUILD" "switchboard-echo switchboard-bench"
CLK_TCK="$(getconf CLK_TCK)"
PIDS=()
stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
trap stop_all EXIT

REDIS_PORT=$((BASE_PORT + 9))
# seconds DURATION: "10s", "500ms", "2m" in seconds (for the client's hold time).
seconds() { awk -v d="$1" 'BEGIN { if (d ~ /ms$/) print substr(d, 1, length(d) - 2) / 1000; else if (d ~ /m$/) print substr(d, 1, length(d) - 1) * 60; else { sub(/s$/, "", d); print d } }'; }
metric() { # port name: the sum over shards
    curl -fsS "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%d\n", s }'
}
script_calls() { # evalsha + eval calls Redis ran so far
    redis-cli -p "$REDIS_PORT" INFO commandstats | tr -d '\r' |
        awk -F'[:=,]' '$1 == "cmdstat_evalsha" || $1 == "cmdstat_eval" { s += $3 } END { printf "%d\n", s }'
}
wait_health() { # port
    poll_until 10 http_ok "http://127.0.0.1:$1/health" || { log "node on port $1 did not come up"; return 1; }
}
start_node() { # name port extra-args...
    local name="$1" port="$2"; shift 2
    "$ECHO_BIN" --host 127.0.0.1 --port "$port" --shards "$SHARDS" "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=("$!")
    LAST_PID=$!
    wait_health "$port"
}
# fanout PORT PID LABEL: one fanout run, its summary in $WORK/LABEL.txt; 0 when it passed.
fanout() {
    local port="$1" pid="$2" label="$3" subs="$4" status=0
    # shellcheck disable=SC2086
    timeout 300 "$BENCH_BIN" fanout --raw --subscribers "$subs" -s "$SIZE" -d "$DURATION" --warmup "$WARMUP" $PEAK_ARGS \
        --quiet --server-pid "$pid" "ws://127.0.0.1:$port/broadcast/bench" >"$WORK/$label.txt" 2>&1 || status=$?
    if [[ "$status" != 0 ]]; then note_failure "$label: $(run_failure_reason "$WORK/$label.txt" "$status")"; fi
    return 0
}
field() { # file: deliveries/s, p50, p99 (µs), published
    awk '/^  deliveries:/ { r = $2 } /latency µs:/ { for (i = 1; i <= NF; i++) { if ($i == "p50") a = $(i + 1); if ($i == "p99") b = $(i + 1) } }
         /^  published / { p = $2; sub(/,/, "", p) } END { print (r ? r : "n/a"), (a ? a : "n/a"), (b ? b : "n/a"), (p ? p : "n/a") }' "$1"
}

# ---- every server up for the whole run: one node in memory, redis-server, three nodes over it
log "single node (memory) on :$BASE_PORT; three nodes over Redis on :$((BASE_PORT + 1))-$((BASE_PORT + 3))"
start_node single "$BASE_PORT"
single_pid="$LAST_PID"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --logfile "" >"$WORK/redis.log" 2>&1 &
PIDS+=("$!")
REDIS_PID=$!
poll_until 5 redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 || true
redis-cli -p "$REDIS_PORT" ping >/dev/null
ports=($((BASE_PORT + 1)) $((BASE_PORT + 2)) $((BASE_PORT + 3)))
node_pids=()
for i in 0 1 2; do
    start_node "node$((i + 1))" "${ports[$i]}" --set cluster_engine=redis \
        --set "cluster_redis_url=redis://127.0.0.1:$REDIS_PORT" --set "cluster_node_id=$((i + 1))"
    node_pids+=("$LAST_PID")
done
# B's and C's subscribers stay connected through every round (killed by stop_all at the end).
hold="$(awk -v w="$(seconds "$WARMUP")" -v d="$(seconds "$DURATION")" -v r="$RUNS" 'BEGIN { printf "%ds", r * (2 * (w + d) + 60) + 60 }')"
for i in 1 2; do
    "$BENCH_BIN" connect -c "$SUBSCRIBERS" -d "$hold" --quiet "ws://127.0.0.1:${ports[$i]}/broadcast/bench" \
        >"$WORK/connect-$i.txt" 2>&1 &
    PIDS+=("$!")
done
# Every B and C subscriber connected (the fanout on A waits for its own).
for i in 1 2; do
    for _ in $(seq 1 600); do
        [[ "$(metric "${ports[$i]}" switchboard_connections_open)" -ge "$SUBSCRIBERS" ]] && break
        sleep 0.1
    done
    [[ "$(metric "${ports[$i]}" switchboard_connections_open)" -ge "$SUBSCRIBERS" ]] || { log "node $((i + 1)): subscribers did not connect"; exit 1; }
done

PUBLISHING_S="$(awk -v w="$(seconds "$WARMUP")" -v d="$(seconds "$DURATION")" 'BEGIN { print w + d }')"
# Per run r (1-based): S_* the single node's figures, C_* the cluster's.
S_RATE=(); S_P50=(); S_P99=()
C_RATE=(); A_COUNTED=(); C_P50=(); C_P99=(); C_PUBLISHED=(); C_TOTAL=(); B_RATE=(); C3_RATE=(); REDIS_US=(); REDIS_CPU=(); SCRIPTS=()
DROPPED_B=(); DROPPED_C=(); PER_WRITE=(); CPU_PER=(); ELAPSED=()

# cluster_round RUN: one fanout on A, with B's and C's deliveries, Redis's CPU and each node's
# CPU per delivery over the same span.
cluster_round() {
    local run="$1" i sent writes u s r_user r_sys r_user2 r_sys2 calls_before calls start_ns elapsed c_rate c_p50 c_p99 c_published
    local sent_before=() dropped_before=() writes_before=() ticks_before=() remote_rate=() remote_dropped=() per_write=() cpu_per=()
    read -r r_user r_sys < <(proc_cpu_ticks "$REDIS_PID")
    calls_before="$(script_calls)"
    for i in 0 1 2; do
        sent_before[$i]="$(metric "${ports[$i]}" switchboard_fanout_deliveries_total)"
        dropped_before[$i]="$(metric "${ports[$i]}" switchboard_ws_messages_dropped_total)"
        writes_before[$i]="$(metric "${ports[$i]}" switchboard_sends_total)"
        read -r u s < <(proc_cpu_ticks "${node_pids[$i]}"); ticks_before[$i]=$((u + s))
    done
    start_ns="$(date +%s%N)"
    fanout "${ports[0]}" "${node_pids[0]}" "cluster-a-run$run" "$SUBSCRIBERS"
    elapsed="$(awk -v a="$start_ns" -v b="$(date +%s%N)" 'BEGIN { print (b - a) / 1e9 }')"
    read -r r_user2 r_sys2 < <(proc_cpu_ticks "$REDIS_PID")
    calls="$(( $(script_calls) - calls_before ))"
    read -r c_rate c_p50 c_p99 c_published < <(field "$WORK/cluster-a-run$run.txt")
    for i in 0 1 2; do
        sent="$(( $(metric "${ports[$i]}" switchboard_fanout_deliveries_total) - sent_before[$i] ))"
        remote_dropped[$i]="$(( $(metric "${ports[$i]}" switchboard_ws_messages_dropped_total) - dropped_before[$i] ))"
        # Over the publishing time, warm-up and measured window: nothing is published before
        # (A's subscribers connecting) or after (closing), which the whole span would count.
        remote_rate[$i]="$(awk -v s="$sent" -v e="$PUBLISHING_S" 'BEGIN { printf "%.0f", s / e }')"
        # What each node's deliveries cost over the same span: frames per socket write (the
        # batch each subscriber got per turn) and the node's CPU (user + system) per delivery.
        writes="$(( $(metric "${ports[$i]}" switchboard_sends_total) - writes_before[$i] ))"
        read -r u s < <(proc_cpu_ticks "${node_pids[$i]}")
        per_write[$i]="$(awk -v d="$sent" -v w="$writes" 'BEGIN { if (w > 0) printf "%.1f", d / w; else print "n/a" }')"
        cpu_per[$i]="$(awk -v t=$((u + s - ticks_before[$i])) -v hz="$CLK_TCK" -v d="$sent" 'BEGIN { if (d > 0) printf "%.2f", t / hz * 1e6 / d; else print "n/a" }')"
    done
    C_RATE[$run]="$c_rate"; C_P50[$run]="$c_p50"; C_P99[$run]="$c_p99"; C_PUBLISHED[$run]="$c_published"
    A_COUNTED[$run]="${remote_rate[0]}"; B_RATE[$run]="${remote_rate[1]}"; C3_RATE[$run]="${remote_rate[2]}"; ELAPSED[$run]="$elapsed"
    C_TOTAL[$run]="$(awk -v a="$c_rate" -v b="${remote_rate[1]}" -v c="${remote_rate[2]}" 'BEGIN { if (a ~ /^[0-9.]+$/) printf "%.0f", a + b + c; else print "n/a" }')"
    SCRIPTS[$run]="$calls"
    REDIS_US[$run]="$(awk -v t=$((r_user2 + r_sys2 - r_user - r_sys)) -v hz="$CLK_TCK" -v n="$calls" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "n/a" }')"
    REDIS_CPU[$run]="$(awk -v t=$((r_user2 + r_sys2 - r_user - r_sys)) -v hz="$CLK_TCK" -v e="$elapsed" 'BEGIN { printf "%.0f", t / hz / e * 100 }')"
    DROPPED_B[$run]="${remote_dropped[1]}"; DROPPED_C[$run]="${remote_dropped[2]}"
    PER_WRITE[$run]="${per_write[0]}, ${per_write[1]}, ${per_write[2]}"; CPU_PER[$run]="${cpu_per[0]}, ${cpu_per[1]}, ${cpu_per[2]}"
    log "  cluster run $run: A $c_rate, B ${remote_rate[1]}, C ${remote_rate[2]} deliveries/s; p50/p99 $c_p50/$c_p99 µs; node CPU per delivery ${CPU_PER[$run]} µs; Redis ${REDIS_US[$run]} µs per script"
}

# Interleaved rounds: round r runs the single node, then the cluster, before round r + 1, so
# the two compare within one host state (this host drifts by ±15% within minutes).
for run in $(seq 1 "$RUNS"); do
    log "round $run/$RUNS: single node, $((3 * SUBSCRIBERS)) subscribers"
    fanout "$BASE_PORT" "$single_pid" "single-run$run" $((3 * SUBSCRIBERS))
    read -r S_RATE[run] S_P50[run] S_P99[run] _ < <(field "$WORK/single-run$run.txt")
    log "  single run $run: ${S_RATE[$run]} deliveries/s, p50/p99 ${S_P50[$run]}/${S_P99[$run]} µs"
    log "round $run/$RUNS: cluster, $SUBSCRIBERS subscribers on each of 3 nodes, publishing on node 1"
    cluster_round "$run"
done
stop_all

# med NAME: the median of array NAME's numeric entries ("n/a" without any); list NAME: the runs.
med() { local -n a="$1"; printf '%s\n' "${a[@]}" | { grep -E '^[0-9.]+$' || true; } | median | awk '{ print ($1 == "nan" ? "n/a" : $1) }'; }
list() { local -n a="$1"; local IFS=' '; echo "${a[*]}"; }
runs_note="medians of $RUNS interleaved round(s)"
echo "### Cluster fan-out: publish on node A, $SUBSCRIBERS subscribers on each of A, B, C ($BUILD build, $SHARDS shard(s) per node, $SIZE B, $DURATION + $WARMUP warm-up, $runs_note${PEAK_ARGS:+, fanout $PEAK_ARGS})"
echo
echo "| setup | deliveries/s, all | on A (or the node) | on B | on C | p50 µs | p99 µs | Redis CPU per publish | Redis CPU |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
echo "| one node, memory, $((3 * SUBSCRIBERS)) subscribers | $(med S_RATE) | $(med S_RATE) | | | $(med S_P50) | $(med S_P99) | | |"
echo "| 3 nodes over Redis | $(med C_TOTAL) | $(med C_RATE) | $(med B_RATE) | $(med C3_RATE) | $(med C_P50) | $(med C_P99) | $(med REDIS_US) µs ($(med SCRIPTS) scripts) | $(med REDIS_CPU)% |"
echo
echo "Each round ran the single node, then the cluster (every server up throughout; B's and C's subscribers held). Per round:"
echo
echo "| round | one node | cluster: A / B / C | A by its counter | all | node CPU per delivery A, B, C µs | frames per write A, B, C | dropped on B / C | published on A |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for run in $(seq 1 "$RUNS"); do
    echo "| $run | ${S_RATE[$run]} | ${C_RATE[$run]} / ${B_RATE[$run]} / ${C3_RATE[$run]} | ${A_COUNTED[$run]} | ${C_TOTAL[$run]} | ${CPU_PER[$run]} | ${PER_WRITE[$run]} | ${DROPPED_B[$run]} / ${DROPPED_C[$run]} | ${C_PUBLISHED[$run]} |"
done
echo
echo "Latency is publish-to-delivery on node A's subscribers (the publish goes through Redis and back)."
echo "B and C: switchboard_fanout_deliveries_total over each fanout run, divided by its publishing time ($PUBLISHING_S s: warm-up and measured window; the runs took $(list ELAPSED) s with A's connects and closes). A's own counter, read the same way, is the column \"A by its counter\" (against A's client-verified figure over the measured window). Node CPU per delivery is over the whole run."
echo "Cluster against one node, paired by round (all three nodes' deliveries / the single node's): $(paste -d' ' <(printf "%s\n" "${C_TOTAL[@]}") <(printf "%s\n" "${S_RATE[@]}") | awk '$1 ~ /^[0-9.]+$/ && $2 ~ /^[0-9.]+$/ && $2 > 0 { printf "%s%.2f", (n++ ? " " : ""), $1 / $2 } END { if (!n) printf "n/a" }')."
report_failures
