//! The gate stage's counters: per class, single-writer (the PMD core owning the stage), read by
//! the control thread; and the snapshot the control thread builds from them.

use crate::stats::Counter;
use gcl::MAX_TC;

/// Log2 buckets of the release-error histogram: bucket 0 holds 0 ns, bucket k (1..=31) holds
/// [2^(k-1), 2^k) ns; the last one also everything above (≥ 1.07 s).
pub const BUCKETS: usize = 32;

/// A log2 histogram of nanosecond values.
pub struct Histogram {
    buckets: [Counter; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| Counter::default()),
        }
    }
}

/// The bucket of `ns`.
#[inline]
pub fn bucket_of(ns: u64) -> usize {
    ((u64::BITS - ns.leading_zeros()) as usize).min(BUCKETS - 1)
}

/// Largest value bucket `k` holds (the last bucket: unbounded, reported as its lower bound × 2).
pub fn bucket_upper(k: usize) -> u64 {
    match k {
        0 => 0,
        k => (1u64 << k.min(63)) - 1,
    }
}

impl Histogram {
    /// Counts one value. Single writer only.
    #[inline]
    pub fn record(&self, ns: u64) {
        self.buckets[bucket_of(ns)].add(1);
    }

    /// Counts `n` values of bucket `k` (< [`BUCKETS`]). Single writer only.
    #[inline]
    pub fn record_n(&self, k: usize, n: u64) {
        self.buckets[k.min(BUCKETS - 1)].add(n);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot::from_buckets(self.buckets.iter().map(Counter::get).collect())
    }
}

/// A histogram read out, with the figures reports want.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HistogramSnapshot {
    /// Counts per log2 bucket (see [`BUCKETS`]).
    pub buckets: Vec<u64>,
    pub count: u64,
    /// Upper bound of the bucket holding the median, in ns (`None` when empty).
    pub p50_ns: Option<u64>,
    /// Upper bound of the bucket holding the 99th percentile, in ns.
    pub p99_ns: Option<u64>,
    /// Upper bound of the highest non-empty bucket, in ns.
    pub max_ns: Option<u64>,
}

impl HistogramSnapshot {
    pub fn from_buckets(buckets: Vec<u64>) -> Self {
        let count = buckets.iter().fold(0u64, |a, b| a.saturating_add(*b));
        let mut s = Self {
            buckets,
            count,
            ..Default::default()
        };
        s.p50_ns = s.percentile(0.50);
        s.p99_ns = s.percentile(0.99);
        s.max_ns = s.buckets.iter().rposition(|&n| n > 0).map(bucket_upper);
        s
    }

    /// Upper bound (ns) of the bucket where the cumulative count reaches `q` (0..=1) of the total.
    pub fn percentile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((self.count as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (k, &n) in self.buckets.iter().enumerate() {
            seen = seen.saturating_add(n);
            if seen >= rank {
                return Some(bucket_upper(k));
            }
        }
        self.buckets.len().checked_sub(1).map(bucket_upper)
    }
}

/// One class's counters (a cache-line-aligned block; the histogram follows).
#[derive(Default)]
#[repr(align(64))]
pub struct ClassCounters {
    /// Accepted into the class's queue.
    pub enqueued: Counter,
    /// Refused at enqueue: the class's queue was full.
    pub dropped_full: Counter,
    /// Refused at enqueue: the frame can never finish inside any open window of its class at the
    /// current link speed (it would block its queue forever).
    pub dropped_oversize: Counter,
    /// Refused at enqueue: the frame's SDU (after the Ethernet header and VLAN tag) is longer than
    /// its class's queueMaxSDU (`max-sdu`).
    pub dropped_max_sdu: Counter,
    /// Taken out of the queue without being sent: found oversize at its turn (after a list or
    /// link-speed change), its class vanished from a new list, or the stage was flushed.
    pub discarded: Counter,
    /// Sent frames that had waited for their gate: enqueued before the open window they left in
    /// began (each frame counts once).
    pub held: Counter,
    /// Frames that reached the head of their queue while the gate was open but too little of the
    /// window was left for them (guard band); each frame counts once.
    pub guard_deferrals: Counter,
    /// Release error: hand-over time − max(gate-open time, enqueue time), ns. One entry per
    /// frame handed to the transmit path: its count is the `sent` counter.
    pub release_error: Histogram,
}

/// All counters of one stage.
#[derive(Default)]
pub struct StageCounters {
    pub classes: [ClassCounters; MAX_TC as usize],
    /// New schedules the PMD core picked up from the mailbox.
    pub swaps: Counter,
}

/// One class's counters read out.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClassStats {
    pub class: u8,
    pub enqueued: u64,
    /// Handed to the transmit path.
    pub sent: u64,
    pub dropped_full: u64,
    pub dropped_oversize: u64,
    pub dropped_max_sdu: u64,
    pub discarded: u64,
    pub held: u64,
    pub guard_deferrals: u64,
    /// Frames in the queue (enqueued − sent − discarded; reads are not atomic as a group, so
    /// this can be off by a frame in flight).
    pub queued: u64,
    pub release_error: HistogramSnapshot,
}

impl ClassCounters {
    pub fn snapshot(&self, class: u8) -> ClassStats {
        let release_error = self.release_error.snapshot();
        let (enqueued, sent, discarded) = (
            self.enqueued.get(),
            release_error.count,
            self.discarded.get(),
        );
        ClassStats {
            class,
            enqueued,
            sent,
            dropped_full: self.dropped_full.get(),
            dropped_oversize: self.dropped_oversize.get(),
            dropped_max_sdu: self.dropped_max_sdu.get(),
            discarded,
            held: self.held.get(),
            guard_deferrals: self.guard_deferrals.get(),
            queued: enqueued.saturating_sub(sent).saturating_sub(discarded),
            release_error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_percentiles() {
        assert_eq!(
            [0, 1, 2, 3, 4, 1023, 1024, u64::MAX].map(bucket_of),
            [0, 1, 2, 2, 3, 10, 11, 31]
        );
        assert_eq!([0, 1, 2, 11].map(bucket_upper), [0, 1, 3, 2047]);
        let h = Histogram::default();
        assert_eq!(h.snapshot().p50_ns, None);
        for _ in 0..98 {
            h.record(700); // bucket 10: 512..1023
        }
        h.record(5_000); // bucket 13
        h.record(2_000_000); // bucket 21
        let s = h.snapshot();
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_ns, Some(1023));
        assert_eq!(s.p99_ns, Some(8191));
        assert_eq!(s.max_ns, Some((1 << 21) - 1));
        assert_eq!(s.percentile(1.0), Some((1 << 21) - 1));
        assert_eq!(s.percentile(0.0), Some(1023));
    }
}
