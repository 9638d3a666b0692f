#!/usr/bin/env bash
# The paper's testbed on one machine, in one command (as root, after scripts/setup.sh):
#
#   scripts/demo.sh [--seconds N] [--out DIR]      (default 60 s; DIR: target/demo)
#
# - builds tsn-vswitch and tsn-latency (release), a static tsn-latency for the guests, and the
#   test guest image (scripts/guest/build.sh, cached in target/guest), to which it appends a
#   second cpio archive holding /usr/bin/tsn-latency (Linux unpacks concatenated archives; the
#   shared image is left alone);
# - starts the switch with two vhost-user ports, vm1 (publisher) and vm2 (subscriber), and an
#   af_packet port h3 to a network namespace; vm2's egress is gated (speed=100, a 1 ms cycle:
#   class 1 open [0, 200 us), class 0 [200 us, 1 ms)) and `--tc-rule vm1:udp-dst=7788:class=1`
#   puts the probes in class 1;
# - boots two QEMU guests (TCG) on vm1 and vm2; vm2 runs `tsn-latency reflect`, vm1 runs
#   `tsn-latency pub --reflect` (a 64-byte probe every 1 ms for N seconds) while the namespace
#   floods vm2 with best-effort 1400-byte frames (10 per ms: more than the 800 us best-effort
#   window of a 100 Mbit/s port carries, so vm2's egress is saturated);
# - shows a live table (progress, the publisher's running figures, the switch's port counters),
#   refreshed in place on a terminal, one plain line per refresh otherwise;
# - fetches the publisher's CSV, prints its summary and draws the plots; prints each PNG's path.
#
# What the figures are: TCG guests do not share the host's clock (nor each other's), and a
# guest's kernel stamps frames when the emulated CPU gets round to its RX batch. So the demo
# reports RTT/2 between the guests (both stamps on vm1's clock, labelled "RTT/2"), which
# includes the reflector's turn-around and the gate's wait: vm1's sends are not aligned to the
# switch's cycle, so a probe waits up to 800 us for its window. Namespace runs of
# benches/compare/latency.sh measure one-way latency on one clock.
set -euo pipefail

SECS=60
OUT=
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECS=${2:?--seconds needs a value}; shift 2 ;;
    --seconds=*) SECS=${1#--seconds=}; shift ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --out=*) OUT=${1#--out=}; shift ;;
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$SECS" in ''|*[!0-9]*|0) echo "demo: --seconds takes a whole number of seconds > 0" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "demo: run as root (namespaces, the switch, QEMU)" >&2; exit 1; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$ROOT/target/demo}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PFX=demo
# shellcheck source=guest/lib.sh
. "$ROOT/scripts/guest/lib.sh"

echo "demo: building (cargo build --release, static tsn-latency, guest image)"
guest_build

W=$(mktemp -d /tmp/tsn-demo.XXXXXX)
P=demo$$
NS=$P-h3
SW_PID=
cleanup() {
  local rc=$?
  guest_kill_qemus "$W"
  if [ -n "$SW_PID" ]; then
    if kill -TERM "$SW_PID" 2>/dev/null; then wait "$SW_PID" 2>/dev/null || true; fi
  fi
  ip link del "${P}r3" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  if [ "$rc" != 0 ] && [ -d "$W" ]; then
    echo "demo: failed (exit $rc); switch log, consoles and QEMU logs:" >&2
    for f in "$W"/switch.log "$W"/*.console "$W"/*.qemu.log; do
      [ -s "$f" ] && { echo "--- $f (tail)" >&2; tail -n 30 "$f" >&2; }
    done
  fi
  rm -rf "$W"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The guests' initramfs: the shared image plus an archive holding the static tsn-latency.
guest_initrd "$W" "$W/demo.cpio"
# h3: the flooding host (and the sink the publisher's CSV is copied to at the end).
guest_ns_host "$NS" "${P}r3" "${P}n3" 02:00:00:77:00:03 10.77.0.3/24
guest_gcl "$W/vm2.gcl"

"$BIN" --main-core 0 --pmd-cores 1 --ctl "$W/ctl.sock" \
  --port "vm1=vhost-user:$W/vm1.sock" \
  --port "vm2,speed=100=vhost-user:$W/vm2.sock" \
  --port "h3=dpdk:net_af_packet0,iface=${P}r3" \
  --gcl "vm2=$W/vm2.gcl" --tc-rule vm1:udp-dst=7788:class=1 >"$W/switch.log" 2>&1 &
SW_PID=$!
for _ in $(seq 120); do
  "$BIN" ctl --ctl "$W/ctl.sock" stats >/dev/null 2>&1 && break
  kill -0 "$SW_PID" 2>/dev/null || { echo "demo: the switch exited" >&2; exit 1; }
  sleep 0.5
done
"$BIN" ctl --ctl "$W/ctl.sock" stats >/dev/null

cat > "$W/demo.py" <<'EOF'
"""Runs the guests, the flood and the live table; leaves rtt.csv in the work directory."""
import json, re, subprocess, sys, time

W, SECS, BIN, KERNEL, NS, IFACE, PYDIR = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
sys.dont_write_bytecode = True  # no __pycache__ in the checkout
sys.path.insert(0, PYDIR)
from guest import ANSI, Guest, boot, flood  # noqa: E402  (scripts/guest/guest.py)
TTY = sys.stdout.isatty()


def say(msg):
    print(f"demo: {msg}", flush=True)


def ctl_ports():
    try:
        out = subprocess.run([BIN, "ctl", "--ctl", f"{W}/ctl.sock", "--json", "show", "ports"],
                             capture_output=True, text=True, timeout=5).stdout
        rows = json.loads(out)
        return rows.get("ok", rows) if isinstance(rows, dict) else rows
    except Exception:
        return []


say("booting two QEMU guests (TCG): vm1 publisher 10.77.0.1, vm2 subscriber 10.77.0.2")
g1, g2 = (Guest(n, f"10.77.0.{i}", f"02:00:00:77:00:0{i}", f"{W}/{n}.sock", KERNEL,
                f"{W}/demo.cpio", W, "demo") for i, n in ((1, "vm1"), (2, "vm2")))
say(f"guests ready after {boot((g1, g2)):.0f} s")

rc, out = g2.run("(tsn-latency reflect --listen 0.0.0.0:7788 >/tmp/reflect.log 2>&1 &) ; sleep 1; pidof tsn-latency", 30)
if rc != 0:
    raise SystemExit(f"demo: vm2: the reflector did not start: {out}")
rc, out = g1.run("ping -c 3 -i 0.3 -W 5 10.77.0.2 && ping -c 2 -W 5 10.77.0.3", 60)
if rc != 0:
    raise SystemExit(f"demo: vm1 cannot reach vm2 and h3 through the switch:\n{out}")

# The flood: h3 -> vm2's MAC, 1400-byte frames of a local-experimental EtherType, 10 per ms.
flood_p = flood(NS, IFACE, "02:00:00:77:00:02", "02:00:00:77:00:03", SECS + 2)

cmd = (f"tsn-latency pub --dst 10.77.0.2:7788 --reflect --size 64 --cycle-time 1ms "
       f"--duration {SECS}s --interval 1s --echo-wait 2s --csv /tmp/rtt.csv")
say(f"vm1: {cmd}")
say("h3: best-effort flood to vm2 (1400 B, 10 frames/ms) on vm2's gated egress")
cid, start = g1.send(cmd, SECS + 60)
begin = time.monotonic()
drawn = 0
last_plain = -10.0
PORTS = ("vm1", "vm2", "h3")
while True:
    with g1.lock:
        done = re.compile(rf"TSN-END {cid} (\d+)").search(g1.text, start)
        chunk = g1.text[start:]
    lines = [ANSI.sub("", l).strip() for l in re.split(r"[\r\n]", chunk)]
    running = [l for l in lines if l.startswith("[") and "frames" in l]
    el = time.monotonic() - begin
    pct = min(100.0, 100.0 * el / SECS)
    bar = "#" * int(pct / 5) + "." * (20 - int(pct / 5))
    rows = {r.get("name"): r for r in ctl_ports() if isinstance(r, dict)}
    fig = running[-1] if running else "(waiting for the first echoes)"
    table = [f"[{bar}] {el:5.0f}/{SECS} s   RTT/2 between the guests (vm1's clock)",
             f"  pub: {fig}",
             f"  {'port':<5} {'rx packets':>12} {'tx packets':>12} {'drops':>10}"]
    for n in PORTS:
        r = rows.get(n, {})
        table.append(f"  {n:<5} {r.get('rx_packets', '-'):>12} {r.get('tx_packets', '-'):>12} {r.get('drops', '-'):>10}")
    if TTY:
        if drawn:
            sys.stdout.write(f"\x1b[{drawn}F")
        sys.stdout.write("".join(f"\x1b[2K{l}\n" for l in table))
        sys.stdout.flush()
        drawn = len(table)
    elif el - last_plain >= 5 or done:
        last_plain = el
        ports = "  ".join(f"{n} rx {rows.get(n, {}).get('rx_packets', '-')} tx {rows.get(n, {}).get('tx_packets', '-')} "
                          f"drops {rows.get(n, {}).get('drops', '-')}" for n in PORTS)
        print(f"demo: {el:5.0f}/{SECS} s  pub {fig}  |  {ports}", flush=True)
    if done:
        break
    if el > SECS + 120:
        raise SystemExit("demo: vm1: the publisher did not finish")
    time.sleep(1)
flood_p.wait()
rc = int(done.group(1))
out = ANSI.sub("", chunk[chunk.find("\n") + 1:done.start() - start])
print("\n".join(l for l in re.split(r"[\r\n]", out) if l.strip() and not l.startswith("[")), flush=True)
if rc != 0:
    raise SystemExit(f"demo: vm1: tsn-latency pub exited {rc}")

# The CSV: from vm1 to h3 over TCP through the switch.
sink = subprocess.Popen(["ip", "netns", "exec", NS, "nc.openbsd", "-d", "-l", "10.77.0.3", "7799"],
                        stdout=open(f"{W}/rtt.csv", "wb"))
time.sleep(1)
rc, out = g1.run("nc.openbsd -N -w 10 10.77.0.3 7799 </tmp/rtt.csv", 120)
if rc != 0:
    sink.kill()
    raise SystemExit(f"demo: vm1: copying the CSV to h3 failed (exit {rc}): {out}")
sink.wait(timeout=60)
rc, out = g2.run("cat /tmp/reflect.log", 20)
EOF
python3 "$W/demo.py" "$W" "$SECS" "$BIN" "$GUEST_KERNEL" "$NS" "${P}n3" "$GUEST_PY_DIR"

[ -s "$W/rtt.csv" ] || { echo "demo: no CSV came back from vm1" >&2; exit 1; }
cp "$W/rtt.csv" "$OUT/demo-rtt.csv"
echo "demo: summary from the CSV ($OUT/demo-rtt.csv):"
"$LAT" report "$OUT/demo-rtt.csv"
echo "demo: plots:"
"$LAT" plot --out "$OUT" "vm1-vm2 GCL+flood=$OUT/demo-rtt.csv" | tee "$W/pngs"
n=0
while read -r png; do
  [ -s "$png" ] && n=$((n + 1))
done < <(grep -i '\.png$' "$W/pngs")
[ "$n" -gt 0 ] || { echo "demo: no PNG was written" >&2; exit 1; }
echo "demo: done ($n PNGs in $OUT)"
