//! PMD-side queue handles and the publication scheme that hands them configuration.
//!
//! The control thread never touches a running ring and a PMD core never takes a lock on its fast
//! path. Each vring has a [`QueueShared`] with:
//! - `slot`: the current [`QueueConfig`] (`Arc`, immutable: ring pointers, the guest memory they
//!   point into, call eventfd, negotiated header layout, readiness), replaced whole by the control
//!   side, and a generation counter `gen` bumped on every replacement;
//! - `acked_gen`, `last_avail`: written by the PMD handle (single writer, plain stores).
//!
//! Per burst the handle does one acquire load of `gen`. Only when it changed does it take the slot
//! lock (`try_lock`: if the control side holds it, the burst is skipped), clone the new `Arc`, drop
//! its old one and store `acked_gen`. That point — the start of a burst, when the handle holds no
//! pointer into guest memory — is the quiescent point: after `acked_gen == gen` the handle can no
//! longer touch the old table's memory.
//!
//! Reclamation: the control side keeps every replaced config in a retired list and drops it only
//! once its `Arc` is unique (`strong_count == 1`), so unmapping (munmap) and closing old call fds
//! happen on the control thread, never on a PMD core, and never while a core may still use them.
//! `GET_VRING_BASE` waits for `acked_gen` to learn the exact ring position.

use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::VirtqError;
use crate::guestfd::GuestEventfd;
use crate::memory::GuestMemory;
use crate::metrics::QueueMetrics;
use crate::net::{self, Burst, VqState};
use crate::virtqueue::{need_event, Ring, VRING_AVAIL_F_NO_INTERRUPT, VRING_USED_F_NO_NOTIFY};

/// The immutable configuration of one vring as the PMD sees it.
#[derive(Debug, Default)]
pub struct QueueConfig {
    /// Keeps `ring`'s pointers valid.
    pub(crate) mem: Option<Arc<GuestMemory>>,
    /// Present only when the queue is ready to be processed.
    pub(crate) ring: Option<Ring>,
    /// Changes each time the frontend (re)starts the ring; the handle then resets its indices.
    pub(crate) start_id: u64,
    /// Ring position to start from (SET_VRING_BASE).
    pub(crate) base: u16,
    pub(crate) call: Option<Arc<GuestEventfd>>,
    pub(crate) hdr_len: usize,
    pub(crate) mrg: bool,
    pub(crate) event_idx: bool,
}

// SAFETY: `ring` holds raw pointers into `mem`, which this struct keeps alive; the pointed-to
// memory is shared guest memory accessed only through atomics/volatile/copies.
unsafe impl Send for QueueConfig {}
// SAFETY: as above; QueueConfig is immutable after construction.
unsafe impl Sync for QueueConfig {}

impl QueueConfig {
    /// Whether publishing `self` over `other` would change anything for the PMD.
    pub(crate) fn same_as(&self, other: &QueueConfig) -> bool {
        let ptr_eq = |a: &Option<Arc<GuestMemory>>, b: &Option<Arc<GuestMemory>>| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        let fd_eq = match (&self.call, &other.call) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        ptr_eq(&self.mem, &other.mem)
            && fd_eq
            && self.ring == other.ring
            && self.start_id == other.start_id
            && self.base == other.base
            && self.hdr_len == other.hdr_len
            && self.mrg == other.mrg
            && self.event_idx == other.event_idx
    }
}

/// State shared between the control side and the one PMD handle of a vring.
#[derive(Debug)]
pub struct QueueShared {
    pub(crate) index: u16,
    gen: AtomicU64,
    slot: Mutex<Arc<QueueConfig>>,
    acked_gen: AtomicU64,
    last_avail: AtomicU32,
    attached: AtomicBool,
    /// Whether the handle's current config lets it touch the ring (written under the slot lock).
    running: AtomicBool,
    broken: AtomicBool,
    pub(crate) metrics: QueueMetrics,
}

impl QueueShared {
    pub(crate) fn new(index: u16) -> Self {
        QueueShared {
            index,
            gen: AtomicU64::new(0),
            slot: Mutex::new(Arc::new(QueueConfig::default())),
            acked_gen: AtomicU64::new(0),
            last_avail: AtomicU32::new(0),
            attached: AtomicBool::new(false),
            running: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            metrics: QueueMetrics::default(),
        }
    }

    pub(crate) fn current(&self) -> Arc<QueueConfig> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Control side: installs `cfg` unless it changes nothing. Returns the replaced config, which
    /// the caller must retire (keep until unique) rather than drop.
    pub(crate) fn publish(&self, cfg: QueueConfig) -> Option<Arc<QueueConfig>> {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if slot.same_as(&cfg) {
            return None;
        }
        let old = std::mem::replace(&mut *slot, Arc::new(cfg));
        self.gen.fetch_add(1, Ordering::Release);
        Some(old)
    }

    /// Control side, after publishing a config that stops the ring: true once the PMD handle
    /// cannot touch the ring any more — no handle, or it acknowledged the latest config, or the
    /// config it runs on is itself not running (a handle that is not polled because its queue is
    /// disabled then does not delay GET_VRING_BASE). `running` is stored under the slot lock, so
    /// a handle that picked up a running config before our publication is seen as running.
    pub(crate) fn quiescent(&self) -> bool {
        !self.attached.load(Ordering::Acquire)
            || !self.running.load(Ordering::Acquire)
            || self.acked_gen.load(Ordering::Acquire) == self.gen.load(Ordering::Acquire)
    }

    /// The ring position last published by the PMD handle.
    pub(crate) fn last_avail(&self) -> u16 {
        self.last_avail.load(Ordering::Acquire) as u16
    }

    pub(crate) fn set_last_avail(&self, v: u16) {
        self.last_avail.store(u32::from(v), Ordering::Release);
    }

    pub(crate) fn attached(&self) -> bool {
        self.attached.load(Ordering::Acquire)
    }

    /// Control side: the frontend (re)started the ring or went away, so a violation of the
    /// previous start is history (the handle forgets its own copy at its next resync).
    pub(crate) fn clear_broken(&self) {
        self.broken.store(false, Ordering::Relaxed);
    }

    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    pub fn metrics(&self) -> &QueueMetrics {
        &self.metrics
    }
}

/// The part common to both handle kinds.
#[derive(Debug)]
struct Handle {
    shared: Arc<QueueShared>,
    cfg: Arc<QueueConfig>,
    seen_gen: u64,
    st: VqState,
    broken: Option<VirtqError>,
    error_reported: bool,
}

impl Handle {
    fn new(shared: Arc<QueueShared>) -> Self {
        shared.attached.store(true, Ordering::Release);
        // Continue where a previous handle of this vring stopped (its Drop published the
        // position), on the current start of the ring; `seen_gen` forces a first resync.
        let cfg = shared.current();
        let pos = shared.last_avail();
        Handle {
            shared,
            cfg,
            seen_gen: u64::MAX,
            st: VqState {
                last_avail: pos,
                used_idx: pos,
                ..VqState::default()
            },
            broken: None,
            error_reported: false,
        }
    }

    /// The quiescent point: picks up a newly published config. One acquire load when nothing
    /// changed. Returns whether the queue may be processed now.
    #[inline]
    fn sync(&mut self) -> bool {
        let g = self.shared.gen.load(Ordering::Acquire);
        if g != self.seen_gen {
            self.resync();
        }
        self.cfg.ring.is_some() && self.broken.is_none()
    }

    #[cold]
    fn resync(&mut self) {
        // What deferred bursts owe is decided on the ring they published on (its memory stays
        // mapped until this handle lets go of the config).
        self.settle();
        let Ok(slot) = self.shared.slot.try_lock() else {
            return; // the control side is publishing; retry next burst
        };
        let cfg = slot.clone();
        let g = self.shared.gen.load(Ordering::Acquire);
        self.shared
            .running
            .store(cfg.ring.is_some(), Ordering::Release);
        drop(slot);
        if cfg.start_id != self.cfg.start_id {
            // The frontend (re)started the ring: start from its base, forget old errors.
            self.st = VqState {
                last_avail: cfg.base,
                used_idx: cfg.base,
                ..VqState::default()
            };
            self.broken = None;
            self.error_reported = false;
            self.shared.broken.store(false, Ordering::Relaxed);
            self.shared.set_last_avail(cfg.base);
        }
        if let Some(ring) = &cfg.ring {
            // Poll mode: we never read the kick eventfd, so ask the driver not to kick (§2.6.8):
            // with EVENT_IDX, an avail_event a full idx wrap away; otherwise NO_NOTIFY.
            if cfg.event_idx {
                ring.set_avail_event(self.st.last_avail.wrapping_sub(1));
            } else {
                ring.set_used_flags(VRING_USED_F_NO_NOTIFY);
            }
        }
        self.st.hint = 0;
        // Dropping the old Arc here never unmaps: the control side still holds it (retired list).
        self.cfg = cfg;
        self.seen_gen = g;
        self.shared.acked_gen.store(g, Ordering::Release);
    }

    /// Runs one burst on the current config: sync, `f`, one used-idx publication, and the
    /// notification decision, or with `defer` only a note that it is owed (see `settle`).
    #[inline]
    fn burst<R>(
        &mut self,
        defer: bool,
        f: impl FnOnce(&Burst<'_>, &mut VqState) -> (R, Option<VirtqError>),
    ) -> Option<R> {
        if !self.sync() {
            return None;
        }
        let Handle {
            shared,
            cfg,
            st,
            broken,
            error_reported,
            ..
        } = self;
        let (Some(ring), Some(mem)) = (&cfg.ring, &cfg.mem) else {
            return None;
        };
        let start = st.used_idx;
        let b = Burst {
            ring,
            mem,
            hdr_len: cfg.hdr_len,
            mrg: cfg.mrg,
            metrics: &shared.metrics,
        };
        let (r, err) = f(&b, st);
        if publish(ring, st, shared, start) && cfg.call.is_some() {
            if defer {
                st.unsettled_from.get_or_insert(start);
            } else {
                // Covering what deferred bursts before it published, too.
                let old = st.unsettled_from.take().unwrap_or(start);
                notify(ring, cfg, st, shared, old);
            }
        }
        if let Some(e) = err {
            *broken = Some(e);
            // Zeroes read from memory whose file shrank (see `guard`) are no violation of the
            // guest's: the queue just stops, and the control side reports the memory fault.
            if mem.faulted() {
                *error_reported = true;
            } else {
                shared.metrics.errors.add(1);
                shared.broken.store(true, Ordering::Relaxed);
            }
        }
        Some(r)
    }

    /// Takes the notification decision the deferred bursts since the last call owe, for all
    /// of them at once (the range of used entries they published, as Linux vhost does for
    /// batched used entries).
    #[inline]
    fn settle(&mut self) {
        let Some(old) = self.st.unsettled_from.take() else {
            return;
        };
        if let Some(ring) = &self.cfg.ring {
            notify(ring, &self.cfg, &mut self.st, &self.shared, old);
        }
    }

    fn take_error(&mut self) -> Option<VirtqError> {
        match self.broken {
            Some(e) if !self.error_reported => {
                self.error_reported = true;
                Some(e)
            }
            _ => None,
        }
    }
}

/// Publishes the used idx once for the burst; returns whether it moved.
#[inline]
fn publish(ring: &Ring, st: &VqState, shared: &QueueShared, start_used: u16) -> bool {
    let new = st.used_idx;
    if new == start_used {
        return false;
    }
    ring.publish_used_idx(new);
    shared.set_last_avail(st.last_avail);
    true
}

/// Interrupts the guest if it asked to be for the used entries from `old` to the used idx.
#[inline]
fn notify(ring: &Ring, cfg: &QueueConfig, st: &mut VqState, shared: &QueueShared, old: u16) {
    let new = st.used_idx;
    let Some(call) = &cfg.call else { return };
    // The driver's event fields must be read after our used idx store is visible (§2.7.10):
    // a full barrier, as in Linux vhost's vhost_notify. It waits until every store before it
    // is visible: after a guest RX burst, the frames' copies into lines the driver had.
    fence(Ordering::SeqCst);
    let notify = if cfg.event_idx {
        let valid = std::mem::replace(&mut st.signalled_valid, true);
        !valid || need_event(ring.used_event(), new, old)
    } else {
        ring.avail_flags() & VRING_AVAIL_F_NO_INTERRUPT == 0
    };
    if notify {
        // Skipped, and counted, when the counter is full (already signalled) or the frontend
        // made the fd blocking: see `guestfd` for why this never blocks the core for long.
        shared.metrics.notifications.add(1);
        if !call.signal() {
            shared.metrics.notifications_skipped.add(1);
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.settle();
        self.shared.set_last_avail(self.st.last_avail);
        self.shared.running.store(false, Ordering::Release);
        self.shared.attached.store(false, Ordering::Release);
    }
}

/// Port-receive handle: drains the guest's transmit vring (odd index). Owned by one PMD core.
#[derive(Debug)]
pub struct RxQueue(Handle);

/// Port-transmit handle: fills the guest's receive vring (even index). Owned by one PMD core;
/// several cores transmitting to one guest queue must serialise on it themselves.
#[derive(Debug)]
pub struct TxQueue(Handle);

macro_rules! common_handle_api {
    ($t:ty) => {
        impl $t {
            pub(crate) fn new(shared: Arc<QueueShared>) -> Self {
                Self(Handle::new(shared))
            }

            /// The vring index in vhost-user numbering.
            pub fn vring_index(&self) -> u16 {
                self.0.shared.index
            }

            /// Picks up control-side changes (the quiescent point) and says whether the queue is
            /// usable: ring started and enabled, memory mapped, not broken. The burst functions
            /// call it themselves; a core that stops polling a queue should still call this
            /// regularly so the control side's GET_VRING_BASE does not wait for it.
            pub fn sync(&mut self) -> bool {
                self.0.sync()
            }

            /// Interrupts the guest if it asked to be for what the deferred bursts since the last
            /// call delivered (nothing when none did). The decision needs a full barrier after
            /// the used idx store, which waits until every store before it is visible (after a
            /// guest RX burst, the copies into lines the driver's core had): made once for all
            /// the queues a loop iteration moved, after the last burst, it waits once instead
            /// of after each burst. Call it at least once per loop iteration on every queue
            /// that had a deferred burst, or a guest that wants interrupts waits for them.
            #[inline]
            pub fn settle(&mut self) {
                self.0.settle()
            }

            /// The violation that broke this queue, returned once so it is logged once.
            pub fn take_error(&mut self) -> Option<VirtqError> {
                self.0.take_error()
            }

            /// The violation that broke this queue, if any (until the frontend restarts it).
            pub fn error(&self) -> Option<VirtqError> {
                self.0.broken
            }

            pub fn metrics(&self) -> &QueueMetrics {
                &self.0.shared.metrics
            }
        }
    };
}
common_handle_api!(RxQueue);
common_handle_api!(TxQueue);

impl RxQueue {
    /// Whether the guest has posted frames not yet dequeued: a poll that finds none can skip
    /// preparing buffers. Also the quiescent point, like a burst.
    #[inline]
    pub fn has_pending(&mut self) -> bool {
        if !self.0.sync() {
            return false;
        }
        match &self.0.cfg.ring {
            Some(ring) => ring.avail_idx() != self.0.st.last_avail,
            None => false,
        }
    }

    /// Guest TX → frames. Copies up to `min(bufs.len(), lens.len(), 32)` frames, virtio-net
    /// header stripped, into `bufs[i][..lens[i]]` and returns how many. Chains too short for a
    /// header or too long for their buffer are consumed and counted as drops. No allocation, no
    /// syscall except at most one eventfd write.
    pub fn dequeue_burst(&mut self, bufs: &mut [&mut [u8]], lens: &mut [usize]) -> usize {
        self.0
            .burst(false, |b, st| net::dequeue(b, st, bufs, lens))
            .unwrap_or(0)
    }

    /// [`Self::dequeue_burst`] that leaves the guest's notification to the next
    /// [`Self::settle`], which the caller must make.
    pub fn dequeue_burst_deferred(&mut self, bufs: &mut [&mut [u8]], lens: &mut [usize]) -> usize {
        self.0
            .burst(true, |b, st| net::dequeue(b, st, bufs, lens))
            .unwrap_or(0)
    }
}

impl TxQueue {
    /// Frames → guest RX. Delivers a prefix of `frames` (at most 32) and returns its length; the
    /// rest did not fit (no guest buffers, queue not ready or broken) and is the caller's to free.
    /// With MRG_RXBUF a frame may span several guest buffers (`num_buffers`).
    pub fn enqueue_burst(&mut self, frames: &[&[u8]]) -> usize {
        self.enqueue(false, frames)
    }

    /// [`Self::enqueue_burst`] that leaves the guest's notification to the next
    /// [`Self::settle`], which the caller must make.
    pub fn enqueue_burst_deferred(&mut self, frames: &[&[u8]]) -> usize {
        self.enqueue(true, frames)
    }

    #[inline]
    fn enqueue(&mut self, defer: bool, frames: &[&[u8]]) -> usize {
        match self.0.burst(defer, |b, st| net::enqueue(b, st, frames)) {
            Some(n) => n,
            None => {
                let n = frames.len().min(net::MAX_BURST) as u64;
                self.0.shared.metrics.drop_not_ready.add(n);
                0
            }
        }
    }
}
