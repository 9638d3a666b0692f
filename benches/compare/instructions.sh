#!/usr/bin/env bash
# Instructions per packet of a `benches/gate.rs` bench under callgrind: a figure that, unlike
# time, does not move with the machine's load or the host's clock, so two versions of the code
# compare in one number.
#
#   benches/compare/instructions.sh [BENCH]        (default gated_burst32)
#
# Builds the gate bench (release), runs BENCH under callgrind with criterion's --profile-time
# for 1 s and for 2 s, and divides the difference in instructions by the difference in frames
# the stage sent (the bench prints its totals), so start-up and criterion's own work cancel
# out. The bench's set-up per packet (making the frame, the tx-burst push) is included, as in
# its timed figure. Only gated_burst32 and gated_udp_rules_burst32 print their totals.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BENCH=${1:-gated_burst32}
command -v valgrind >/dev/null || { echo "instructions: needs valgrind (apt-get install valgrind)" >&2; exit 2; }

cd "$REPO"
# The bench binary cargo builds: the last line of the JSON messages naming it.
BIN=$(cargo bench --bench gate --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -x "$BIN" ] || { echo "instructions: could not build the gate bench" >&2; exit 1; }

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
