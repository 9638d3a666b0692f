#!/usr/bin/env bash
# One-way latency of a periodic flow between two network namespaces, through each datapath in
# turn (issue 13, scenario b), with tsn-latency at both ends (one host: one CLOCK_TAI).
#
#   sudo benches/compare/latency.sh [--seconds N] [--rounds R] [--sizes 16,64,256]
#                                   [--backends veth,bridge,ovs,tsn,tsn-gcl] [--out DIR]
#
# Backends (namespaces pub 10.78.0.1, sub 10.78.0.2, flood 10.78.0.3, each on a veth):
#   veth     the bare veth pair pub <-> sub (the paper's bare-metal case; the flood shares it)
#   bridge   a Linux bridge over the three root-side veth ends (the kernel datapath)
#   ovs      OVS-DPDK, af_packet ports (type=dpdk, net_af_packetN), NORMAL (MAC learning)
#   tsn      tsn-vswitch, af_packet ports, no gate control list
#   tsn-gcl  tsn-vswitch, sub's port gated (speed=1000; 1 ms cycle, class 1 open [0, 200 us),
#            class 0 [200 us, 1 ms)), `--tc-rule pub:udp-dst=7788:class=1`
# Each run: `tsn-latency pub --size S --cycle-time 1ms --shift-time 50us` for N seconds (the
# send phase inside tsn-gcl's window, one clock for all), `tsn-latency sub --window 0,200us`;
# with the flood on, the flood namespace sends 1400-byte best-effort frames to sub as fast as
# one Python loop can (pinned to CPU 0) on the same egress. For every size, flood off/on, the
# backends alternate within the round (rounds repeat that); the machine is shared, so the table
# also gives each backend's median latency over tsn-gcl's in the same round and cell.
# Output: DIR/runs/*.csv (every frame), DIR/summary.tsv, DIR/summary.md (the table) and PNGs
# per size (DIR/plots-SIZE-flood|idle/*.png), whose paths it prints.
set -euo pipefail

SECS=10 ROUNDS=1 SIZES=16,64,256 BACKENDS=veth,bridge,ovs,tsn,tsn-gcl OUT=
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --backends) BACKENDS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "latency: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "latency: run as root" >&2; exit 1; }
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$ROOT/target/latency-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/runs"
OUT=$(cd "$OUT" && pwd)
(cd "$ROOT" && cargo build --release --quiet -p tsn-vswitch -p tsn-latency)
BIN=$CARGO_TARGET_DIR/release/tsn-vswitch
LAT=$CARGO_TARGET_DIR/release/tsn-latency
W=$(mktemp -d /tmp/tsn-latency-bench.XXXXXX)
P=lat$$
SW_PID= FLOOD_PID=

log() { echo "latency: $*" >&2; }
# run.sh's helpers that ovs.sh uses.
stop_pid() { kill -TERM "$1" 2>/dev/null || return 0; for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -KILL "$1" 2>/dev/null || true; }
clean_prefix() { rm -f /dev/hugepages/"$1"map_* 2>/dev/null || true; }
OVS_VSWITCHD=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
OVS_SCHEMA=/usr/share/openvswitch/vswitch.ovsschema
TAG=lat$$ MEM=256 NICE=() BE_MAIN=0 BE_PMD=1 UP_TIMEOUT=30
# shellcheck source=ovs.sh
. "$HERE/ovs.sh"
# shellcheck source=plots.sh
. "$HERE/plots.sh"
case ",$BACKENDS," in *,ovs,*) ovs_install ;; esac

stop_backend() {
  [ -n "$FLOOD_PID" ] && { kill "$FLOOD_PID" 2>/dev/null; wait "$FLOOD_PID" 2>/dev/null || true; FLOOD_PID=; }
  if [ -n "$SW_PID" ]; then kill -TERM "$SW_PID" 2>/dev/null; wait "$SW_PID" 2>/dev/null || true; SW_PID=; fi
  ovs_stop
  ip link del "${P}br" 2>/dev/null || true
  for h in pub sub flood; do
    ip link del "${P}r-$h" 2>/dev/null || true
    ip netns del "$P-$h" 2>/dev/null || true
  done
}
cleanup() { stop_backend; rm -rf "$W"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

ns_host() { # NAME N: namespace P-NAME with veth ${P}n-NAME (10.78.0.N, 02:00:00:78:00:0N)
  ip netns add "$P-$1"
  ip netns exec "$P-$1" sh -c "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6"
  ip -n "$P-$1" link set lo up
}
ns_addr() { # NAME N IFACE-IN-NS
  ip -n "$P-$1" link set "$3" address "02:00:00:78:00:0$2"
  ip -n "$P-$1" addr add "10.78.0.$2/24" dev "$3"
  # Checksums filled in by the sender: a packet socket on the veth's peer (af_packet ports)
  # would forward them unfilled. For every backend alike.
  ip netns exec "$P-$1" ethtool -K "$3" tx off >/dev/null
  ip -n "$P-$1" link set "$3" up
}

# start_backend NAME: the three namespaces wired through NAME; sets SUB_IF / FLOOD_NS / FLOOD_IF.
start_backend() {
  local b=$1 h n=1
  for h in pub sub flood; do ns_host "$h"; done
  if [ "$b" = veth ]; then
    ip link add "${P}p" type veth peer name "${P}s"
    ip link set "${P}p" netns "$P-pub"; ip link set "${P}s" netns "$P-sub"
    ns_addr pub 1 "${P}p"; ns_addr sub 2 "${P}s"
    FLOOD_NS=$P-pub FLOOD_IF=${P}p
    return
  fi
  for h in pub sub flood; do
    ip link add "${P}r-$h" type veth peer name "${P}n-$h"
    echo 1 > "/proc/sys/net/ipv6/conf/${P}r-$h/disable_ipv6"
    ip link set "${P}n-$h" netns "$P-$h"
    ns_addr "$h" "$n" "${P}n-$h"
    ip link set "${P}r-$h" up
    n=$((n + 1))
  done
  FLOOD_NS=$P-flood FLOOD_IF=${P}n-flood
  case "$b" in
    bridge)
      ip link add "${P}br" type bridge
      echo 1 > "/proc/sys/net/ipv6/conf/${P}br/disable_ipv6" 2>/dev/null || true
      for h in pub sub flood; do ip link set "${P}r-$h" master "${P}br"; done
      ip link set "${P}br" up ;;
    tsn|tsn-gcl)
      local gcl=()
      if [ "$b" = tsn-gcl ]; then
        printf 'num_tc 2\nmap 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\nbase-time 0\ncycle-time 1000000\nsched-entry S 02 200000\nsched-entry S 01 800000\n' >"$W/sub.gcl"
        gcl=(--gcl "sub=$W/sub.gcl" --tc-rule pub:udp-dst=7788:class=1)
      fi
      "$BIN" --main-core 0 --pmd-cores 1 --ctl "$W/ctl.sock" \
        --port "pub=dpdk:net_af_packet0,iface=${P}r-pub" \
        --port "sub,speed=1000=dpdk:net_af_packet1,iface=${P}r-sub" \
        --port "flood=dpdk:net_af_packet2,iface=${P}r-flood" "${gcl[@]}" >"$W/switch.log" 2>&1 &
      SW_PID=$!
      for _ in $(seq 120); do
        "$BIN" ctl --ctl "$W/ctl.sock" stats >/dev/null 2>&1 && break
        kill -0 "$SW_PID" 2>/dev/null || { cat "$W/switch.log" >&2; exit 1; }
        sleep 0.5
      done ;;
    ovs)
      local d=$W/ovs db i=0
      rm -rf "$d"; mkdir -p "$d"
      # ovs_start wires vhost-user ports; here the same daemon set-up with af_packet ports.
      OVS_DIR=$d; export OVS_RUNDIR=$d OVS_LOGDIR=$d OVS_DBDIR=$d
      db="unix:$d/db.sock"
      ovsdb-tool create "$d/conf.db" "$OVS_SCHEMA" >>"$d/setup.log" 2>&1
      ovsdb-server --remote="punix:$d/db.sock" --pidfile="$d/ovsdb.pid" --detach \
        --log-file="$d/ovsdb.log" --unixctl="$d/ovsdb.ctl" "$d/conf.db" >>"$d/setup.log" 2>&1
      local vs=(timeout 30 ovs-vsctl --db="$db" --timeout=25)
      "${vs[@]}" --no-wait init >>"$d/setup.log" 2>&1
      "${vs[@]}" --no-wait set Open_vSwitch . other_config:dpdk-init=true \
        other_config:dpdk-socket-mem=256 other_config:dpdk-lcore-mask=0x1 \
        other_config:pmd-cpu-mask=0x2 other_config:dpdk-extra="--no-pci --file-prefix=${TAG}ovs" >>"$d/setup.log" 2>&1
      timeout 60 "$OVS_VSWITCHD" "$db" --pidfile="$d/vswitchd.pid" --detach \
        --log-file="$d/ovs-vswitchd.log" --unixctl="$d/vswitchd.ctl" >>"$d/setup.log" 2>&1
      "${vs[@]}" add-br br0 -- set bridge br0 datapath_type=netdev >>"$d/setup.log" 2>&1
      for h in pub sub flood; do
        "${vs[@]}" add-port br0 "$h" -- set Interface "$h" type=dpdk \
          "options:dpdk-devargs=net_af_packet$i,iface=${P}r-$h" >>"$d/setup.log" 2>&1
        i=$((i + 1))
      done ;;
  esac
}

cat > "$W/flood.py" <<'EOF'
import os, socket, sys
os.sched_setaffinity(0, {0})
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((sys.argv[1], 0))
src = bytes.fromhex(sys.argv[2].replace(":", ""))
f = bytes.fromhex("020000780002") + src + b"\x88\xb5" + bytes(1386)
while True:
    try: s.send(f)
    except OSError: pass
EOF

# One measurement; prints its CSV path.
run_one() { # BACKEND SIZE FLOOD ROUND
  local b=$1 size=$2 fl=$3 r=$4 tag csv mac
  tag="$b-$size-$([ "$fl" = 1 ] && echo flood || echo idle)-r$r"
  csv=$OUT/runs/$tag.csv
  start_backend "$b"
  # Learning and ARP before the clock starts.
  ip netns exec "$P-pub" ping -c 2 -i 0.2 -W 2 10.78.0.2 >/dev/null 2>&1 || log "$tag: ping failed"
  [ "$b" = veth ] || ip netns exec "$P-flood" ping -c 1 -W 2 10.78.0.2 >/dev/null 2>&1 || true
  if [ "$fl" = 1 ]; then
    mac=$(ip -n "$FLOOD_NS" link show "$FLOOD_IF" | awk '/link\/ether/ {print $2}')
    ip netns exec "$FLOOD_NS" python3 "$W/flood.py" "$FLOOD_IF" "$mac" &
    FLOOD_PID=$!
  fi
  ip netns exec "$P-sub" "$LAT" sub --listen 10.78.0.2:7788 --count $((SECS * 1000)) \
    --window 0,200us --interval 0 --idle-timeout 3s --duration $((SECS + 15))s --json --csv "$csv" >"$W/sub.json" 2>"$W/sub.err" &
  local sub=$!
  sleep 0.5
  ip netns exec "$P-pub" "$LAT" pub --dst 10.78.0.2:7788 --count $((SECS * 1000)) --size "$size" \
    --cycle-time 1ms --shift-time 50us --priority 5 >"$W/pub.out" 2>&1 || log "$tag: pub failed: $(tail -n 3 "$W/pub.out")"
  wait "$sub" || log "$tag: sub exited $?: $(tail -n 3 "$W/sub.err")"
  stop_backend
  python3 - "$W/sub.json" "$b" "$size" "$fl" "$r" "$csv" >>"$OUT/summary.tsv" <<'EOF'
import json, sys
p, b, size, fl, r, csv = sys.argv[1:]
try:
    s = json.load(open(p))
except Exception:
    print("\t".join([b, size, fl, r, "-", "-", "-", "-", "-", "-", "-", "-", "-", csv])); sys.exit()
L, J, w = s.get("latency_ns") or {}, s.get("jitter_ns") or {}, s.get("window") or {}
us = lambda v: "-" if v is None else f"{v / 1000:.1f}"
inside = w.get("inside"); tot = (w.get("inside") or 0) + (w.get("outside") or 0)
print("\t".join([b, size, fl, r, us(L.get("p50")), us(L.get("p99")), us(L.get("max")),
                 us(J.get("p99")), us(J.get("max")), str(s["received"]), str(s["lost"]),
                 str(s["deadline_misses"]), f"{100 * inside / tot:.2f}" if tot else "-", csv]))
EOF
  log "$(tail -n 1 "$OUT/summary.tsv" | cut -f1-13)"
}

IFS=, read -ra BL <<< "$BACKENDS"
IFS=, read -ra SL <<< "$SIZES"
printf 'backend\tsize\tflood\tround\tlat_p50_us\tlat_p99_us\tlat_max_us\tjit_p99_us\tjit_max_us\treceived\tlost\tmisses\tin_window_pct\tcsv\n' >"$OUT/summary.tsv"
log "$(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); $ROUNDS round(s) x ${#SL[@]} sizes x 2 x ${#BL[@]} backends x $SECS s"
for r in $(seq "$ROUNDS"); do
  for size in "${SL[@]}"; do
    for fl in 0 1; do
      # Alternate: each cell starts with the next backend in turn.
      k=$(( (r + fl) % ${#BL[@]} ))
      for j in $(seq 0 $(( ${#BL[@]} - 1 ))); do
        run_one "${BL[$(( (k + j) % ${#BL[@]} ))]}" "$size" "$fl" "$r"
      done
    done
  done
done

# The table (medians over rounds per cell) and the ratio to tsn-gcl in the same cell.
python3 - "$OUT/summary.tsv" >"$OUT/summary.md" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def med(xs):
    xs = [float(x) for x in xs if x not in ("-", "")]
    return statistics.median(xs) if xs else None
f = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"
cells = {}
for r in rows:
    cells.setdefault((int(r["size"]), r["flood"]), {}).setdefault(r["backend"], []).append(r)
print("| size (B) | flood | backend | latency median (µs) | p99 | max | jitter p99 (µs) | max | received | lost | deadline misses (> 400 µs) | in [0,200 µs) % | median / tsn-gcl's |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for (size, fl), bs in sorted(cells.items()):
    ref = med(x["lat_p50_us"] for x in bs.get("tsn-gcl", []))
    for b, rs in bs.items():
        m = med(x["lat_p50_us"] for x in rs)
        ratio = f(m / ref, 2) if m is not None and ref else "-"
        sums = lambda k: sum(int(x[k]) for x in rs if x[k] not in ("-", ""))
        print(f"| {size} | {'on' if fl == '1' else 'off'} | {b} | {f(m)} | {f(med(x['lat_p99_us'] for x in rs))} | "
              f"{f(med(x['lat_max_us'] for x in rs))} | {f(med(x['jit_p99_us'] for x in rs))} | {f(med(x['jit_max_us'] for x in rs))} | "
              f"{sums('received')} | {sums('lost')} | {sums('misses')} | {f(med(x['in_window_pct'] for x in rs), 2)} | {ratio} |")
EOF
cat "$OUT/summary.md"

# Plots per size and flood state: every backend of round 1.
plot_first_round "$LAT" "$OUT" "${SL[*]}" "${BL[*]}" --window 0,200us
echo "latency: results in $OUT"
