//! The arithmetic, on timestamps only (no clocks, no sockets), so it is tested on synthetic data.
//!
//! Per frame, with s = scheduled transmission time, a = actual send time, t = arrival time:
//! - latency = t − s (the paper's end-to-end latency, publisher wake-up included);
//! - datapath = t − a (the network and the switch alone);
//! - jitter(i) = t_i − (t_j + (s_i − s_j)), j the previous frame in sequence order that arrived
//!   before i. With frames T apart and none lost this is the paper's t_i − (t_(i−1) + T); across a
//!   lost frame it uses the scheduled spacing instead of assuming T. It equals latency_i −
//!   latency_j. Reordered and duplicate frames have none.
//! - phase = (t − base) mod cycle: where in the cycle the frame arrived (to check a gate window).
//!
//! Counts: a frame whose sequence number was seen before is a duplicate (kept out of every
//! distribution); one whose number is below the highest seen before it is reordered; lost =
//! expected − distinct received, expected being `--count` when given, else the span of sequence
//! numbers seen; a deadline miss is a distinct frame whose latency exceeds the deadline.
//! Percentiles are nearest-rank: the smallest value with at least p % of the samples ≤ it.

use std::collections::HashSet;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::units::Window;

/// One received probe: what it carried and when it arrived (ns, CLOCK_TAI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) seq: u64,
    pub(crate) sched: i64,
    pub(crate) sent: i64,
    pub(crate) arrival: i64,
}

/// A sample with what was derived from it (one CSV line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) s: Sample,
    pub(crate) latency: i64,
    pub(crate) datapath: i64,
    pub(crate) jitter: Option<i64>,
    pub(crate) phase: Option<i64>,
    pub(crate) dup: bool,
    pub(crate) reordered: bool,
    pub(crate) miss: bool,
}

/// How arrival times were obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Mode {
    /// The receiver's kernel timestamp, on a clock shared with the sender.
    #[default]
    OneWay,
    /// No shared clock: the echo's arrival at the sender minus half the round trip.
    HalfRtt,
}

impl Mode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::OneWay => "one-way",
            Mode::HalfRtt => "half-rtt",
        }
    }
    pub(crate) fn parse(s: &str) -> Option<Mode> {
        match s {
            "one-way" => Some(Mode::OneWay),
            "half-rtt" => Some(Mode::HalfRtt),
            _ => None,
        }
    }
}

/// What the analysis needs besides the samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) mode: Mode,
    /// Deadline on latency, ns.
    pub(crate) deadline: i64,
    /// Cycle for the arrival phase, ns (0: no phase).
    pub(crate) cycle: i64,
    /// Start of a cycle (any one), ns on CLOCK_TAI.
    pub(crate) base: i64,
    /// A window of the cycle to count arrivals in.
    pub(crate) window: Option<Window>,
    /// Frames the publisher sends, numbered from 0 (`--count`).
    pub(crate) expected: Option<u64>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            mode: Mode::OneWay,
            deadline: 400_000,
            cycle: 1_000_000,
            base: 0,
            window: None,
            expected: None,
        }
    }
}

/// A distribution's summary, ns.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Dist {
    pub(crate) count: u64,
    pub(crate) min: i64,
    pub(crate) p50: i64,
    pub(crate) mean: f64,
    pub(crate) p99: i64,
    pub(crate) p999: i64,
    pub(crate) max: i64,
}

impl Dist {
    /// The summary of `values` (any order); `None` when empty.
    pub(crate) fn of(values: &[i64]) -> Option<Dist> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_unstable();
        let sum: i128 = v.iter().map(|&x| i128::from(x)).sum();
        Some(Dist {
            count: v.len() as u64,
            min: v[0],
            p50: percentile(&v, 5000),
            mean: sum as f64 / v.len() as f64,
            p99: percentile(&v, 9900),
            p999: percentile(&v, 9990),
            max: v[v.len() - 1],
        })
    }
}

/// Nearest-rank percentile of sorted `v`, `p` in hundredths of a percent (p99.9 = 9990).
pub(crate) fn percentile(v: &[i64], p: u64) -> i64 {
    let n = v.len() as u64;
    let rank = (p * n).div_ceil(10_000).clamp(1, n);
    v[(rank - 1) as usize]
}

/// Arrivals inside the `--window` of the cycle.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct WindowCount {
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
    pub(crate) inside: u64,
    pub(crate) outside: u64,
}

/// The end-of-run summary (printed, and `--json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Summary {
    pub(crate) mode: Mode,
    pub(crate) expected: u64,
    pub(crate) received: u64,
    pub(crate) lost: u64,
    pub(crate) duplicates: u64,
    pub(crate) reordered: u64,
    pub(crate) deadline_ns: i64,
    pub(crate) deadline_misses: u64,
    pub(crate) latency_ns: Option<Dist>,
    pub(crate) datapath_ns: Option<Dist>,
    pub(crate) jitter_ns: Option<Dist>,
    pub(crate) phase_ns: Option<Dist>,
    pub(crate) window: Option<WindowCount>,
}

/// Counts since the last running line.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Interval {
    pub(crate) frames: u64,
    pub(crate) latency_sum: i128,
    pub(crate) latency_max: Option<i64>,
    pub(crate) misses: u64,
    /// Cumulative losses when the interval was taken.
    pub(crate) lost_total: u64,
    pub(crate) lost: u64,
}

impl Interval {
    pub(crate) fn mean(&self) -> Option<f64> {
        (self.frames > 0).then(|| self.latency_sum as f64 / self.frames as f64)
    }
}

/// Derives rows and counts from samples in arrival order.
#[derive(Debug)]
pub(crate) struct Analyzer {
    params: Params,
    seen: HashSet<u64>,
    lowest: Option<u64>,
    highest: Option<u64>,
    /// Latency of the highest-numbered frame so far (the jitter reference).
    prev_latency: Option<i64>,
    latencies: Vec<i64>,
    datapaths: Vec<i64>,
    jitters: Vec<i64>,
    phases: Vec<i64>,
    duplicates: u64,
    reordered: u64,
    misses: u64,
    inside: u64,
    interval: Interval,
    lost_at_interval: u64,
}

impl Analyzer {
    pub(crate) fn new(params: Params) -> Analyzer {
        Analyzer {
            params,
            seen: HashSet::new(),
            lowest: None,
            highest: None,
            prev_latency: None,
            latencies: Vec::new(),
            datapaths: Vec::new(),
            jitters: Vec::new(),
            phases: Vec::new(),
            duplicates: 0,
            reordered: 0,
            misses: 0,
            inside: 0,
            interval: Interval::default(),
            lost_at_interval: 0,
        }
    }

    pub(crate) fn params(&self) -> &Params {
        &self.params
    }

    /// Distinct frames received.
    pub(crate) fn received(&self) -> u64 {
        self.seen.len() as u64
    }

    /// The arrival phase of time `t`, when a cycle is set.
    pub(crate) fn phase_of(&self, t: i64) -> Option<i64> {
        (self.params.cycle > 0).then(|| (t - self.params.base).rem_euclid(self.params.cycle))
    }

    /// Takes one sample (in arrival order) and returns its row.
    pub(crate) fn push(&mut self, s: Sample) -> Row {
        let latency = s.arrival - s.sched;
        let datapath = s.arrival - s.sent;
        let phase = self.phase_of(s.arrival);
        let mut row = Row {
            s,
            latency,
            datapath,
            jitter: None,
            phase,
            dup: false,
            reordered: false,
            miss: false,
        };
        if !self.seen.insert(s.seq) {
            row.dup = true;
            self.duplicates += 1;
            return row;
        }
        match self.highest {
            Some(h) if s.seq < h => {
                row.reordered = true;
                self.reordered += 1;
            }
            _ => {
                row.jitter = self.prev_latency.map(|p| latency - p);
                self.prev_latency = Some(latency);
                self.highest = Some(s.seq);
            }
        }
        self.lowest = Some(self.lowest.map_or(s.seq, |l| l.min(s.seq)));
        row.miss = latency > self.params.deadline;
        self.misses += u64::from(row.miss);
        self.latencies.push(latency);
        self.datapaths.push(datapath);
        if let Some(j) = row.jitter {
            self.jitters.push(j);
        }
        if let Some(p) = phase {
            self.phases.push(p);
            if self.params.window.is_some_and(|w| w.contains(p)) {
                self.inside += 1;
            }
        }
        let iv = &mut self.interval;
        iv.frames += 1;
        iv.latency_sum += i128::from(latency);
        iv.latency_max = Some(iv.latency_max.map_or(latency, |m| m.max(latency)));
        iv.misses += u64::from(row.miss);
        row
    }

    /// Frames expected so far: `--count`, else the span of sequence numbers seen.
    pub(crate) fn expected(&self) -> u64 {
        match (self.params.expected, self.lowest, self.highest) {
            (Some(n), _, _) => n,
            (None, Some(l), Some(h)) => h - l + 1,
            _ => 0,
        }
    }

    /// Losses so far. With `--count`, frames not yet due are not counted while the run goes on:
    /// only numbers below the highest seen.
    fn lost_so_far(&self) -> u64 {
        match (self.lowest, self.highest) {
            (Some(l), Some(h)) => {
                let first = if self.params.expected.is_some() { 0 } else { l };
                (h - first + 1).saturating_sub(self.received())
            }
            _ => 0,
        }
    }

    /// The counts since the previous call (for the running line every 10 s).
    pub(crate) fn take_interval(&mut self) -> Interval {
        let lost_total = self.lost_so_far();
        let mut iv = std::mem::take(&mut self.interval);
        iv.lost_total = lost_total;
        iv.lost = lost_total.saturating_sub(self.lost_at_interval);
        self.lost_at_interval = lost_total;
        iv
    }

    pub(crate) fn summary(&self) -> Summary {
        let expected = self.expected();
        let window = self.params.window.map(|w| WindowCount {
            start_ns: w.start.0,
            end_ns: w.end.0,
            inside: self.inside,
            outside: self.phases.len() as u64 - self.inside,
        });
        Summary {
            mode: self.params.mode,
            expected,
            received: self.received(),
            lost: expected.saturating_sub(self.received()),
            duplicates: self.duplicates,
            reordered: self.reordered,
            deadline_ns: self.params.deadline,
            deadline_misses: self.misses,
            latency_ns: Dist::of(&self.latencies),
            datapath_ns: Dist::of(&self.datapaths),
            jitter_ns: Dist::of(&self.jitters),
            phase_ns: Dist::of(&self.phases),
            window,
        }
    }
}

/// Mean and max latency of the distinct frames arriving in each `width`-long slice of the run,
/// counted from the first arrival (the paper's Fig. 5 uses 10 s).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Slice {
    /// Start of the slice, ns after the first arrival.
    pub(crate) start: i64,
    pub(crate) frames: u64,
    pub(crate) mean: f64,
    pub(crate) max: i64,
    pub(crate) misses: u64,
}

pub(crate) fn slices(rows: &[Row], width: i64) -> Vec<Slice> {
    let mut out: Vec<Slice> = Vec::new();
    let Some(t0) = rows.iter().filter(|r| !r.dup).map(|r| r.s.arrival).min() else {
        return out;
    };
    let mut sums: Vec<i128> = Vec::new();
    for r in rows.iter().filter(|r| !r.dup) {
        let k = ((r.s.arrival - t0) / width) as usize;
        while out.len() <= k {
            out.push(Slice {
                start: out.len() as i64 * width,
                frames: 0,
                mean: 0.0,
                max: i64::MIN,
                misses: 0,
            });
            sums.push(0);
        }
        let sl = &mut out[k];
        sl.frames += 1;
        sl.max = sl.max.max(r.latency);
        sl.misses += u64::from(r.miss);
        sums[k] += i128::from(r.latency);
    }
    for (sl, sum) in out.iter_mut().zip(sums) {
        if sl.frames > 0 {
            sl.mean = sum as f64 / sl.frames as f64;
        }
    }
    out.retain(|s| s.frames > 0);
    out
}

/// Nanoseconds as microseconds with three decimals.
pub(crate) fn us(ns: f64) -> String {
    format!("{:.3}", ns / 1000.0)
}

impl Summary {
    /// The human-readable summary.
    pub(crate) fn render(&self) -> String {
        let mut o = String::new();
        let what = match self.mode {
            Mode::OneWay => "one-way, kernel software receive timestamps",
            Mode::HalfRtt => "estimated one-way = RTT/2 (no shared clock)",
        };
        let _ = writeln!(o, "tsn-latency summary ({what})");
        let _ = writeln!(
            o,
            "frames: expected {} received {} lost {} duplicates {} reordered {}",
            self.expected, self.received, self.lost, self.duplicates, self.reordered
        );
        let _ = writeln!(
            o,
            "deadline {} us: {} late, {} lost",
            us(self.deadline_ns as f64),
            self.deadline_misses,
            self.lost
        );
        let _ = writeln!(
            o,
            "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}   (us)",
            "", "min", "median", "mean", "p99", "p99.9", "max"
        );
        let rows = [
            ("latency", self.latency_ns),
            ("datapath", self.datapath_ns),
            ("jitter", self.jitter_ns),
            ("phase", self.phase_ns),
        ];
        for (name, d) in rows {
            match d {
                Some(d) => {
                    let _ = writeln!(
                        o,
                        "{name:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
                        us(d.min as f64),
                        us(d.p50 as f64),
                        us(d.mean),
                        us(d.p99 as f64),
                        us(d.p999 as f64),
                        us(d.max as f64)
                    );
                }
                None => {
                    let _ = writeln!(o, "{name:<10} (no samples)");
                }
            }
        }
        if let Some(w) = self.window {
            let total = w.inside + w.outside;
            let pct = if total > 0 {
                100.0 * w.inside as f64 / total as f64
            } else {
                0.0
            };
            let _ = writeln!(
                o,
                "window {}..{} us of the cycle: {} of {} arrivals inside ({pct:.2} %)",
                us(w.start_ns as f64),
                us(w.end_ns as f64),
                w.inside,
                total
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Nanos;

    const T: i64 = 1_000_000;
    const BASE: i64 = 1_700_000_000_000_000_000;

    /// Frame `seq` scheduled on the 1 ms grid, sent `send` ns late, arriving `lat` ns after its
    /// schedule.
    fn sample(seq: u64, send: i64, lat: i64) -> Sample {
        let sched = BASE + seq as i64 * T;
        Sample {
            seq,
            sched,
            sent: sched + send,
            arrival: sched + lat,
        }
    }

    #[test]
    fn latency_datapath_and_paper_jitter() {
        let mut a = Analyzer::new(Params::default());
        let lats = [10_000, 12_000, 9_000, 9_000, 30_000];
        let rows: Vec<Row> = lats
            .iter()
            .enumerate()
            .map(|(i, &l)| a.push(sample(i as u64, 2_000, l)))
            .collect();
        for (r, &l) in rows.iter().zip(&lats) {
            assert_eq!(r.latency, l);
            assert_eq!(r.datapath, l - 2_000);
        }
        // jitter(i) = t_i − (t_(i−1) + T)
        for i in 1..rows.len() {
            let want = rows[i].s.arrival - (rows[i - 1].s.arrival + T);
            assert_eq!(rows[i].jitter, Some(want));
        }
        assert_eq!(rows[0].jitter, None);
        let jit: Vec<_> = rows.iter().filter_map(|r| r.jitter).collect();
        assert_eq!(jit, vec![2_000, -3_000, 0, 21_000]);
        let s = a.summary();
        assert_eq!((s.expected, s.received, s.lost), (5, 5, 0));
        let l = s.latency_ns.unwrap();
        assert_eq!((l.min, l.p50, l.max), (9_000, 10_000, 30_000));
        assert_eq!(l.mean, 14_000.0);
        assert_eq!(s.datapath_ns.unwrap().min, 7_000);
        assert_eq!(s.jitter_ns.unwrap().count, 4);
    }

    #[test]
    fn jitter_spans_a_lost_frame_by_its_schedule() {
        let mut a = Analyzer::new(Params::default());
        a.push(sample(0, 0, 10_000));
        let r = a.push(sample(2, 0, 11_000)); // 1 lost
        assert_eq!(r.jitter, Some(1_000));
        let s = a.summary();
        assert_eq!((s.expected, s.received, s.lost), (3, 2, 1));
    }

    #[test]
    fn loss_duplicates_and_reordering() {
        let mut a = Analyzer::new(Params {
            expected: Some(8),
            ..Params::default()
        });
        // Arrival order: 0 1 3 2 3 5 6 (4 and 7 lost, 3 duplicated, 2 late).
        let order = [0u64, 1, 3, 2, 3, 5, 6];
        let rows: Vec<Row> = order
            .iter()
            .map(|&q| a.push(sample(q, 0, 5_000 + q as i64)))
            .collect();
        assert!(rows[3].reordered && rows[3].jitter.is_none());
        assert!(rows[4].dup && !rows[4].reordered && rows[4].jitter.is_none());
        // 5's jitter refers to 3 (the highest before it), across the lost 4.
        assert_eq!(rows[5].jitter, Some(2));
        let s = a.summary();
        assert_eq!(s.expected, 8);
        assert_eq!(s.received, 6);
        assert_eq!(s.lost, 2);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.reordered, 1);
        assert_eq!(s.latency_ns.unwrap().count, 6, "duplicates are kept out");
        // Without --count, expected is the span seen.
        let mut b = Analyzer::new(Params::default());
        for q in [10u64, 11, 14] {
            b.push(sample(q, 0, 1));
        }
        let s = b.summary();
        assert_eq!((s.expected, s.lost), (5, 2));
    }

    #[test]
    fn deadline_misses() {
        let mut a = Analyzer::new(Params {
            deadline: 400_000,
            ..Params::default()
        });
        for (q, l) in [(0, 399_999), (1, 400_000), (2, 400_001), (3, 2_000_000)] {
            a.push(sample(q, 0, l));
        }
        a.push(sample(3, 0, 2_000_001)); // a late duplicate is not a second miss
        assert_eq!(a.summary().deadline_misses, 2);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<i64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 5000), 500);
        assert_eq!(percentile(&v, 9900), 990);
        assert_eq!(percentile(&v, 9990), 999);
        assert_eq!(percentile(&v, 10_000), 1000);
        let v: Vec<i64> = (1..=10_000).collect();
        assert_eq!(percentile(&v, 9990), 9990);
        // Fewer samples than the percentile resolves: the largest.
        let v = vec![3, 7, 9];
        assert_eq!(percentile(&v, 9990), 9);
        assert_eq!(percentile(&v, 5000), 7);
        assert_eq!(percentile(&[42], 100), 42);
        // One outlier in 1000 shows at p99.9 only... and at max.
        let mut v = vec![10i64; 999];
        v.push(1_000_000);
        let d = Dist::of(&v).unwrap();
        assert_eq!((d.p99, d.p999, d.max), (10, 10, 1_000_000));
        let mut v = vec![10i64; 998];
        v.extend([1_000_000, 1_000_000]);
        assert_eq!(Dist::of(&v).unwrap().p999, 1_000_000);
        assert!(Dist::of(&[]).is_none());
    }

    #[test]
    fn phase_wraps_within_the_cycle() {
        let w = Window {
            start: Nanos::from_us(100),
            end: Nanos::from_us(300),
        };
        let mut a = Analyzer::new(Params {
            cycle: T,
            base: 250_000, // cycles start 250 µs after each TAI millisecond
            window: Some(w),
            ..Params::default()
        });
        let s0 = BASE + 250_000;
        let mk = |seq: u64, arrival: i64| Sample {
            seq,
            sched: s0,
            sent: s0,
            arrival,
        };
        assert_eq!(a.push(mk(0, s0 + 150_000)).phase, Some(150_000));
        assert_eq!(a.push(mk(1, s0 + 999_999)).phase, Some(999_999));
        assert_eq!(a.push(mk(2, s0 + T)).phase, Some(0));
        assert_eq!(
            a.push(mk(3, s0 - 1)).phase,
            Some(T - 1),
            "before the base wraps too"
        );
        assert_eq!(a.push(mk(4, s0 + 5 * T + 299_999)).phase, Some(299_999));
        let wc = a.summary().window.unwrap();
        assert_eq!((wc.inside, wc.outside), (2, 3));
        let none = Analyzer::new(Params {
            cycle: 0,
            ..Params::default()
        });
        assert_eq!(none.phase_of(12345), None);
    }

    #[test]
    fn ten_second_slices_and_running_intervals() {
        let mut a = Analyzer::new(Params {
            expected: Some(30_000),
            ..Params::default()
        });
        let mut rows = Vec::new();
        // 25 s of frames at 1 ms; slice 0 has latency 10 µs, slice 1 20 µs, slice 2 30 µs; frame
        // 15000 is lost.
        for q in 0..25_000u64 {
            if q == 15_000 {
                continue;
            }
            let lat = 10_000 * (1 + (q / 10_000) as i64);
            rows.push(a.push(sample(q, 0, lat)));
            if q == 9_999 {
                let iv = a.take_interval();
                assert_eq!(iv.frames, 10_000);
                assert_eq!(iv.mean(), Some(10_000.0));
                assert_eq!((iv.lost, iv.lost_total), (0, 0));
            }
        }
        let iv = a.take_interval();
        assert_eq!(iv.frames, 14_999);
        assert_eq!((iv.lost, iv.lost_total), (1, 1));
        assert_eq!(iv.latency_max, Some(30_000));
        assert_eq!(a.take_interval().frames, 0);
        let sl = slices(&rows, 10_000_000_000);
        assert_eq!(sl.len(), 3);
        assert_eq!(sl[0].start, 0);
        assert_eq!(sl[1].start, 10_000_000_000);
        assert_eq!(
            (sl[0].frames, sl[1].frames, sl[2].frames),
            (10_000, 9_999, 5_000)
        );
        assert_eq!(
            (sl[0].mean, sl[1].mean, sl[2].mean),
            (10_000.0, 20_000.0, 30_000.0)
        );
        assert_eq!(sl[2].max, 30_000);
        // The run ends at 25 s of 30 s announced: the summary counts the rest as lost.
        assert_eq!(a.summary().lost, 30_000 - 24_999);
    }
}
