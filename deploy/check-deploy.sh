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
tmp="$(mktemp -d)"
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
echo "check-deploy: ok"
