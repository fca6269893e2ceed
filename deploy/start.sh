#!/usr/bin/env bash
# Builds Switchboard (release) and starts it with the default configuration.
#   bash deploy/start.sh [extra switchboard flags, e.g. --port 3004 --io-backend epoll]
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib.sh
ensure_packages liburing-dev libssl-dev zlib1g-dev
swift build -c release --product switchboard
exec .build/release/switchboard --config Config/switchboard.conf "$@"
