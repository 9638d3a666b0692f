"""The guest side of latency_vm.sh (scenario a): `cells` boots the two TCG guests on one
backend's vhost-user sockets and runs that backend's cells; `summary` turns every cell's CSV
into summary.tsv and summary.md. Run by latency_vm.sh, not by hand."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def say(msg):
    print(f"latency-vm: {msg}", file=sys.stderr, flush=True)


def drops(cmd):
    """The backend's drop counter on vm2's egress (what `cmd` prints), or None."""
    out = None
    try:
        out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=15)
        return int(out.stdout.split()[0])
    except Exception as e:
        say(f"vm2's egress drops unread ({e}): {out.stdout.strip()[:300] if out else ''} {out.stderr.strip()[:300] if out else ''}")
        return None


def guest_rx(g):
    """vm2's eth0 rx_packets (what reached its kernel), or None."""
    rc, out = g.run("cat /sys/class/net/eth0/statistics/rx_packets", 60)
    try:
        return int(out.split()[0]) if rc == 0 else None
    except (ValueError, IndexError):
        return None


def cells(a):
    sys.dont_write_bytecode = True  # no __pycache__ in the checkout
    sys.path.insert(0, a.pydir)
    from guest import Guest, boot, flood  # scripts/guest/guest.py

    say(f"{a.backend} (round {a.round}): booting vm1 (publisher 10.79.0.1) and vm2 (reflector 10.79.0.2)")
    g1 = Guest("vm1", "10.79.0.1", "02:00:00:79:00:01", a.sock1, a.kernel, a.initrd, a.workdir, "latency-vm")
    g2 = Guest("vm2", "10.79.0.2", "02:00:00:79:00:02", a.sock2, a.kernel, a.initrd, a.workdir, "latency-vm")
    try:
        say(f"{a.backend}: guests ready after {boot((g1, g2)):.0f} s")
        for g in (g1, g2):
            # The guests fill their own checksums whatever the backend negotiates (h3's kernel
            # would drop a TCP segment an af_packet port passes on with one unfilled).
            g.run("ethtool -K eth0 tx off >/dev/null 2>&1; true", 30)
        rc, out = g2.run("(tsn-latency reflect --listen 0.0.0.0:7788 >/tmp/reflect.log 2>&1 &) ; sleep 1; pidof tsn-latency", 30)
        if rc != 0:
            raise SystemExit(f"latency-vm: {a.backend}: vm2: the reflector did not start: {out}")
        rc, out = g1.run("ping -c 3 -i 0.3 -W 5 10.79.0.2 && ping -c 2 -W 5 10.79.0.3", 90)
        if rc != 0:
            raise SystemExit(f"latency-vm: {a.backend}: vm1 cannot reach vm2 and h3:\n{out}")
        g2.run("ping -c 1 -W 5 10.79.0.3", 30)
        sizes = [int(s) for s in a.sizes.split(",")]
        for size in sizes:
            # Flood off then on, or on then off: alternated with the round.
            for fl in ((0, 1) if a.round % 2 else (1, 0)):
                tag = f"{a.backend}-{size}-{'flood' if fl else 'idle'}-r{a.round}"
                d0, r0 = drops(a.drops), guest_rx(g2)
                fp = flood(a.ns, a.iface, "02:00:00:79:00:02", "02:00:00:79:00:03", a.seconds + 6) if fl else None
                cmd = (f"tsn-latency pub --dst 10.79.0.2:7788 --reflect --size {size} --cycle-time 1ms "
                       f"--duration {a.seconds}s --interval 0 --echo-wait 2s --csv /tmp/run.csv")
                rc, out = g1.run(cmd, a.seconds + 120)
                if fp:
                    fp.terminate()
                    fp.wait()
                ended = time.monotonic()
                r1 = guest_rx(g2)
                if rc != 0:
                    say(f"{tag}: pub exited {rc}: {out.strip()[-300:]}")
                    continue
                csv = os.path.join(a.runs, f"{tag}.csv")
                sink = subprocess.Popen(["ip", "netns", "exec", a.ns, "nc.openbsd", "-d", "-l", "10.79.0.3", "7799"],
                                        stdout=open(csv, "wb"))
                time.sleep(1)
                rc, out = g1.run("nc.openbsd -N -w 10 10.79.0.3 7799 </tmp/run.csv && rm /tmp/run.csv", 180)
                try:
                    sink.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    sink.kill()
                if rc != 0 or not os.path.getsize(csv):
                    say(f"{tag}: copying the CSV to h3 failed (exit {rc}): {out.strip()[-300:]}")
                    continue
                # A backend whose counters lag (OVS's database: every 5 s) has had --settle
                # seconds since the cell's last frame before they are read.
                time.sleep(max(0.0, a.settle - (time.monotonic() - ended)))
                d1 = drops(a.drops)
                rx = str(r1 - r0) if r0 is not None and r1 is not None else "-"
                drop = str(d1 - d0) if d0 is not None and d1 is not None else "-"
                with open(a.cells, "a") as f:
                    f.write("\t".join([a.backend, str(size), str(fl), str(a.round), csv, rx, drop]) + "\n")
                say(f"{tag}: done (vm2's kernel received {rx} frames, the switch dropped {drop} on its way)")
    finally:
        for g in (g1, g2):
            g.stop()


def summary(a):
    rows = []
    for line in open(a.cells):
        b, size, fl, r, csv, rx, drop = line.rstrip("\n").split("\t")
        out = subprocess.run([a.lat, "report", "--json", csv], capture_output=True, text=True)
        try:
            s = json.loads(out.stdout)
        except ValueError:
            say(f"{csv}: tsn-latency report failed: {out.stderr.strip()}")
            continue
        L, D = s.get("latency_ns") or {}, s.get("datapath_ns") or {}
        rows.append(dict(backend=b, size=int(size), flood=fl, round=int(r), csv=csv, eg_rx=rx, eg_drop=drop,
                         rtt2_p50=D.get("p50"), rtt2_p99=D.get("p99"), rtt2_max=D.get("max"),
                         lat_p50=L.get("p50"), lat_p99=L.get("p99"), lat_max=L.get("max"),
                         received=s["received"], lost=s["lost"], misses=s["deadline_misses"]))
    keys = ["backend", "size", "flood", "round", "rtt2_p50", "rtt2_p99", "rtt2_max", "lat_p50", "lat_p99",
            "lat_max", "received", "lost", "misses", "eg_rx", "eg_drop", "csv"]
    with open(a.tsv, "w") as f:
        f.write("\t".join(keys) + "\n")
        for r in rows:
            f.write("\t".join("-" if r[k] is None else str(r[k]) for k in keys) + "\n")

    us = lambda v: "-" if v is None else f"{v / 1000:.1f}"
    med = lambda xs: statistics.median(xs) if xs else None
    ref = {(r["size"], r["flood"], r["round"]): r["rtt2_p50"] for r in rows if r["backend"] == "tsn-gcl"}
    order = {b: i for i, b in enumerate(a.backends.split(","))}
    cells_ = {}
    for r in rows:
        cells_.setdefault((r["size"], r["flood"]), {}).setdefault(r["backend"], []).append(r)
    out = [
        "RTT/2 = half the round trip vm1 -> vm2 (reflector) -> vm1, both stamps on vm1's clock (TCG guests "
        "share no clock). \"From schedule\" adds vm1's send delay (sent - scheduled) to RTT/2; deadline "
        "misses count those over 400 µs. Medians over rounds; ratio: RTT/2 median over tsn-gcl's in the "
        "same round and cell (median over rounds). vm2 egress: frames vm2's kernel received (its eth0 "
        "rx_packets) / frames the switch dropped on their way to vm2 (tsn-vswitch: the port's drops and its "
        "gate stage's; OVS-DPDK: ovs_tx_failure_drops, vhost ring full), during the cell, the flood's "
        "included.",
        "",
        "| size (B) | flood | backend | RTT/2 median (µs) | p99 | max | from schedule median (µs) | p99 | max "
        "| received | lost | deadline misses | vm2 egress: received / dropped | RTT/2 median / tsn-gcl's |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (size, fl), bs in sorted(cells_.items()):
        for b, rs in sorted(bs.items(), key=lambda kv: order.get(kv[0], 99)):
            m = lambda k: med([x[k] for x in rs if x[k] is not None])
            ratios = [x["rtt2_p50"] / ref[(size, fl, x["round"])] for x in rs
                      if x["rtt2_p50"] and ref.get((size, fl, x["round"]))]
            ratio = f"{med(ratios):.2f}" if ratios else "-"
            eg = " + ".join(f"{x['eg_rx']} / {x['eg_drop']}" for x in rs)
            out.append(f"| {size} | {'on' if fl == '1' else 'off'} | {b} | {us(m('rtt2_p50'))} | {us(m('rtt2_p99'))} | "
                       f"{us(m('rtt2_max'))} | {us(m('lat_p50'))} | {us(m('lat_p99'))} | {us(m('lat_max'))} | "
                       f"{sum(x['received'] for x in rs)} | {sum(x['lost'] for x in rs)} | "
                       f"{sum(x['misses'] for x in rs)} | {eg} | {ratio} |")
    open(a.md, "w").write("\n".join(out) + "\n")


p = argparse.ArgumentParser()
sub = p.add_subparsers(dest="cmd", required=True)
c = sub.add_parser("cells")
for k in ("workdir", "kernel", "initrd", "ns", "iface", "pydir", "sizes", "backend", "runs", "sock1", "sock2",
          "drops", "cells"):
    c.add_argument(f"--{k}", required=True)
c.add_argument("--seconds", type=int, required=True)
c.add_argument("--round", type=int, required=True)
c.add_argument("--settle", type=float, default=0)
s = sub.add_parser("summary")
for k in ("cells", "lat", "tsv", "md", "backends"):
    s.add_argument(f"--{k}", required=True)
args = p.parse_args()
cells(args) if args.cmd == "cells" else summary(args)
