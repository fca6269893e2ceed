#!/usr/bin/env bash
# Steady-state user instructions per message: instructions-per-message.sh run twice, with
# SHORT and LONG message counts, and the difference divided by the difference in messages. What
# both runs share drops out: the connects and handshakes inside the measured window (100 TLS
# handshakes are ~3M instructions each run, more than 300,000 fan-out deliveries cost), the
# warm-up's leftovers, the first turns. Same arguments and environment (TLS=1, SHARDS=2,
# ECHO_BIN, BENCH_BIN) as instructions-per-message.sh:
#
#   steady-instructions.sh BACKEND KIND CONNS SIZE SHORT LONG [OUT]
#     e.g. TLS=1 steady-instructions.sh epoll fanout 100 20 3000 9000
#     OUT: the long run's callgrind profile (for callgrind_annotate).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
B="$1"; KIND="$2"; C="$3"; S="$4"; SHORT="$5"; LONG="$6"; OUT="${7:-}"
[[ "$KIND" == echo || "$KIND" == fanout ]] || { echo "KIND must be echo or fanout" >&2; exit 2; }
(( LONG > SHORT )) || { echo "LONG must be more than SHORT" >&2; exit 2; }
measure() { # N [OUT] -> "messages instructions"
    local out line
    out="$(bash "$HERE/instructions-per-message.sh" "$B" "$KIND" "$C" "$S" "$1" ${2:+"$2"} 2>&1)" || { echo "$out" >&2; exit 1; }
    line="$(grep '^backend=' <<<"$out")" || { echo "$out" >&2; exit 1; }
    awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "messages") m = kv[2]; if (kv[1] == "instructions") n = kv[2] } } END { print m, n }' <<<"$line"
}
read -r m1 i1 <<<"$(measure "$SHORT")"
read -r m2 i2 <<<"$(measure "$LONG" "$OUT")"
[[ -n "$m1" && -n "$m2" && "$m2" -gt "$m1" ]] || { echo "failed: message counts $m1 and $m2" >&2; exit 1; }
unit=delivery; [[ "$KIND" == echo ]] && unit=echo
echo "backend=$B kind=$KIND conns=$C size=$S tls=${TLS:-0} short: $m1 messages, $i1 instructions; long: $m2 messages, $i2 instructions"
awk -v a="$i1" -v b="$i2" -v x="$m1" -v y="$m2" -v unit="$unit" 'BEGIN { printf "  steady state, per %s: %.0f instructions\n", unit, (b - a) / (y - x) }'
