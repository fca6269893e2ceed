#!/usr/bin/env bash
# A server's user time per echo from perf's user-mode samples, for two servers interleaved
# (A, B, A, B, ...): the figure for a change that moves user time by less than the /proc
# column can see.
#
#   A_BIN=/tmp/old-switchboard-echo B_BIN=.build/release/switchboard-echo \
#     CONNS=1000 SIZE=20 RUNS=5 BACKEND=epoll bash Benchmarks/scripts/user-samples-ab.sh
#   (B_BIN=/work/peer-uws/peer-uws: a binary whose name starts with "peer" is started as the C++
#   peer, `--port N --threads 1`.)
#
# Why not the /proc user column: this kernel accounts CPU time by tick (CONFIG_TICK_CPU_ACCOUNTING,
# HZ=250), so a 5 s run at 0.4 µs of user time per echo and 100k echoes/s holds ~50 user ticks:
# ±15% from counting alone, more than most user-space changes. `perf record --all-user -C
# SERVER_CPU -F 10000` over 3 s of the measured window takes ~12,000 samples of the same time.
# Both count a timer interrupt that was held while the kernel returned to user space as user
# time (the first user instruction after each syscall takes ~20-30% of the samples, at
# `sb_send`/`sb_recv` here): read the figure against the other side's, not as an absolute.
# Each run also gives the figure without the samples on the instruction right after a
# `syscall` (post-syscall-samples.py): kernel exit time, charged more to a server that makes
# more system calls per message (epoll: two per echo; io_uring: one per turn).
#
# Environment: A_BIN, B_BIN (required), CONNS=1000 SIZE=20 RUNS=5 BACKEND=epoll (uring|epoll,
# for Switchboard), DURATION=5s (the measured window; perf samples 3 s of it from 1.5 s in),
# SERVER_CPU=0 BENCH_CPU=1, BENCH_BIN. Prints one line per run and the medians; exits 1 when a
# run fails (switchboard-bench's verdict) or perf took no sample.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_start release "" perf
: "${A_BIN:?A_BIN: the first server binary}" "${B_BIN:?B_BIN: the second server binary}"
CONNS="${CONNS:-1000}"; SIZE="${SIZE:-20}"; RUNS="${RUNS:-5}"; BACKEND="${BACKEND:-epoll}"
DURATION="${DURATION:-5s}"; SERVER_CPU="${SERVER_CPU:-0}"; BENCH_CPU="${BENCH_CPU:-1}"
BENCH_BIN="${BENCH_BIN:-$MAIN_DIR/.build/release/switchboard-bench}"
FREQUENCY=10000; SAMPLED_SECONDS=3
[[ -x "$A_BIN" && -x "$B_BIN" && -x "$BENCH_BIN" ]] || die "A_BIN, B_BIN and BENCH_BIN must be executables"

# The sampler: after the warm-up (1 s) and half a second of the window, perf samples the
# server's CPU in user mode for SAMPLED_SECONDS.
perf_window() {
    sleep 1.5
    perf record -q --all-user -C "$SERVER_CPU" -F "$FREQUENCY" -o "$WORK/perf.data" -- sleep "$SAMPLED_SECONDS" >/dev/null 2>&1
}

one_run() { # BIN -> "rate user-µs-per-echo user-µs-without-post-syscall-samples"
    local bin="$1" port=$((18500 + RANDOM % 400)) backend="$BACKEND" rate samples post
    [[ "$(basename "$bin")" == peer* ]] && backend=peer
    sampled_echo_start "$(basename "$bin")" "$port" "$backend" "$bin"
    sampled_echo_run "$(basename "$bin")" "$port" "$CONNS" "$SIZE" "$DURATION" perf_window
    rate="$SAMPLED_RATE"
    samples="$(perf script -i "$WORK/perf.data" -F ip 2>/dev/null | wc -l)"
    (( samples > 0 )) || die "$bin: perf took no user-mode sample"
    # The samples on the instruction right after a `syscall` are the kernel's exit time (see
    # post-syscall-samples.py): the third figure leaves them out.
    read -r _ post <<<"$(python3 "$MAIN_DIR/Benchmarks/scripts/post-syscall-samples.py" "$WORK/perf.data")"
    awk -v s="$samples" -v p="$post" -v r="$rate" -v f="$FREQUENCY" -v t="$SAMPLED_SECONDS" \
        'BEGIN { printf "%.0f %.3f %.3f\n", r, s / f / (r * t) * 1e6, (s - p) / f / (r * t) * 1e6 }'
}

declare -A RATES USERS USERS_X
RATIOS=""
for run in $(seq 1 "$RUNS"); do
    for side in A B; do
        bin="${side}_BIN"; bin="${!bin}"
        read -r rate user user_x <<<"$(one_run "$bin")"
        echo "run $run $side $(basename "$bin"): $rate echoes/s, user $user µs per echo (perf samples), $user_x without those after a syscall"
        RATES[$side]+="$rate "; USERS[$side]+="$user "; USERS_X[$side]+="$user_x "
        [[ $side == A ]] && a_user="$user"
    done
    RATIOS+="$(awk -v a="$a_user" -v b="$user" 'BEGIN { printf "%.3f", b / a }') "
done
for side in A B; do
    bin="${side}_BIN"
    echo "median $side $(basename "${!bin}"): $(tr ' ' '\n' <<<"${RATES[$side]}" | grep . | median) echoes/s, user $(tr ' ' '\n' <<<"${USERS[$side]}" | grep . | median) µs per echo; runs: ${USERS[$side]}"
    echo "  without the samples after a syscall: $(tr ' ' '\n' <<<"${USERS_X[$side]}" | grep . | median) µs per echo; runs: ${USERS_X[$side]}"
done
# The host's speed drifts between runs by more than most changes move the figure (the same
# binary gave 0.17-0.37 µs within one A/B series): B's user time over A's within each pair,
# taken back to back, cancels most of that drift.
echo "median B/A user time per pair: $(tr ' ' '\n' <<<"$RATIOS" | grep . | median); pairs: $RATIOS"
