//! Per-queue counters. Each handle is the only writer of its counters, so an increment is a
//! relaxed load plus a relaxed store (no `fetch_add`, no locked instruction on the fast path);
//! the control side reads them with relaxed loads at any time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A counter with exactly one writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning handle may call this (single writer), which is why a plain
    /// load/store pair is enough.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Counters of one vring, written by the PMD core owning its handle.
#[derive(Debug, Default)]
pub struct QueueMetrics {
    /// Frames moved (dequeued from guest TX, or enqueued into guest RX).
    pub packets: Counter,
    /// Frame bytes moved, virtio-net header excluded.
    pub bytes: Counter,
    /// Guest TX: chains shorter than the virtio-net header or carrying no frame.
    pub drop_short: Counter,
    /// Guest TX: frames larger than the caller's buffer.
    pub drop_oversize: Counter,
    /// Guest RX: frames not delivered for lack of guest buffers (the caller frees them).
    pub drop_no_buffer: Counter,
    /// Guest RX: frames not delivered because the queue was not ready or broken.
    pub drop_not_ready: Counter,
    /// Guest violations that broke the queue.
    pub errors: Counter,
    /// Bursts cut short by the per-burst descriptor budget (`virtqueue::BURST_DESC_BUDGET`).
    pub budget_stops: Counter,
    /// Call eventfd writes (guest interrupts).
    pub notifications: Counter,
    /// Call eventfd writes that failed (EAGAIN: the counter is full, so the guest already has an
    /// interrupt pending) and were skipped, never retried.
    pub notifications_skipped: Counter,
}

/// A plain copy of counters, summed over queues by the control side.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Frames the guest transmitted and the switch received.
    pub from_guest_packets: u64,
    pub from_guest_bytes: u64,
    /// Frames the switch delivered into the guest.
    pub to_guest_packets: u64,
    pub to_guest_bytes: u64,
    pub drop_short: u64,
    pub drop_oversize: u64,
    pub drop_no_buffer: u64,
    pub drop_not_ready: u64,
    pub queue_errors: u64,
    pub budget_stops: u64,
    pub notifications: u64,
    pub notifications_skipped: u64,
}

impl MetricsSnapshot {
    pub(crate) fn add_queue(&mut self, m: &QueueMetrics, guest_tx: bool) {
        if guest_tx {
            self.from_guest_packets += m.packets.get();
            self.from_guest_bytes += m.bytes.get();
        } else {
            self.to_guest_packets += m.packets.get();
            self.to_guest_bytes += m.bytes.get();
        }
        self.drop_short += m.drop_short.get();
        self.drop_oversize += m.drop_oversize.get();
        self.drop_no_buffer += m.drop_no_buffer.get();
        self.drop_not_ready += m.drop_not_ready.get();
        self.queue_errors += m.errors.get();
        self.budget_stops += m.budget_stops.get();
        self.notifications += m.notifications.get();
        self.notifications_skipped += m.notifications_skipped.get();
    }
}
