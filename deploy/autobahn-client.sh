#!/usr/bin/env bash
# RFC 6455 conformance of the SDK's WebSocket *client*: Autobahn|Testsuite's fuzzing server
# (Python 3 port in ../shared/conformance/autobahn) against sdk-autobahn-client.
#   bash deploy/autobahn-client.sh [CASES_JSON] [debug|release]
# Default cases: 1-7, 9, 10. Reports: .build/autobahn/sdk-client/. Fails on FAILED / NON-STRICT.
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
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
"$BIN" "ws://127.0.0.1:$PORT" switchboard-sdk
"$VENV/bin/python" - "$OUT/clients/index.json" <<'PY'
import collections, json, sys
data = json.load(open(sys.argv[1]))
counts = collections.Counter()
bad = []
for agent, cases in data.items():
    for cid, r in cases.items():
        counts[r["behavior"]] += 1
        if r["behavior"] in ("FAILED", "NON-STRICT") or r["behaviorClose"] not in ("OK", "INFORMATIONAL"):
            bad.append((cid, r["behavior"], r["behaviorClose"]))
print("autobahn sdk client: %d cases: %s" % (sum(counts.values()), dict(sorted(counts.items()))))
for cid, b, c in sorted(bad, key=lambda x: [int(p) for p in x[0].split(".")]):
    print("  not OK: %s behavior=%s close=%s" % (cid, b, c))
sys.exit(1 if bad else 0)
PY
