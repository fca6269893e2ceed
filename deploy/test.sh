#!/usr/bin/env bash
# Runs the whole test suite. Installs the Debian packages it needs when they are missing.
#   bash deploy/test.sh
# 1. swift test: unit and integration tests (real sockets, both io backends)
# 2. interop: Python `websockets` client against switchboard-echo, both backends
# 3. RFC 6455 conformance: Autobahn cases 1-7, 9, 10 on both backends (deploy/autobahn.sh runs all)
# 4. fuzzing: libFuzzer on the HTTP, WebSocket, RESP and JSON parsers and the TLS 1.3 record layer, bounded time
# (after 1: the Hummingbird plug-in package's tests, and the browser chat in headless Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib.sh
ensure_packages liburing-dev libssl-dev zlib1g-dev redis-server
# Python websockets + Autobahn (wstest) venv, used by interop tests inside swift test too.
ensure_python_venv "$PWD"
# Chromium, chromedriver and Selenium, for the browser tests inside swift test.
ensure_browser_tools "$PWD"
swift build --build-tests
timeout 300 bash deploy/check-deploy.sh  # container, systemd, sysctl and Kubernetes files
# The integration tests count this process's file descriptors: run tests one at a time.
# The outer timeout turns a hang into a failure instead of a stuck CI.
timeout 1800 swift test --skip-build --no-parallel
# The Hummingbird plug-in: a separate package (builds Hummingbird), its own tests.
(cd Integrations/SwitchboardHummingbird && timeout 2400 swift test --no-parallel)
# The browser chat in headless Chromium (Selenium); screenshot in .build/chat-screenshot.png.
timeout 1200 bash deploy/browser-test.sh

# Release binaries for the conformance and interop runs, built once and outside their
# timeouts: a cold release build takes minutes, and the timeouts below bound the runs.
swift build -c release --product switchboard-echo
swift build -c release --product switchboard
QUICK='["1.*","2.*","3.*","4.*","5.*","6.*","7.*","9.*","10.*"]'
for backend in uring epoll; do
    timeout 900 bash deploy/autobahn.sh "$backend" "$QUICK" release
    # The same cases over wss:// (the TLS listener, throwaway certificates made at run time).
    timeout 600 bash deploy/autobahn-tls.sh "$backend" "$QUICK" release
done
for backend in uring epoll; do
    timeout 300 bash deploy/interop.sh "$backend" release
done
# The SDK's WebSocket client against Autobahn's fuzzing server: the same cases, 9.* included
# (its client-side performance cases take about 35 s of the run); debug, already built above.
timeout 900 bash deploy/autobahn-client.sh "$QUICK" debug
timeout 900 bash deploy/fuzz.sh "${FUZZ_SECONDS:-20}"
