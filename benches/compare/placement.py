#!/usr/bin/env python3
"""Medians of run.sh's rounds within one placement of the frontend's and backend's CPUs.

run.sh measures how long a cache line takes between the two CPUs (line_rtt.c) right before and
right after every run and writes both figures to the run's `line-rtt`. On a VM the host moves
the vCPUs, and a vhost-user loop forwards about half as fast while the line takes 4x longer;
which rounds of which backend fell in which placement then decides a row's medians more than
the backends do. This prints each row's medians and ratios over the runs whose two figures are
both near the fastest seen in the whole comparison ("near": at most 1.5x), and over the rest.

usage: placement.py WORKDIR BACKENDS ROW...
  BACKENDS: X=name,... in run.sh's order (A, B, C, D); ROW: rowdir|label
"""
import glob
import os
import statistics
import sys

NEAR = 1.5  # a run is near when both of its figures are at most this times the fastest


def read_runs(rowdir, b):
    """(pps, [rtt before, rtt after]) of every run of backend b in the row."""
    out = []
    for d in sorted(glob.glob(os.path.join(rowdir, f"r*{b}"))):
        try:
            pps = float(open(os.path.join(d, "pps")).read().split()[0])
            rtt = [float(x) for x in open(os.path.join(d, "line-rtt")).read().split()]
        except (OSError, ValueError, IndexError):
            continue
        if len(rtt) == 2 and pps > 0:
            out.append((pps, rtt))
    return out


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    work, backends, rows = sys.argv[1], sys.argv[2], sys.argv[3:]
    names = dict(kv.split("=", 1) for kv in backends.split(","))
    runs = {}
    for row in rows:
        rowdir, label = row.split("|", 1)
        for b in names:
            runs[(label, b)] = read_runs(os.path.join(work, rowdir), b)
    every = [x for rs in runs.values() for _, rtt in rs for x in rtt]
    if not every:
        print("placement: no line round trips measured")
        return 0
    cut = NEAR * min(every)
    print(f"== within one placement: line round trip between the two CPUs, before and after each run:"
          f" near <= {cut:.0f} ns (fastest {min(every):.0f}, slowest {max(every):.0f})")
    hdr = f"{'row':20s} {'placement':9s}" + "".join(f" {names[b]:>17s}" for b in names)
    pairs = [(x, y) for x, y in (("C", "A"), ("C", "B"), ("D", "C")) if x in names and y in names]
    hdr += "".join(f" {x + '/' + y:>6s}" for x, y in pairs)
    print(hdr)
    for row in rows:
        label = row.split("|", 1)[1]
        for place, sel in (("near", lambda r: max(r) <= cut), ("far", lambda r: max(r) > cut)):
            med, line = {}, f"{label:20s} {place:9s}"
            for b in names:
                v = [p for p, rtt in runs[(label, b)] if sel(rtt)]
                if v:
                    med[b] = statistics.median(v)
                    line += f" {med[b] / 1e6:9.2f} Mpps ({len(v)})"
                else:
                    line += f" {'-':>17s}"
            for x, y in pairs:
                line += f" {med[x] / med[y]:6.2f}" if x in med and y in med else f" {'n/a':>6s}"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
