#!/usr/bin/env bash
# RFC 6455 conformance over TLS: the Autobahn|Testsuite fuzzing client (its Twisted client
# speaks wss:// through pyOpenSSL) against switchboard-echo's TLS listener. A throwaway CA and
# server certificate are made under .build/autobahn-tls/ with the openssl CLI (no key is
# committed). Fails on any case that is FAILED or NON-STRICT, like deploy/autobahn.sh.
#   bash deploy/autobahn-tls.sh [uring|epoll] [CASES_JSON] [debug|release]
#   (ECHO_BIN=/path/to/switchboard-echo: use that binary, build nothing)
# Default cases: 1-7, 9, 10. Reports: .build/autobahn-tls/<backend>/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BACKEND="${1:-uring}"
CASES="${2:-[\"1.*\",\"2.*\",\"3.*\",\"4.*\",\"5.*\",\"6.*\",\"7.*\",\"9.*\",\"10.*\"]}"
CONFIG="${3:-debug}"
AB="${AUTOBAHN_DIR:-$ROOT/../shared/conformance/autobahn}"
VENV="$ROOT/.build/autobahn-venv"
OUT="$ROOT/.build/autobahn-tls/$BACKEND"
CERTS="$ROOT/.build/autobahn-tls/certs"
source deploy/lib.sh

ensure_python_venv "$ROOT"
command -v openssl >/dev/null || ensure_packages openssl
mkdir -p "$CERTS"
make_test_certificate "$CERTS" "autobahn test CA"

BIN="$(echo_server_binary "$CONFIG")"

trap 'stop_server' EXIT
start_server "$BIN" --io-backend "$BACKEND" --shards 2 --set tls_port=0 \
    --set "tls_certificate=$CERTS/server.pem" --set "tls_private_key=$CERTS/server.key"
TLS_PORT=""
poll_until 5 logged_port TLS_PORT "listening with TLS on" || { cat "$SERVER_LOG" >&2; echo "no TLS listener" >&2; exit 1; }

rm -rf "$OUT"
VENV="$VENV" AGENT="switchboard-tls-$BACKEND" bash "$AB/run_wstest.sh" "wss://127.0.0.1:$TLS_PORT" "$CASES" "$OUT" || true
autobahn_verdict "$ROOT" "$OUT/servers/index.json" "over wss $BACKEND"
