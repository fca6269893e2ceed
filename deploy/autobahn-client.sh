#!/usr/bin/env bash
# RFC 6455 conformance of the SDK's WebSocket *client*: Autobahn|Testsuite's fuzzing server
# (Python 3 port in ../shared/conformance/autobahn) against sdk-autobahn-client.
#   bash deploy/autobahn-client.sh [CASES_JSON] [debug|release]
# Default cases: 1-7, 9, 10 (12.* and 13.*, permessage-deflate, on request). Reports:
# .build/autobahn/sdk-client/. The verdict is autobahn_verdict (deploy/lib.sh), as for the server:
# fails on FAILED / NON-STRICT / a close other than OK or INFORMATIONAL, or an empty report.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CASES="${1:-[\"1.*\",\"2.*\",\"3.*\",\"4.*\",\"5.*\",\"6.*\",\"7.*\",\"9.*\",\"10.*\"]}"
CONFIG="${2:-debug}"
AB="${AUTOBAHN_DIR:-$ROOT/../shared/conformance/autobahn}"
VENV="$ROOT/.build/autobahn-venv"
OUT="$ROOT/.build/autobahn/sdk-client"
source deploy/lib.sh

ensure_python_venv "$ROOT"
swift build -c "$CONFIG" --product sdk-autobahn-client >/dev/null
BIN="$(swift build -c "$CONFIG" --show-bin-path)/sdk-autobahn-client"
PORT=$(( 30000 + RANDOM % 20000 ))
rm -rf "$OUT"; mkdir -p "$OUT"
cat > "$OUT/spec.json" <<JSON
{"url": "ws://127.0.0.1:$PORT", "outdir": "$OUT/clients",
 "cases": $CASES, "exclude-cases": [], "exclude-agent-cases": {}}
JSON
(cd "$OUT" && exec "$VENV/bin/wstest" -m fuzzingserver --webport 0 -s "$OUT/spec.json" > "$OUT/wstest.log" 2>&1) &
WSTEST=$!
trap 'kill $WSTEST 2>/dev/null || true' EXIT
poll_until 10 port_open "$PORT" || true
"$BIN" "ws://127.0.0.1:$PORT" switchboard-sdk
autobahn_verdict "$ROOT" "$OUT/clients/index.json" "sdk client"
