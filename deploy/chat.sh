#!/usr/bin/env bash
# Builds the browser chat (release) and starts it: open http://127.0.0.1:3005/
#   bash deploy/chat.sh [extra switchboard-chat flags, e.g. --port 8080 --history-messages 1000]
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib.sh
ensure_packages liburing-dev libssl-dev zlib1g-dev
swift build -c release --product switchboard-chat
echo "switchboard-chat: open http://127.0.0.1:3005/ (or the --port you gave)" >&2
exec .build/release/switchboard-chat "$@"
