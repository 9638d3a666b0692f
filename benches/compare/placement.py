#!/usr/bin/env python3
"""Medians of run.sh's rounds within one placement of the frontend's and backend's CPUs.

run.sh watches, once a second during every run (line_rtt.c; the run's `line-rtt-watch`, its
measured seconds in `measure-window`), how long a cache line takes between the frontend's and
the backend's CPUs. On a VM the host moves the vCPUs while the VM runs: on the development
machine the round trip is ~55 ns or ~320 ns, for seconds to minutes each, and a vhost-user
loop forwards about half as fast in the second placement. Which rounds of which backend fell
in which then decides a row's medians more than the backends do. This prints each row's
medians and ratios over the runs whose every reading while measured was "near" (at most 1.5x
the fastest seen in the whole comparison), over those whose every reading was "far", and over
those that saw both; or, when no reading was twice the fastest, that there was one placement.
(The CPUs' clocks, also in the file, change from one second to the next on that machine: a run
averages over them.)

usage: placement.py WORKDIR BACKENDS ROW...
  BACKENDS: X=name,... in run.sh's order (A, B, C, D); ROW: rowdir|label
"""
import glob
import os
import statistics
import sys

NEAR = 1.5  # near: every reading at most this times the fastest
ONE = 2.0  # every reading within this factor of the fastest: one placement throughout


def read_runs(rowdir, b):
    """(pps, [(round trip ns, MHz A, MHz B)] read during the measured seconds) of every run."""
    out = []
    for d in sorted(glob.glob(os.path.join(rowdir, f"r*{b}"))):
        try:
            pps = float(open(os.path.join(d, "pps")).read().split()[0])
            start, end = [float(x) for x in open(os.path.join(d, "measure-window")).read().split()]
            lines = open(os.path.join(d, "line-rtt-watch")).readlines()
        except (OSError, ValueError, IndexError):
            continue
        reads = []
        for line in lines:
            try:
                t, ns, ma, mb = (float(x) for x in line.split())
            except ValueError:
                continue  # a line cut short when the watch was stopped
            # A second's rate is printed after the second: its reading may precede `start`.
            if start - 1 <= t <= end:
                reads.append((ns, ma, mb))
        if reads and pps > 0:
            out.append((pps, reads))
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
    every = [r for rs in runs.values() for _, reads in rs for r in reads]
    if not every:
        print("placement: no line round trips measured")
        return 0
    fastest, slowest = min(ns for ns, _, _ in every), max(ns for ns, _, _ in every)
    if slowest <= ONE * fastest:
        # No second placement seen: nothing to sort (and "near" would be a guess).
        print(
            f"== one placement throughout (line round trip between the CPUs while measured: "
            f"{fastest:.0f}-{slowest:.0f} ns): the medians above compare within it"
        )
        return 0
    cut = NEAR * fastest
    print(
        f"== within one placement (every reading while measured: line round trip between the "
        f"CPUs <= {cut:.0f} ns, near; > {cut:.0f} ns, far; both: changed)"
    )
    hdr = f"{'row':20s} {'placement':9s}" + "".join(f" {names[b]:>17s}" for b in names)
    pairs = [(x, y) for x, y in (("C", "A"), ("C", "B"), ("D", "C")) if x in names and y in names]
    hdr += "".join(f" {x + '/' + y:>6s}" for x, y in pairs)
    print(hdr)
    for row in rows:
        label = row.split("|", 1)[1]
        for state, sel in (
            ("near", lambda r: all(ns <= cut for ns, _, _ in r)),
            ("far", lambda r: all(ns > cut for ns, _, _ in r)),
            ("changed", lambda r: min(ns for ns, _, _ in r) <= cut < max(ns for ns, _, _ in r)),
        ):
            med, line = {}, f"{label:20s} {state:9s}"
            for b in names:
                v = [p for p, reads in runs[(label, b)] if sel(reads)]
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
