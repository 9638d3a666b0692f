# shellcheck shell=bash
# Shared by forward_grid.sh and instructions.sh (sourced, not run).

# bench_exe NAME: builds the criterion bench NAME of the checkout in the current directory
# (`cargo bench --bench NAME --no-run`) and prints its executable's path; fails when there is
# none. Cargo's JSON messages also name other executables (the switch's binary, build scripts),
# in no set order: only the artifact of kind "bench" is the bench.
bench_exe() {
  local exe
  exe=$(cargo bench --bench "$1" --no-run --message-format=json 2>/dev/null |
    grep '"kind":\["bench"\]' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1) || true
  [ -x "$exe" ] || return 1
  echo "$exe"
}
