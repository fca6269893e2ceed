#!/usr/bin/env bash
# Interop with a client nobody here wrote: Python `websockets` against switchboard-echo.
#   bash deploy/interop.sh [uring|epoll] [debug|release]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BACKEND="${1:-uring}"
CONFIG="${2:-release}"
VENV="$ROOT/.build/autobahn-venv"
AB="${AUTOBAHN_DIR:-$ROOT/../shared/conformance/autobahn}"
source deploy/lib.sh
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import websockets' 2>/dev/null; then
    if ! python3 -c 'import lib2to3, venv, ensurepip' 2>/dev/null; then ensure_packages python3-venv python3-lib2to3; fi
    bash "$AB/setup.sh" "$VENV" >/dev/null
fi
swift build -c "$CONFIG" --product switchboard-echo >/dev/null
BIN="$(swift build -c "$CONFIG" --show-bin-path)/switchboard-echo"
LOG="$(mktemp)"
"$BIN" --host 127.0.0.1 --port 0 --io-backend "$BACKEND" --shards 2 2>"$LOG" &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -f "$LOG"' EXIT
PORT=""
for _ in $(seq 1 100); do
    PORT="$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$LOG")"
    [ -n "$PORT" ] && break
    sleep 0.1
done
[ -n "$PORT" ] || { cat "$LOG"; echo "switchboard-echo did not start" >&2; exit 1; }
echo "interop ($BACKEND):"
"$VENV/bin/python" Tests/interop/websockets_interop.py "ws://127.0.0.1:$PORT/"
