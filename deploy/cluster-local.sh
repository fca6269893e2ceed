#!/usr/bin/env bash
# A local cluster to try: one redis-server and N switchboard-echo nodes (default 3) joined with
# cluster_engine = redis, on 127.0.0.1. Sockets on /broadcast/NAME of any node share channel
# /broadcast/NAME across the nodes; GET /position/broadcast/NAME shows each node's epoch:offset.
# Ctrl-C (or SIGTERM) stops everything it started.
#   bash deploy/cluster-local.sh [nodes] [first node port] [redis port]
#   e.g. websocat ws://127.0.0.1:3101/broadcast/room   and   ws://127.0.0.1:3102/broadcast/room
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib.sh
ensure_packages liburing-dev libssl-dev zlib1g-dev redis-server
nodes="${1:-3}"
first_port="${2:-3101}"
redis_port="${3:-6390}"
binary="${SWITCHBOARD_ECHO:-.build/debug/switchboard-echo}"
[ -x "$binary" ] || swift build --product switchboard-echo

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --logfile "" &
pids+=("$!")
poll_until 10 redis-cli -p "$redis_port" ping >/dev/null 2>&1 || true
redis-cli -p "$redis_port" ping >/dev/null

for i in $(seq 1 "$nodes"); do
    port=$((first_port + i - 1))
    "$binary" --host 127.0.0.1 --port "$port" \
        --set cluster_engine=redis --set "cluster_redis_url=redis://127.0.0.1:$redis_port" \
        --set "cluster_node_id=$i" &
    pids+=("$!")
done
for i in $(seq 1 "$nodes"); do
    port=$((first_port + i - 1))
    poll_until 10 curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 || true
    curl -fsS "http://127.0.0.1:$port/health" >/dev/null
    echo "node $i: ws://127.0.0.1:$port/broadcast/NAME  (metrics: http://127.0.0.1:$port/metrics)"
done
echo "redis: 127.0.0.1:$redis_port  (redis-cli -p $redis_port PUBSUB CHANNELS)"
echo "cluster-local: ready; Ctrl-C stops it"
wait -n
