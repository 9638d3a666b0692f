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
GUEST_DIR=${TSN_GUEST_DIR:-$ROOT/target/guest}
for p in python3 cpio; do
  command -v "$p" >/dev/null || { echo "demo: $p is missing (apt-get install ${p/python3/python3-minimal})" >&2; exit 1; }
done

echo "demo: building (cargo build --release, static tsn-latency, guest image)"
cargo build --release --quiet -p tsn-vswitch -p tsn-latency
BIN=$CARGO_TARGET_DIR/release/tsn-vswitch
LAT=$CARGO_TARGET_DIR/release/tsn-latency
STATIC=$(bash scripts/build-latency-static.sh 2>/dev/null) || { bash scripts/build-latency-static.sh; exit 1; }
bash scripts/guest/build.sh "$GUEST_DIR"

W=$(mktemp -d /tmp/tsn-demo.XXXXXX)
P=demo$$
NS=$P-h3
SW_PID=
cleanup() {
  local rc=$?
  for f in "$W"/*.qemu.pid; do
    [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null || true
  done
  if [ -n "$SW_PID" ]; then
    kill -TERM "$SW_PID" 2>/dev/null && wait "$SW_PID" 2>/dev/null || true
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
mkdir -p "$W/extra/usr/bin"
install -m 755 "$STATIC" "$W/extra/usr/bin/tsn-latency"
(cd "$W/extra" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) > "$W/extra.cpio"
cat "$GUEST_DIR/initramfs.cpio" "$W/extra.cpio" > "$W/demo.cpio"

# h3: the flooding host (and the sink the publisher's CSV is copied to at the end).
ip netns add "$NS"
ip link add "${P}r3" type veth peer name "${P}n3"
echo 1 > "/proc/sys/net/ipv6/conf/${P}r3/disable_ipv6"
ip link set "${P}n3" netns "$NS"
ip netns exec "$NS" sh -c "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6"
ip -n "$NS" link set "${P}n3" address 02:00:00:77:00:03
ip -n "$NS" addr add 10.77.0.3/24 dev "${P}n3"
ip -n "$NS" link set lo up
ip -n "$NS" link set "${P}n3" up
# No checksum offload on h3's veth: the switch's af_packet port would hand its frames (TCP, UDP)
# to the guests with the checksums still unfilled, and the guests would drop them.
ip netns exec "$NS" ethtool -K "${P}n3" tx off >/dev/null
ip link set "${P}r3" up

cat > "$W/vm2.gcl" <<'EOF'
num_tc 2
map 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
base-time 0
cycle-time 1000000
sched-entry S 02 200000
sched-entry S 01 800000
EOF

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
import json, os, re, subprocess, sys, threading, time

W, SECS, BIN, KERNEL, NS, IFACE = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
TTY = sys.stdout.isatty()
BOOT_TIMEOUT = 240
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def say(msg):
    print(f"demo: {msg}", flush=True)


class Guest:
    """A TCG guest on a vhost-user socket, driven over its serial console (scripts/guest/init.sh)."""

    # no_timer_check: on a loaded host a TCG guest's kernel can miss its IO-APIC timer check and
    # panic ("IO-APIC + timer doesn't work"), seen here; the check is what the option skips.
    def __init__(self, name, ip, mac):
        self.name, self.ip, self.seq = name, ip, 0
        self.text, self.lock = "", threading.Condition()
        self.log = open(f"{W}/{name}.console", "wb")
        args = [
            "qemu-system-x86_64", "-name", f"tsn-{name}", "-accel", "tcg",
            "-machine", "pc,memory-backend=mem",
            "-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-m", "256M",
            "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", KERNEL, "-initrd", f"{W}/demo.cpio",
            "-append", f"console=ttyS0 quiet loglevel=1 panic=-1 no_timer_check tsn.name={name} tsn.ip={ip}/24 tsn.mac={mac}",
            "-chardev", f"socket,id=c0,path={W}/{name}.sock,reconnect=1",
            "-netdev", "vhost-user,id=n0,chardev=c0",
            "-device", f"virtio-net-pci,netdev=n0,mac={mac},vectors=0",
            "-serial", "stdio", "-pidfile", f"{W}/{name}.qemu.pid",
        ]
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=open(f"{W}/{name}.qemu.log", "wb"))
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        while True:
            b = self.p.stdout.read1(4096)
            if not b:
                break
            self.log.write(b)
            self.log.flush()
            with self.lock:
                self.text += b.decode("utf-8", "replace")
                self.lock.notify_all()
        with self.lock:
            self.text += "\n<console closed>"
            self.lock.notify_all()

    def wait_for(self, pattern, timeout, start=0):
        end = time.monotonic() + timeout
        with self.lock:
            while True:
                m = re.compile(pattern).search(self.text, start)
                if m:
                    return m
                if "<console closed>" in self.text[start:] or time.monotonic() > end:
                    raise SystemExit(f"demo: {self.name}: no `{pattern}` on the console "
                                     f"within {timeout} s")
                self.lock.wait(1)

    def send(self, cmd, timeout):
        """Starts a command; returns (id, console offset) to follow it with wait_for."""
        self.seq += 1
        cid = f"{self.name}-{self.seq}"
        with self.lock:
            start = len(self.text)
        self.p.stdin.write(f"TSNCMD {cid} {int(timeout)} {cmd}\n".encode())
        self.p.stdin.flush()
        return cid, start

    def run(self, cmd, timeout):
        cid, start = self.send(cmd, timeout)
        m = self.wait_for(rf"TSN-END {cid} (\d+)", timeout + 30, start)
        b = self.text.find(f"TSN-BEGIN {cid}", start)
        return int(m.group(1)), self.text[b:m.start()].split("\n", 1)[-1]


def ctl_ports():
    try:
        out = subprocess.run([BIN, "ctl", "--ctl", f"{W}/ctl.sock", "--json", "show", "ports"],
                             capture_output=True, text=True, timeout=5).stdout
        rows = json.loads(out)
        return rows.get("ok", rows) if isinstance(rows, dict) else rows
    except Exception:
        return []


say("booting two QEMU guests (TCG): vm1 publisher 10.77.0.1, vm2 subscriber 10.77.0.2")
g1 = Guest("vm1", "10.77.0.1", "02:00:00:77:00:01")
g2 = Guest("vm2", "10.77.0.2", "02:00:00:77:00:02")
t0 = time.monotonic()
for g in (g1, g2):
    g.wait_for(r"TSN-GUEST-READY", BOOT_TIMEOUT)
say(f"guests ready after {time.monotonic() - t0:.0f} s")

rc, out = g2.run("(tsn-latency reflect --listen 0.0.0.0:7788 >/tmp/reflect.log 2>&1 &) ; sleep 1; pidof tsn-latency", 30)
if rc != 0:
    raise SystemExit(f"demo: vm2: the reflector did not start: {out}")
rc, out = g1.run("ping -c 3 -i 0.3 -W 5 10.77.0.2 && ping -c 2 -W 5 10.77.0.3", 60)
if rc != 0:
    raise SystemExit(f"demo: vm1 cannot reach vm2 and h3 through the switch:\n{out}")

# The flood: h3 -> vm2's MAC, 1400-byte frames of a local-experimental EtherType, 10 per ms.
flood = subprocess.Popen(["ip", "netns", "exec", NS, "python3", "-c", f"""
import socket, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(("{IFACE}", 0))
f = bytes.fromhex("020000770002020000770003") + b"\\x88\\xb5" + bytes(1386)
end = time.monotonic() + {SECS + 2}; n = time.monotonic()
while time.monotonic() < end:
    for _ in range(10):
        try: s.send(f)
        except OSError: pass
    n += 0.001
    d = n - time.monotonic()
    if d > 0: time.sleep(d)
"""])

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
flood.wait()
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
python3 "$W/demo.py" "$W" "$SECS" "$BIN" "$GUEST_DIR/vmlinuz" "$NS" "${P}n3"

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
