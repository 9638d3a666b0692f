//! What a PMD core polls and transmits to, whatever the port's kind: an ethdev queue, or a
//! vhost-user guest's virtqueue (frames copied between mbufs and guest buffers).
use crate::dpdk::{Burst, Recycle, RxQueue, TxHandle, BURST};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A receive queue owned by one PMD core. The vhost variant carries its spare burst inline on
/// purpose: these live in a short per-core Vec, and boxing would add a pointer chase per poll.
#[allow(clippy::large_enum_variant)]
pub enum RxPort {
    Eth(RxQueue),
    Vhost(VhostRx),
}

impl RxPort {
    /// Receives up to a burst into the empty `b`; a vhost-user queue copies into mbufs from
    /// `recycle` first.
    #[inline]
    pub fn rx_burst(&mut self, b: &mut Burst, recycle: &mut Recycle) -> usize {
        match self {
            RxPort::Eth(q) => q.rx_burst(b),
            RxPort::Vhost(q) => q.rx_burst(b, recycle),
        }
    }

    /// A vhost-user queue's notification decision for this iteration's burst, if it had one
    /// (see [`vhost::RxQueue::settle`]); nothing for an ethdev queue.
    #[inline]
    pub fn settle(&mut self) {
        if let RxPort::Vhost(q) = self {
            q.q.settle();
        }
    }
}

/// A transmit path to a port, as one PMD core holds it.
#[derive(Clone)]
pub enum TxPort {
    Eth(TxHandle),
    Vhost(VhostTx),
}

impl TxPort {
    /// Sends what it can of `b` on tx queue `queue` (a guest RX queue of a vhost-user port), as
    /// a gate control list's `queues` map asks for a class, or ([`crate::tas::DEFAULT_TXQ`])
    /// this core's own; what was not taken stays in `b` (the caller drops and counts it).
    /// `steer`, unless it is `DEFAULT_TXQ`: the rx queue the frames came in on, which picks a
    /// vhost-user port's queue in place of this core's own (see [`VhostTx::tx_burst_from`]);
    /// an ethdev port keeps this core's queue (its queues are the cores' own, unlocked).
    /// A vhost-user port copies the frames out and leaves their mbufs to `recycle`.
    #[inline]
    pub fn tx_burst_on(
        &self,
        queue: u16,
        steer: u16,
        b: &mut Burst,
        recycle: &mut Recycle,
    ) -> usize {
        match self {
            TxPort::Eth(q) => q.tx_burst_on(queue, b),
            TxPort::Vhost(q) => q.tx_burst_from(queue, steer, b, recycle),
        }
    }

    /// The notification decisions for the guest RX queues this path sent to since the last
    /// call (see [`vhost::TxQueue::settle`]); nothing for an ethdev port.
    #[inline]
    pub fn settle(&self) {
        if let TxPort::Vhost(q) = self {
            q.settle();
        }
    }
}

/// Guest TX → mbufs. Keeps a burst of spare mbufs so an idle guest costs no allocation: the
/// guest's frames are copied straight into their data rooms, and only the used ones are
/// replaced (from the core's recycled mbufs, then the pool).
/// (The spares go back to the pool when the port is dropped, by the PMD core at its end or by
/// the control thread with a replaced port set; the control thread holds the pool until both
/// are done.)
pub struct VhostRx {
    q: vhost::RxQueue,
    spare: Burst,
}

impl VhostRx {
    pub fn new(q: vhost::RxQueue) -> VhostRx {
        VhostRx {
            q,
            spare: Burst::default(),
        }
    }

    #[inline]
    fn rx_burst(&mut self, out: &mut Burst, recycle: &mut Recycle) -> usize {
        if !self.q.has_pending() {
            return 0;
        }
        if !self.spare.is_full() && !recycle.refill(&mut self.spare) {
            return 0; // pool exhausted: leave the frames in the guest's ring
        }
        let mut lens = [0usize; BURST];
        let n = {
            let mut bufs: [&mut [u8]; BURST] = Default::default();
            let mut rooms = self.spare.rooms_mut();
            for b in bufs.iter_mut() {
                match rooms.next() {
                    Some(r) => *b = r,
                    None => break,
                }
            }
            self.q.dequeue_burst_deferred(&mut bufs, &mut lens)
        };
        for (i, &len) in lens.iter().enumerate().take(n) {
            if let Some(m) = self.spare.get_mut(i) {
                m.set_len(len as u16);
            }
        }
        self.spare.move_front_to(n, out);
        n
    }
}

/// Mbufs → guest RX. Always under a spin lock: a guest may enable fewer queues than there are
/// PMD cores, and cores then share one; uncontended, the lock is one CAS per burst.
#[derive(Clone)]
pub struct VhostTx {
    qs: Arc<Vec<SpinLock<vhost::TxQueue>>>,
    /// The queue this core prefers (core index modulo queue pairs).
    first: usize,
    /// Bit i: this core sent a burst to queue i since its last `settle` (a device has at most
    /// 128 queue pairs).
    unsettled: std::cell::Cell<u128>,
}

impl VhostTx {
    pub fn new(qs: Arc<Vec<SpinLock<vhost::TxQueue>>>, first: usize) -> VhostTx {
        VhostTx {
            qs,
            first,
            unsettled: std::cell::Cell::new(0),
        }
    }

    /// Settles the queues this core sent to since the last call, each under its lock.
    #[inline]
    fn settle(&self) {
        let mut m = self.unsettled.take();
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            if let Some(q) = self.qs.get(i) {
                q.lock().settle();
            }
        }
    }

    /// Sends on guest RX queue `queue` (a class's, from a gate control list's queue map), else
    /// on the one numbered as the rx queue the frames came in on (`steer`, modulo the queue
    /// pairs), else on this core's; if the guest did not enable that one, on the next one it
    /// did. Steering by the ingress queue spreads what a multiqueue peer sends over as many of
    /// this guest's queues (and so its vCPUs) while a flow, which comes in on one queue, stays
    /// on one queue and in order; with one queue pair per core it also keeps cores off each
    /// other's locks. (virtio-net's automatic receive steering, per flow, needs a flow table.)
    #[inline]
    fn tx_burst_from(&self, queue: u16, steer: u16, b: &mut Burst, recycle: &mut Recycle) -> usize {
        let n = self.qs.len();
        let first = if usize::from(queue) < n {
            usize::from(queue)
        } else if steer != crate::tas::DEFAULT_TXQ {
            usize::from(steer) % n
        } else {
            self.first
        };
        let mut frames: [&[u8]; BURST] = [&[]; BURST];
        let len = b.len();
        for (i, f) in frames.iter_mut().enumerate().take(len) {
            *f = b.data(i).unwrap_or(&[]);
        }
        // The preferred queue if the guest enabled it, else the first one that is.
        for k in 0..n {
            let i = (first + k) % n;
            let mut q = self.qs[i].lock();
            if q.sync() {
                let sent = q.enqueue_burst_deferred(&frames[..len]);
                drop(q);
                self.unsettled
                    .set(self.unsettled.get() | 1u128 << (i % 128));
                recycle.take_front(b, sent);
                return sent;
            }
        }
        0
    }
}

/// A minimal spin lock for the per-burst sharing of a transmit queue (never held across more
/// than one burst, never taken on the control side).
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: std::cell::UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `locked`.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the value; T: Send suffices.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub fn new(v: T) -> SpinLock<T> {
        SpinLock {
            locked: AtomicBool::new(false),
            value: std::cell::UnsafeCell::new(v),
        }
    }

    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        SpinGuard { l: self }
    }
}

pub struct SpinGuard<'a, T> {
    l: &'a SpinLock<T>,
}

impl<T> std::ops::Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.l.value.get() }
    }
}

impl<T> std::ops::DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock exclusively.
        unsafe { &mut *self.l.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.l.locked.store(false, Ordering::Release);
    }
}
