#!/usr/bin/env bash
# Container health check: healthy when GET /health on the local port answers 200.
# Uses bash's /dev/tcp, so the runtime image needs no curl.
#   SWITCHBOARD_PORT (default 3004), SWITCHBOARD_HEALTH_PATH (default /health)
# Exit 0 healthy, 1 unhealthy (Docker's HEALTHCHECK contract).
set -euo pipefail
port="${SWITCHBOARD_PORT:-3004}"
path="${SWITCHBOARD_HEALTH_PATH:-/health}"
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
status=""
IFS= read -r -t 2 status <&3 || exit 1
[[ "$status" == "HTTP/1.1 200 "* ]] || exit 1
