#!/usr/bin/env bash
# Side-by-side vhost-user throughput: testpmd's rte_vhost (A), OVS-DPDK (B), tsn-vswitch (C).
#
# One dpdk-testpmd frontend with two net_virtio_user ports (io forwarding, tx_first) ping-pongs
# 64-byte frames through the backend under test, which forwards between its two vhost-user ports
# on one PMD core. Rounds alternate A B C A B C ...; medians per backend and the ratios C/B, C/A
# are printed at the end. Run as root. See README.md next to this file.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

ROUNDS=3
SECONDS_MEAS=10
WARMUP=3
ONLY="A,B,C"
GCL=""
KEEP_LOGS=""
C_CLIENT=0
BUILD=1
LINK_TIMEOUT=30     # s: from frontend start to the first non-zero stats second
UP_TIMEOUT=30       # s: for a backend to come up (sockets / ctl / OVS ports)
FE_CORE=0           # frontend: main lcore and forwarding lcore, both on this CPU
BE_MAIN=0           # backend main lcore
BE_PMD=1            # backend forwarding / PMD core
NICE=()             # --nice N: prefix for every process we start
MEM=256             # MiB of hugepages per DPDK process
MBUFS=32768         # testpmd's mbuf pool (its default, ~155k mbufs, would not fit in MEM)

usage() {
  cat <<EOF
usage: $0 [options]        (as root)
  --rounds N        rounds of A B C (default $ROUNDS)
  --seconds S       measured seconds per run (default $SECONDS_MEAS)
  --warmup S        seconds skipped after traffic starts (default $WARMUP)
  --only LIST       backends to run, from A,B,C,D (default $ONLY)
                      A = dpdk-testpmd net_vhost (rte_vhost)   B = OVS-DPDK
                      C = tsn-vswitch (target/release/tsn-vswitch)
                      D = tsn-vswitch with --gcl v1=FILE (needs --gcl)
  --gcl FILE        the gate control list for D (without D: pass it to C)
  --c-client        tsn-vswitch ports as vhost-user-client (frontend server=1)
  --keep-logs DIR   copy every log (frontend, backend, OVS) into DIR
  --no-build        do not run cargo build --release (C uses the existing binary)
  --tsn-bin PATH    C and D run this tsn-vswitch binary (implies --no-build): an A/B of two
                    builds alternates runs with --only C, e.g. before and after a change
  --nice N          run every process of the comparison (frontend, backends) at nice N,
                    e.g. -5 on a machine shared with builds/VMs (same for all backends)
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECONDS_MEAS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --gcl) GCL=$(readlink -f "$2"); shift 2 ;;
    --c-client) C_CLIENT=1; shift ;;
    --keep-logs) KEEP_LOGS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --tsn-bin) TSN_BIN=$(readlink -f "$2"); BUILD=0; shift 2 ;;
    --nice) [[ $2 =~ ^-?[0-9]+$ ]] || { echo "compare: --nice N" >&2; exit 2; }
            NICE=(nice -n "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
for v in ROUNDS SECONDS_MEAS WARMUP; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "compare: $v must be a number" >&2; exit 2; }
done
[ "$SECONDS_MEAS" -ge 1 ] && [ "$ROUNDS" -ge 1 ] || { echo "compare: --rounds/--seconds >= 1" >&2; exit 2; }
BACKENDS=()
for b in ${ONLY//,/ }; do
  case "$b" in A|B|C|D) BACKENDS+=("$b") ;; *) echo "compare: --only takes A,B,C,D" >&2; exit 2 ;; esac
done
[ ${#BACKENDS[@]} -gt 0 ] || { echo "compare: --only is empty" >&2; exit 2; }
has() { [[ " ${BACKENDS[*]} " == *" $1 "* ]]; }
if [ -n "$GCL" ] && [ ! -f "$GCL" ]; then echo "compare: --gcl: no such file" >&2; exit 2; fi
if has D && [ -z "$GCL" ]; then echo "compare: D needs --gcl FILE" >&2; exit 2; fi
# C gets the list only when D is not there to carry it (C alone with --gcl, as before).
C_GCL=""; has D || C_GCL=$GCL
USE_GCL=$C_GCL
[ "$(id -u)" -eq 0 ] || { echo "compare: run as root" >&2; exit 2; }

log() { echo "compare: $*" >&2; }

# ---------------------------------------------------------------- set-up
bash "$REPO/scripts/setup.sh" >&2

OVS_VSWITCHD=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
OVS_SCHEMA=/usr/share/openvswitch/vswitch.ovsschema
if has B; then
  # shellcheck source=ovs.sh
  . "$HERE/ovs.sh"
  ovs_install
fi

TSN="${TSN_BIN:-$REPO/target/release/tsn-vswitch}"
if has C || has D; then
  if [ "$BUILD" = 1 ]; then
    log "building tsn-vswitch (cargo build --release)"
    command -v cargo >/dev/null || { [ -x "$HOME/.cargo/bin/cargo" ] && PATH="$HOME/.cargo/bin:$PATH"; }
    (cd "$REPO" && cargo build --release) >&2 || { log "cargo build --release failed"; exit 1; }
  fi
  [ -x "$TSN" ] || { log "no $TSN (build it, or drop C with --only A,B)"; exit 1; }
fi
command -v dpdk-testpmd >/dev/null || { log "dpdk-testpmd not found (package dpdk)"; exit 1; }

# ---------------------------------------------------------------- state and clean-up
# Short directory: vhost-user socket paths must fit in sun_path (108 bytes).
W=$(mktemp -d /tmp/tsncmp.XXXXXX)
TAG="tc$$x"           # prefix of every --file-prefix we use (x: tc12x never matches tc123x)
PIDS=()               # every process we started (their own pids, not wrappers)
FAILED=""

stop_pid() {          # stop_pid PID: SIGTERM, bounded wait, then SIGKILL
  local p=$1 i
  kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null || true
  for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  log "pid $p ignored SIGTERM for 5 s: SIGKILL"
  kill -KILL "$p" 2>/dev/null || true
  for i in $(seq 1 20); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
}

clean_prefix() {      # hugepage files and runtime dir a crashed DPDK process leaves behind
  local pfx=$1
  rm -f /dev/hugepages/"${pfx}"map_* 2>/dev/null || true
  rm -rf /var/run/dpdk/"$pfx" 2>/dev/null || true
}

stop_all() {
  local p
  if [ ${#PIDS[@]} -gt 0 ]; then
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
  fi
  PIDS=()
  if declare -F ovs_stop >/dev/null; then ovs_stop; fi
  local d
  for d in /dev/hugepages/"$TAG"* /var/run/dpdk/"$TAG"*; do
    [ -e "$d" ] || continue
    case "$d" in
      /dev/hugepages/*) rm -f "$d" ;;
      *) rm -rf "$d" ;;
    esac
  done
  rm -f "$W"/*.sock 2>/dev/null || true
}

on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  if [ -n "$KEEP_LOGS" ]; then
    mkdir -p "$KEEP_LOGS" && cp -r "$W"/. "$KEEP_LOGS"/ 2>/dev/null && log "logs kept in $KEEP_LOGS"
  fi
  rm -rf "$W"
  exit "$rc"
}
trap on_exit EXIT
trap 'log "interrupted"; exit 130' INT TERM

tail_log() {          # tail_log FILE: the last lines of a log, indented, on stderr
  [ -f "$1" ] || return 0
  echo "---- last lines of $(basename "$1"):" >&2
  tail -n 25 "$1" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g; s/^/    /' >&2
}

wait_for() {          # wait_for SECONDS PID_OR_EMPTY CMD...: poll CMD every 0.2 s, bounded
  local deadline=$((SECONDS + $1)) pid=$2; shift 2
  while :; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 2; fi
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# ---------------------------------------------------------------- the frontend
# run_frontend RUN_DIR SERVER(0|1) START_HOOK: starts testpmd with two virtio_user ports on
# RUN_DIR/s0.sock and s1.sock, calls START_HOOK (for backends that must connect after the
# frontend listens), waits for WARMUP+SECONDS stats seconds of traffic, stops it, and writes
# the median forwarded rate (sum of both ports' Rx-pps) in packets/s to RUN_DIR/pps.
# Everything runs in the main shell (no $(...)), so PIDS always knows what to stop.
run_frontend() {
  local dir=$1 server=$2 hook=${3:-} pfx="${TAG}fe" srv=""
  [ "$server" = 1 ] && srv=",server=1"
  local fe_log="$dir/frontend.log"
  clean_prefix "$pfx"
  : >"$fe_log"
  "${NICE[@]}" stdbuf -oL -eL dpdk-testpmd --lcores "0@$FE_CORE,1@$FE_CORE" --no-pci --file-prefix="$pfx" \
    -m "$MEM" --single-file-segments \
    --vdev "net_virtio_user0,path=$dir/s0.sock$srv" \
    --vdev "net_virtio_user1,path=$dir/s1.sock$srv" \
    -- --forward-mode=io --nb-cores=1 --total-num-mbufs="$MBUFS" --auto-start --tx-first \
    --stats-period 1 \
    </dev/null >"$fe_log" 2>&1 &
  local fe=$!
  PIDS+=("$fe")
  if [ -n "$hook" ]; then
    "$hook" "$dir" || { stop_pid "$fe"; return 1; }
  fi
  local need=$((WARMUP + SECONDS_MEAS)) deadline=$((SECONDS + LINK_TIMEOUT)) started=0 n=0
  while :; do
    if ! kill -0 "$fe" 2>/dev/null; then
      log "frontend testpmd exited early"; tail_log "$fe_log"; return 1
    fi
    parse_samples "$fe_log" >"$dir/samples"
    n=$(awk '$1>0 && !s {s=NR} END {print s ? NR-s+1 : 0}' "$dir/samples")
    if [ "$n" -gt 0 ] && [ "$started" = 0 ]; then
      # Bounded, with room for a loaded machine (stats printed late, a slow last period).
      started=1; deadline=$((SECONDS + 2 * need + 30))
    fi
    [ "$n" -ge "$need" ] && break
    # tsn-vswitch: its PMD counters once a second, for the per-second cost report (C/D).
    if [ "$started" = 1 ] && [ -S "$dir/ctl.sock" ] && [ "$SECONDS" != "${last_sample:-}" ]; then
      last_sample=$SECONDS
      timeout 3 "$TSN" ctl --ctl "$dir/ctl.sock" stats 2>/dev/null | tr -d '\n' >>"$dir/stats.jsonl" \
        && echo >>"$dir/stats.jsonl"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      if [ "$started" = 0 ]; then
        log "no traffic through the backend within ${LINK_TIMEOUT} s of starting the frontend"
      else
        log "frontend stats stalled ($n of $need seconds)"
      fi
      tail_log "$fe_log"; stop_pid "$fe"; return 1
    fi
    sleep 0.5
  done
  stop_pid "$fe"
  clean_prefix "$pfx"
  # Drop the seconds before traffic started and the warm-up, keep the measured seconds.
  awk -v w="$WARMUP" -v m="$SECONDS_MEAS" '$1>0 && !s {s=NR} s && NR>=s+w && NR<s+w+m {print $1}' \
    "$dir/samples" >"$dir/measured"
  local zeros
  zeros=$(awk '$1==0' "$dir/measured" | wc -l)
  [ "$zeros" -eq 0 ] || log "warning: $zeros measured second(s) forwarded nothing (frames lost?)"
  median <"$dir/measured" >"$dir/pps"
}

# parse_samples LOG: one line per second of the run, the frontend's forwarded rate (sum of
# Rx-pps over ports 0 and 1). testpmd's stats loop sleeps 1 s and prints when at least 1 s has
# passed, so a period is often 2 s long; Rx-pps is the rate over the whole period, and the
# period's length is (RX-packets delta) / Rx-pps: a 2 s period counts as two seconds at its rate.
parse_samples() {
  sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$1" | awk '
    /NIC statistics for port/ { for (i = 1; i <= NF; i++) if ($i == "port") p = $(i+1) + 0 }
    /RX-packets:/ { for (i = 1; i <= NF; i++) if ($i == "RX-packets:") rx[p] = $(i+1) + 0 }
    /Rx-pps:/ { for (i = 1; i <= NF; i++) if ($i == "Rx-pps:") v[p] = $(i+1) + 0
                if (p == 1) {
                  pps = v[0] + v[1]; tot = rx[0] + rx[1]; d = 1
                  if (seen && pps > 0) { d = int((tot - prev) / pps + 0.5); if (d < 1) d = 1; if (d > 10) d = 10 }
                  for (k = 0; k < d; k++) print pps
                  prev = tot; seen = 1; delete v; delete rx } }'
}

median() {            # median of numbers on stdin (empty -> 0)
  sort -g | awk '{a[NR]=$1} END {if (!NR) {print 0; exit}
    if (NR % 2) print a[(NR+1)/2]; else printf "%.0f\n", (a[NR/2] + a[NR/2+1]) / 2}'
}

# ---------------------------------------------------------------- backends
# Each start_X DIR starts the backend (adding its pids to PIDS) and returns once it is up;
# each run_X DIR runs one measurement and prints the median pps.

start_A() {
  local dir=$1 pfx="${TAG}be"
  clean_prefix "$pfx"
  "${NICE[@]}" dpdk-testpmd --lcores "0@$BE_MAIN,1@$BE_PMD" --no-pci --file-prefix="$pfx" -m "$MEM" \
    --vdev "net_vhost0,iface=$dir/s0.sock,queues=1" \
    --vdev "net_vhost1,iface=$dir/s1.sock,queues=1" \
    -- --forward-mode=io --nb-cores=1 --total-num-mbufs="$MBUFS" --auto-start --stats-period 60 \
    </dev/null >"$dir/backend.log" 2>&1 &
  local be=$!
  PIDS+=("$be")
  wait_for "$UP_TIMEOUT" "$be" test -S "$dir/s1.sock" \
    || { log "testpmd backend did not create $dir/s1.sock"; return 1; }
  wait_for 10 "$be" grep -q "packet forwarding - ports=" "$dir/backend.log" \
    || { log "testpmd backend did not start forwarding"; return 1; }
}
run_A() { start_A "$1" && run_frontend "$1" 0; }

start_B() { ovs_start "$1"; }
run_B() { start_B "$1" && run_frontend "$1" 1; }

ctl_ok() { timeout 3 "$TSN" ctl --ctl "$1/ctl.sock" stats; }

start_C() {
  local dir=$1 kind="vhost-user" args=()
  [ "$C_CLIENT" = 1 ] && kind="vhost-user-client"
  args=(--main-core "$BE_MAIN" --pmd-cores "$BE_PMD" --ctl "$dir/ctl.sock"
        --port "v0=$kind:$dir/s0.sock")
  # A gated vhost-user port needs speed= (a guest's ring has no link speed): 1000, the speed
  # its wire model ran at before the option was required.
  if [ -n "$USE_GCL" ]; then
    args+=(--port "v1,speed=1000=$kind:$dir/s1.sock" --gcl "v1=$USE_GCL")
  else
    args+=(--port "v1=$kind:$dir/s1.sock")
  fi
  echo "+ $TSN ${args[*]}" >"$dir/backend.log"
  "${NICE[@]}" "$TSN" "${args[@]}" </dev/null >>"$dir/backend.log" 2>&1 &
  local be=$!
  PIDS+=("$be")
  local rc=0
  wait_for "$UP_TIMEOUT" "$be" ctl_ok "$dir" || rc=$?
  if [ "$rc" = 2 ]; then log "tsn-vswitch exited during start-up"; return 1; fi
  if [ "$rc" != 0 ]; then log "tsn-vswitch ctl stats did not answer within ${UP_TIMEOUT} s"; return 1; fi
  if [ "$C_CLIENT" = 0 ]; then
    wait_for 10 "$be" test -S "$dir/s1.sock" -a -S "$dir/s0.sock" \
      || { log "tsn-vswitch is up but did not create $dir/s0.sock and s1.sock"; return 1; }
  fi
}
# Client mode: the frontend (server=1) must listen first; it blocks accepting s0 before it
# even creates s1, so our switch has to keep retrying s1 (as OVS's dpdkvhostuserclient does).
hook_C_client() {
  wait_for 15 "" test -S "$1/s0.sock" || { log "frontend did not create $1/s0.sock"; return 1; }
  start_C "$1"
}
run_C() {
  local rc=0
  if [ "$C_CLIENT" = 1 ]; then
    run_frontend "$1" 1 hook_C_client || rc=$?
  else
    { start_C "$1" && run_frontend "$1" 0; } || rc=$?
  fi
  # The switch's own counters (drops by reason, flood vs unicast) for --keep-logs.
  ctl_ok "$1" >"$1/ctl-stats.json" 2>&1 || true
  return "$rc"
}

# pmd_load DIR: for C, the PMD core's processing cost from ctl-stats.json (busy TSC cycles per
# forwarded frame, share of cycles busy): the backend's own cost, whatever the frontend's pace.
pmd_load() {
  [ -s "$1/ctl-stats.json" ] && command -v python3 >/dev/null || return 0
  python3 - "$1/ctl-stats.json" <<'PY' 2>/dev/null || true
import json, sys
d = json.load(open(sys.argv[1]))
busy = sum(c["busy_cycles"] for c in d["pmd"])
idle = sum(c["idle_cycles"] for c in d["pmd"])
pk = sum(p["rx_packets"] for p in d["ports"])
if pk and busy + idle:
    print(f" (PMD: {busy / pk:.0f} busy cycles/frame, {100 * busy / (busy + idle):.0f}% busy)", end="")
PY
}

# D: the same switch with a gate control list on v1 (an all-open list measures the stage's
# bypass cost against C in the same run).
run_D() { USE_GCL=$GCL; local rc=0; run_C "$1" || rc=$?; USE_GCL=$C_GCL; return "$rc"; }

NAME_A=testpmd-vhost; NAME_B=ovs-dpdk; NAME_C=tsn-vswitch; NAME_D=tsn-vswitch+gcl

# ---------------------------------------------------------------- rounds
declare -A RES     # RES[X] = space-separated pps per round
for r in $(seq 1 "$ROUNDS"); do
  for b in "${BACKENDS[@]}"; do
    name_var="NAME_$b"; name=${!name_var}
    dir="$W/r$r$b"; mkdir -p "$dir"
    log "round $r/$ROUNDS: $name ($((WARMUP + SECONDS_MEAS)) s of traffic)"
    if "run_$b" "$dir" && [ -s "$dir/pps" ]; then
      pps=$(cat "$dir/pps")
      RES[$b]="${RES[$b]:-} $pps"
      log "round $r: $name $(awk -v p="$pps" 'BEGIN {printf "%.2f", p / 1e6}') Mpps$(pmd_load "$dir")"
    else
      log "FAILED: $name (round $r)$([ -n "$KEEP_LOGS" ] && echo "; logs kept in $KEEP_LOGS/r$r$b")"
      tail_log "$dir/backend.log"
      [ -f "$dir/ovs-vswitchd.log" ] && tail_log "$dir/ovs-vswitchd.log"
      FAILED="$FAILED $name"
      RES[$b]="${RES[$b]:-} FAIL"
    fi
    stop_all
  done
done

# ---------------------------------------------------------------- report
declare -A MED
for b in "${BACKENDS[@]}"; do
  name_var="NAME_$b"; name=${!name_var}
  ok=$(tr ' ' '\n' <<<"${RES[$b]}" | grep -E '^[0-9]+$' || true)
  rounds=$(for v in ${RES[$b]}; do
             if [ "$v" = FAIL ]; then printf 'FAIL '; else awk -v p="$v" 'BEGIN {printf "%.2f ", p / 1e6}'; fi
           done)
  if [ -n "$ok" ]; then
    MED[$b]=$(median <<<"$ok")
    awk -v n="$name" -v m="${MED[$b]}" -v r="${rounds% }" \
      'BEGIN {printf "%-14s median %6.2f Mpps  (rounds: %s)\n", n, m / 1e6, r}'
  else
    printf '%-14s median   FAIL       (rounds: %s)\n' "$name" "${rounds% }"
  fi
done
ratio() { if [ -n "${MED[$1]:-}" ] && [ -n "${MED[$2]:-}" ] && [ "${MED[$2]}" != 0 ]; then
            awk -v a="${MED[$1]}" -v b="${MED[$2]}" 'BEGIN {printf "%.2f", a / b}'
          else printf 'n/a'; fi; }
if has C && has D; then
  echo "tsn-vswitch+gcl / tsn-vswitch = $(ratio D C) (goal >= 0.95)"
  # The per-second PMD cost in each of the two regimes the loop runs in (see README.md):
  # comparing within a regime takes out how long each backend happened to spend in which.
  if command -v python3 >/dev/null; then
    python3 - "$W" "$WARMUP" <<'PY' || true
import glob, json, statistics, sys
w, warm = sys.argv[1], int(sys.argv[2])
def costs(b):
    out = []
    for f in sorted(glob.glob(f"{w}/r*{b}/stats.jsonl")):
        snaps = [json.loads(l) for l in open(f) if l.strip()]
        for a, z in list(zip(snaps, snaps[1:]))[warm:]:
            busy = sum(c["busy_cycles"] for c in z["pmd"]) - sum(c["busy_cycles"] for c in a["pmd"])
            pk = sum(p["rx_packets"] for p in z["ports"]) - sum(p["rx_packets"] for p in a["ports"])
            if pk > 100000:
                out.append(busy / pk)
    return out
c, d = costs("C"), costs("D")
allv = sorted(c + d)
if len(c) >= 4 and len(d) >= 4:
    lo, hi = allv[len(allv) // 10], allv[len(allv) * 9 // 10]
    cut = (lo + hi) / 2
    for name, sel in (("fast", lambda x: x < cut), ("slow", lambda x: x >= cut)):
        cc, dd = [x for x in c if sel(x)], [x for x in d if sel(x)]
        if cc and dd:
            mc, md = statistics.median(cc), statistics.median(dd)
            print(f"PMD cycles/frame, {name} regime (split at {cut:.0f}): tsn-vswitch {mc:.0f} "
                  f"({len(cc)} s), tsn-vswitch+gcl {md:.0f} ({len(dd)} s): gcl costs {100 * (md / mc - 1):+.1f} %")
PY
  fi
fi
if has C; then
  echo "tsn-vswitch / ovs-dpdk = $(ratio C B) (goal >= 1.0) ; tsn-vswitch / testpmd-vhost = $(ratio C A) (goal >= 0.9)"
elif has A && has B; then
  echo "ovs-dpdk / testpmd-vhost = $(ratio B A)"
fi
if [ -n "$FAILED" ]; then
  log "failed runs:$FAILED"
  exit 1
fi
