#!/usr/bin/env bash
# Interop with clients nobody here wrote (Python `websockets`):
#   - the WebSocket echo server (text, binary, fragmented, large, compressed),
#   - the `switchboard` executable speaking the connection-broker protocol (raw JSON).
#   bash deploy/interop.sh [uring|epoll] [debug|release]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BACKEND="${1:-uring}"
CONFIG="${2:-release}"
source deploy/lib.sh
ensure_python_venv "$ROOT"
PY="$ROOT/.build/autobahn-venv/bin/python"
swift build -c "$CONFIG" --product switchboard-echo >/dev/null
swift build -c "$CONFIG" --product switchboard >/dev/null
BIN="$(swift build -c "$CONFIG" --show-bin-path)"
trap 'stop_server' EXIT

start_server "$BIN/switchboard-echo" --io-backend "$BACKEND" --shards 2
echo "interop ($BACKEND): websockets client -> switchboard-echo"
"$PY" Tests/interop/websockets_interop.py "ws://127.0.0.1:$SERVER_PORT/"
stop_server

# Once per cb_profile: the script's second argument says which replies to expect.
for PROFILE in reference strict; do
    start_server env SWITCHBOARD_CB_PROFILE="$PROFILE" "$BIN/switchboard" --io-backend "$BACKEND" --shards 2
    echo "interop ($BACKEND): websockets client -> switchboard (connection-broker protocol, $PROFILE profile)"
    "$PY" Tests/interop/connection_broker_test.py "ws://127.0.0.1:$SERVER_PORT/" "$PROFILE"
    stop_server
done
