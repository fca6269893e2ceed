#!/usr/bin/env bash
# Runs the whole test suite. Installs the Debian packages it needs when they are missing.
#   bash deploy/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib.sh
ensure_packages liburing-dev libssl-dev zlib1g-dev
swift build --build-tests
# The integration tests count this process's file descriptors: run tests one at a time.
# The outer timeout turns a hang into a failure instead of a stuck CI.
timeout 1800 swift test --skip-build --no-parallel
