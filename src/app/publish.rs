//! Publication of the port set to the PMD cores, without locks.
//!
//! The control thread owns the port set (slots by id) and the rx queue map. Each change (a port
//! added or deleted) makes a new generation; each PMD core gets its own [`CorePorts`] built
//! from it (its rx queues, a tx path per port, classifiers, VLAN modes and flood masks), posted
//! in its [`PortsMailbox`]. The core swaps it in at the top of a loop iteration — a quiescent
//! point: no frame in hand, every pending burst empty — and hands the old set back; the control
//! thread takes it back and frees it here (a vhost handle in it may hold the last reference to a
//! guest's memory, which must be unmapped on this thread). One set is in flight per core at a
//! time; changes made meanwhile are folded into the next post.
//!
//! A deleted port leaves the port set at once (its slot is empty in the next generation) and
//! waits in `retiring` until every core runs a generation without it. Only then are its MACs
//! flushed from the FDB (for good: a core on an older set may have learned one again) and its
//! device stopped, closed and detached (or its vhost-user device and guest memory released).
//! Its slot id is not reused before that. Counters are never reset (each core is their only
//! writer): a port reusing a slot starts from the control side's baseline, set when it is added.
use super::event_loop::ControlLoop;
use super::ports::Port;
use crate::classify::Classifier;
use crate::forward::{VlanMode, L2, MAX_PORTS};
use crate::pmd::{CorePorts, PortsMailbox};
use std::sync::Arc;

/// The control thread's side of one PMD core.
pub(crate) struct CoreLink {
    pub(super) lcore: u32,
    pub(super) mailbox: Arc<PortsMailbox>,
    /// Generation of the last set posted.
    posted: u64,
    /// The core has not yet taken the last post (or not handed its old set back).
    in_flight: bool,
    /// Generation the core surely runs, every older set of it freed.
    running: u64,
    /// The rx queues (port, queue) in the last set posted: the core carries these over itself.
    holds: Vec<(u16, u16)>,
}

impl CoreLink {
    pub(super) fn new(lcore: u32) -> CoreLink {
        CoreLink {
            lcore,
            mailbox: Arc::new(PortsMailbox::default()),
            posted: 0,
            in_flight: false,
            running: 0,
            holds: Vec::new(),
        }
    }
}

/// A deleted port, out of the port set, until every core runs a set without it.
pub(crate) struct Retiring {
    pub(super) id: u16,
    pub(super) port: Port,
    /// The first generation without it.
    gen: u64,
}

impl ControlLoop {
    /// Core `k`'s set at start, before it runs (generation 0; no mailbox exchange).
    pub(super) fn core_ports_at_start(&mut self, k: usize) -> Box<CorePorts> {
        self.build_core_ports(k)
    }

    /// Core `k`'s share of the current port set. Rx queues the core already polls are left
    /// `None` (it carries them over); new ones are taken from their port.
    fn build_core_ports(&mut self, k: usize) -> Box<CorePorts> {
        let ControlLoop {
            ports,
            rxq_map,
            cores,
            ..
        } = self;
        let core = &mut cores[k];
        let mut holds = Vec::new();
        let rxqs = rxq_map
            .iter()
            .filter(|e| e.0 == core.lcore)
            .map(|&(_, p, q)| {
                let fresh = if core.holds.contains(&(p, q)) {
                    None
                } else {
                    ports
                        .get_mut(usize::from(p))
                        .and_then(Option::as_mut)
                        .and_then(|port| port.queues.rx.get_mut(usize::from(q)))
                        .and_then(Option::take)
                };
                holds.push((p, q));
                (p, q, fresh)
            })
            .collect();
        core.holds = holds;
        let slot = |p: usize| ports.get(p).and_then(Option::as_ref);
        let modes: Vec<Option<VlanMode>> = (0..ports.len())
            .map(|p| slot(p).map(|port| port.spec.vlan.map_or(VlanMode::Trunk, VlanMode::Access)))
            .collect();
        Box::new(CorePorts {
            rxqs,
            tx: (0..MAX_PORTS)
                .map(|p| slot(p).map(|port| (port.queues.tx_for_core)(k)))
                .collect(),
            classifiers: (0..MAX_PORTS)
                .map(|p| slot(p).map_or_else(Classifier::new, |port| port.spec.classifier.clone()))
                .collect(),
            l2: L2::from_slots(&modes),
        })
    }

    /// A new generation of the port set, posted to every core not busy with the previous one.
    pub(super) fn publish_ports(&mut self) {
        self.gen += 1;
        self.sync_cores();
    }

    /// Every loop iteration: takes back the sets the cores replaced, posts the current
    /// generation to cores that run an older one, and releases deleted ports no core uses.
    /// Never waits: a core that has not moved on yet is looked at again next time.
    pub(super) fn sync_cores(&mut self) {
        for k in 0..self.cores.len() {
            let c = &mut self.cores[k];
            if let Some(old) = c.mailbox.take_old() {
                c.in_flight = false;
                c.running = c.posted;
                drop(old); // here, on the control thread: see the module doc
            }
            if !c.in_flight && c.posted < self.gen {
                let set = self.build_core_ports(k);
                let c = &mut self.cores[k];
                c.mailbox.post(set);
                c.posted = self.gen;
                c.in_flight = true;
            }
        }
        self.release_retired();
    }

    /// Whether a post is in flight or a deleted port waits: the loop then looks again soon.
    pub(super) fn publication_pending(&self) -> bool {
        !self.retiring.is_empty() || self.cores.iter().any(|c| c.in_flight)
    }

    /// The generation every core runs (each has freed all older sets).
    fn running_everywhere(&self) -> u64 {
        self.cores
            .iter()
            .map(|c| c.running)
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Finishes deleting the ports no core holds any more.
    fn release_retired(&mut self) {
        let running = self.running_everywhere();
        let mut i = 0;
        while i < self.retiring.len() {
            if self.retiring[i].gen > running {
                i += 1;
                continue;
            }
            let r = self.retiring.swap_remove(i);
            let macs = self.shared.fdb.flush_port(r.id);
            let name = r.port.spec.name.clone();
            drop(r.port); // stop, close, detach; or the vhost-user device and its guest memory
            tracing::info!(port = %name, id = r.id, macs_flushed = macs, "port released");
        }
    }

    /// Takes port `id` out of the port set; it is released once every core has moved on.
    pub(super) fn retire(&mut self, id: u16) {
        let Some(port) = self.ports.get_mut(usize::from(id)).and_then(Option::take) else {
            return;
        };
        self.rxq_map.retain(|&(_, p, _)| p != id);
        self.retiring.push(Retiring {
            id,
            port,
            gen: self.gen + 1,
        });
        self.publish_ports();
    }

    /// Whether slot `id` is free for a new port (empty and not held by a deleted port).
    pub(super) fn slot_free(&self, id: usize) -> bool {
        self.ports.get(id).is_none_or(Option::is_none)
            && !self.retiring.iter().any(|r| usize::from(r.id) == id)
    }
}
