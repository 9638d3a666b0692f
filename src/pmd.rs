//! The per-core poll-mode loop, top to bottom as in DPDK's l2fwd:
//! poll an rx queue, classify and forward each frame, buffer it per egress port, transmit.
//! A PMD core never blocks, allocates, logs or makes a syscall on this path.
use crate::dpdk::{Burst, Mbuf, Mempool};
use crate::fdb::Fdb;
use crate::forward::{retag, FrameVlan, Verdict, L2};
use crate::port::{RxPort, TxPort};
use crate::stats::{CoreStats, DropReason};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// What every PMD core shares (read-only on the fast path).
pub struct Shared {
    pub l2: L2,
    pub fdb: Fdb,
    pub pool: Arc<Mempool>,
    /// Set by the control thread to end the loops.
    pub stop: AtomicBool,
    /// Seconds since start, advanced by the control thread (the FDB's clock).
    pub now_s: AtomicU32,
}

/// One PMD core's state: the rx queues it owns, a tx handle and a pending burst per port.
pub struct PmdCore {
    pub lcore: u32,
    /// (port index, queue index, queue).
    pub rxqs: Vec<(u16, u16, RxPort)>,
    pub tx: Vec<Option<TxPort>>,
    pub pending: Vec<Burst>,
    pub stats: Arc<CoreStats>,
    pub shared: Arc<Shared>,
}

impl PmdCore {
    pub fn new(lcore: u32, shared: Arc<Shared>, stats: Arc<CoreStats>, nports: usize) -> PmdCore {
        PmdCore {
            lcore,
            rxqs: Vec::new(),
            tx: (0..nports).map(|_| None).collect(),
            pending: (0..nports).map(|_| Burst::default()).collect(),
            stats,
            shared,
        }
    }

    /// The busy loop; returns when `stop` is set.
    pub fn run(&mut self) -> i32 {
        let mut rx = Burst::default();
        let shared = self.shared.clone();
        while !shared.stop.load(Ordering::Relaxed) {
            let now = shared.now_s.load(Ordering::Relaxed);
            let mut busy = false;
            for i in 0..self.rxqs.len() {
                // 1. poll
                let (port, _queue, ref mut q) = self.rxqs[i];
                if q.rx_burst(&mut rx) == 0 {
                    continue;
                }
                busy = true;
                let mut dirty = 0u64;
                for m in rx.drain() {
                    let len = m.len() as u64;
                    let c = &self.stats.ports[usize::from(port)];
                    c.rx_packets.add(1);
                    c.rx_bytes.add(len);
                    if m.segments() != 1 {
                        self.stats.count_drop(port, DropReason::Malformed, 1);
                        continue;
                    }
                    // 2. classify + forward
                    let (verdict, fv) = shared.l2.decide(&shared.fdb, port, m.data(), now);
                    match verdict {
                        Verdict::Drop(r) => self.stats.count_drop(port, r, 1),
                        Verdict::Unicast(out) => dirty |= self.enqueue(out, m, fv),
                        Verdict::Flood(mask) => dirty |= self.flood(mask, m, fv),
                    }
                }
                // 3. transmit what this burst produced
                self.flush(dirty);
            }
            self.stats.iterations.add(1);
            if busy {
                self.stats.busy_iterations.add(1);
            }
        }
        // Hand back what is still buffered.
        self.pending.iter_mut().for_each(|b| drop(b.drain()));
        0
    }

    /// Puts `m` on `out`'s pending burst with the tag that port needs; returns the dirty bit.
    #[inline]
    fn enqueue(&mut self, out: u16, mut m: Mbuf, fv: FrameVlan) -> u64 {
        let want = self.shared.l2.egress_tci(out, fv);
        if !retag(&mut m, fv.tagged, want) {
            self.stats.count_drop(out, DropReason::NoMbuf, 1);
            return 0;
        }
        let o = usize::from(out);
        if self.pending[o].is_full() {
            self.flush(1 << out);
        }
        if let Err(m) = self.pending[o].push(m) {
            drop(m);
            self.stats.count_drop(out, DropReason::TxFull, 1);
        }
        1 << out
    }

    /// Sends a copy to every port in `mask` but the last, which gets the original.
    #[inline]
    fn flood(&mut self, mask: u64, m: Mbuf, fv: FrameVlan) -> u64 {
        let mut dirty = 0;
        let last = 63 - mask.leading_zeros() as u16;
        let mut rest = mask & !(1u64 << last);
        while rest != 0 {
            let p = rest.trailing_zeros() as u16;
            rest &= rest - 1;
            match m.copy(&self.shared.pool) {
                Some(c) => dirty |= self.enqueue(p, c, fv),
                None => self.stats.count_drop(p, DropReason::NoMbuf, 1),
            }
        }
        dirty | self.enqueue(last, m, fv)
    }

    /// Transmits the pending bursts of the ports in `dirty`; what the NIC refuses is dropped.
    #[inline]
    fn flush(&mut self, mut dirty: u64) {
        while dirty != 0 {
            let p = dirty.trailing_zeros() as usize;
            dirty &= dirty - 1;
            let b = &mut self.pending[p];
            if b.is_empty() {
                continue;
            }
            let c = &self.stats.ports[p];
            let (n, bytes) = (b.len() as u64, b.bytes());
            if let Some(tx) = &self.tx[p] {
                tx.tx_burst(b);
            }
            // Whatever is left was refused by the driver (ring full) or has no tx queue.
            let (left, left_bytes) = (b.len() as u64, b.bytes());
            c.tx_packets.add(n - left);
            c.tx_bytes.add(bytes - left_bytes);
            if left > 0 {
                c.drops[DropReason::TxFull as usize].add(left);
                drop(b.drain());
            }
        }
    }
}
