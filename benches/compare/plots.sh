# shellcheck shell=bash
# Plots for latency.sh and latency_vm.sh (sourced, not run).
#
# plot_first_round LAT OUT "SIZE ..." "BACKEND ..." [PLOT-ARGS ...]: for every size and flood
# state, one `LAT plot` of each backend's round-1 CSV (OUT/runs/BACKEND-SIZE-idle|flood-r1.csv)
# into OUT/plots-SIZE-idle|flood; a cell without CSVs is skipped. It prints each PNG's path.
plot_first_round() {
  local lat=$1 out=$2 sizes=$3 backends=$4 size fl b c
  shift 4
  for size in $sizes; do
    for fl in idle flood; do
      local args=()
      for b in $backends; do
        c=$out/runs/$b-$size-$fl-r1.csv
        if [ -s "$c" ]; then args+=("$b=$c"); fi
      done
      if [ ${#args[@]} -gt 0 ]; then "$lat" plot --out "$out/plots-$size-$fl" "$@" "${args[@]}"; fi
    done
  done
}
