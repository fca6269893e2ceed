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
#     over the fanout run; their drops (switchboard_ws_messages_dropped_total) are reported.
# Redis CPU per publish: redis-server's utime + stime (/proc/PID/stat) over the fanout run,
# divided by the scripts Redis ran (INFO commandstats: evalsha + eval calls).
#
#   SUBSCRIBERS=1000 DURATION=10s WARMUP=2s SIZE=64 SHARDS=1 BUILD=release SKIP_BUILD=0
#   BASE_PORT=18700 bash Benchmarks/scripts/cluster-bench.sh
# Needs redis-server and redis-cli (Debian: redis-server, redis-tools).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SUBSCRIBERS="${SUBSCRIBERS:-1000}"; DURATION="${DURATION:-10s}"; WARMUP="${WARMUP:-2s}"; SIZE="${SIZE:-64}"
SHARDS="${SHARDS:-1}"; BUILD="${BUILD:-release}"; SKIP_BUILD="${SKIP_BUILD:-0}"; BASE_PORT="${BASE_PORT:-18700}"
[[ "$SUBSCRIBERS" =~ ^[1-9][0-9]*$ ]] || { log "SUBSCRIBERS must be a positive integer, got '$SUBSCRIBERS'"; exit 2; }
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
    timeout 300 "$BENCH_BIN" fanout --raw --subscribers "$subs" -s "$SIZE" -d "$DURATION" --warmup "$WARMUP" \
        --quiet --server-pid "$pid" "ws://127.0.0.1:$port/broadcast/bench" >"$WORK/$label.txt" 2>&1 || status=$?
    if [[ "$status" != 0 ]]; then note_failure "$label: $(run_failure_reason "$WORK/$label.txt" "$status")"; fi
    return 0
}
field() { # file: deliveries/s, p50, p99 (µs), published
    awk '/^  deliveries:/ { r = $2 } /latency µs:/ { for (i = 1; i <= NF; i++) { if ($i == "p50") a = $(i + 1); if ($i == "p99") b = $(i + 1) } }
         /^  published / { p = $2; sub(/,/, "", p) } END { print (r ? r : "n/a"), (a ? a : "n/a"), (b ? b : "n/a"), (p ? p : "n/a") }' "$1"
}

# ---- one node, in memory, 3 x SUBSCRIBERS subscribers
log "single node: $((3 * SUBSCRIBERS)) subscribers"
start_node single "$BASE_PORT"
single_pid="$LAST_PID"
fanout "$BASE_PORT" "$single_pid" single $((3 * SUBSCRIBERS))
read -r s_rate s_p50 s_p99 _ < <(field "$WORK/single.txt")
stop_all

# ---- three nodes over Redis
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
hold="$(awk -v w="$(seconds "$WARMUP")" -v d="$(seconds "$DURATION")" 'BEGIN { printf "%ds", w + d + 60 }')"
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
log "cluster: $SUBSCRIBERS subscribers on each of 3 nodes, publishing on node 1"
read -r r_user r_sys < <(proc_cpu_ticks "$REDIS_PID")
calls_before="$(script_calls)"
sent_before=(); dropped_before=(); writes_before=(); ticks_before=()
for i in 0 1 2; do
    sent_before[$i]="$(metric "${ports[$i]}" switchboard_fanout_deliveries_total)"
    dropped_before[$i]="$(metric "${ports[$i]}" switchboard_ws_messages_dropped_total)"
    writes_before[$i]="$(metric "${ports[$i]}" switchboard_sends_total)"
    read -r u s < <(proc_cpu_ticks "${node_pids[$i]}"); ticks_before[$i]=$((u + s))
done
start_ns="$(date +%s%N)"
fanout "${ports[0]}" "${node_pids[0]}" cluster-a "$SUBSCRIBERS"
elapsed="$(awk -v a="$start_ns" -v b="$(date +%s%N)" 'BEGIN { print (b - a) / 1e9 }')"
read -r r_user2 r_sys2 < <(proc_cpu_ticks "$REDIS_PID")
calls="$(( $(script_calls) - calls_before ))"
read -r c_rate c_p50 c_p99 c_published < <(field "$WORK/cluster-a.txt")
remote_rate=(); remote_dropped=(); per_write=(); cpu_per=()
for i in 0 1 2; do
    sent="$(( $(metric "${ports[$i]}" switchboard_fanout_deliveries_total) - sent_before[$i] ))"
    remote_dropped[$i]="$(( $(metric "${ports[$i]}" switchboard_ws_messages_dropped_total) - dropped_before[$i] ))"
    remote_rate[$i]="$(awk -v s="$sent" -v e="$elapsed" 'BEGIN { printf "%.0f", s / e }')"
    # What each node's deliveries cost over the same span: frames per socket write (the
    # batch each subscriber got per turn) and the node's CPU (user + system) per delivery.
    writes="$(( $(metric "${ports[$i]}" switchboard_sends_total) - writes_before[$i] ))"
    read -r u s < <(proc_cpu_ticks "${node_pids[$i]}")
    per_write[$i]="$(awk -v d="$sent" -v w="$writes" 'BEGIN { if (w > 0) printf "%.1f", d / w; else print "n/a" }')"
    cpu_per[$i]="$(awk -v t=$((u + s - ticks_before[$i])) -v hz="$CLK_TCK" -v d="$sent" 'BEGIN { if (d > 0) printf "%.2f", t / hz * 1e6 / d; else print "n/a" }')"
done
redis_us="$(awk -v t=$((r_user2 + r_sys2 - r_user - r_sys)) -v hz="$CLK_TCK" -v n="$calls" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "n/a" }')"
redis_cpu="$(awk -v t=$((r_user2 + r_sys2 - r_user - r_sys)) -v hz="$CLK_TCK" -v e="$elapsed" 'BEGIN { printf "%.0f", t / hz / e * 100 }')"
stop_all

echo "### Cluster fan-out: publish on node A, $SUBSCRIBERS subscribers on each of A, B, C ($BUILD build, $SHARDS shard(s) per node, $SIZE B, $DURATION + $WARMUP warm-up)"
echo
total="$(awk -v a="$c_rate" -v b="${remote_rate[1]}" -v c="${remote_rate[2]}" 'BEGIN { if (a ~ /^[0-9.]+$/) printf "%.0f", a + b + c; else print "n/a" }')"
echo "| setup | deliveries/s, all | on A (or the node) | on B | on C | p50 µs | p99 µs | Redis CPU per publish | Redis CPU |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
echo "| one node, memory, $((3 * SUBSCRIBERS)) subscribers | $s_rate | $s_rate | | | $s_p50 | $s_p99 | | |"
echo "| 3 nodes over Redis | $total | $c_rate | ${remote_rate[1]} | ${remote_rate[2]} | $c_p50 | $c_p99 | $redis_us µs ($calls scripts) | $redis_cpu% |"
echo
echo "Latency is publish-to-delivery on node A's subscribers (the publish goes through Redis and back)."
echo "B and C: switchboard_fanout_deliveries_total over the fanout run's $(printf '%.1f' "$elapsed") s (warm-up and connect included);"
echo "messages dropped for slow consumers there: B ${remote_dropped[1]}, C ${remote_dropped[2]}. A published $c_published messages in the measured window."
echo "Over the same span, per node (A, B, C): frames per socket write ${per_write[0]}, ${per_write[1]}, ${per_write[2]};"
echo "node CPU (user + system) per delivery ${cpu_per[0]}, ${cpu_per[1]}, ${cpu_per[2]} µs."
report_failures
