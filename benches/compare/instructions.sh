#!/usr/bin/env bash
# Instructions per packet of a bench under callgrind: a figure that, unlike time, does not move
# with the machine's load or the host's clock, so two versions of the code compare in one number.
#
#   benches/compare/instructions.sh [BENCH]        (default gated_burst32)
#
# BENCH is a `benches/gate.rs` bench (gated_burst32, gated_udp_rules_burst32) or a cell of the
# forwarding grid of `benches/forward.rs` (e.g. forward_untagged/ports16/fdb1k).
#
# Gate: builds the gate bench (release), runs BENCH under callgrind with criterion's
# --profile-time for 1 s and for 2 s, and divides the difference in instructions by the
# difference in frames the stage sent (the bench prints its totals), so start-up and
# criterion's own work cancel out. The bench's set-up per packet (making the frame, the
# tx-burst push) is included, as in its timed figure. Only gated_burst32 and
# gated_udp_rules_burst32 print their totals.
#
# Forward: counts only inside the bench's per-burst function (`forward::burst`, never inlined:
# callgrind's --toggle-collect), divided by its calls x 32 frames; the copy of the burst's
# addresses into the frames is included (a few instructions a frame), the set-up is not.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
BENCH=${1:-gated_burst32}
command -v valgrind >/dev/null || { echo "instructions: needs valgrind (apt-get install valgrind)" >&2; exit 2; }

cd "$REPO"
if [[ $BENCH == forward_* ]]; then
  BIN=$(bench_exe forward) || { echo "instructions: could not build the forward bench" >&2; exit 1; }
  OUT=$(mktemp)
  trap 'rm -f "$OUT"' EXIT
  valgrind --tool=callgrind --callgrind-out-file="$OUT" --toggle-collect='forward::burst' \
    "$BIN" --bench --profile-time 1 "^$BENCH\$" >/dev/null 2>&1
  # Calls of forward::burst and the instructions inside them: the "calls=" lines of the
  # callgrind file that follow a cfn naming it (by name once, by its number afterwards).
  awk -v n="$BENCH" '
    /^c?fn=\([0-9]+\) forward::burst$/ { match($0, /\([0-9]+\)/); id = substr($0, RSTART, RLENGTH) }
    /^cfn=/ { c = $0; sub(/^cfn=/, "", c); split(c, q, " "); f = (id != "" && q[1] == id); next }
    f && /^calls=/ { split($1, a, "="); calls += a[2]; getline; ir += $2; f = 0 }
    END { if (!calls) { print "instructions: no bursts counted for " n > "/dev/stderr"; exit 1 }
          printf "%s: %.1f instructions per packet (%d bursts of 32)\n", n, ir / calls / 32, calls }' "$OUT"
  exit
fi
BIN=$(bench_exe gate) || { echo "instructions: could not build the gate bench" >&2; exit 1; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
declare -a IR SENT
for t in 1 2; do
  valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.%p" \
    "$BIN" --bench --profile-time "$t" "gate/$BENCH" >"$TMP/out.$t" 2>&1
  # The bench runs in one process: the largest total is its own.
  IR[$t]=$(sed -n 's/.*Collected : \([0-9,]*\).*/\1/p' "$TMP/out.$t" | tr -d , | sort -n | tail -1)
  SENT[$t]=$(sed -n "s/^$BENCH: sent \([0-9]*\),.*/\1/p" "$TMP/out.$t" | tail -1)
  [ -n "${IR[$t]}" ] && [ -n "${SENT[$t]}" ] || {
    echo "instructions: no totals from $BENCH (only the gated benches print them)" >&2
    tail -5 "$TMP/out.$t" >&2
    exit 1
  }
done
awk -v a="${IR[1]}" -v b="${IR[2]}" -v x="${SENT[1]}" -v y="${SENT[2]}" -v n="$BENCH" \
  'BEGIN { if (y == x) { print "instructions: no frames sent" > "/dev/stderr"; exit 1 }
           printf "%s: %.1f instructions per packet (%d frames)\n", n, (b - a) / (y - x), y - x }'
