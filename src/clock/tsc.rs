//! TSC interpolation of a slow reference clock.
//!
//! The control thread samples (tsc, reference) pairs ([`Calibrator::calibrate`]) and publishes a
//! [`Calibration`] — an anchor pair and a rate — through a seqlock ([`CalibrationCell`]). PMD cores
//! read it lock-free and without read-modify-write ([`TscClock::now_ns`]): a few loads, `rdtsc`,
//! one 64×64→128 multiply.
//!
//! Corrections are slewed, not stepped: the new anchor is the *predicted* time at the sample (so
//! the interpolated clock is continuous) and the new rate is the measured rate plus the offset
//! spread over one calibration interval, so the error is gone by the next calibration. Only an
//! offset past the step threshold (first calibration, a stepped reference) moves the clock at once.

use super::{ClockError, ReferenceClock};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;

/// Fixed-point shift of [`Calibration::mult`] (ns per tick as 32.32).
const SHIFT: u32 = 32;
/// Offsets past this are stepped rather than slewed.
pub const DEFAULT_STEP_THRESHOLD_NS: u64 = 20_000;
/// Most a slew may change the rate: 500 ppm.
const MAX_SLEW_PPM: u64 = 500;
/// Samples per calibration; the one with the tightest tsc bracket wins.
const SAMPLES: usize = 7;

/// Something that counts ticks at a steady rate: the TSC, or a fake one in tests.
pub trait TickSource: Send + Sync {
    fn ticks(&self) -> u64;
}

/// The x86 time-stamp counter (invariant TSC assumed, as DPDK assumes).
#[derive(Debug, Clone, Copy, Default)]
pub struct Tsc;

impl TickSource for Tsc {
    #[inline]
    fn ticks(&self) -> u64 {
        crate::dpdk::rdtsc()
    }
}

impl<F: Fn() -> u64 + Send + Sync> TickSource for F {
    #[inline]
    fn ticks(&self) -> u64 {
        self()
    }
}

/// The reference time at tick `tsc` is `ns`, and it advances `mult / 2^32` ns per tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calibration {
    pub tsc: u64,
    pub ns: u64,
    pub mult: u64,
}

impl Calibration {
    /// Reference time at tick `tsc` (also before the anchor), saturating at 0 and 2^64-1.
    #[inline]
    pub fn at(&self, tsc: u64) -> u64 {
        let scale = |d: u64| {
            let v = (u128::from(d) * u128::from(self.mult)) >> SHIFT;
            u64::try_from(v).unwrap_or(u64::MAX)
        };
        if tsc >= self.tsc {
            self.ns.saturating_add(scale(tsc - self.tsc))
        } else {
            self.ns.saturating_sub(scale(self.tsc - tsc))
        }
    }
}

/// The published calibration: one writer (the control thread), any number of lock-free readers.
/// A seqlock: the sequence is odd while a write is in progress; readers retry if it was odd or
/// moved. The writer uses plain stores (it is the only writer), so nobody does an atomic RMW.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct CalibrationCell {
    seq: AtomicU64,
    tsc: AtomicU64,
    ns: AtomicU64,
    mult: AtomicU64,
}

impl CalibrationCell {
    /// Publishes `c`. Only one thread may publish (the calibrator owns this right).
    pub fn publish(&self, c: Calibration) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.tsc.store(c.tsc, Ordering::Relaxed);
        self.ns.store(c.ns, Ordering::Relaxed);
        self.mult.store(c.mult, Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// The latest complete calibration.
    #[inline]
    pub fn read(&self) -> Calibration {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            let c = Calibration {
                tsc: self.tsc.load(Ordering::Relaxed),
                ns: self.ns.load(Ordering::Relaxed),
                mult: self.mult.load(Ordering::Relaxed),
            };
            fence(Ordering::Acquire);
            if s1 & 1 == 0 && self.seq.load(Ordering::Relaxed) == s1 {
                return c;
            }
            std::hint::spin_loop();
        }
    }
}

/// The PMD core's clock: the TSC mapped to reference time by the published calibration.
/// Reads 0 until the first calibration ([`Calibrator::new`] does one).
#[derive(Debug, Clone)]
pub struct TscClock<T: TickSource = Tsc> {
    cell: Arc<CalibrationCell>,
    ticks: T,
}

impl<T: TickSource> TscClock<T> {
    pub fn new(cell: Arc<CalibrationCell>, ticks: T) -> Self {
        Self { cell, ticks }
    }

    /// Reference time at tick count `ticks`, read from this clock's source already (the PMD
    /// loop reads the TSC once per iteration for its cycle counters and reuses it here).
    #[inline]
    pub fn ns_at(&self, ticks: u64) -> u64 {
        self.cell.read().at(ticks)
    }
}

impl<T: TickSource> super::Clock for TscClock<T> {
    #[inline]
    fn now_ns(&self) -> u64 {
        let c = self.cell.read();
        c.at(self.ticks.ticks())
    }
}

/// What the last calibrations found, for `stats` output.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CalibrationStats {
    /// The reference clock (`tai`, `phc:/dev/ptp0`, …).
    pub reference: String,
    pub calibrations: u64,
    /// Calibrations that moved the clock at once instead of slewing.
    pub steps: u64,
    /// Reference reads that failed.
    pub failures: u64,
    /// Reference − interpolated time at the last calibration, before correcting it (ns).
    pub offset_ns: i64,
    /// Rate now applied relative to the nominal TSC frequency, in ppm (positive: the reference
    /// runs faster than `nominal_hz` says).
    pub drift_ppm: f64,
    /// Reference time of the last successful calibration (ns).
    pub last_calibration_ns: u64,
    /// Width of the tightest (tsc, reference, tsc) bracket of the last calibration (ns): the
    /// uncertainty of the sample.
    pub sample_width_ns: u64,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    tsc: u64,
    ns: u64,
}

/// Owns the reference clock and the right to publish; lives on the control thread.
pub struct Calibrator<T: TickSource = Tsc> {
    reference: Box<dyn ReferenceClock>,
    ticks: T,
    cell: Arc<CalibrationCell>,
    nominal_mult: u64,
    current: Calibration,
    last: Option<Sample>,
    last_was_step: bool,
    step_threshold_ns: u64,
    stats: CalibrationStats,
}

impl<T: TickSource> Calibrator<T> {
    /// Builds the calibrator and calibrates once (a step to the reference, at the nominal rate).
    /// `nominal_hz`: the TSC frequency as far as it is known (`crate::dpdk::tsc_hz()` after EAL
    /// init); the real rate is measured from the second calibration on.
    pub fn new(
        reference: Box<dyn ReferenceClock>,
        ticks: T,
        nominal_hz: u64,
    ) -> Result<Self, ClockError> {
        let nominal_mult = mult_of(1_000_000_000, nominal_hz.max(1));
        let stats = CalibrationStats {
            reference: reference.name(),
            ..Default::default()
        };
        let mut c = Self {
            reference,
            ticks,
            cell: Arc::new(CalibrationCell::default()),
            nominal_mult,
            current: Calibration::default(),
            last: None,
            last_was_step: false,
            step_threshold_ns: DEFAULT_STEP_THRESHOLD_NS,
            stats,
        };
        c.calibrate()?;
        Ok(c)
    }

    /// A clock for a PMD core (clone it per core).
    pub fn clock(&self) -> TscClock<T>
    where
        T: Clone,
    {
        TscClock::new(self.cell.clone(), self.ticks.clone())
    }

    pub fn stats(&self) -> &CalibrationStats {
        &self.stats
    }

    /// Interpolated reference time now, as the PMD cores see it.
    pub fn now_ns(&self) -> u64 {
        self.current.at(self.ticks.ticks())
    }

    /// Takes a sample and publishes a corrected calibration. Call it periodically (every
    /// 100 ms – 1 s) from the control thread; the rate is measured over the interval between calls.
    pub fn calibrate(&mut self) -> Result<&CalibrationStats, ClockError> {
        let (s, width) = match self.sample() {
            Some(x) => x,
            None => {
                self.stats.failures = self.stats.failures.saturating_add(1);
                return Err(ClockError::ReadFailed(self.stats.reference.clone()));
            }
        };
        let predicted = self.current.at(s.tsc);
        let offset = i128::from(s.ns) - i128::from(predicted);
        let next = match self.last {
            // The TSC or the reference went backwards, or nothing published yet: start over.
            Some(p) if s.tsc > p.tsc && s.ns >= p.ns => {
                let dt = s.tsc - p.tsc;
                let measured = mult_of(s.ns - p.ns, dt);
                if offset.unsigned_abs() > u128::from(self.step_threshold_ns) {
                    // A lone big offset is the reference being stepped: the interval's rate
                    // is meaningless, keep ours. Two in a row mean our rate is wrong.
                    let mult = if self.last_was_step {
                        measured
                    } else {
                        self.current.mult
                    };
                    self.step(s, mult)
                } else {
                    self.last_was_step = false;
                    // Spread the offset over one more interval like this one.
                    let corr = (offset << SHIFT) / i128::from(dt);
                    let lim = i128::from(measured) * i128::from(MAX_SLEW_PPM) / 1_000_000;
                    let mult = (i128::from(measured) + corr.clamp(-lim, lim)).max(1);
                    Calibration {
                        tsc: s.tsc,
                        ns: predicted,
                        mult: u64::try_from(mult).unwrap_or(u64::MAX),
                    }
                }
            }
            _ => self.step(s, self.nominal_mult),
        };
        self.current = next;
        self.cell.publish(next);
        self.last = Some(s);
        let st = &mut self.stats;
        st.calibrations = st.calibrations.saturating_add(1);
        st.offset_ns =
            i64::try_from(offset).unwrap_or(if offset < 0 { i64::MIN } else { i64::MAX });
        st.drift_ppm = (next.mult as f64 / self.nominal_mult as f64 - 1.0) * 1e6;
        st.last_calibration_ns = s.ns;
        st.sample_width_ns = Calibration {
            tsc: 0,
            ns: 0,
            mult: next.mult,
        }
        .at(width);
        Ok(&self.stats)
    }

    fn step(&mut self, s: Sample, mult: u64) -> Calibration {
        self.last_was_step = true;
        self.stats.steps = self.stats.steps.saturating_add(1);
        Calibration {
            tsc: s.tsc,
            ns: s.ns,
            mult,
        }
    }

    /// The tightest of a few (tsc, reference, tsc) brackets, its tick taken mid-bracket.
    fn sample(&self) -> Option<(Sample, u64)> {
        let mut best: Option<(Sample, u64)> = None;
        for _ in 0..SAMPLES {
            let t0 = self.ticks.ticks();
            let ns = self.reference.read_ns()?;
            let t1 = self.ticks.ticks();
            let width = t1.saturating_sub(t0);
            if best.is_none_or(|(_, w)| width < w) {
                best = Some((
                    Sample {
                        tsc: t0.saturating_add(width / 2),
                        ns,
                    },
                    width,
                ));
            }
        }
        best
    }
}

/// `ns / ticks` as 32.32 fixed point, saturating.
fn mult_of(ns: u64, ticks: u64) -> u64 {
    let v = (u128::from(ns) << SHIFT) / u128::from(ticks.max(1));
    u64::try_from(v).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, PortClock, SimClock, SystemClock};

    /// True time drives a fake TSC at `hz` and a reference running `ppm` fast with an offset.
    #[allow(clippy::type_complexity)]
    fn rig(
        hz: u64,
        ppm: i64,
        offset: u64,
    ) -> (
        SimClock,
        impl Fn() -> u64 + Clone,
        impl Fn() -> Option<u64> + Clone + Send + 'static,
    ) {
        let truth = SimClock::new(1_000_000_000);
        let t = truth.clone();
        let ticks = move || (u128::from(t.now_ns()) * u128::from(hz) / 1_000_000_000) as u64;
        let t = truth.clone();
        let reference = move || {
            let n = i128::from(t.now_ns());
            Some((n + n * i128::from(ppm) / 1_000_000 + i128::from(offset)) as u64)
        };
        (truth, ticks, reference)
    }

    #[test]
    fn calibration_math() {
        let c = Calibration {
            tsc: 1000,
            ns: 5000,
            mult: 1 << 31, // 0.5 ns per tick
        };
        assert_eq!(c.at(1000), 5000);
        assert_eq!(c.at(3000), 6000);
        assert_eq!(c.at(0), 4500);
        assert_eq!(Calibration { ns: 10, ..c }.at(0), 0);
        assert_eq!(mult_of(1_000_000_000, 2_500_000_000), (1u64 << 32) * 2 / 5);
        assert_eq!(mult_of(5, 0), 5 << 32);
        // No overflow far from the anchor.
        let far = Calibration {
            tsc: 0,
            ns: 0,
            mult: 3 << 32,
        };
        assert_eq!(far.at(u64::MAX), u64::MAX);
    }

    #[test]
    fn seqlock_publish_and_read() {
        let cell = Arc::new(CalibrationCell::default());
        let c = Calibration {
            tsc: 1,
            ns: 2,
            mult: 3,
        };
        cell.publish(c);
        assert_eq!(cell.read(), c);
        // Readers never see a torn value while a writer publishes consistent triples.
        let w = cell.clone();
        let writer = std::thread::spawn(move || {
            for i in 0..100_000u64 {
                w.publish(Calibration {
                    tsc: i,
                    ns: i * 2,
                    mult: i * 3,
                });
            }
        });
        for _ in 0..100_000 {
            let r = cell.read();
            assert_eq!((r.ns, r.mult), (r.tsc * 2, r.tsc * 3));
        }
        writer.join().unwrap();
    }

    #[test]
    fn interpolation_tracks_a_drifting_reference() {
        // 2.5 GHz TSC, reference 50 ppm fast and 1 s ahead; nominal rate exactly 2.5 GHz.
        let (truth, ticks, reference) = rig(2_500_000_000, 50, 1_000_000_000);
        let refc = reference.clone();
        let fake = Box::new(PortClock::new("fake", reference));
        let mut cal = Calibrator::new(fake, ticks, 2_500_000_000).unwrap();
        let clock = cal.clock();
        assert_eq!(cal.stats().steps, 1);
        let mut worst_late = 0u64;
        for round in 0..20u64 {
            // Check 10 points inside the next 100 ms interval.
            for k in 1..=10 {
                truth.advance(10_000_000);
                let err = clock.now_ns().abs_diff(refc().unwrap());
                if round >= 3 {
                    worst_late = worst_late.max(err);
                }
                if k == 10 {
                    cal.calibrate().unwrap();
                }
            }
        }
        // Without the rate correction the error would reach 50 ppm * 100 ms = 5 µs.
        assert!(
            worst_late < 50,
            "worst error after convergence {worst_late} ns"
        );
        let st = cal.stats();
        assert_eq!(st.steps, 1, "{st:?}");
        assert!((st.drift_ppm - 50.0).abs() < 1.0, "{st:?}");
        assert!(st.offset_ns.abs() < 50, "{st:?}");
        assert_eq!(st.reference, "port:fake");
        assert_eq!(st.sample_width_ns, 0);
    }

    #[test]
    fn wrong_nominal_rate_is_learned_and_big_offsets_step() {
        // The real TSC is 3 GHz but we were told 2.9 GHz (-3.3 %): the first interval's error is
        // far past the threshold, so it steps once, then tracks.
        let (truth, ticks, reference) = rig(3_000_000_000, -20, 0);
        let fake = Box::new(PortClock::new("fake", reference));
        let mut cal = Calibrator::new(fake, ticks, 2_900_000_000).unwrap();
        let clock = cal.clock();
        truth.advance(100_000_000);
        cal.calibrate().unwrap();
        assert_eq!(cal.stats().steps, 2);
        for _ in 0..5 {
            truth.advance(100_000_000);
            cal.calibrate().unwrap();
        }
        truth.advance(50_000_000);
        let want = truth.now_ns() - truth.now_ns() * 20 / 1_000_000;
        assert!(clock.now_ns().abs_diff(want) < 50);
    }

    #[test]
    fn a_stepped_reference_is_followed_at_once() {
        let truth = SimClock::new(1_000_000_000);
        let t = truth.clone();
        let ticks = move || t.now_ns(); // 1 GHz
        let reference = SimClock::new(1_000_000_000);
        let mut cal = Calibrator::new(Box::new(reference.clone()), ticks, 1_000_000_000).unwrap();
        let clock = cal.clock();
        truth.advance(100_000_000);
        reference.advance(100_000_000);
        cal.calibrate().unwrap();
        assert_eq!((cal.stats().steps, cal.stats().offset_ns), (1, 0));
        // The reference is stepped back 1 ms (ptp4l stepping the PHC).
        truth.advance(100_000_000);
        reference.set(truth.now_ns() - 1_000_000);
        cal.calibrate().unwrap();
        assert_eq!((cal.stats().steps, cal.stats().offset_ns), (2, -1_000_000));
        assert_eq!(clock.now_ns(), reference.now_ns());
    }

    #[test]
    fn failed_reads_are_errors_and_counted() {
        let ok = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let o = ok.clone();
        let r = PortClock::new("flaky", move || o.load(Ordering::Relaxed).then_some(7));
        let mut cal = Calibrator::new(Box::new(r), || 0u64, 1_000_000_000).unwrap();
        ok.store(false, Ordering::Relaxed);
        let e = cal.calibrate().unwrap_err().to_string();
        assert_eq!(e, "reading the reference clock 'port:flaky' failed");
        assert_eq!(cal.stats().failures, 1);
    }

    #[test]
    fn real_tsc_against_monotonic() {
        let mono = SystemClock::monotonic();
        // Rough nominal rate from a 20 ms measurement; calibration learns the rest.
        let (t0, m0) = (Tsc.ticks(), mono.now_ns());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (t1, m1) = (Tsc.ticks(), mono.now_ns());
        let hz = (u128::from(t1 - t0) * 1_000_000_000 / u128::from(m1 - m0)) as u64;
        let mut cal = Calibrator::new(Box::new(mono), Tsc, hz).unwrap();
        let clock = cal.clock();
        for _ in 0..3 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            cal.calibrate().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        let (a, b) = (clock.now_ns(), mono.now_ns());
        // Generous: shared CI machines get preempted.
        assert!(a.abs_diff(b) < 200_000, "{a} vs {b}");
    }
}
