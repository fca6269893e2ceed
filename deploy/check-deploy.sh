#!/usr/bin/env bash
# Checks the deployment files with what this machine can run. There is no container engine and
# no systemd running as PID 1 here, so the image is not built and the unit is not started; what
# is checked instead:
#   1. bash -n on every shell script (deploy/, the image's health check, Benchmarks/scripts/);
#   2. deploy/check_deploy.py: the Dockerfile's structure, the manifests and deploy/compose/compose.yaml
#      (3 cluster nodes + Redis) parsed as YAML (PyYAML),
#      and the values that must agree across files (ports, paths, time budgets, limits, uid);
#   3. systemd-analyze verify and systemd-analyze security --offline on the unit;
#   4. the server started with the ConfigMap's configuration and with the image's default one:
#      the image's health check script answers healthy, and unhealthy after SIGTERM.
# Needs the debug build (swift build). Exits non-zero on the first failed step.
#   bash deploy/check-deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib.sh
ensure_packages systemd python3-venv

echo "check-deploy: bash -n"
scripts=(deploy/*.sh deploy/container/*.sh Benchmarks/scripts/*.sh)
for script in "${scripts[@]}"; do
    bash -n "$script"
done
echo "  ${#scripts[@]} scripts parse"

echo "check-deploy: static checks"
venv=.build/deploy-venv
if ! "$venv/bin/python" -c 'import yaml' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q PyYAML
fi
"$venv/bin/python" deploy/check_deploy.py "$PWD"

binary="$PWD/.build/debug/switchboard"
# Under .build, not /tmp: one CI run here lost its /tmp directory between two steps (the
# nodes' logs below could not be created) and it did not happen again alone; whatever removed
# it, a directory inside the checkout is this script's own.
mkdir -p .build
tmp="$(mktemp -d "$PWD/.build/check-deploy.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "check-deploy: systemd-analyze"
# verify insists that ExecStart's binary exists: point it at the one just built.
sed "s#^ExecStart=/usr/local/bin/switchboard#ExecStart=$binary#" deploy/systemd/switchboard.service >"$tmp/switchboard.service"
grep -q "^ExecStart=$binary " "$tmp/switchboard.service"
# verify prints problems (unknown keys, bad values) as warnings with exit status 0: any output fails.
out="$(systemd-analyze verify "$tmp/switchboard.service" 2>&1)" || { echo "$out"; exit 1; }
[ -z "$out" ] || { echo "systemd-analyze verify: $out"; exit 1; }
# Exposure score 0 (locked down) .. 10 (unprotected); --threshold is in tenths.
systemd-analyze security --offline=yes --threshold=20 "$tmp/switchboard.service" | tail -1

echo "check-deploy: server with the deployment configurations"
"$venv/bin/python" -c 'import sys, yaml
for doc in yaml.safe_load_all(open("deploy/kubernetes/configmap.yaml")):
    sys.stdout.write(doc["data"]["switchboard.conf"])' >"$tmp/k8s.conf"
for conf in "$tmp/k8s.conf" Config/switchboard.conf; do
    start_server "$binary" --config "$conf"
    if ! SWITCHBOARD_PORT="$SERVER_PORT" bash deploy/container/healthcheck.sh; then
        stop_server
        echo "health check failed against a running server ($conf)"; exit 1
    fi
    stop_server
    if SWITCHBOARD_PORT="$SERVER_PORT" bash deploy/container/healthcheck.sh 2>/dev/null; then
        echo "health check passed against a stopped server ($conf)"; exit 1
    fi
    echo "  $conf: healthy while running, unhealthy after SIGTERM"
done
echo "check-deploy: the compose file's nodes (deploy/compose/compose.yaml) over a local redis-server"
# Each node service's SWITCHBOARD_* variables on the image's configuration, the Redis URL's host
# and port pointed at a redis-server started here: every node must see every other as a member.
ensure_packages redis-server redis-tools
redis_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --logfile "" >/dev/null &
redis_pid=$!
node_pids=(); node_ports=()
stop_compose_nodes() {
    for pid in "${node_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    kill -TERM "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true
}
# A failure from here on (set -e) must not leave redis-server and the nodes running.
trap 'stop_compose_nodes; rm -rf "$tmp"' EXIT
for _ in $(seq 1 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
mapfile -t node_envs < <("$venv/bin/python" - "$redis_port" <<'PY'
import re, sys, yaml
for name, svc in yaml.safe_load(open("deploy/compose/compose.yaml"))["services"].items():
    env = svc.get("environment")
    if not env:
        continue
    url = "redis://127.0.0.1:" + sys.argv[1]
    print(" ".join(k + "=" + re.sub(r"redis://[^/]+", url, str(v)) for k, v in env.items()))
PY
)
[ -d "$tmp" ] || { echo "check-deploy: the temporary directory $tmp is gone"; exit 1; }
for vars in "${node_envs[@]}"; do
    # shellcheck disable=SC2086  # one KEY=VALUE word per variable
    env $vars "$binary" --config Config/switchboard.conf --host 127.0.0.1 --port 0 2>"$tmp/node-${#node_pids[@]}.log" &
    node_pids+=("$!")
done
members_ok=0
for _ in $(seq 1 100); do
    members_ok=0
    for i in "${!node_pids[@]}"; do
        port="$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/node-$i.log" 2>/dev/null || true)"
        [ -n "$port" ] || continue
        n="$(curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null | awk '$1 ~ /^switchboard_cluster_members/ { s += $NF } END { print s + 0 }')"
        [ "$n" = "${#node_pids[@]}" ] && members_ok=$((members_ok + 1))
    done
    [ "$members_ok" = "${#node_pids[@]}" ] && break
    sleep 0.1
done
stop_compose_nodes
if [ "$members_ok" != "${#node_pids[@]}" ] || [ "${#node_pids[@]}" -lt 3 ]; then
    cat "$tmp"/node-*.log >&2
    echo "compose nodes: $members_ok of ${#node_pids[@]} saw every node as a member"; exit 1
fi
echo "  ${#node_pids[@]} nodes, each sees ${#node_pids[@]} members (switchboard_cluster_members)"
echo "check-deploy: ok"
