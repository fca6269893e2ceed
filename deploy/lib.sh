# Shared by the deploy scripts. poll_until and port_open: deploy/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ensure_packages() {
    local missing=()
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The Python venv with Autobahn's wstest and `websockets` (interop tests), in .build/.
ensure_python_venv() {
    local root="$1"
    local venv="$root/.build/autobahn-venv"
    local ab="${AUTOBAHN_DIR:-$root/../shared/conformance/autobahn}"
    if [ -x "$venv/bin/wstest" ] && "$venv/bin/python" -c 'import websockets' 2>/dev/null; then return 0; fi
    if ! python3 -c 'import lib2to3, venv, ensurepip' 2>/dev/null; then
        ensure_packages python3-venv python3-lib2to3
    fi
    mkdir -p "$root/.build"
    bash "$ab/setup.sh" "$venv" >/dev/null
}

# echo_server_binary CONFIG: builds switchboard-echo (debug or release) and prints its path. With
# ECHO_BIN set, prints that and builds nothing (a prebuilt binary, or a copy kept apart while
# the tree is being rebuilt).
echo_server_binary() {
    if [ -n "${ECHO_BIN:-}" ]; then echo "$ECHO_BIN"; return 0; fi
    swift build -c "$1" --product switchboard-echo >/dev/null
    echo "$(swift build -c "$1" --show-bin-path)/switchboard-echo"
}

# autobahn_verdict ROOT INDEX_JSON LABEL: reads an Autobahn report (servers/index.json, written by
# run_wstest.sh), prints the count of each behaviour and every case that is not OK, and fails
# when a case is FAILED or NON-STRICT or closed other than OK/INFORMATIONAL (INFORMATIONAL and
# UNIMPLEMENTED are allowed). A missing or unreadable report fails too: a cut run is no verdict.
# Used by deploy/autobahn.sh (ws://) and deploy/autobahn-tls.sh (wss://).
autobahn_verdict() {
    "$1/.build/autobahn-venv/bin/python" - "$2" "$3" <<'PY'
import collections, json, sys
data = json.load(open(sys.argv[1]))
counts = collections.Counter()
bad = []
for agent, cases in data.items():
    for cid, r in cases.items():
        counts[r["behavior"]] += 1
        if r["behavior"] in ("FAILED", "NON-STRICT") or r["behaviorClose"] not in ("OK", "INFORMATIONAL"):
            bad.append((cid, r["behavior"], r["behaviorClose"]))
total = sum(counts.values())
print("autobahn %s: %d cases: %s" % (sys.argv[2], total, dict(sorted(counts.items()))))
for cid, b, c in sorted(bad, key=lambda x: [int(p) for p in x[0].split(".")]):
    print("  not OK: %s behavior=%s close=%s" % (cid, b, c))
sys.exit(1 if bad or total == 0 else 0)
PY
}

# Selenium (PyPI) in the project venv, for the browser test (deploy/browser-test.sh). Pinned:
# 4.52 wants a certifi newer than the package mirror here holds.
ensure_selenium() {
    local venv="$1/.build/autobahn-venv"
    "$venv/bin/python" -c 'import selenium' 2>/dev/null && return 0
    "$venv/bin/pip" install -q "selenium==${SELENIUM_VERSION:-4.50.0}"
}

# Headless Chromium + chromedriver (Debian) and Selenium (in the project venv made by
# ensure_python_venv), for the browser tests run inside swift test (BroadcasterBrowserTests).
ensure_browser_tools() {
    ensure_packages chromium chromium-driver
    ensure_selenium "$1"
}

# logged_port VAR TEXT: sets VAR to PORT from SERVER_LOG's "TEXT 127.0.0.1:PORT" line; fails
# (VAR empty) while there is none.
logged_port() {
    printf -v "$1" '%s' "$(sed -n "s/.*$2 127.0.0.1:\([0-9]*\).*/\1/p" "$SERVER_LOG")"
    [ -n "${!1}" ]
}

# start_server BIN ARGS... : starts a server on an ephemeral port (it logs "listening on
# 127.0.0.1:PORT"), sets SERVER_PID and SERVER_PORT (waits up to 10 s; fails at once if the
# server exits).
start_server() {
    SERVER_LOG="$(mktemp)"
    "$@" --host 127.0.0.1 --port 0 2>"$SERVER_LOG" &
    SERVER_PID=$!
    SERVER_PORT=""
    poll_until 10 --pid "$SERVER_PID" logged_port SERVER_PORT "listening on" && return 0
    cat "$SERVER_LOG" >&2
    echo "server did not start: $*" >&2
    return 1
}

stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    rm -f "$SERVER_LOG"
}
