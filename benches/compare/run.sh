#!/usr/bin/env bash
# Side-by-side vhost-user throughput: testpmd's rte_vhost (A), OVS-DPDK (B), tsn-vswitch (C).
#
# One dpdk-testpmd frontend with two net_virtio_user ports (io forwarding) bounces frames
# through the backend under test, which forwards between its two vhost-user ports on one PMD
# core. By default the rings are kept full (`start tx_first N`: N bursts of 32 frames in flight
# per queue), at 64, 256 and 1518 bytes, with one and two queue pairs per port, plus the
# 64-frame round trip (one burst in flight, the old default) as a separate row. Rounds
# alternate backends (A B C A B C ...) and rows; medians per row and backend and the ratios
# C/A, C/B are printed at the end. Run as root. See README.md next to this file.
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
FE_TXFREET=224      # frontend's --txfreet: frees sent mbufs once over 32 are done (README.md)
SIZES="64,256,1518" # frame sizes (testpmd --txpkts: bytes without the FCS)
QUEUES="1,2"        # queue pairs per port
IN_FLIGHT=8         # saturated rows: bursts of 32 frames in flight per queue (start tx_first N)
RTT=1               # 1: also the 64-frame round trip row (64 B, 1 queue pair, 1 burst); 2: only it
D_BIN=""            # D runs this binary instead of C's (A/B of two builds in one run)
NEAR_NS=""          # --near NS: runs only while the CPUs' line round trip is at most NS
NEAR_WAIT=180       # s: how long a run waits for that before it starts anyway
NEAR_AGAIN=3        # times a run is repeated when its measured seconds saw a far reading

usage() {
  cat <<EOF
usage: $0 [options]        (as root)
  --rounds N        rounds of A B C over every row (default $ROUNDS)
  --sizes LIST      frame sizes in bytes, FCS excluded (default $SIZES)
  --queues LIST     queue pairs per port (default $QUEUES)
  --in-flight N     bursts of 32 frames in flight per queue in the saturated rows (default
                    $IN_FLIGHT; the rings hold 256): every size x queue pairs is one row
  --no-rtt          skip the round-trip row (64 B, 1 queue pair, 1 burst = 64 frames in flight)
  --rtt-only        only the round-trip row (the measurement before issue 12)
  --seconds S       measured seconds per run (default $SECONDS_MEAS)
  --warmup S        seconds skipped after traffic starts (default $WARMUP)
  --only LIST       backends to run, from A,B,C,D (default $ONLY)
                      A = dpdk-testpmd net_vhost (rte_vhost)   B = OVS-DPDK
                      C = tsn-vswitch (target/release/tsn-vswitch)
                      D = tsn-vswitch with --gcl v1=FILE, or the --d-bin build
  --gcl FILE        the gate control list for D (without D: pass it to C)
  --d-bin PATH      D runs this tsn-vswitch binary (without --gcl: an A/B of two builds
                    alternating in one run, --only C,D --tsn-bin OLD --d-bin NEW)
  --c-client        tsn-vswitch ports as vhost-user-client (frontend server=1)
  --fe-txfreet N    the frontend's --txfreet (default $FE_TXFREET: it frees the mbufs it sent
                    once over 32 descriptors are done, about as many as it allocates a burst;
                    0 = virtio's default: once over 224 are done, which spills its mbuf cache)
  --keep-logs DIR   copy every log (frontend, backend, OVS) into DIR
  --no-build        do not run cargo build --release (C uses the existing binary)
  --tsn-bin PATH    C and D run this tsn-vswitch binary (implies --no-build): an A/B of two
                    builds alternates runs with --only C, e.g. before and after a change
  --nice N          run every process of the comparison (frontend, backends) at nice N,
                    e.g. -5 on a machine shared with builds/VMs (same for all backends)
  --near NS         compare within the near placement of the two CPUs: a run starts once a
                    cache line's round trip between them is at most NS (waiting up to
                    $NEAR_WAIT s), and is repeated (up to $NEAR_AGAIN times) when a reading during
                    its measured seconds was above NS (the figures of each round's log line);
                    the medians count the last try of each run (the report says how many were
                    repeated, and how many were still far). ~1.5x the fastest round trip of
                    the machine: 80 on the development VM
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --queues) QUEUES=$2; shift 2 ;;
    --in-flight) IN_FLIGHT=$2; shift 2 ;;
    --no-rtt) RTT=0; shift ;;
    --rtt-only) RTT=2; shift ;;
    --d-bin) D_BIN=$(readlink -f "$2"); shift 2 ;;
    --seconds) SECONDS_MEAS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --gcl) GCL=$(readlink -f "$2"); shift 2 ;;
    --c-client) C_CLIENT=1; shift ;;
    --fe-txfreet) FE_TXFREET=$2; shift 2 ;;
    --keep-logs) KEEP_LOGS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --tsn-bin) TSN_BIN=$(readlink -f "$2"); BUILD=0; shift 2 ;;
    --near) NEAR_NS=$2; shift 2 ;;
    --nice) [[ $2 =~ ^-?[0-9]+$ ]] || { echo "compare: --nice N" >&2; exit 2; }
            NICE=(nice -n "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
for v in ROUNDS SECONDS_MEAS WARMUP IN_FLIGHT FE_TXFREET ${NEAR_NS:+NEAR_NS}; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "compare: $v must be a number" >&2; exit 2; }
done
[ "$SECONDS_MEAS" -ge 1 ] && [ "$ROUNDS" -ge 1 ] && [ "$IN_FLIGHT" -ge 1 ] && [ "${NEAR_NS:-1}" -ge 1 ] \
  || { echo "compare: --rounds/--seconds/--in-flight/--near >= 1" >&2; exit 2; }
# Rows: SIZE:QUEUE_PAIRS:BURSTS_IN_FLIGHT; saturated ones first, the round trip last.
ROWS=()
if [ "$RTT" != 2 ]; then
  for q in ${QUEUES//,/ }; do
    [[ $q =~ ^[1-8]$ ]] || { echo "compare: --queues takes 1..8" >&2; exit 2; }
    for sz in ${SIZES//,/ }; do
      [[ $sz =~ ^[0-9]+$ ]] && [ "$sz" -ge 64 ] && [ "$sz" -le 1518 ] \
        || { echo "compare: --sizes takes 64..1518" >&2; exit 2; }
      ROWS+=("$sz:$q:$IN_FLIGHT")
    done
  done
fi
# --sizes 64 --queues 1 --in-flight 1 makes the round trip one of the saturated rows: once is enough.
if [ "$RTT" != 0 ] && [[ " ${ROWS[*]} " != *" 64:1:1 "* ]]; then ROWS+=("64:1:1"); fi
[ ${#ROWS[@]} -gt 0 ] || { echo "compare: no rows (--sizes/--queues empty)" >&2; exit 2; }
# is_rtt ROW: one burst on one queue pair per port, 64 frames in flight: a round trip, not a
# saturated row (its label, its summary line and its ratios without the goals say so).
is_rtt() { local q n; IFS=: read -r _ q n <<<"$1"; [ "$q" = 1 ] && [ "$n" = 1 ]; }
row_label() { local sz q n; IFS=: read -r sz q n <<<"$1"
  if is_rtt "$1"; then echo "$sz B, 1 queue pair, round trip (64 frames in flight)"
  else echo "$sz B, $q queue pair$([ "$q" = 1 ] || echo s), $n bursts in flight per queue"; fi; }
BACKENDS=()
for b in ${ONLY//,/ }; do
  case "$b" in A|B|C|D) BACKENDS+=("$b") ;; *) echo "compare: --only takes A,B,C,D" >&2; exit 2 ;; esac
done
[ ${#BACKENDS[@]} -gt 0 ] || { echo "compare: --only is empty" >&2; exit 2; }
has() { [[ " ${BACKENDS[*]} " == *" $1 "* ]]; }
if [ -n "$GCL" ] && [ ! -f "$GCL" ]; then echo "compare: --gcl: no such file" >&2; exit 2; fi
if [ -n "$D_BIN" ] && [ ! -x "$D_BIN" ]; then echo "compare: --d-bin: not an executable" >&2; exit 2; fi
if has D && [ -z "$GCL" ] && [ -z "$D_BIN" ]; then echo "compare: D needs --gcl FILE or --d-bin PATH" >&2; exit 2; fi
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

TSN="${TSN_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/tsn-vswitch}"
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
  BE_PID=""
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

# With the kernel's autogroup scheduling (sched_autogroup_enabled, on in many distributions),
# CFS first shares a CPU equally between sessions and only then by nice within one: a build in
# another terminal gets as much of a CPU as this whole comparison, whatever --nice says. So
# --nice also sets this session's autogroup nice (/proc/PID/autogroup), restored on exit.
# The script itself (stats parsing, ctl samples) runs at the same nice as what it measures:
# at a lower priority it would crawl behind the busy-polling cores of its own session and miss
# its deadlines (and its share taken is a few ms per second).
[ ${#NICE[@]} -eq 0 ] || renice -n "${NICE[2]}" -p $$ >/dev/null
AUTOGROUP_OLD=""
AUTOGROUP_NICE=""   # set when applied: daemons that start their own session (OVS) get it too
if [ ${#NICE[@]} -gt 0 ] && [ "$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null)" = 1 ] \
   && [ -w /proc/$$/autogroup ]; then
  AUTOGROUP_OLD=$(sed -n 's/.* nice \(-\?[0-9]*\).*/\1/p' /proc/$$/autogroup)
  if echo "${NICE[2]}" >/proc/$$/autogroup 2>/dev/null; then
    AUTOGROUP_NICE=${NICE[2]}
    log "autogroup scheduling: this session's group runs at nice ${NICE[2]} (was ${AUTOGROUP_OLD:-?})"
  else
    AUTOGROUP_OLD=""
  fi
fi

on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  if declare -F watch_stop >/dev/null; then watch_stop; fi
  [ -z "$AUTOGROUP_OLD" ] || echo "$AUTOGROUP_OLD" >/proc/$$/autogroup 2>/dev/null || true
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
# RUN_DIR/s0.sock and s1.sock (CUR_Q queue pairs each), injects CUR_BURSTS bursts of 32
# CUR_SIZE-byte frames per queue, calls START_HOOK (for backends that must connect after the
# frontend listens), waits for WARMUP+SECONDS stats seconds of traffic, stops it, and writes
# the median forwarded rate (sum of both ports' Rx-pps) in packets/s to RUN_DIR/pps.
# Everything runs in the main shell (no $(...)), so PIDS always knows what to stop.
run_frontend() {
  local dir=$1 server=$2 hook=${3:-} pfx="${TAG}fe" srv=""
  [ "$server" = 1 ] && srv=",server=1"
  local fe_log="$dir/frontend.log"
  clean_prefix "$pfx"
  : >"$fe_log"
  # Non-interactive testpmd runs its --cmdline-file once its ports are up, before it would
  # start forwarding itself: `start tx_first N` starts io forwarding after N txonly bursts on
  # every stream (one per port and queue), so N bursts per queue circulate from then on.
  # (`--tx-first` can send only one.) Its own start afterwards just says it already runs.
  echo "start tx_first $CUR_BURSTS" >"$dir/frontend.cmds"
  "${NICE[@]}" stdbuf -oL -eL dpdk-testpmd --lcores "0@$FE_CORE,1@$FE_CORE" --no-pci --file-prefix="$pfx" \
    -m "$MEM" --single-file-segments \
    --vdev "net_virtio_user0,path=$dir/s0.sock,queues=$CUR_Q$srv" \
    --vdev "net_virtio_user1,path=$dir/s1.sock,queues=$CUR_Q$srv" \
    -- --forward-mode=io --nb-cores=1 --rxq="$CUR_Q" --txq="$CUR_Q" --txpkts="$CUR_SIZE" \
    --total-num-mbufs="$MBUFS" --cmdline-file="$dir/frontend.cmds" --stats-period 1 --record-core-cycles \
    --txfreet="$FE_TXFREET" \
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
    # Run-queue delay of every thread of the frontend and the backend over the measured
    # seconds (see wait_report): how much of the run other load took from them.
    # The measured seconds' start and end (Unix time), for the placement readings (line_rtt).
    if [ "$n" -ge "$WARMUP" ] && [ ! -s "$dir/sched.0" ]; then
      date +%s.%N >"$dir/measure-window"; sched_snap "$fe" >"$dir/sched.0"
    fi
    if [ "$n" -ge "$need" ]; then
      date +%s.%N >>"$dir/measure-window"; sched_snap "$fe" >"$dir/sched.1"; break
    fi
    # OVS: which rx queues its PMD polls once the frontend's queues are up (2 queue pairs).
    if [ "$started" = 1 ] && [ -n "${OVS_DIR:-}" ] && [ ! -s "$dir/pmd-rxq-running.txt" ]; then
      timeout 10 ovs-appctl -t "$OVS_DIR/vswitchd.ctl" dpif-netdev/pmd-rxq-show \
        >"$dir/pmd-rxq-running.txt" 2>&1 || true
    fi
    # tsn-vswitch: its PMD counters once a second, for the per-second cost report (C/D).
    if [ "$started" = 1 ] && [ -S "$dir/ctl.sock" ] && [ "$SECONDS" != "${last_sample:-}" ]; then
      last_sample=$SECONDS
      timeout 3 "$CUR_TSN" ctl --ctl "$dir/ctl.sock" stats 2>/dev/null | tr -d '\n' >>"$dir/stats.jsonl" \
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
  [ "$zeros" -eq 0 ] || log "warning: $zeros measured second(s) forwarded nothing (frames lost: a loop that drops frames runs dry)"
  median <"$dir/measured" >"$dir/pps"
}

# sched_snap FE_PID: "NOW_NS" then "WHO TID DELAY_NS NAME" for every thread of the frontend and of
# the backend (BE_PID; OVS: its vswitchd pidfile), DELAY_NS being the time the thread spent
# runnable but waiting for its CPU (/proc/PID/task/TID/schedstat, field 2).
sched_snap() {
  local fe=$1 be=${BE_PID:-} t
  [ -z "${OVS_DIR:-}" ] || be=$(cat "$OVS_DIR/vswitchd.pid" 2>/dev/null || true)
  date +%s%N
  for t in /proc/"$fe"/task/*; do
    echo "fe ${t##*/} $(cut -d' ' -f2 "$t/schedstat" 2>/dev/null) $(cat "$t/comm" 2>/dev/null)"
  done
  [ -z "$be" ] && return 0
  for t in /proc/"$be"/task/*; do
    echo "be ${t##*/} $(cut -d' ' -f2 "$t/schedstat" 2>/dev/null) $(cat "$t/comm" 2>/dev/null)"
  done
}

# wait_report DIR: the largest share of the measured seconds one thread of the frontend, and
# one of the backend, waited for its CPU. A busy-polling thread that waited more than a few %
# shared its CPU with other load during the run: that round's figures are suspect.
wait_report() {
  [ -s "$1/sched.0" ] && [ -s "$1/sched.1" ] || return 0
  awk 'FNR == 1 { if (NR == 1) t0 = $1; else t1 = $1; next }
       NR == FNR { d0[$1 " " $2] = $3; next }
       ($1 " " $2) in d0 { w = $3 - d0[$1 " " $2]; if (w > m[$1]) m[$1] = w }
       END { if (t1 > t0) printf " (waited for the CPU: frontend %.1f%%, backend %.1f%%)",
               100 * m["fe"] / (t1 - t0), 100 * m["be"] / (t1 - t0) }' "$1/sched.0" "$1/sched.1"
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
    --vdev "net_vhost0,iface=$dir/s0.sock,queues=$CUR_Q" \
    --vdev "net_vhost1,iface=$dir/s1.sock,queues=$CUR_Q" \
    -- --forward-mode=io --nb-cores=1 --rxq="$CUR_Q" --txq="$CUR_Q" --total-num-mbufs="$MBUFS" \
    --auto-start --stats-period 60 --record-core-cycles \
    </dev/null >"$dir/backend.log" 2>&1 &
  local be=$!
  PIDS+=("$be"); BE_PID=$be
  wait_for "$UP_TIMEOUT" "$be" test -S "$dir/s1.sock" \
    || { log "testpmd backend did not create $dir/s1.sock"; return 1; }
  wait_for 10 "$be" grep -q "packet forwarding - ports=" "$dir/backend.log" \
    || { log "testpmd backend did not start forwarding"; return 1; }
}
run_A() { start_A "$1" && run_frontend "$1" 0; }

start_B() { ovs_start "$1"; }
run_B() { start_B "$1" && run_frontend "$1" 1; }

ctl_ok() { timeout 3 "$CUR_TSN" ctl --ctl "$1/ctl.sock" stats; }

start_C() {
  local dir=$1 kind="vhost-user" args=()
  [ "$C_CLIENT" = 1 ] && kind="vhost-user-client"
  args=(--main-core "$BE_MAIN" --pmd-cores "$BE_PMD" --ctl "$dir/ctl.sock"
        --port "v0,queues=$CUR_Q=$kind:$dir/s0.sock")
  # A gated vhost-user port needs speed= (a guest's ring has no link speed): 1000, the speed
  # its wire model ran at before the option was required.
  if [ -n "$USE_GCL" ]; then
    args+=(--port "v1,queues=$CUR_Q,speed=1000=$kind:$dir/s1.sock" --gcl "v1=$USE_GCL")
  else
    args+=(--port "v1,queues=$CUR_Q=$kind:$dir/s1.sock")
  fi
  echo "+ $CUR_TSN ${args[*]}" >"$dir/backend.log"
  "${NICE[@]}" "$CUR_TSN" "${args[@]}" </dev/null >>"$dir/backend.log" 2>&1 &
  local be=$!
  PIDS+=("$be"); BE_PID=$be
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

# fe_load DIR: the frontend's own cost per frame: testpmd's --record-core-cycles, printed when
# it stops (TSC cycles of forwarding iterations that received something, per frame received).
# A backend that makes the driver miss on lines it shares shows here, whatever the pace. For
# A, the same from the backend testpmd (rte_vhost's forwarding core), once it has stopped: the
# counterpart of tsn-vswitch's PMD busy cycles per frame.
fe_load() {
  local c
  c=$(sed -n 's/.*CPU cycles\/packet=\([0-9.]*\).*/\1/p' "$1/frontend.log" 2>/dev/null | tail -1)
  [ -z "$c" ] || printf ' (frontend: %.0f cycles/frame)' "$c"
  c=$(sed -n 's/.*CPU cycles\/packet=\([0-9.]*\).*/\1/p' "$1/backend.log" 2>/dev/null | tail -1)
  [ -z "$c" ] || printf ' (backend: %.0f busy cycles/frame)' "$c"
}

# pmd_load DIR: for C, the PMD core's processing cost: busy TSC cycles per forwarded frame and
# the share of cycles busy, the medians over the measured seconds of its per-second counters
# (stats.jsonl; else the totals of ctl-stats.json): the backend's own cost, whatever the
# frontend's pace. Per second, so that a stall outside the measured seconds (a host pausing
# the VM shows as one enormous "busy" iteration) does not skew it. The one reading of
# stats.jsonl: it also leaves the measured seconds' cycles per frame in DIR/pmd-cycles, one a
# line, for the report's regimes (C and D).
pmd_load() {
  command -v python3 >/dev/null || return 0
  python3 - "$1" "$WARMUP" <<'PY' 2>/dev/null || true
import json, os, statistics, sys
d, warm = sys.argv[1], int(sys.argv[2])
def load(s):
    busy = sum(c["busy_cycles"] for c in s["pmd"])
    idle = sum(c["idle_cycles"] for c in s["pmd"])
    return busy, idle, sum(p["rx_packets"] for p in s["ports"])
snaps = []
if os.path.exists(f"{d}/stats.jsonl"):
    for l in open(f"{d}/stats.jsonl"):
        try:
            snaps.append(load(json.loads(l)))
        except (ValueError, KeyError):
            pass
per = [((z[0] - a[0]) / (z[2] - a[2]), (z[0] - a[0]) / max(1, z[0] - a[0] + z[1] - a[1]))
       for a, z in zip(snaps, snaps[1:]) if z[2] - a[2] > 100000]
per = per[warm:] if len(per) >= warm + 2 else per[1:]
if os.path.exists(f"{d}/stats.jsonl"):
    with open(f"{d}/pmd-cycles", "w") as f:
        f.writelines(f"{p[0]}\n" for p in per)
if len(per) >= 2:
    cyc, share = statistics.median(p[0] for p in per), statistics.median(p[1] for p in per)
else:
    busy, idle, pk = load(json.load(open(f"{d}/ctl-stats.json")))
    if not pk or not busy + idle:
        sys.exit()
    cyc, share = busy / pk, busy / (busy + idle)
print(f" (PMD: {cyc:.0f} busy cycles/frame, {100 * share:.0f}% busy)", end="")
PY
}

# D: the same switch with a gate control list on v1 (an all-open list measures the stage's
# bypass cost against C in the same run), and/or another build (--d-bin).
run_D() {
  USE_GCL=$GCL; CUR_TSN=${D_BIN:-$TSN}
  local rc=0; run_C "$1" || rc=$?
  USE_GCL=$C_GCL; CUR_TSN=$TSN
  return "$rc"
}
CUR_TSN=$TSN

NAME_A=testpmd-vhost; NAME_B=ovs-dpdk; NAME_C=tsn-vswitch; NAME_D=tsn-vswitch+gcl
if [ -n "$D_BIN" ]; then NAME_D=tsn-vswitch-D; [ -z "$GCL" ] || NAME_D+=+gcl; fi

# ---------------------------------------------------------------- placement
# How long a cache line takes between the frontend's CPU and the backend's PMD CPU, and both
# CPUs' clocks, once a second during every run (line_rtt.c: under 0.1 ms of each CPU a
# second): on a VM the host moves the vCPUs, and every backend forwards about half as fast
# while the line takes 5x longer. The report compares the backends within one placement too (placement.py),
# from the readings taken during each run's measured seconds (their start and end times:
# measure-window).
LINE_RTT=""
if command -v cc >/dev/null && cc -O2 -pthread -o "$W/line_rtt" "$HERE/line_rtt.c" 2>"$W/line_rtt.log"; then
  LINE_RTT="$W/line_rtt"
else
  log "line_rtt.c did not build (cc): no placement figures"
  [ -z "$NEAR_NS" ] || { log "--near needs line_rtt (cc -pthread)"; exit 1; }
fi
WATCH=""
watch_start() {       # watch_start DIR: "TIME NS MHZ_A MHZ_B" a second into DIR/line-rtt-watch
  [ -n "$LINE_RTT" ] || return 0
  "$LINE_RTT" "$FE_CORE" "$BE_PMD" watch 1000 >"$1/line-rtt-watch" 2>/dev/null &
  WATCH=$!
}
watch_stop() {
  [ -n "$WATCH" ] || return 0
  kill "$WATCH" 2>/dev/null || true; wait "$WATCH" 2>/dev/null || true; WATCH=""
}
measured_rtt() {      # measured_rtt DIR: the watch's readings taken while DIR's run was measured
  [ -s "$1/line-rtt-watch" ] && [ -s "$1/measure-window" ] || return 0
  awk 'NR==FNR {w[FNR]=$1; next} $1 >= w[1] - 1 && $1 <= w[2]' \
    "$1/measure-window" "$1/line-rtt-watch"
}
near_throughout() {  # near_throughout DIR: no reading above NEAR_NS while measured (none: unknown, yes)
  measured_rtt "$1" | awk -v cut="$NEAR_NS" '$2 > cut { far = 1 } END { exit far }'
}
wait_near() {         # wait_near: until a one-shot round trip is at most NEAR_NS (bounded)
  local t0=$SECONDS ns
  while ns=$("$LINE_RTT" "$FE_CORE" "$BE_PMD" 200 2>/dev/null) && [ "${ns:-0}" -gt "$NEAR_NS" ]; do
    if [ $((SECONDS - t0)) -ge "$NEAR_WAIT" ]; then
      log "the line round trip stayed above $NEAR_NS ns for $NEAR_WAIT s (last $ns ns): starting anyway"
      return 0
    fi
    sleep 2
  done
  [ $((SECONDS - t0)) -lt 2 ] || log "waited $((SECONDS - t0)) s for a near placement ($ns ns)"
}
rtt_report() {        # rtt_report DIR: the round trips' range and the mean clocks while measured
  measured_rtt "$1" | awk '{
         if (!n++) r0 = r1 = $2
         if ($2 < r0) r0 = $2; if ($2 > r1) r1 = $2
         if ($3 > 0) { a += $3; na++ }; if ($4 > 0) { b += $4; nb++ }
       }
       END { if (n) printf " (while measured: line round trip between the CPUs %d-%d ns, mean clocks %d/%d MHz)",
               r0, r1, na ? a / na : 0, nb ? b / nb : 0 }'
}

# ---------------------------------------------------------------- rounds
# Every round runs every row, and every row every backend, in the same order: slow drifts and
# other load on the machine hit all backends and rows alike.
declare -A RES     # RES[ROW|X] = space-separated pps per round
AGAIN=0            # runs repeated for --near
FAR_KEPT=0         # runs counted although far: their last try was
rowdir() { echo "$W/${1//:/-}"; }   # a row's directory: SIZE-QUEUES-BURSTS
for r in $(seq 1 "$ROUNDS"); do
  for row in "${ROWS[@]}"; do
    IFS=: read -r CUR_SIZE CUR_Q CUR_BURSTS <<<"$row"
    for b in "${BACKENDS[@]}"; do
      name_var="NAME_$b"; name=${!name_var}
      dir="$(rowdir "$row")/r$r$b"; mkdir -p "$dir"
      log "round $r/$ROUNDS, $(row_label "$row"): $name ($((WARMUP + SECONDS_MEAS)) s of traffic)"
      try=0
      while :; do
        [ -z "$NEAR_NS" ] || [ -z "$LINE_RTT" ] || wait_near
        watch_start "$dir"
        if "run_$b" "$dir" && [ -s "$dir/pps" ]; then
          stop_all   # first: the backend testpmd prints its cycles per frame as it stops
          watch_stop
          pps=$(cat "$dir/pps")
          msg="$name $(awk -v p="$pps" 'BEGIN {printf "%.2f", p / 1e6}') Mpps$(fe_load "$dir")$(pmd_load "$dir")$(wait_report "$dir")$(rtt_report "$dir")"
          if [ -n "$NEAR_NS" ] && [ -n "$LINE_RTT" ] && [ "$try" -lt "$NEAR_AGAIN" ] \
              && ! near_throughout "$dir"; then
            # Kept aside (placement.py reads r<round><backend> only), counted in the report.
            try=$((try + 1)); AGAIN=$((AGAIN + 1))
            mv "$dir" "$dir.far$try"; mkdir -p "$dir"
            log "round $r: $msg: far while measured, again ($try/$NEAR_AGAIN)"
            continue
          fi
          RES[$row|$b]="${RES[$row|$b]:-} $pps"
          if [ -n "$NEAR_NS" ] && ! near_throughout "$dir"; then
            FAR_KEPT=$((FAR_KEPT + 1)); msg+=": far while measured, counted (last try)"
          fi
          log "round $r: $msg"
        else
          # The run's logs: in its directory until exit, then copied under --keep-logs (or gone).
          if [ -n "$KEEP_LOGS" ]; then where="kept in $KEEP_LOGS/${dir#"$W"/}"
          else where="in $dir until exit (--keep-logs DIR keeps them)"; fi
          log "FAILED: $name (round $r, $(row_label "$row")); logs $where"
          tail_log "$dir/backend.log"
          [ -f "$dir/ovs-vswitchd.log" ] && tail_log "$dir/ovs-vswitchd.log"
          FAILED="$FAILED $name"
          RES[$row|$b]="${RES[$row|$b]:-} FAIL"
          stop_all
          watch_stop
        fi
        break
      done
    done
  done
done
if [ -n "$NEAR_NS" ]; then
  echo "== --near $NEAR_NS: $AGAIN run(s) repeated because a reading while measured was above $NEAR_NS ns;" \
    "$FAR_KEPT counted although far on their last try (the placement report below sorts them)"
fi

# ---------------------------------------------------------------- report
echo "== frontend: testpmd io forwarding, --txfreet=$FE_TXFREET, $MBUFS mbufs"
declare -A MED     # MED[ROW|X] = median pps over rounds
ratio() { local a=${MED[$1|$2]:-} b=${MED[$1|$3]:-}
          if [ -n "$a" ] && [ -n "$b" ] && [ "$b" != 0 ]; then
            awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", a / b}'
          else printf 'n/a'; fi; }
for row in "${ROWS[@]}"; do
  echo "== $(row_label "$row")"
  for b in "${BACKENDS[@]}"; do
    name_var="NAME_$b"; name=${!name_var}
    ok=$(tr ' ' '\n' <<<"${RES[$row|$b]:-}" | grep -E '^[0-9]+$' || true)
    rounds=$(for v in ${RES[$row|$b]:-}; do
               if [ "$v" = FAIL ]; then printf 'FAIL '; else awk -v p="$v" 'BEGIN {printf "%.2f ", p / 1e6}'; fi
             done)
    if [ -n "$ok" ]; then
      MED[$row|$b]=$(median <<<"$ok")
      awk -v n="$name" -v m="${MED[$row|$b]}" -v r="${rounds% }" \
        'BEGIN {printf "%-16s median %6.2f Mpps  (rounds: %s)\n", n, m / 1e6, r}'
    else
      printf '%-16s median   FAIL       (rounds: %s)\n' "$name" "${rounds% }"
    fi
  done
  if has C && has D; then
    if [ -n "$D_BIN" ]; then
      echo "$NAME_D / tsn-vswitch = $(ratio "$row" D C)"
    else
      echo "tsn-vswitch+gcl / tsn-vswitch = $(ratio "$row" D C) (goal >= 0.95)"
    fi
    # The per-second PMD cost in each of the two regimes the loop runs in (see README.md):
    # comparing within a regime takes out how long each backend happened to spend in which.
    if command -v python3 >/dev/null; then
      python3 - "$(rowdir "$row")" "$NAME_D" <<'PY' || true
import glob, statistics, sys
w, dname = sys.argv[1], sys.argv[2]
def costs(b):
    # Every run's measured seconds as pmd_load read them from its stats.jsonl (a sample that
    # lacks a counter is skipped there: a run without any adds nothing here).
    out = []
    for f in sorted(glob.glob(f"{w}/r*{b}/pmd-cycles")):
        try:
            out += [float(l) for l in open(f)]
        except (OSError, ValueError):
            pass
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
                  f"({len(cc)} s), {dname} {md:.0f} ({len(dd)} s): {100 * (md / mc - 1):+.1f} %")
PY
    fi
  fi
  if has C; then
    if is_rtt "$row"; then
      echo "tsn-vswitch / testpmd-vhost = $(ratio "$row" C A) ; tsn-vswitch / ovs-dpdk = $(ratio "$row" C B) (round trip)"
    else
      echo "tsn-vswitch / testpmd-vhost = $(ratio "$row" C A) (goal >= 1.0) ; tsn-vswitch / ovs-dpdk = $(ratio "$row" C B) (goal >= 1.3)"
    fi
  elif has A && has B; then
    echo "ovs-dpdk / testpmd-vhost = $(ratio "$row" B A)"
  fi
done
# One line per row, medians in Mpps, for the README.
if [ ${#ROWS[@]} -gt 1 ]; then
  echo "== summary (medians, Mpps)"
  hdr=$(printf '%-10s %3s %6s' size qp bursts)
  for b in "${BACKENDS[@]}"; do name_var="NAME_$b"; hdr+=$(printf ' %15s' "${!name_var}"); done
  has C && has A && hdr+=$(printf ' %6s' C/A)
  has C && has B && hdr+=$(printf ' %6s' C/B)
  echo "$hdr"
  for row in "${ROWS[@]}"; do
    IFS=: read -r sz q n <<<"$row"
    line=$(printf '%-10s %3s %6s' "$sz B" "$q" "$(if is_rtt "$row"; then echo "1 (rtt)"; else echo "$n"; fi)")
    for b in "${BACKENDS[@]}"; do
      m=${MED[$row|$b]:-}
      if [ -n "$m" ]; then line+=$(awk -v m="$m" 'BEGIN {printf " %15.2f", m / 1e6}'); else line+=$(printf ' %15s' FAIL); fi
    done
    has C && has A && line+=$(printf ' %6s' "$(ratio "$row" C A)")
    has C && has B && line+=$(printf ' %6s' "$(ratio "$row" C B)")
    echo "$line"
  done
fi
# The same rounds within one placement of the two CPUs (see line_rtt.c, placement.py).
if [ -n "$LINE_RTT" ] && command -v python3 >/dev/null; then
  names=""; for b in "${BACKENDS[@]}"; do name_var="NAME_$b"; names+="${names:+,}$b=${!name_var}"; done
  prow=()
  for row in "${ROWS[@]}"; do
    IFS=: read -r sz q n <<<"$row"
    if is_rtt "$row"; then lbl="$sz B round trip"; else lbl="$sz B $q qp $n bursts"; fi
    prow+=("$(basename "$(rowdir "$row")")|$lbl")
  done
  python3 "$HERE/placement.py" "$W" "$names" "${prow[@]}" || true
fi
if [ -n "$FAILED" ]; then
  log "failed runs:$FAILED"
  exit 1
fi
