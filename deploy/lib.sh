# Shared by the deploy scripts.
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

# Selenium (PyPI) in the project venv, for the browser test (deploy/browser-test.sh). Pinned:
# 4.52 wants a certifi newer than the package mirror here holds.
ensure_selenium() {
    local venv="$1/.build/autobahn-venv"
    "$venv/bin/python" -c 'import selenium' 2>/dev/null && return 0
    "$venv/bin/pip" install -q "selenium==${SELENIUM_VERSION:-4.50.0}"
}

# start_server BIN ARGS... : starts a server on an ephemeral port (it logs "listening on
# 127.0.0.1:PORT"), sets SERVER_PID and SERVER_PORT.
start_server() {
    SERVER_LOG="$(mktemp)"
    "$@" --host 127.0.0.1 --port 0 2>"$SERVER_LOG" &
    SERVER_PID=$!
    SERVER_PORT=""
    for _ in $(seq 1 100); do
        SERVER_PORT="$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$SERVER_LOG")"
        [ -n "$SERVER_PORT" ] && return 0
        sleep 0.1
    done
    cat "$SERVER_LOG" >&2
    echo "server did not start: $*" >&2
    return 1
}

stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    rm -f "$SERVER_LOG"
}
