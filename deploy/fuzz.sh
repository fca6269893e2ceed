#!/usr/bin/env bash
# Runs the libFuzzer targets (HTTP parser, WebSocket decoder, RESP parser, JSON reader, the own
# TLS 1.3 record layer) for a bounded time each.
#   bash deploy/fuzz.sh [SECONDS_PER_TARGET]   (default 30)
# Crashes and their inputs are kept in .build-fuzz/crashes/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-30}"
export SWITCHBOARD_FUZZ=1
# The C targets are instrumented too (-Xcc): FuzzTLSRecords' subject is C (tls.c,
# tls13_records.c, gcm_small.c), and AddressSanitizer and libFuzzer's coverage must see it.
FLAGS=(-c release --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
       -Xcc -fsanitize=fuzzer-no-link,address)
mkdir -p .build-fuzz/crashes
for target in FuzzHTTP FuzzWebSocket FuzzRESP FuzzJSON FuzzTLSRecords; do
    swift build "${FLAGS[@]}" --product "$target" 2>&1 | grep -v "Cannot export local symbol" | tail -1
    bin="$(swift build "${FLAGS[@]}" --show-bin-path)/$target"
    mkdir -p ".build-fuzz/corpus/$target"
    echo "fuzzing $target for ${SECONDS_PER_TARGET}s"
    "$bin" -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 -rss_limit_mb=2048 \
        -artifact_prefix=".build-fuzz/crashes/$target-" ".build-fuzz/corpus/$target" 2>&1 | tail -3
done
