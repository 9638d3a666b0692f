#!/usr/bin/env bash
# Latency between two QEMU guests on vhost-user ports, through each switch in turn (issue 13,
# scenario a), with tsn-latency in both guests.
#
#   sudo benches/compare/latency_vm.sh [--seconds N] [--rounds R] [--sizes 16,64,256]
#                                      [--backends ovs,tsn,tsn-gcl] [--out DIR]
#
# Guests (scripts/guest: the test image plus a static tsn-latency, TCG, booted as demo.sh boots
# them): vm1 10.79.0.1 runs `tsn-latency pub --reflect --size S --cycle-time 1ms` for N seconds
# per cell, vm2 10.79.0.2 runs `tsn-latency reflect`. A namespace h3 (10.79.0.3, a veth on an
# af_packet port) floods vm2 with best-effort 1400-byte frames, 10 per ms (demo.sh's flood),
# in the cells with the flood on, and receives each cell's CSV from vm1 over TCP afterwards.
# Backends:
#   ovs      OVS-DPDK, started privately (benches/compare/ovs.sh): vm1, vm2 type=dpdkvhostuser
#            (OVS is the vhost-user server, QEMU the client, as with tsn-vswitch), h3 type=dpdk
#            on net_af_packet; NORMAL (MAC learning); PMD on CPU 1
#   tsn      tsn-vswitch, vm1, vm2 vhost-user, h3 af_packet, no gate control list; PMD on CPU 1
#   tsn-gcl  tsn, with vm2's egress gated as in demo.sh (speed=100; 1 ms cycle, class 1 open
#            [0, 200 us), class 0 [200 us, 1 ms)) and `--tc-rule vm1:udp-dst=7788:class=1`
# TCG guests share no clock: the figures are RTT/2 (vm1's send to the echo's return, both on
# vm1's clock, halved), labelled so; they include vm2's turn-around and, for tsn-gcl, the wait
# for the window on the way to vm2 (vm1's sends are not aligned to the switch's cycle).
# Guests boot once per backend and round (a TCG boot takes 10-60 s here); the backends' order
# rotates from round to round and the flood's order alternates. The machine is shared, so the
# table also gives each backend's RTT/2 median over tsn-gcl's in the same round and cell.
# Defaults: 20 s per cell, 1 round, all three sizes and backends: about 9 min on 2 CPUs (one
# round with --seconds 10 took 5.5 min here).
# Output: DIR/runs/*.csv (every probe), DIR/summary.tsv, DIR/summary.md (the table), PNGs per
# size and flood state (DIR/plots-SIZE-idle|flood/*.png, round 1), whose paths it prints.
set -euo pipefail

SECS=20 ROUNDS=1 SIZES=16,64,256 BACKENDS=ovs,tsn,tsn-gcl OUT=
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECS=${2:?--seconds needs a value}; shift 2 ;;
    --rounds) ROUNDS=${2:?--rounds needs a value}; shift 2 ;;
    --sizes) SIZES=${2:?--sizes needs a list}; shift 2 ;;
    --backends) BACKENDS=${2:?--backends needs a list}; shift 2 ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "latency-vm: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for v in "$SECS" "$ROUNDS"; do
  case "$v" in ''|*[!0-9]*|0) echo "latency-vm: --seconds and --rounds take whole numbers > 0" >&2; exit 2 ;; esac
done
IFS=, read -ra BL <<< "$BACKENDS"
IFS=, read -ra SL <<< "$SIZES"
for b in "${BL[@]}"; do
  case "$b" in ovs|tsn|tsn-gcl) ;; *) echo "latency-vm: unknown backend $b (ovs, tsn, tsn-gcl)" >&2; exit 2 ;; esac
done
for s in "${SL[@]}"; do
  case "$s" in ''|*[!0-9]*) echo "latency-vm: --sizes takes payload sizes in bytes (16,64,256)" >&2; exit 2 ;; esac
  [ "$s" -ge 16 ] || { echo "latency-vm: a probe is at least 16 bytes" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "latency-vm: run as root (namespaces, the switches, QEMU)" >&2; exit 1; }

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$ROOT/target/latency-vm-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/runs"
OUT=$(cd "$OUT" && pwd)
PFX=latency-vm
# shellcheck source=../../scripts/guest/lib.sh
. "$ROOT/scripts/guest/lib.sh"

log() { echo "latency-vm: $*" >&2; }
# run.sh's helpers that ovs.sh uses.
stop_pid() { kill -TERM "$1" 2>/dev/null || return 0; for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -KILL "$1" 2>/dev/null || true; }
clean_prefix() { rm -f /dev/hugepages/"$1"map_* 2>/dev/null || true; }
OVS_VSWITCHD=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
OVS_SCHEMA=/usr/share/openvswitch/vswitch.ovsschema
TAG=lvm$$ MEM=256 NICE=() BE_MAIN=0 BE_PMD=1 UP_TIMEOUT=30
# shellcheck source=ovs.sh
. "$HERE/ovs.sh"
# shellcheck source=plots.sh
. "$HERE/plots.sh"

log "building (cargo build --release, static tsn-latency, guest image)"
guest_build
case ",$BACKENDS," in *,ovs,*) ovs_install ;; esac

W=$(mktemp -d /tmp/tsn-latency-vm.XXXXXX)
P=lvm$$
NS=$P-h3
SW_PID=

stop_backend() {
  guest_kill_qemus "$W"
  if [ -n "$SW_PID" ]; then kill -TERM "$SW_PID" 2>/dev/null; wait "$SW_PID" 2>/dev/null || true; SW_PID=; fi
  ovs_stop
}
cleanup() {
  local rc=$?
  stop_backend
  ip link del "${P}r3" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  if [ "$rc" != 0 ] && [ -d "$W" ]; then
    log "failed (exit $rc); logs:"
    for f in "$W"/*/switch.log "$W"/*/ovs-vswitchd.log "$W"/*.console "$W"/*.qemu.log; do
      [ -s "$f" ] && { echo "--- $f (tail)" >&2; tail -n 20 "$f" >&2; }
    done
  fi
  rm -rf "$W"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

guest_initrd "$W" "$W/guest.cpio"
guest_ns_host "$NS" "${P}r3" "${P}n3" 02:00:00:79:00:03 10.79.0.3/24
guest_gcl "$W/vm2.gcl"
# tsn-vswitch's drops on vm2's egress from `ctl stats`: the port's (every reason) and, when it
# is gated, its gate stage's (queue full, oversize, max-SDU, discarded).
cat > "$W/tsn_drops.py" <<'EOF'
import json, sys
j = json.load(sys.stdin)
j = j.get("ok", j)
p = [x for x in j["ports"] if x["name"] == "vm2"][0]
n = sum(p["drops"].values())
for c in ((p.get("gate") or {}).get("classes") or []):
    n += sum(c.get(k, 0) for k in ("dropped_full", "dropped_oversize", "dropped_max_sdu", "discarded"))
print(n)
EOF

# start_backend NAME: the switch with vm1, vm2 (vhost-user) and h3 (af_packet on ${P}r3); sets
# SOCK1, SOCK2, DROPS (a command printing the switch's drop count on vm2's egress) and SETTLE
# (seconds its counters may lag).
start_backend() {
  local b=$1 d=$W/$1 i
  rm -rf "$d"; mkdir -p "$d"
  case "$b" in
    tsn|tsn-gcl)
      local vm2=vm2 gcl=()
      if [ "$b" = tsn-gcl ]; then
        vm2=vm2,speed=100
        gcl=(--gcl "vm2=$W/vm2.gcl" --tc-rule vm1:udp-dst=7788:class=1)
      fi
      SOCK1=$d/vm1.sock SOCK2=$d/vm2.sock
      "$BIN" --main-core 0 --pmd-cores 1 --ctl "$d/ctl.sock" \
        --port "vm1=vhost-user:$SOCK1" --port "$vm2=vhost-user:$SOCK2" \
        --port "h3=dpdk:net_af_packet0,iface=${P}r3" "${gcl[@]}" >"$d/switch.log" 2>&1 &
      SW_PID=$!
      for _ in $(seq 120); do
        "$BIN" ctl --ctl "$d/ctl.sock" stats >/dev/null 2>&1 && break
        kill -0 "$SW_PID" 2>/dev/null || { log "tsn-vswitch exited"; cat "$d/switch.log" >&2; exit 1; }
        sleep 0.5
      done
      DROPS="$BIN ctl --ctl $d/ctl.sock stats | python3 $W/tsn_drops.py"
      SETTLE=0 ;;
    ovs)
      ovs_daemon_start "$d" || exit 1
      local vs=(timeout 30 ovs-vsctl --db="unix:$d/db.sock" --timeout=25)
      # dpdkvhostuser: OVS listens on DIR/PORT (its run directory), QEMU connects as it does to
      # tsn-vswitch.
      for i in 1 2; do
        "${vs[@]}" add-port br0 "vm$i" -- set Interface "vm$i" type=dpdkvhostuser >>"$d/ovs-setup.log" 2>&1 \
          || { log "ovs-vsctl add-port vm$i failed"; exit 1; }
      done
      "${vs[@]}" add-port br0 h3 -- set Interface h3 type=dpdk \
        "options:dpdk-devargs=net_af_packet0,iface=${P}r3" >>"$d/ovs-setup.log" 2>&1 \
        || { log "ovs-vsctl add-port h3 failed"; exit 1; }
      SOCK1=$d/vm1 SOCK2=$d/vm2
      for _ in $(seq 60); do [ -S "$SOCK1" ] && [ -S "$SOCK2" ] && break; sleep 0.5; done
      [ -S "$SOCK2" ] || { log "OVS made no vhost-user socket at $SOCK2"; tail -n 20 "$d/ovs-vswitchd.log" >&2; exit 1; }
      # OVS 3.1 on this DPDK reads no packet counters from vhost-user ports ("could not retrieve
      # stats"); its own tx-failure count (the guest's ring full) is in the database, which it
      # refreshes every 5 s.
      DROPS="timeout 10 ovs-vsctl --db=unix:$d/db.sock get Interface vm2 statistics:ovs_tx_failure_drops"
      SETTLE=6 ;;
  esac
}

printf '' >"$OUT/cells.tsv"
log "$(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); $ROUNDS round(s) x ${#BL[@]} backends x ${#SL[@]} sizes x flood off/on x $SECS s"
for r in $(seq "$ROUNDS"); do
  for j in $(seq 0 $(( ${#BL[@]} - 1 ))); do
    # Rotate: each round starts with the next backend in turn.
    b=${BL[$(( (r - 1 + j) % ${#BL[@]} ))]}
    log "round $r: $b"
    start_backend "$b"
    python3 "$HERE/latency_vm.py" cells --workdir "$W" --kernel "$GUEST_KERNEL" --initrd "$W/guest.cpio" \
      --ns "$NS" --iface "${P}n3" --pydir "$GUEST_PY_DIR" --sizes "$SIZES" --backend "$b" \
      --runs "$OUT/runs" --sock1 "$SOCK1" --sock2 "$SOCK2" --drops "$DROPS" --settle "$SETTLE" --cells "$OUT/cells.tsv" \
      --seconds "$SECS" --round "$r" || log "round $r: $b: the guests' run failed (its cells are missing)"
    stop_backend
  done
done

python3 "$HERE/latency_vm.py" summary --cells "$OUT/cells.tsv" --lat "$LAT" --tsv "$OUT/summary.tsv" \
  --md "$OUT/summary.md" --backends "$BACKENDS"
cat "$OUT/summary.md"

# Plots per size and flood state: every backend of round 1.
plot_first_round "$LAT" "$OUT" "${SL[*]}" "${BL[*]}"
echo "latency-vm: results in $OUT"
