//! The per-core poll-mode loop, top to bottom as in DPDK's l2fwd:
//! take a new port set if one was posted, poll an rx queue, forward each frame (and classify it
//! when its egress port is gated), buffer it per egress port, in that port's gate stage, or on
//! the ring to the core that owns the port's gate; take what other cores handed over for the
//! gates this core owns; release what the gates allow, transmit.
//! A PMD core never blocks, allocates, logs or makes a syscall on this path.
use crate::classify::{Classifier, Tc};
use crate::clock::{Clock, TscClock};
use crate::dpdk::{Burst, Mbuf, Mempool, Recycle};
use crate::fdb::Fdb;
use crate::forward::{retag, FrameVlan, Verdict, L2, MAX_PORTS};
use crate::port::{RxPort, TxPort};
use crate::stats::{CoreStats, DropReason};
use crate::tas::handoff::{Consumer, Producer};
use crate::tas::mailbox::Slot;
use crate::tas::{GateStage, DEFAULT_TXQ};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// What every PMD core shares (read-only on the fast path).
pub struct Shared {
    pub fdb: Fdb,
    pub pool: Arc<Mempool>,
    /// Set by the control thread to end the loops.
    pub stop: AtomicBool,
    /// Seconds since start, advanced by the control thread (the FDB's clock).
    pub now_s: AtomicU32,
}

/// One PMD core's share of the port set: built whole by the control thread, swapped in by the
/// core at the top of a loop iteration, handed back to be freed on the control thread. Indexed
/// by port id (a slot of at most [`MAX_PORTS`]); a free slot has no tx path and is in no VLAN.
pub struct CorePorts {
    /// The rx queues this core polls: (port id, queue index, queue). `None` in a newly posted
    /// set means "the queue you poll now": the core moves it over when it swaps (an rx queue
    /// has exactly one owner, so the control thread cannot hand out a second copy).
    pub rxqs: Vec<(u16, u16, Option<RxPort>)>,
    /// Per port: this core's tx path.
    pub tx: Vec<Option<TxPort>>,
    /// Per ingress port: how its frames map to traffic classes.
    pub classifiers: Vec<Classifier>,
    /// The ports' VLAN modes and, per VLAN, the ports that carry it (flood sets).
    pub l2: L2,
}

impl CorePorts {
    /// Takes the rx queues this set leaves as `None` out of `current` (the set the core polls).
    /// What stays in `current` belongs to ports that left this core.
    fn carry_rx_from(&mut self, current: &mut CorePorts) {
        for (p, q, slot) in self.rxqs.iter_mut().filter(|e| e.2.is_none()) {
            *slot = current
                .rxqs
                .iter_mut()
                .find(|(cp, cq, _)| cp == p && cq == q)
                .and_then(|e| e.2.take());
        }
    }
}

/// How port sets travel between the control thread and one PMD core, without locks: the
/// control thread posts a new set in `new` only once it has taken back the set that the
/// previous post replaced from `old` (one change in flight per core), so neither side ever
/// finds the other's slot occupied, and the core never frees anything.
#[derive(Default)]
pub struct PortsMailbox {
    new: Slot<CorePorts>,
    old: Slot<CorePorts>,
}

impl PortsMailbox {
    /// Control side: posts `ports`; the previous post must have been taken back (`take_old`).
    pub fn post(&self, ports: Box<CorePorts>) {
        let unread = self.new.put(ports);
        debug_assert!(unread.is_none(), "a port set posted while one is in flight");
    }

    /// Control side: the set the core stopped using when it took the last post (it has moved
    /// on: nothing of it is in use any more).
    pub fn take_old(&self) -> Option<Box<CorePorts>> {
        self.old.take()
    }
}

/// One PMD core's state: its port set, a pending burst and (when gated) a gate stage per port.
pub struct PmdCore {
    pub lcore: u32,
    /// This core's rx queues, tx paths, classifiers and L2 configuration.
    ports: Box<CorePorts>,
    /// Where a new port set arrives and the replaced one goes back.
    mailbox: Arc<PortsMailbox>,
    pub pending: Vec<Burst>,
    /// Per port: the tx queue of what `pending` holds ([`DEFAULT_TXQ`] but while a gate stage
    /// hands over frames of a class its list maps to a queue of its own).
    pending_txq: Vec<u16>,
    /// While a burst from an rx queue is forwarded: that queue's number, which picks the guest
    /// RX queue of a vhost-user port it goes to; [`DEFAULT_TXQ`] otherwise.
    steer: u16,
    pub stats: Arc<CoreStats>,
    pub shared: Arc<Shared>,
    /// Per egress port: the 802.1Qbv gate stage, if the port has a GCL and this core owns it
    /// (this core is then the only one transmitting to the port).
    pub gates: Vec<Option<GateStage<Mbuf>>>,
    /// The ports whose gate stage this core runs (released every iteration).
    pub gated: Vec<u16>,
    /// Per egress port: the ring to the core that owns the port's gate, if another core does.
    pub handoff: Vec<Option<Producer<(Mbuf, Tc)>>>,
    /// The rings from other cores into the gates this core owns: (gated port, ring).
    pub inbound: Vec<(u16, Consumer<(Mbuf, Tc)>)>,
    /// The gates' time base (TSC interpolating the reference clock).
    pub clock: Option<TscClock>,
    /// `clock` read once per iteration.
    now_ns: u64,
    /// The mbufs this core's copies to guests left, for its next copies from guests.
    recycle: Recycle,
    /// Bit p: a frame to port p goes through its gate: the stage here queues frames (it is not
    /// bypassed), or another core owns the port's gate. A stage's bypass can only change in its
    /// `release` (a new list, queues drained), so this is exact from one release to the next,
    /// and a frame to a port tests one bit instead of the stage.
    gating: u64,
}

/// Where a frame came from: its class depends on the ingress port and queue.
#[derive(Clone, Copy)]
struct Origin {
    port: u16,
    queue: u16,
}

impl PmdCore {
    /// A core starting on `ports`, with room for every port slot.
    pub fn new(
        lcore: u32,
        shared: Arc<Shared>,
        stats: Arc<CoreStats>,
        ports: Box<CorePorts>,
        mailbox: Arc<PortsMailbox>,
    ) -> PmdCore {
        PmdCore {
            lcore,
            ports,
            mailbox,
            pending: (0..MAX_PORTS).map(|_| Burst::default()).collect(),
            pending_txq: vec![DEFAULT_TXQ; MAX_PORTS],
            steer: DEFAULT_TXQ,
            stats,
            gates: (0..MAX_PORTS).map(|_| None).collect(),
            gated: Vec::new(),
            handoff: (0..MAX_PORTS).map(|_| None).collect(),
            inbound: Vec::new(),
            clock: None,
            now_ns: 0,
            gating: 0,
            recycle: Recycle::new(shared.pool.clone()),
            shared,
        }
    }

    /// The busy loop; returns when `stop` is set.
    pub fn run(&mut self) -> i32 {
        let mut rx = Burst::default();
        let shared = self.shared.clone();
        for &p in &self.gated {
            if let Some(stage) = &self.gates[usize::from(p)] {
                self.gating |= u64::from(!stage.bypass()) << p;
            }
        }
        for (p, h) in self.handoff.iter().enumerate() {
            self.gating |= u64::from(h.is_some()) << p;
        }
        let stall = crate::dpdk::tsc_hz().saturating_mul(crate::stats::STALL_NS) / 1_000_000_000;
        let mut t0 = crate::dpdk::rdtsc();
        let mut was_busy = false;
        while !shared.stop.load(Ordering::Relaxed) {
            // One TSC read per iteration: it ends the last one (busy, idle, or off its CPU) and,
            // with gates, is this one's time.
            let t = crate::dpdk::rdtsc();
            let spent = t.wrapping_sub(t0);
            t0 = t;
            if spent > stall {
                self.stats.stalled_cycles.add(spent);
            } else if was_busy {
                self.stats.busy_cycles.add(spent);
            } else {
                self.stats.idle_cycles.add(spent);
            }
            let now = shared.now_s.load(Ordering::Relaxed);
            if let Some(c) = &self.clock {
                self.now_ns = c.ns_at(t);
            }
            // 0. the quiescent point: no frame is in hand, every pending burst is empty.
            if let Some(ports) = self.mailbox.new.take() {
                self.adopt(ports);
            }
            let mut busy = false;
            for i in 0..self.ports.rxqs.len() {
                // 1. poll
                let (port, queue, Some(ref mut q)) = self.ports.rxqs[i] else {
                    continue;
                };
                let from = Origin { port, queue };
                if q.rx_burst(&mut rx, &mut self.recycle) == 0 {
                    continue;
                }
                busy = true;
                self.steer = queue;
                // 2. forward: the whole burst at once, so that its FDB misses overlap
                let frames = rx.frames();
                let decided = self.ports.l2.decide_burst(&shared.fdb, port, frames, now);
                let mut dirty = 0u64;
                // Counted once per burst: a counter is a load and a store to memory (an
                // atomic, which the compiler keeps out of registers), four per frame otherwise.
                let (mut frames_in, mut bytes_in) = (0u64, 0u64);
                for (m, &(verdict, fv)) in rx.drain().zip(decided.iter()) {
                    frames_in += 1;
                    bytes_in += m.len() as u64;
                    match verdict {
                        Verdict::Drop(r) => self.stats.count_drop(port, r, 1),
                        Verdict::Unicast(out) => dirty |= self.enqueue(out, m, fv, from),
                        Verdict::Flood(mask) => dirty |= self.flood(mask, m, fv, from),
                    }
                }
                let c = &self.stats.ports[usize::from(port)];
                c.rx_packets.add(frames_in);
                c.rx_bytes.add(bytes_in);
                // 3. transmit what this burst produced
                self.flush(dirty, true);
                self.steer = DEFAULT_TXQ;
            }
            // 4. take what other cores forwarded to the gated ports this core owns
            for k in 0..self.inbound.len() {
                busy |= self.take_handoff(k);
            }
            // 5. schedule: release what the gates allow now, and transmit it
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
                // Frames come in runs of one class; a run for another tx queue than the frames
                // in hand sends those first.
                let (tx, c, txq, recycle) = (
                    &self.ports.tx[p],
                    &self.stats.ports[p],
                    &mut self.pending_txq[p],
                    &mut self.recycle,
                );
                let released = stage.release_to_queues(self.now_ns, room, |m, q| {
                    if q != *txq {
                        transmit(tx.as_ref(), *txq, DEFAULT_TXQ, pending, c, recycle);
                        *txq = q;
                    }
                    drop(pending.push(m));
                });
                self.gating &= !(1 << p);
                self.gating |= u64::from(!stage.bypass()) << p;
                if released > 0 {
                    busy = true;
                    self.flush(1 << p, false);
                }
            }
            // 6. the guests' notifications for this iteration's bursts, decided once after all
            // of them (each decision waits for every store before it to be visible)
            for (_, _, q) in self.ports.rxqs.iter_mut() {
                if let Some(q) = q {
                    q.settle();
                }
            }
            if busy {
                for t in self.ports.tx.iter().flatten() {
                    t.settle();
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

    /// Switches to a newly posted port set and hands the old one back to the control thread,
    /// which frees it (with the queues of ports that left this core). Only when something
    /// changed: a move of a few dozen pointers, no allocation, no free.
    #[cold]
    fn adopt(&mut self, mut ports: Box<CorePorts>) {
        ports.carry_rx_from(&mut self.ports);
        let old = std::mem::replace(&mut self.ports, ports);
        // The control thread posts only after taking the previous old set back: `old` is empty.
        let unread = self.mailbox.old.put(old);
        debug_assert!(unread.is_none(), "the previous port set was not taken back");
    }

    /// Puts `m` on `out`'s pending burst with the tag that port needs, or, when the port is
    /// gated, classifies it (here, where its ingress port's classifier is) and puts it into the
    /// port's gate stage or on the ring to the core that owns that; returns the dirty bit.
    #[inline]
    fn enqueue(&mut self, out: u16, mut m: Mbuf, fv: FrameVlan, from: Origin) -> u64 {
        let want = self.ports.l2.egress_tci(out, fv);
        if !retag(&mut m, fv.tagged, want) {
            self.stats.count_drop(out, DropReason::NoMbuf, 1);
            return 0;
        }
        let o = usize::from(out);
        if self.gating & (1 << o) != 0 {
            let tc = self.ports.classifiers[usize::from(from.port)].classify(
                m.data(),
                fv.tagged.then_some(fv.pcp),
                from.queue,
            );
            // (The bit is set only for ports with a stage here or a ring to their owner.)
            if let Some(stage) = self.gates[o].as_mut() {
                // A refusal (queue full, frame too long for any window) is counted by the stage.
                let _ = stage.enqueue(m, tc, self.now_ns);
            } else if let Some(ring) = self.handoff[o].as_mut() {
                if let Err((m, _)) = ring.push((m, tc)) {
                    drop(m);
                    self.stats.count_drop(out, DropReason::HandoffFull, 1);
                }
            }
            return 0;
        }
        self.transmit(out, m)
    }

    /// Puts `m` on `out`'s pending burst (transmitting the burst first if it is full); returns
    /// the dirty bit.
    #[inline]
    fn transmit(&mut self, out: u16, m: Mbuf) -> u64 {
        let o = usize::from(out);
        if self.pending[o].is_full() {
            self.flush(1 << out, true);
        }
        if let Err(m) = self.pending[o].push(m) {
            drop(m);
            self.stats.count_drop(out, DropReason::TxFull, 1);
        }
        1 << out
    }

    /// Takes the frames inbound ring `k` holds (at most its capacity: a producer that keeps
    /// pushing cannot hold this core here) into the port's gate stage, or, while the stage is
    /// bypassed, straight to the port's tx burst; classified by the core that received them,
    /// in the order it forwarded them. Returns whether there were any.
    fn take_handoff(&mut self, k: usize) -> bool {
        let port = self.inbound[k].0;
        let p = usize::from(port);
        let (mut dirty, mut got) = (0, 0usize);
        for _ in 0..self.inbound[k].1.capacity() {
            let Some((m, tc)) = self.inbound[k].1.pop() else {
                break;
            };
            got += 1;
            match self.gates[p].as_mut() {
                Some(stage) if self.gating & (1 << p) != 0 => {
                    let _ = stage.enqueue(m, tc, self.now_ns);
                }
                _ => dirty |= self.transmit(port, m),
            }
        }
        self.flush(dirty, true);
        got > 0
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
            let txq = std::mem::replace(&mut self.pending_txq[p], DEFAULT_TXQ);
            let tx = self.ports.tx[p].as_ref();
            let (sent, sent_bytes) = transmit(tx, txq, self.steer, b, c, &mut self.recycle);
            if around_gates {
                if let Some(stage) = self.gates[p].as_mut() {
                    stage.bypassed(self.now_ns, sent, sent_bytes);
                }
            }
        }
    }
}

/// Transmits `b` on tx queue `txq` of `tx` (none: the port has no tx path; `steer`: see
/// [`TxPort::tx_burst_on`]) and counts it; what the driver refuses (ring full) is dropped and
/// counted. Returns the frames and bytes sent.
#[inline]
fn transmit(
    tx: Option<&TxPort>,
    txq: u16,
    steer: u16,
    b: &mut Burst,
    c: &crate::stats::PortCounters,
    recycle: &mut Recycle,
) -> (usize, usize) {
    if b.is_empty() {
        return (0, 0);
    }
    let (n, bytes) = (b.len() as u64, b.bytes());
    if let Some(tx) = tx {
        tx.tx_burst_on(txq, steer, b, recycle);
    }
    let (left, left_bytes) = (b.len() as u64, b.bytes());
    c.tx_packets.add(n - left);
    c.tx_bytes.add(bytes - left_bytes);
    if left > 0 {
        c.drops[DropReason::TxFull as usize].add(left);
        drop(b.drain());
    }
    ((n - left) as usize, (bytes - left_bytes) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpdk::RxQueue;

    fn set(rxqs: &[(u16, u16, bool)]) -> Box<CorePorts> {
        Box::new(CorePorts {
            rxqs: rxqs
                .iter()
                .map(|&(p, q, fresh)| {
                    let rx = fresh.then_some(RxPort::Eth(RxQueue { port: p, queue: q }));
                    (p, q, rx)
                })
                .collect(),
            tx: Vec::new(),
            classifiers: Vec::new(),
            l2: L2::new(Vec::new()),
        })
    }

    fn queue_of(e: &(u16, u16, Option<RxPort>)) -> Option<(u16, u16)> {
        match &e.2 {
            Some(RxPort::Eth(q)) => Some((q.port, q.queue)),
            _ => None,
        }
    }

    #[test]
    fn a_new_set_carries_the_queues_it_keeps_and_leaves_the_rest() {
        // The core polls port 0 queues 0 and 1 and port 1 queue 0; port 1 is deleted and port 2
        // added: the new set keeps port 0's queues (None: carried) and brings port 2's.
        let mut current = set(&[(0, 0, true), (1, 0, true), (0, 1, true)]);
        let mut new = set(&[(0, 0, false), (0, 1, false), (2, 0, true)]);
        new.carry_rx_from(&mut current);
        let got: Vec<_> = new.rxqs.iter().map(queue_of).collect();
        assert_eq!(got, [Some((0, 0)), Some((0, 1)), Some((2, 0))]);
        // What stays behind (freed on the control thread) is the deleted port's queue only.
        let left: Vec<_> = current.rxqs.iter().filter_map(queue_of).collect();
        assert_eq!(left, [(1, 0)]);
    }

    #[test]
    fn the_mailbox_moves_sets_both_ways() {
        let mb = PortsMailbox::default();
        assert!(mb.take_old().is_none());
        mb.post(set(&[(3, 0, true)]));
        let got = mb.new.take().expect("posted");
        assert!(mb.new.take().is_none(), "taken once");
        assert!(mb.old.put(got).is_none());
        let back = mb.take_old().expect("handed back");
        assert_eq!(queue_of(&back.rxqs[0]), Some((3, 0)));
    }
}
