#!/usr/bin/env bash
# Issue 16 items 4 and 5: fan-out with 1 and 2 shards. For 1 → 1,000 and 1 → 10,000
# subscribers of one channel (switchboard-echo's /broadcast, one publisher), on io_uring and
# epoll, with --shards 1 and --shards 2:
#   - throughput (publish as fast as the window allows): deliveries/s and the server's CPU per
#     delivery, user + system, from /proc/PID/stat (all shards' threads together);
#   - publish-to-delivery latency at a fixed publish rate (RATE_1000, RATE_10000 publishes/s):
#     p50 / p99 / p99.9 in µs, from each message's send time to its arrival at a subscriber.
# With 2 shards, half the subscribers live on the shard that does not own the publisher's
# socket, so every publish also crosses the shards' rings: the 2-shard CPU per delivery over the
# 1-shard one is the cost of that hop (item 5: within 10%).
#
# At full speed the publisher is closed-loop (switchboard-bench's window: 16 messages its ack
# subscriber has not received), and what a delivery costs follows how many frames each socket
# write carries (column "deliveries per socket write", from the server's counters). With 2
# shards, where the publisher's connection lands decides the pipeline (PLACEMENTS below): on
# the channel's owner, the owner reads, orders and delivers in one turn and a batch the window
# split merges again in the owner's socket; on the other shard, a publish goes through three
# stages (forwarded by the publisher's shard, ordered and half-delivered by the owner, the other
# half delivered back on the publisher's shard), and two batches that share the window stayed
# apart, each in its own stage: each write carried 8-11 frames instead of 16, which nearly
# doubled the system time per delivery whatever the hop costs (seen at 1 → 10,000). Since
# 2026-12-05 the publisher's shard holds the owner's deliveries for a turn while its forwarded
# publishes wait at the owner (cross_shard_hold_deliveries), and the halves merge; SERVER_ARGS=
# "--set cross_shard_hold_deliveries=false" shows the split. The table gives each placement its
# own row, and the CPU per delivery at the fixed latency rate, where both shard counts get the
# same publishes per turn.
#
# Placement: every server thread (acceptor and all shards) pinned to SERVER_CPUS (default "0":
# the same CPU budget as the single shard, so the ratio compares work, not parallelism; the two
# shards then take turns on one CPU), the load generator to BENCH_CPU. SERVER_CPUS=0,1 shows
# parallel shards instead (then the load generator shares a CPU with one of them).
# Every run is switchboard-bench: deliveries counted and per-subscriber order verified; a
# failed run is FAILED, never a figure. Medians of RUNS, run in interleaved rounds (round r runs
# every configuration before round r + 1: this host drifts between states by ±15% within
# minutes, and rounds taken one configuration after another compared states, not shard counts),
# with each two-shard run also paired with the one-shard run of its own round. Markdown on stdout.
#
#   RUNS=3 DURATION=10s WARMUP=2s SERVER_CPUS=0 BENCH_CPU=1 SKIP_BUILD=0 BASE_PORT=18700
#   SUBSCRIBERS="1000 10000" RATE_1000=50 RATE_10000=5 BACKENDS="uring epoll" SHARDS="1 2"
#   (the fixed rates: low enough that the busy-polling client keeps its schedule; until
#   2026-12-05 they were 500 and 50, where the client fell behind on most sends and the latency
#   measured its own queue. A run whose client fell behind says so in its latency cell)
#   PLACEMENTS="owner other" (2 shards: the publisher on the channel's owner, on the other shard)
#   PLACE_TRIES=3 (runs of a cell in a round until the publisher lands where wanted)
#   PEAK_ARGS="" (more switchboard-bench flags for the full-speed runs, e.g. "--window 256")
#   SERVER_ARGS="" (more switchboard-echo flags, e.g. "--set cross_shard_hold_deliveries=false")
#   LATENCY_FLAGS=--busy-poll (the fixed-rate runs' client polls without sleeping: with a
#   sleeping client the p99 at 10,000 subscribers was twice as high for every server, the C++
#   peer too, RESULTS.md 2026-12-03; "" to measure as before)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS="${RUNS:-3}"; DURATION="${DURATION:-10s}"; WARMUP="${WARMUP:-2s}"
SERVER_CPUS="${SERVER_CPUS:-0}"; BENCH_CPU="${BENCH_CPU:-1}"; SKIP_BUILD="${SKIP_BUILD:-0}"
BASE_PORT="${BASE_PORT:-18700}"; SUBSCRIBERS="${SUBSCRIBERS:-1000 10000}"
RATE_1000="${RATE_1000:-50}"; RATE_10000="${RATE_10000:-5}"
BACKENDS="${BACKENDS:-uring epoll}"; SHARDS="${SHARDS:-1 2}"; PEAK_ARGS="${PEAK_ARGS:-}"; SERVER_ARGS="${SERVER_ARGS:-}"
LATENCY_FLAGS="${LATENCY_FLAGS---busy-poll}"
bench_start release "switchboard-echo switchboard-bench"

rate_for() { local v="RATE_$1"; echo "${!v:-}"; }
for n in $SUBSCRIBERS; do [[ -n "$(rate_for "$n")" ]] || die "no publish rate for $n subscribers: set RATE_$n"; done

start() { # port backend shards
    taskset -c "$SERVER_CPUS" "$ECHO_BIN" --host 127.0.0.1 --port "$1" --io-backend "$2" --shards "$3" \
        --set max_connections_per_shard=30000 --log-level warning $SERVER_ARGS >"$WORK/server-$2-$3.log" 2>&1 &
    SERVER_PID=$!
    wait_for_ws "$1" /ws "$BENCH_BIN"
}
run_bench() { local out="$1"; shift; timeout 600 "$BENCH_BIN" "$@" --cpu "$BENCH_CPU" --quiet --server-pid "$SERVER_PID" >"$out" 2>&1; }
split() { # out -> "user system" µs per delivery
    awk '/server CPU split:/ { u = ""; s = ""; for (i = 1; i <= NF; i++) { if ($i == "user" && $(i + 2) == "system") u = $(i + 1); if ($i == "system" && $(i - 2) == "user") s = $(i + 1) } print u, s }' "$1"
}
percentile() { awk -v k="$2" '/latency µs:/ { for (i = 1; i <= NF; i++) if ($i == k) print $(i + 1) }' "$1"; }

# Where the publisher sits, with 2 shards: on the shard that owns the channel ("owner": it reads,
# orders and delivers in one turn, and the other shard delivers from its ring), or on the other
# shard ("other": that shard forwards each publish to the owner through a ring, the owner orders
# and delivers its half, and the publisher's shard delivers the other half from its ring: three
# stages, two of them in the publisher's shard). The acceptor gives a connection to the shard
# with the fewest, ties in turn, so which shard the bench's connections start on follows the
# parity of the connections accepted before them. Each run is classified after the fact from
# the server's per-shard counters (the shard whose WebSocket messages went up is the
# publisher's, the one whose switchboard_publishes_total went up the owner), and filed under
# what it was; the first run teaches the script which parity gives which placement (and so
# which the other parity gives), and later runs open one probe connection first when they
# need the other parity. A run that lands off the wanted placement is not filed but run again,
# steered by what it taught, up to PLACE_TRIES times in all (the last try is filed where it
# landed): each placement then gets a sample in every round, where round 1's guesses left
# item 5's cells with two samples of three.
PLACEMENTS="${PLACEMENTS:-owner other}"; PLACE_TRIES="${PLACE_TRIES:-3}"
declare -A RATE USR SYS LAT PERSEND WAKES FIXED PARITY_GIVES
# Accumulated per key (key = backend|shards|subscribers|placement): space-separated samples.
declare -A A_RATE A_USR A_SYS A_LAT A_SEND A_WAKE A_FIXED A_FAILED A_PAIR A_FIXED_PAIR
# Runs made again because they landed off the wanted placement, per key (backend|shards|n|want).
# Assigned empty, not only declared: under `set -u`, ${#A_RETRIED[@]} of a declared-only array
# is an unbound variable, and a run with no retries died there, before report_failures.
declare -A A_RETRIED=()
# The one-shard CPU per delivery of each round (backend|subscribers|run), for the paired ratios.
declare -A ONE_CPU
# The same at the fixed latency rate (backend|subscribers|run).
declare -A ONE_FIXED
# shard_values METRICS NAME SHARDS: the counter's value per shard in the METRICS text, "v0 v1 ..."
# (0 where absent).
shard_values() {
    awk -v m="$2" -v n="$3" '{ k = $1; sub(/[{].*/, "", k) } k == m && match($1, /shard="[0-9]+"/) {
             v[substr($1, RSTART + 7, RLENGTH - 8) + 0] = $NF }
         END { for (i = 0; i < n; i++) printf "%s%.0f", (i ? " " : ""), v[i] + 0; print "" }' <<<"$1"
}
# argmax_delta "BEFORE" "AFTER": the index whose value rose most ("-" when none rose).
argmax_delta() {
    awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x, " "); split(b, y, " "); best = "-"; d = 0
        for (i = 1; i <= n; i++) if (y[i] - x[i] > d) { d = y[i] - x[i]; best = i - 1 }; print best }'
}
snapshot() { # port shards -> "messages|publishes", both from one read of /metrics
    local metrics
    metrics="$(curl -sf --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null || true)"
    echo "$(shard_values "$metrics" switchboard_ws_messages_received_total "$2")|$(shard_values "$metrics" switchboard_publishes_total "$2")"
}
# classify PORT SHARDS SNAPSHOT_BEFORE: owner | other | unknown, for the run since the snapshot.
classify() {
    local after pub own
    after="$(snapshot "$1" "$2")"
    pub="$(argmax_delta "${3%%|*}" "${after%%|*}")"; own="$(argmax_delta "${3##*|}" "${after##*|}")"
    if [[ "$pub" == - || "$own" == - ]]; then echo unknown; elif [[ "$pub" == "$own" ]]; then echo owner; else echo other; fi
}
# steer PORT WANT PARITY_KEY: opens one probe connection when the parity of the connections
# accepted so far is known to give the other placement; prints the parity the run starts with.
steer() {
    local accepted parity
    accepted="$(metric_total "$1" switchboard_connections_accepted_total)"
    [[ "$accepted" == - ]] && { echo -; return; }
    parity=$((accepted % 2))
    # What this parity gave before, or else the opposite of what the other parity gave.
    local gives="${PARITY_GIVES[$3|$parity]:-}" other="${PARITY_GIVES[$3|$((1 - parity))]:-}"
    if [[ -z "$gives" && -n "$other" ]]; then
        if [[ "$other" == owner ]]; then gives=other; else gives=owner; fi
    fi
    if [[ -n "$gives" && "$gives" != "$2" ]]; then
        curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$1/health" || true
        parity=$((1 - parity))
    fi
    echo "$parity"
}
# learn PARITY_KEY PARITY PLACED WANT WHAT: remembers what the parity gave, and logs a run that
# landed off the placement it was steered to (WHAT names the run).
learn() {
    [[ "$2" == - || "$3" == - ]] && return 0
    PARITY_GIVES[$1|$2]="$3"
    if [[ "$3" != "$4" ]]; then log "$5: wanted the publisher on the $4 shard, it landed on the $3 one"; fi
}
placements_for() { if [[ "$1" == 1 ]]; then echo -; else echo "$PLACEMENTS"; fi; }
add() { local -n arr="$1"; arr[$2]="${arr[$2]:-}${arr[$2]:+ }$3"; }
# again KEY PLACED WANT TRIES WHAT: true, having logged and counted it, when a run that landed
# off the wanted placement is to be run again (fewer than PLACE_TRIES tries so far).
again() {
    [[ "$2" != "$3" && "$4" -lt "$PLACE_TRIES" ]] || return 1
    log "$5: not filed, run again"
    A_RETRIED[$1|$3]=$(( ${A_RETRIED[$1|$3]:-0} + 1 ))
}
# pair ONE PAIRS ROUND KEY VALUE: a one-shard run (the loop's $shards) keeps VALUE as its round's base in ONE
# (ROUND = backend|subscribers|run); a two-shard run adds VALUE / that base to PAIRS[KEY].
pair() {
    local -n base="$1"
    if [[ "$shards" == 1 ]]; then base[$3]="$5"
    elif [[ -n "${base[$3]:-}" ]]; then
        add "$2" "$4" "$(awk -v a="$5" -v b="${base[$3]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }')"
    fi
}
# paired_note SAMPLES: " (paired by round: median M; per run ...)" for a list of paired ratios.
paired_note() { [[ -n "$1" ]] && echo " (paired by round: median $(samples "$1" | median); per run $1)" || true; }

port="$BASE_PORT"
# Interleaved: round r runs every backend, shard count, subscriber count and placement before
# round r + 1, so a drift of the host between rounds moves both sides of a ratio alike, and each
# two-shard run is also compared with the one-shard run of its own round (the paired column).
for run in $(seq 1 "$RUNS"); do
    for backend in $BACKENDS; do
        for shards in $SHARDS; do
            for n in $SUBSCRIBERS; do
                for want in $(placements_for "$shards"); do
                    port=$((port + 1))
                    base="$backend|$shards|$n"
                    if ! start "$port" "$backend" "$shards"; then note_failure "$base: the server did not start ($(tail -1 "$WORK/server-$backend-$shards.log"))"; A_FAILED[$base|$want]=1; stop_server; continue; fi
                    # A run that lands off the wanted placement (round 1, before the parity is
                    # learned, or a probe that raced a close) is run again, now steered, up to
                    # PLACE_TRIES times in all; only the last try is filed (under where it landed),
                    # so each placement gets one sample per round.
                    tries=0
                    while :; do
                        tries=$((tries + 1))
                        out="$WORK/$backend-$shards-$n-$run-$want-peak-$tries.txt"; status=0
                        before="$(snapshot "$port" "$shards")"
                        d0="$(metric_total "$port" switchboard_fanout_deliveries_total)"; s0="$(metric_total "$port" switchboard_sends_total)"
                        w0="$(metric_total "$port" switchboard_doorbell_wakeups_total)"
                        # Last before the run: the parity it reads is the one the bench starts with.
                        parity=-; [[ "$want" != - ]] && parity="$(steer "$port" "$want" "$backend|$n")"
                        # shellcheck disable=SC2086
                        run_bench "$out" fanout --raw --subscribers "$n" --publishers 1 -s 20 -d "$DURATION" --warmup "$WARMUP" $PEAK_ARGS \
                            --source-addresses 127.0.0.1-4 "ws://127.0.0.1:$port/broadcast" || status=$?
                        if [[ "$status" != 0 ]]; then stop_server; note_failure "$base|$want run $run (peak): $(run_failure_reason "$out" "$status")"; A_FAILED[$base|$want]=1; continue 2; fi
                        placed=-
                        if [[ "$want" != - ]]; then
                            placed="$(classify "$port" "$shards" "$before")"
                            [[ "$placed" == unknown ]] && { stop_server; note_failure "$base run $run (peak): the publisher's shard or the owner not found in the counters"; A_FAILED[$base|$want]=1; continue 2; }
                            learn "$backend|$n" "$parity" "$placed" "$want" "$base run $run"
                            again "$base" "$placed" "$want" "$tries" "$base run $run" && continue
                        fi
                        break
                    done
                    [[ "$placed" != "$want" ]] && log "$base run $run: filed under the $placed shard after $tries tries"
                    key="$base|$placed"
                    add A_RATE "$key" "$(awk '/^  deliveries:/ { print $2 }' "$out")"
                    # Frames per socket write and doorbell wake-ups per 1,000 deliveries, from the
                    # server's counters over the run (warm-up included): what system time follows.
                    read -r per_send wakes <<<"$(awk -v d0="$d0" -v d1="$(metric_total "$port" switchboard_fanout_deliveries_total)" \
                        -v s0="$s0" -v s1="$(metric_total "$port" switchboard_sends_total)" \
                        -v w0="$w0" -v w1="$(metric_total "$port" switchboard_doorbell_wakeups_total)" \
                        'BEGIN { if (d0 == "-" || s0 == "-" || s1 <= s0) { print "n/a n/a"; exit }
                                 printf "%.1f %.2f\n", (d1 - d0) / (s1 - s0), (w0 == "-" ? 0 : (w1 - w0) * 1000 / (d1 - d0)) }')"
                    [[ "$per_send" != n/a ]] && add A_SEND "$key" "$per_send"
                    [[ "$wakes" != n/a ]] && add A_WAKE "$key" "$wakes"
                    read -r u s <<<"$(split "$out")"; add A_USR "$key" "${u:-nan}"; add A_SYS "$key" "${s:-nan}"
                    # Paired by round: this two-shard run's CPU per delivery over the one-shard
                    # run of the same round (minutes apart at most, in nearly the same host state).
                    pair ONE_CPU A_PAIR "$backend|$n|$run" "$key" "$(awk -v u="${u:-nan}" -v s="${s:-nan}" 'BEGIN { printf "%.4f", u + s }')"
                    peak_log="${A_RATE[$key]##* } deliveries/s (server µs/delivery user ${u:-?} system ${s:-?}, ${per_send} per write)"
                    tries=0
                    while :; do
                        tries=$((tries + 1))
                        out="$WORK/$backend-$shards-$n-$run-$want-latency-$tries.txt"; status=0
                        before="$(snapshot "$port" "$shards")"
                        parity=-; [[ "$want" != - ]] && parity="$(steer "$port" "$want" "$backend|$n")"
                        # shellcheck disable=SC2086
                        run_bench "$out" fanout $LATENCY_FLAGS --raw --subscribers "$n" --publishers 1 -s 20 -r "$(rate_for "$n")" -d "$DURATION" --warmup "$WARMUP" \
                            --source-addresses 127.0.0.1-4 "ws://127.0.0.1:$port/broadcast" || status=$?
                        lplaced=-; [[ "$status" == 0 && "$want" != - ]] && lplaced="$(classify "$port" "$shards" "$before")"
                        if [[ "$status" == 0 && "$want" != - && "$lplaced" != unknown ]]; then
                            learn "$backend|$n" "$parity" "$lplaced" "$want" "$base run $run (latency)"
                            again "$base" "$lplaced" "$want" "$tries" "$base run $run (latency)" && continue
                        fi
                        break
                    done
                    [[ "$status" == 0 && "$lplaced" != "$want" && "$lplaced" != unknown ]] && log "$base run $run (latency): filed under the $lplaced shard after $tries tries"
                    stop_server
                    if [[ "$status" != 0 ]]; then note_failure "$base|$want run $run (latency): $(run_failure_reason "$out" "$status")"; A_FAILED[$base|$want]=1; continue; fi
                    [[ "$lplaced" == unknown ]] && { note_failure "$base run $run (latency): the publisher's shard or the owner not found in the counters"; A_FAILED[$base|$want]=1; continue; }
                    lkey="$base|$lplaced"
                    add A_LAT "$lkey" "$(percentile "$out" p50)/$(percentile "$out" p99)/$(percentile "$out" p99.9)$(client_late "$out" | tr ' ' '_')"
                    # CPU per delivery at the fixed rate too: there both shard counts get the same
                    # publishes per turn, whatever the load generator's window does at full speed.
                    read -r fu fs <<<"$(split "$out")"
                    fixed_now="$(awk -v u="${fu:-nan}" -v s="${fs:-nan}" 'BEGIN { printf "%.3f", u + s }')"
                    add A_FIXED "$lkey" "$fixed_now"
                    pair ONE_FIXED A_FIXED_PAIR "$backend|$n|$run" "$lkey" "$fixed_now"  # paired by round at the fixed rate too
                    log "$key run $run: $peak_log; at $(rate_for "$n")/s (publisher: ${lplaced}) p50/p99/p99.9 ${A_LAT[$lkey]##* } µs"
                done
            done
        done
    done
done

# Medians per key (a key that only failed, or that no run reached, stays out of RATE).
for key in "${!A_RATE[@]}" "${!A_LAT[@]}" "${!A_FAILED[@]}"; do
    if [[ -n "${A_FAILED[$key]:-}" ]]; then RATE[$key]="FAILED"; continue; fi
    if [[ -n "${A_RATE[$key]:-}" ]]; then
        RATE[$key]="$(samples "${A_RATE[$key]}" | median)"
        USR[$key]="$(samples "${A_USR[$key]}" | median)"; SYS[$key]="$(samples "${A_SYS[$key]}" | median)"
    fi
    FIXED[$key]="$( [[ -n "${A_FIXED[$key]:-}" ]] && samples "${A_FIXED[$key]}" | median || true)"
    PERSEND[$key]="$( [[ -n "${A_SEND[$key]:-}" ]] && samples "${A_SEND[$key]}" | median || true)"
    WAKES[$key]="$( [[ -n "${A_WAKE[$key]:-}" ]] && samples "${A_WAKE[$key]}" | median || true)"
    # Latency triples: the run whose p99 is the median one.
    if [[ -n "${A_LAT[$key]:-}" ]]; then
        mapfile -t lats < <(samples "${A_LAT[$key]}" | sort -t/ -k2 -g)
        LAT[$key]="$(sed 's|/| / |g; s|_| |g' <<<"${lats[$(( (${#lats[@]} - 1) / 2 ))]}")"
    fi
done

echo "### Fan-out with 1 and 2 shards: throughput, CPU per delivery, publish-to-delivery latency (shards-bench.sh)"
echo
echo "- Date: $(date -u +%Y-%m-%dT%H:%M:%SZ); \`nproc\` = $(nproc); kernel \`$(uname -r)\`; Switchboard \`$(cd "$MAIN_DIR" && git rev-parse --short HEAD)\` (release); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- Server threads pinned to CPU(s) $SERVER_CPUS, load generator to CPU $BENCH_CPU; ${WARMUP} warm-up + ${DURATION}; $RUNS run(s) in interleaved rounds (round r runs every row before round r + 1), medians (latency: the run with the median p99). CPU per delivery: the whole server process (all shards) over the deliveries received. Paired by round: each two-shard run over the one-shard run of its own round."
echo
echo '```'
echo "taskset -c $SERVER_CPUS $ECHO_BIN --host 127.0.0.1 --port PORT --io-backend uring|epoll --shards 1|2 --set max_connections_per_shard=30000${SERVER_ARGS:+ $SERVER_ARGS}"
echo "$BENCH_BIN fanout --raw --subscribers N --publishers 1 -s 20 -d $DURATION --warmup $WARMUP${PEAK_ARGS:+ $PEAK_ARGS} --source-addresses 127.0.0.1-4 --cpu $BENCH_CPU --server-pid PID ws://127.0.0.1:PORT/broadcast"
echo "$BENCH_BIN fanout${LATENCY_FLAGS:+ $LATENCY_FLAGS} --raw --subscribers N --publishers 1 -s 20 -r RATE -d $DURATION --warmup $WARMUP --source-addresses 127.0.0.1-4 --cpu $BENCH_CPU --server-pid PID ws://127.0.0.1:PORT/broadcast"
echo '```'
echo
echo "| backend | subscribers | shards | deliveries/s | server µs per delivery (user + system) | 2 shards / 1 shard, CPU per delivery | deliveries per socket write | doorbell wake-ups per 1,000 deliveries | publishes/s for latency | p50 / p99 / p99.9 µs | server µs per delivery at that rate | 2 shards / 1 shard at that rate |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
# A row per backend, subscriber count, shard count and (2 shards) placement; a placement no run
# reached says so instead of a figure.
for backend in $BACKENDS; do
    for n in $SUBSCRIBERS; do
        for shards in $SHARDS; do
            for placed in $(placements_for "$shards"); do
                key="$backend|$shards|$n|$placed"
                label="$shards"; [[ "$placed" != - ]] && label="$shards, publisher on the $placed shard"
                if [[ "${RATE[$key]:-}" == FAILED ]]; then
                    echo "| $backend | $n | $label | FAILED | | | | | $(rate_for "$n") | | | |"; continue
                fi
                one="$backend|1|$n|-"
                ratio=""; cpu="no full-speed run landed so"
                if [[ -n "${RATE[$key]:-}" ]]; then
                    cpu="$(awk -v u="${USR[$key]}" -v s="${SYS[$key]}" 'BEGIN { printf "%.3f + %.3f = %.3f", u, s, u + s }')"
                    if [[ "$shards" != 1 && -n "${USR[$one]:-}" && "${RATE[$one]:-}" != FAILED ]]; then
                        ratio="$(awk -v u="${USR[$key]}" -v s="${SYS[$key]}" -v u1="${USR[$one]}" -v s1="${SYS[$one]}" 'BEGIN { if (u1 + s1 > 0) printf "%.2f", (u + s) / (u1 + s1) }')"
                        ratio="$ratio$(paired_note "${A_PAIR[$key]:-}")"
                    fi
                fi
                fixed_ratio=""
                if [[ "$shards" != 1 && -n "${FIXED[$key]:-}" && -n "${FIXED[$one]:-}" && "${RATE[$one]:-}" != FAILED ]]; then
                    fixed_ratio="$(awk -v a="${FIXED[$key]}" -v b="${FIXED[$one]}" 'BEGIN { if (b > 0) printf "%.2f", a / b }')"
                    fixed_ratio="$fixed_ratio$(paired_note "${A_FIXED_PAIR[$key]:-}")"
                fi
                echo "| $backend | $n | $label | $( [[ -n "${RATE[$key]:-}" ]] && rate_cell "${RATE[$key]}" || echo "n/a") | $cpu | $ratio | ${PERSEND[$key]:-} | ${WAKES[$key]:-} | $(rate_for "$n") | ${LAT[$key]:-no fixed-rate run landed so} | ${FIXED[$key]:-} | $fixed_ratio |"
            done
        done
    done
done
# Runs made again because the publisher landed off the wanted placement (not filed).
if (( ${#A_RETRIED[@]} > 0 )); then
    echo
    echo "- Runs made again because the publisher landed off the wanted shard (not filed): $(for k in "${!A_RETRIED[@]}"; do printf '%s %s; ' "$k" "${A_RETRIED[$k]}"; done | sed 's/; $//')."
fi
report_failures
