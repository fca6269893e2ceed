#!/usr/bin/env bash
# RFC 6455 conformance: runs the Autobahn|Testsuite fuzzing client (Python 3 port in
# ../shared/conformance/autobahn) against switchboard-echo, and fails on any case that is
# not OK (FAILED or NON-STRICT; INFORMATIONAL and UNIMPLEMENTED are allowed).
#   bash deploy/autobahn.sh [uring|epoll] [CASES_JSON] [debug|release]
#   (ECHO_BIN=/path/to/switchboard-echo: use that binary, build nothing)
#   e.g. bash deploy/autobahn.sh epoll '["1.*","2.*"]'
# Default cases: 1-7, 9, 10, 12, 13 (about 8 minutes). Reports: .build/autobahn/<backend>/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BACKEND="${1:-uring}"
CASES="${2:-[\"1.*\",\"2.*\",\"3.*\",\"4.*\",\"5.*\",\"6.*\",\"7.*\",\"9.*\",\"10.*\",\"12.*\",\"13.*\"]}"
CONFIG="${3:-release}"
AB="${AUTOBAHN_DIR:-$ROOT/../shared/conformance/autobahn}"
VENV="$ROOT/.build/autobahn-venv"
OUT="$ROOT/.build/autobahn/$BACKEND"
source deploy/lib.sh

ensure_python_venv "$ROOT"
BIN="$(echo_server_binary "$CONFIG")"

trap 'stop_server' EXIT
start_server "$BIN" --io-backend "$BACKEND" --shards 2
PORT="$SERVER_PORT"

rm -rf "$OUT"
VENV="$VENV" AGENT="switchboard-$BACKEND" bash "$AB/run_wstest.sh" "ws://127.0.0.1:$PORT" "$CASES" "$OUT" || true
autobahn_verdict "$ROOT" "$OUT/servers/index.json" "$BACKEND"
