#!/usr/bin/env bash
# The forwarding stage's grid (`benches/forward.rs`: 2-64 ports x 1k-1M learned hosts, untagged
# and tagged) as a table of ns per packet, for one build or several compared in turn.
#
#   benches/compare/forward_grid.sh [--rounds N] [--warmup S] [--measure S] [--filter RE]
#                                   [--quantile Q] [NAME=BIN ...]
#
# Without NAME=BIN, builds the bench of this checkout (`cargo bench --bench forward --no-run`)
# and runs it as `now`. With several (bench executables of different builds, e.g. copied out of
# target/release/deps/ after `--no-run`), each round runs every one of them in turn, so that
# the machine's slow and fast spells fall on all alike. A figure: criterion's samples of the
# bench (100, of equal iteration counts), their time per iteration at quantile Q (default 0.5,
# the median; a low one such as 0.1 leaves out the samples a busy machine slowed down; a
# comma-separated list prints a table for each), / 32
# frames; then the median over rounds. Printed per build: the grid, the ratio of 1 M to 1 k
# hosts per port count and of 64 to 2 ports per table size, and the harness's own share
# (`harness/rewrite_burst32`); with two builds, the second's figures over the first's.
# Defaults: 3 rounds, 1 s warm-up, 3 s measurement.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
ROUNDS=3 WARMUP=1 MEASURE=3 FILTER='forward_(un)?tagged/|harness/' QUANTILE=0.5
declare -a NAMES=() BINS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --measure) MEASURE=$2; shift 2 ;;
    --filter) FILTER=$2; shift 2 ;;
    --quantile) QUANTILE=$2; shift 2 ;;
    *=*) NAMES+=("${1%%=*}"); BINS+=("${1#*=}"); shift ;;
    *) echo "forward_grid: unknown argument '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
done
if [ ${#BINS[@]} -eq 0 ]; then
  cd "$REPO"
  BIN=$(bench_exe forward) || { echo "forward_grid: could not build the forward bench" >&2; exit 1; }
  NAMES=(now) BINS=("$BIN")
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for r in $(seq "$ROUNDS"); do
  for i in "${!BINS[@]}"; do
    echo "forward_grid: round $r/$ROUNDS: ${NAMES[$i]}" >&2
    home="$TMP/crit-$i-$r"
    CRITERION_HOME="$home" "${BINS[$i]}" --bench --warm-up-time "$WARMUP" \
      --measurement-time "$MEASURE" "$FILTER" >"$TMP/log-$i-$r" 2>&1 || {
      echo "forward_grid: ${NAMES[$i]} failed:" >&2; tail -5 "$TMP/log-$i-$r" >&2; exit 1; }
    # Each bench's samples (equal iteration counts): their times per iteration / 32 frames,
    # sorted, on one line: "NAME ID t1 t2 ...".
    for f in "$home"/*/*/new/sample.json "$home"/*/*/*/new/sample.json; do
      [ -f "$f" ] || continue
      id=${f#"$home"/}; id=${id%/new/sample.json}
      sed 's/.*"iters":\[\([^]]*\)\],"times":\[\([^]]*\)\].*/\1\n\2/' "$f" | tr , ' ' |
        awk -v n="${NAMES[$i]}" -v id="$id" '
          NR == 1 { for (k = 1; k <= NF; k++) it[k] = $k }
          NR == 2 { for (k = 1; k <= NF; k++) t[k] = $k / it[k] / 32; m = NF }
          END { for (a = 2; a <= m; a++) { # insertion sort: 100 samples
                  v = t[a]; for (b = a - 1; b >= 1 && t[b] > v; b--) t[b + 1] = t[b]; t[b + 1] = v }
                printf "%s %s", n, id; for (k = 1; k <= m; k++) printf " %s", t[k]; printf "\n" }' \
        >>"$TMP/samples"
    done
  done
done

for q in ${QUANTILE//,/ }; do
echo
echo "=== time per iteration at quantile $q of each bench's samples, median over $ROUNDS round(s), / 32"
# name id ns at quantile q -> median over rounds per (name, id), then the table.
awk -v q="$q" '{ m = NF - 2; print $1, $2, $(3 + int(q * (m - 1) + 0.5)) }' "$TMP/samples" |
sort -k1,1 -k2,2 -k3,3g | awk '
  { k = $1 " " $2; v[k, ++c[k]] = $3; if (!(k in seen)) { seen[k] = 1; keys[++nk] = k } }
  END { for (i = 1; i <= nk; i++) { k = keys[i]; n = c[k]
          m = n % 2 ? v[k, (n + 1) / 2] : (v[k, n / 2] + v[k, n / 2 + 1]) / 2
          print k, m } }' >"$TMP/med"
awk -v names="${NAMES[*]}" '
  BEGIN { nn = split(names, N, " "); np = split("02 04 16 64", P, " "); nf = split("1k 16k 256k 1M", F, " ") }
  $2 ~ /^harness\// { h[$1] = $3; next }
  { split($2, a, "/"); g = a[1]; sub(/^forward_/, "", g); sub(/^ports/, "", a[2]); sub(/^fdb/, "", a[3])
    x[$1, g, a[2], a[3]] = $3; if (!(g in gs)) { gs[g] = 1; G[++ng] = g } }
  function cell(v) { return v == "" ? "     -" : sprintf("%6.1f", v) }
  function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "    -" : sprintf("%5.2f", a / b) }
  END {
    for (gi = 1; gi <= ng; gi++) for (ni = 1; ni <= nn; ni++) {
      g = G[gi]; n = N[ni]
      printf "\n%s, %s: ns/packet (bursts of 32)\n%-8s", g, n, "ports"
      for (f = 1; f <= nf; f++) printf " %6s", F[f]
      printf "   1M/1k\n"
      for (p = 1; p <= np; p++) {
        printf "%-8s", P[p]
        for (f = 1; f <= nf; f++) printf " %s", cell(x[n, g, P[p], F[f]])
        printf "   %s\n", ratio(x[n, g, P[p], "1M"], x[n, g, P[p], "1k"])
      }
      printf "%-8s", "64/2"
      for (f = 1; f <= nf; f++) printf "  %s", ratio(x[n, g, "64", F[f]], x[n, g, "02", F[f]])
      printf "\n"
    }
    for (ni = 1; ni <= nn; ni++) if (N[ni] in h)
      printf "\nharness, %s: %.1f ns/packet of the figures above are the address rewrite\n", N[ni], h[N[ni]]
    if (nn == 2) for (gi = 1; gi <= ng; gi++) {
      g = G[gi]
      printf "\n%s: %s / %s\n%-8s", g, N[2], N[1], "ports"
      for (f = 1; f <= nf; f++) printf " %6s", F[f]
      printf "\n"
      for (p = 1; p <= np; p++) {
        printf "%-8s", P[p]
        for (f = 1; f <= nf; f++) printf "  %s", ratio(x[N[2], g, P[p], F[f]], x[N[1], g, P[p], F[f]])
        printf "\n"
      }
    }
  }' "$TMP/med"
done
