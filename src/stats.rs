//! Per-core counters. Each PMD core owns its block and is its only writer: an increment is a
//! plain load and store (no locked instruction, no shared cache line). The control side sums
//! the blocks of all cores when asked.
use crate::forward::MAX_PORTS;
use std::sync::atomic::{AtomicU64, Ordering};

/// A single-writer counter readable from other threads.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning core may call this (load+store is not an atomic add).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

macro_rules! drop_reasons {
    ($($v:ident => $name:literal, $doc:literal;)*) => {
        /// Why a frame was dropped.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum DropReason { $(#[doc = $doc] $v,)* }
        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$v,)*];
            /// The name used in stats output.
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$v => $name,)* }
            }
        }
    };
}

drop_reasons! {
    Malformed => "malformed", "Shorter than an Ethernet header, or a multicast source address.";
    VlanFiltered => "vlan_filtered", "Its VLAN is not carried by the ingress or egress port.";
    SamePort => "same_port", "Its destination was learned on the port it came in on.";
    NoEgress => "no_egress", "No other port carries its VLAN.";
    TxFull => "tx_full", "The egress queue did not take it.";
    NoMbuf => "no_mbuf", "No buffer left to copy it for flooding or tagging.";
    HandoffFull => "handoff_full", "The ring to the core that owns the egress port's gate was full.";
}

const NREASONS: usize = DropReason::ALL.len();

/// One port's counters on one core.
#[derive(Default)]
#[repr(align(64))]
pub struct PortCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
    pub drops: [Counter; NREASONS],
}

/// All ports' counters of one core.
pub struct CoreStats {
    pub ports: Vec<PortCounters>,
    /// Busy-loop iterations and those that found work: a load gauge.
    pub iterations: Counter,
    pub busy_iterations: Counter,
    /// TSC cycles spent in iterations that found work and in those that did not (as OVS's
    /// pmd-stats-show): busy cycles per packet is the core's processing cost, whatever the load.
    pub busy_cycles: Counter,
    pub idle_cycles: Counter,
    /// TSC cycles of iterations so long (over [`STALL_NS`]) that the thread cannot have been
    /// running them: another thread had its CPU (two lcores on one CPU, the host's steal).
    /// Counted apart so that busy share and cycles per packet stay those of the loop itself.
    pub stalled_cycles: Counter,
}

/// An iteration longer than this was not spent in the loop: no iteration's work takes a
/// millisecond (a full burst from every rx queue takes tens of microseconds), while the
/// scheduler's slices for threads sharing a CPU last milliseconds.
pub const STALL_NS: u64 = 1_000_000;

impl CoreStats {
    pub fn new() -> CoreStats {
        CoreStats {
            ports: (0..MAX_PORTS).map(|_| PortCounters::default()).collect(),
            iterations: Counter::default(),
            busy_iterations: Counter::default(),
            busy_cycles: Counter::default(),
            idle_cycles: Counter::default(),
            stalled_cycles: Counter::default(),
        }
    }
    #[inline]
    pub fn count_drop(&self, port: u16, r: DropReason, n: u64) {
        self.ports[usize::from(port)].drops[r as usize].add(n);
    }
}

impl Default for CoreStats {
    fn default() -> Self {
        Self::new()
    }
}

/// A port's counters summed over cores.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PortTotals {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: std::collections::BTreeMap<&'static str, u64>,
}

/// Sums port `port` over all cores.
pub fn totals(cores: &[std::sync::Arc<CoreStats>], port: u16) -> PortTotals {
    let mut t = PortTotals::default();
    for r in DropReason::ALL {
        t.drops.insert(r.name(), 0);
    }
    for c in cores {
        let p = &c.ports[usize::from(port)];
        t.rx_packets += p.rx_packets.get();
        t.rx_bytes += p.rx_bytes.get();
        t.tx_packets += p.tx_packets.get();
        t.tx_bytes += p.tx_bytes.get();
        for r in DropReason::ALL {
            *t.drops.get_mut(r.name()).expect("inserted") += p.drops[*r as usize].get();
        }
    }
    t
}
