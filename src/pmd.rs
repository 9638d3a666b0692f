//! The per-core poll-mode loop, top to bottom as in DPDK's l2fwd:
//! poll an rx queue, forward each frame (and classify it when its egress port is gated),
//! buffer it per egress port or in that port's gate stage, release what the gates allow,
//! transmit.
//! A PMD core never blocks, allocates, logs or makes a syscall on this path.
use crate::classify::Classifier;
use crate::clock::{Clock, TscClock};
use crate::dpdk::{Burst, Mbuf, Mempool};
use crate::fdb::Fdb;
use crate::forward::{retag, FrameVlan, Verdict, L2};
use crate::port::{RxPort, TxPort};
use crate::stats::{CoreStats, DropReason};
use crate::tas::GateStage;
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
    /// Per ingress port: how its frames map to traffic classes.
    pub classifiers: Vec<Classifier>,
    /// Per egress port: the 802.1Qbv gate stage, if the port has a GCL (this core is then the
    /// only one transmitting to it).
    pub gates: Vec<Option<GateStage<Mbuf>>>,
    /// The ports that have a gate stage (released every iteration).
    pub gated: Vec<u16>,
    /// The gates' time base (TSC interpolating the reference clock).
    pub clock: Option<TscClock>,
    /// `clock` read once per iteration.
    now_ns: u64,
    /// Bit p: port p's gate stage queues frames (it is not bypassed). A stage's bypass can only
    /// change in its `release` (a new list, queues drained), so this is exact from one release
    /// to the next, and a frame to a port tests one bit instead of the stage.
    queuing: u64,
}

/// Where a frame came from: its class depends on the ingress port and queue.
#[derive(Clone, Copy)]
struct Origin {
    port: u16,
    queue: u16,
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
            classifiers: (0..nports).map(|_| Classifier::new()).collect(),
            gates: (0..nports).map(|_| None).collect(),
            gated: Vec::new(),
            clock: None,
            now_ns: 0,
            queuing: 0,
        }
    }

    /// The busy loop; returns when `stop` is set.
    pub fn run(&mut self) -> i32 {
        let mut rx = Burst::default();
        let shared = self.shared.clone();
        for &p in &self.gated {
            if let Some(stage) = &self.gates[usize::from(p)] {
                self.queuing |= u64::from(!stage.bypass()) << p;
            }
        }
        let mut t0 = crate::dpdk::rdtsc();
        let mut was_busy = false;
        while !shared.stop.load(Ordering::Relaxed) {
            // One TSC read per iteration: it ends the last one (busy or idle cycles) and, with
            // gates, is this one's time.
            let t = crate::dpdk::rdtsc();
            let spent = t.wrapping_sub(t0);
            t0 = t;
            if was_busy {
                self.stats.busy_cycles.add(spent);
            } else {
                self.stats.idle_cycles.add(spent);
            }
            let now = shared.now_s.load(Ordering::Relaxed);
            if let Some(c) = &self.clock {
                self.now_ns = c.ns_at(t);
            }
            let mut busy = false;
            for i in 0..self.rxqs.len() {
                // 1. poll
                let (port, queue, ref mut q) = self.rxqs[i];
                let from = Origin { port, queue };
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
                        Verdict::Unicast(out) => dirty |= self.enqueue(out, m, fv, from),
                        Verdict::Flood(mask) => dirty |= self.flood(mask, m, fv, from),
                    }
                }
                // 3. transmit what this burst produced
                self.flush(dirty, true);
            }
            // 4. schedule: release what the gates allow now, and transmit it
            let mut fresh = false;
            for k in 0..self.gated.len() {
                let p = usize::from(self.gated[k]);
                let (Some(stage), pending) = (self.gates[p].as_mut(), &mut self.pending[p]) else {
                    continue;
                };
                // Hand-over time as exact as the clock allows, read again only when there is
                // something to hand over (a bypassed stage just polls for a new list).
                if let (Some(c), false, true) = (&self.clock, fresh, stage.has_queued()) {
                    self.now_ns = c.now_ns();
                    fresh = true;
                }
                let room = crate::dpdk::BURST - pending.len();
                let released = stage.release(self.now_ns, room, |m| drop(pending.push(m)));
                self.queuing &= !(1 << p);
                self.queuing |= u64::from(!stage.bypass()) << p;
                if released > 0 {
                    busy = true;
                    self.flush(1 << p, false);
                }
            }
            self.stats.iterations.add(1);
            if busy {
                self.stats.busy_iterations.add(1);
            }
            was_busy = busy;
        }
        // Hand back what is still buffered.
        self.pending.iter_mut().for_each(|b| drop(b.drain()));
        0
    }

    /// Puts `m` on `out`'s pending burst with the tag that port needs, or into its gate stage
    /// when the port is gated; returns the dirty bit.
    #[inline]
    fn enqueue(&mut self, out: u16, mut m: Mbuf, fv: FrameVlan, from: Origin) -> u64 {
        let want = self.shared.l2.egress_tci(out, fv);
        if !retag(&mut m, fv.tagged, want) {
            self.stats.count_drop(out, DropReason::NoMbuf, 1);
            return 0;
        }
        let o = usize::from(out);
        if self.queuing & (1 << o) != 0 {
            if let Some(stage) = self.gates[o].as_mut() {
                let tc = self.classifiers[usize::from(from.port)].classify(
                    m.data(),
                    fv.tagged.then_some(fv.pcp),
                    from.queue,
                );
                // A refusal (queue full, frame too long for any window) is counted by the stage.
                let _ = stage.enqueue(m, tc, self.now_ns);
                return 0;
            }
        }
        if self.pending[o].is_full() {
            self.flush(1 << out, true);
        }
        if let Err(m) = self.pending[o].push(m) {
            drop(m);
            self.stats.count_drop(out, DropReason::TxFull, 1);
        }
        1 << out
    }

    /// Sends a copy to every port in `mask` but the last, which gets the original.
    #[inline]
    fn flood(&mut self, mask: u64, m: Mbuf, fv: FrameVlan, from: Origin) -> u64 {
        let mut dirty = 0;
        let last = 63 - mask.leading_zeros() as u16;
        let mut rest = mask & !(1u64 << last);
        while rest != 0 {
            let p = rest.trailing_zeros() as u16;
            rest &= rest - 1;
            match m.copy(&self.shared.pool) {
                Some(c) => dirty |= self.enqueue(p, c, fv, from),
                None => self.stats.count_drop(p, DropReason::NoMbuf, 1),
            }
        }
        dirty | self.enqueue(last, m, fv, from)
    }

    /// Transmits the pending bursts of the ports in `dirty`; what the NIC refuses is dropped.
    /// `around_gates`: the bursts hold frames that bypassed their port's gate stage (all gates
    /// open, nothing queued), which the stage's wire model must still hear of, so that a list
    /// arriving next finds the wire busy with them (released frames it booked itself).
    #[inline]
    fn flush(&mut self, mut dirty: u64, around_gates: bool) {
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
            if around_gates {
                if let Some(stage) = self.gates[p].as_mut() {
                    let sent = (n - left) as usize;
                    stage.bypassed(self.now_ns, sent, (bytes - left_bytes) as usize);
                }
            }
            if left > 0 {
                c.drops[DropReason::TxFull as usize].add(left);
                drop(b.drain());
            }
        }
    }
}
