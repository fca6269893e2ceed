#!/usr/bin/env bash
# The browser chat in a real browser: headless Chromium + chromedriver (Debian packages) driven
# by Selenium (PyPI, in the project venv), against switchboard-chat on an ephemeral port.
# Installs what is missing; fails (never skips) when it cannot. Screenshots:
# .build/chat-screenshot.png (desktop) and .build/chat-screenshot-phone.png (phone width).
#   bash deploy/browser-test.sh [debug|release]
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib.sh
CONFIG="${1:-debug}"
ensure_packages chromium chromium-driver
ensure_python_venv "$PWD"
ensure_selenium "$PWD"
swift build -c "$CONFIG" --product switchboard-chat
start_server ".build/$CONFIG/switchboard-chat" --history-messages 8
trap stop_server EXIT
timeout 300 ".build/autobahn-venv/bin/python" Tests/browser/chat_browser_test.py \
    "http://127.0.0.1:$SERVER_PORT/" "$PWD/.build/chat-screenshot.png"
