//! The egress gate stage of one port: an IEEE 802.1Qbv time-aware shaper in software.
//!
//! Frames are queued per traffic class (fixed-capacity rings allocated up front). Each PMD loop
//! iteration, [`GateStage::release`] hands out, highest class first among those whose gate is
//! open, only frames that *leave the wire* before their gate closes (guard band: no
//! TransmissionOverrun). A wire model (`wire_free_at`, from the bytes already handed over) makes
//! "leave" mean the frame's real start: `start = max(now, wire_free_at)`, `end = start + wire
//! time ≤ close`. Frames are handed over at most about one maximum frame ahead of the wire
//! ([`StageConfig::ahead_ns`]), so the NIC's own ring stays shallow and a frame sitting there
//! cannot miss its window because of frames queued in front of it; and never across a gate
//! operation not reached yet, so never while their gate is closed, even when the model says
//! the wire is busy until it opens (an af_packet port would send the frame at once: early).
//!
//! Wire time: `Frame::len()` is the frame as DPDK's `data_len` has it — without FCS (the NIC adds
//! it). On the wire it takes `max(len, 60) + 4 FCS + 8 preamble/SFD + 12 inter-frame gap` bytes:
//! [`wire_bytes`]. A 1500-byte frame at 1 Gb/s: 1524 B = 12.19 µs.
//!
//! Bypass: with no list, or a list (and pending list) whose gates are all always open, and all
//! queues empty, [`GateStage::bypass`] is true and the PMD sends frames straight to the tx burst —
//! no class lookup, no queue, no time read. Checked once per burst: two loads. Why not
//! "enqueue returns the frame back": that still pays the class lookup and a call per frame.
//!
//! Schedules reach the stage by mailbox: the control thread keeps a mirror [`gcl::Schedule`],
//! installs into it ([`GateControl::install`], admin→oper as gcl computes it) and posts a clone;
//! the PMD core swaps it in on its next `release` (one relaxed load per iteration when nothing
//! is posted) and posts the old one back for the control thread to free. The PMD core never
//! calls `Schedule::install`/`advance`, so it never allocates or frees: gcl's queries answer for
//! any `t` with the oper and admin lists in place.
//!
//! One stage per egress port, run on the one core that transmits to that port (its owner): the
//! wire model is the port's, so several cores transmitting to a gated port would each need the
//! whole wire. Other cores hand the frames they forward to a gated port to its owner through a
//! lock-free ring per (core, port) ([`handoff`]), classified already.
//!
//! The wire model is only as good as the speed it runs at: [`gate_link_mbps`] refuses a gated
//! port whose driver reports a speed that no wire paces, unless `speed=` says what to model.

pub(crate) mod handoff;
pub(crate) mod mailbox;
mod ring;
pub mod stats;
#[cfg(test)]
mod tests;

use crate::classify::Tc;
use gcl::{GateControlList, InstallError, Installed, Schedule, ScheduleCursor, MAP_LEN, MAX_TC};
use mailbox::Slot;
use ring::Ring;
use stats::{bucket_of, ClassStats, StageCounters};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The tx queue a released frame goes to when the list maps no queue to its class: the one the
/// transmitting core uses for every other frame to the port.
pub const DEFAULT_TXQ: u16 = u16::MAX;

/// What the gate stage needs of a frame.
pub trait Frame {
    /// Frame length in bytes, without FCS (as DPDK's `data_len`).
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The MAC service data unit's length: the frame after its Ethernet header and VLAN tag, what
    /// queueMaxSDU limits. Asked only of frames longer than their class's untagged limit.
    fn sdu_len(&self) -> usize {
        self.len().saturating_sub(crate::wire::ETH_HEADER_LEN)
    }
}

impl Frame for crate::dpdk::Mbuf {
    #[inline]
    fn len(&self) -> usize {
        crate::dpdk::Mbuf::len(self)
    }

    fn sdu_len(&self) -> usize {
        let len = self.len();
        crate::wire::EthernetFrame::new_checked(self.data())
            .map_or(0, |f| len.saturating_sub(f.header_len()))
    }
}

const NTC: usize = MAX_TC as usize;
const _: () = assert!(Tc::COUNT.is_power_of_two());
/// Shortest frame on the wire, without FCS (the MAC pads to it).
pub const MIN_FRAME: usize = 60;
/// Bytes a frame takes on the wire besides its own: FCS 4 + preamble/SFD 8 + IFG 12.
pub const WIRE_OVERHEAD: usize = 24;
/// Largest frame the default look-ahead is sized for: 1522 (tagged, without FCS 1518).
pub const MAX_FRAME: usize = 1522;
/// The I210's LaunchTime granularity.
pub const I210_LAUNCH_GRANULARITY_NS: u64 = 32;
/// How far ahead a launch time may lie (the I210 takes less than 1 s).
pub const LAUNCH_HORIZON_NS: u64 = 999_000_000;

/// Bytes a frame of `len` (without FCS) takes on the wire, gap included.
#[inline]
pub const fn wire_bytes(len: usize) -> usize {
    let l = if len < MIN_FRAME { MIN_FRAME } else { len };
    l.saturating_add(WIRE_OVERHEAD)
}

/// Link speed as ns per byte in 32.32 fixed point, rounded up (never underestimates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wire {
    bps: u64,
    ns_per_byte: u64,
}

/// How far ahead of now bypassed traffic may book the wire. A NIC cannot queue more than its
/// ring holds, but a port that takes more than its modelled speed (a vhost-user port, a wrong
/// `speed=`) would push the booking ever further ahead, and a list taking effect next would
/// then hold every frame until the model caught up: at most one millisecond of that.
pub const BYPASS_BACKLOG_NS: u64 = 1_000_000;

/// Slowest link modelled: keeps `wire bytes × ns_per_byte` inside u64 (2^17 × 2^45).
const MIN_LINK_BPS: u64 = 1_000_000;
/// Longest frame modelled (longer ones are timed as this long: no real frame is).
const MAX_LEN: usize = 65_535;

impl Wire {
    fn new(bps: u64) -> Self {
        let bps = bps.max(MIN_LINK_BPS);
        let fp = (8_000_000_000u128 << 32).div_ceil(u128::from(bps));
        Self {
            bps,
            ns_per_byte: u64::try_from(fp).unwrap_or(u64::MAX),
        }
    }

    /// Nanoseconds frame of `len` occupies the wire (rounded up).
    #[inline]
    fn ns(&self, len: usize) -> u64 {
        // ≤ 65 559 bytes × ≤ 8000·2^32 (< 2^61), plus the rounding: no overflow (see
        // MIN_LINK_BPS). Rounded up with an add and a shift (`div_ceil` tests the remainder).
        let bytes = wire_bytes(len.min(MAX_LEN)) as u64;
        (bytes * self.ns_per_byte + ((1 << 32) - 1)) >> 32
    }

    /// Largest frame length whose wire time is at most `ns` (0: none fits).
    fn max_len(&self, ns: u64) -> usize {
        if ns == u64::MAX {
            return usize::MAX;
        }
        let bytes = (u128::from(ns) << 32) / u128::from(self.ns_per_byte.max(1));
        let mut len = usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .saturating_sub(WIRE_OVERHEAD);
        // The estimate is within a byte or so (below MIN_FRAME, within 60): settle it exactly.
        while len > 0 && self.ns(len) > ns {
            len -= 1;
        }
        len = len.min(MAX_LEN);
        while len < MAX_LEN && self.ns(len + 1) <= ns {
            len += 1;
        }
        if len == MAX_LEN {
            // Every frame fits.
            return usize::MAX;
        }
        if self.ns(len) > ns {
            0
        } else {
            len
        }
    }
}

/// Drivers that report a link speed no wire enforces: DPDK's virtual devices (a kernel socket,
/// a TAP, a ring, nothing, a vhost-user peer, a pcap file, shared memory) and paravirtual NICs
/// (a hypervisor's copy loop). af_packet, tap, ring, null and vhost all report a fixed 10 Gb/s;
/// frames handed over at that rate reach a kernel, a peer or a guest as fast as they take them,
/// so the model's windows and guard bands are fiction and a receiver overrun drops frames.
pub const UNPACED_DRIVERS: &[&str] = &[
    "net_af_packet",
    "net_af_xdp",
    "net_tap",
    "net_tun",
    "net_ring",
    "net_null",
    "net_vhost",
    "net_virtio_user",
    "net_virtio",
    "net_pcap",
    "net_memif",
    "net_vmxnet3",
    "net_netvsc",
    "net_vdev_netvsc",
    "net_kni",
];

/// DPDK's `RTE_ETH_SPEED_NUM_UNKNOWN`.
const SPEED_UNKNOWN: u32 = u32::MAX;

/// Why a gated port needs `speed=`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnpacedLink {
    #[error(
        "a GCL needs speed=MBPS on {driver} ports: the driver reports {} but nothing paces the \
         wire at that rate",
        reported(*.reported_mbps)
    )]
    VirtualDevice { driver: String, reported_mbps: u32 },
    #[error(
        "a GCL needs speed=MBPS on vhost-user ports: a guest's virtqueue has no link speed, \
         frames are copied as fast as the guest takes them"
    )]
    VhostUser,
}

fn reported(mbps: u32) -> String {
    match mbps {
        0 | SPEED_UNKNOWN => "no speed".into(),
        n => format!("{n} Mb/s"),
    }
}

/// The link speed (Mb/s) a gated port's wire model runs at: `speed=` when given; else what the
/// driver reports, unless the driver is one of [`UNPACED_DRIVERS`] or the port is a vhost-user
/// port (`driver` None). A NIC that reports no speed yet (link down) starts at 1000 Mb/s and
/// follows its link once it comes up.
pub fn gate_link_mbps(
    driver: Option<&str>,
    reported_mbps: u32,
    configured: Option<u32>,
) -> Result<u32, UnpacedLink> {
    if let Some(s) = configured {
        return Ok(s);
    }
    match driver {
        None => Err(UnpacedLink::VhostUser),
        Some(d) if UNPACED_DRIVERS.contains(&d) => Err(UnpacedLink::VirtualDevice {
            driver: d.to_string(),
            reported_mbps,
        }),
        Some(_) if reported_mbps == 0 || reported_mbps == SPEED_UNKNOWN => Ok(1000),
        Some(_) => Ok(reported_mbps),
    }
}

/// Wire time of a frame of `len` bytes at `link_bps`, ns (rounded up).
pub fn wire_time_ns(len: usize, link_bps: u64) -> u64 {
    Wire::new(link_bps).ns(len)
}

/// How a stage is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageConfig {
    /// Link speed, bits per second (e.g. 1_000_000_000; at least 1 Mb/s). Updated later by
    /// [`GateControl::set_link_speed`].
    pub link_bps: u64,
    /// Frames per class queue.
    pub queue_len: usize,
    /// Most ns the wire may be booked ahead of `now` when a frame is handed over; `None`: one
    /// maximum frame ([`MAX_FRAME`]) at the link speed. 0 hands a frame over only once the wire
    /// is idle (then hand-over time = transmission start in the model).
    pub ahead_ns: Option<u64>,
    /// Delay from hand-over to the frame's first bit on the wire (descriptor fetch and DMA);
    /// frames are checked against their window as starting no earlier than `now + tx_delay_ns`.
    pub tx_delay_ns: u64,
}

impl StageConfig {
    /// 256 frames per class, one frame of look-ahead, no tx delay.
    pub fn new(link_bps: u64) -> Self {
        Self {
            link_bps,
            queue_len: 256,
            ahead_ns: None,
            tx_delay_ns: 0,
        }
    }
}

/// What the PMD core and the control thread share about one stage.
#[derive(Default)]
struct Shared {
    /// Control → PMD: a new schedule.
    mailbox: Slot<Schedule>,
    /// PMD → control: the schedule it replaced, to be freed off the fast path.
    returns: Slot<Schedule>,
    link_bps: AtomicU64,
    counters: StageCounters,
}

/// The list that decides class mapping at `t`, and until when that holds.
fn governing(s: &Schedule, t: u64) -> (Option<&GateControlList>, u64) {
    match (s.config_change_time(), s.admin(), s.oper()) {
        (Some(ct), Some(a), _) if t >= ct => (Some(a), u64::MAX),
        (Some(ct), _, Some(o)) => (Some(o), ct),
        (Some(ct), Some(a), None) => (Some(a), ct),
        (_, _, o) => (o, u64::MAX),
    }
}

/// The earliest launch time `t ≥ earliest` (a multiple of `granularity_ns`) at which a frame of
/// `wire_ns` fits inside an open window of `class`, or `None` if none does within `horizon_ns`.
///
/// For NICs that send at a launch time (SEND_ON_TIMESTAMP; the I210 with 32 ns granularity):
/// the NIC may start the frame up to one granule before or after `t`, so the whole interval
/// `[t − (g−1), t + wire + (g−1)]` is kept inside the window. Times are in the schedule's clock;
/// convert to the NIC's raw clock afterwards (and align there if its offset is not a multiple of
/// the granularity).
pub fn launch_time(
    schedule: &Schedule,
    class: u8,
    wire_ns: u64,
    earliest: u64,
    granularity_ns: u64,
    horizon_ns: u64,
) -> Option<u64> {
    let g = granularity_ns.max(1);
    let slack = g - 1;
    let round_up = |t: u64| t.checked_add(slack).map(|v| v / g * g);
    let limit = earliest.saturating_add(horizon_ns);
    let mut t = round_up(earliest)?;
    // Each step passes a gate operation; a cap keeps a pathological list from spinning.
    for _ in 0..4096 {
        if t > limit {
            return None;
        }
        let s = t.saturating_sub(slack);
        let need = t.checked_add(wire_ns)?.checked_add(slack)?;
        let next = match schedule.gate_close_time(class, s) {
            None => return Some(t),
            Some(close) if close > s && need <= close => return Some(t),
            // Open but too short from here: look after this window.
            Some(close) if close > s => close,
            // Closed at s: look from the next gate operation.
            Some(_) => schedule.state_at(s).next?,
        };
        t = round_up(next.checked_add(slack)?)?;
    }
    None
}

/// The gate stage of one egress port, owned by the PMD core that transmits on the port.
/// `F` is the frame type: `crate::dpdk::Mbuf` in the switch, a plain struct in tests and benches.
pub struct GateStage<F: Frame> {
    shared: Arc<Shared>,
    schedule: Box<Schedule>,
    /// A replaced schedule the control thread has not collected room for yet.
    pending_return: Option<Box<Schedule>>,
    /// Cursor for gate states at `now` (non-decreasing).
    state_cur: ScheduleCursor,
    /// Cursor for close times at frame start times (non-decreasing too).
    close_cur: ScheduleCursor,
    queues: [Ring<(F, u64)>; NTC],
    /// Bit c: queue c is not empty (0: nothing queued).
    nonempty: u8,
    always_open: bool,

    wire: Wire,
    /// The link speed last read from the control thread (the wire clamps it).
    seen_bps: u64,
    ahead_cfg: Option<u64>,
    ahead_ns: u64,
    tx_delay_ns: u64,
    wire_free_at: u64,

    /// Gate state at `now` as last tracked: `gates` holds over `[gates_from, gates_next)`.
    gates: u8,
    gates_from: u64,
    gates_next: u64,
    /// When each class's current open window began (valid while its bit is set in `gates`).
    open_since: [u64; NTC],
    /// Known open span of each class: open over `[win_from, win_until)`.
    win_from: [u64; NTC],
    win_until: [u64; NTC],

    /// Tc index → class, for the list governing now; valid until `lut_until`.
    lut: [u8; Tc::COUNT],
    /// Class → tx queue (taprio's `queues COUNT@OFFSET`: the first queue of the class's range)
    /// for the list governing now; [`DEFAULT_TXQ`] without a queue map.
    txq: [u16; NTC],
    lut_until: u64,
    num_tc: u8,
    /// Longest wire time (ns) that fits an open window of each class, and the frame length
    /// that corresponds at the current link speed.
    max_wire: [u64; NTC],
    fit_len: [usize; NTC],
    /// Each class's queueMaxSDU (`usize::MAX`: no limit).
    max_sdu: [usize; NTC],
    /// Longest frame enqueued without a second look: the lower of the two limits above.
    max_len: [usize; NTC],
    /// Bit c: the head frame of class c was already counted as a guard-band deferral.
    head_deferred: u8,
}

/// What bounds one run of sends from a class (see [`GateStage::send_run`]).
#[derive(Clone, Copy)]
struct Run {
    /// Hand-over time.
    now: u64,
    /// The head frame's wire start, and the latest start (the look-ahead).
    start: u64,
    limit: u64,
    /// When the class's gate closes, seen from `start`.
    close: u64,
    /// Frames the tx burst still takes.
    room: usize,
}

/// The control thread's handle on a stage: installs lists, sets the link speed, reads counters.
pub struct GateControl {
    shared: Arc<Shared>,
    mirror: Schedule,
}

impl<F: Frame> GateStage<F> {
    /// A stage with no list (bypass) and its control handle.
    pub fn new(config: StageConfig) -> (Self, GateControl) {
        let shared = Arc::new(Shared::default());
        shared.link_bps.store(config.link_bps, Ordering::Relaxed);
        let wire = Wire::new(config.link_bps);
        let mut s = Self {
            shared: shared.clone(),
            schedule: Box::default(),
            pending_return: None,
            state_cur: ScheduleCursor::new(),
            close_cur: ScheduleCursor::new(),
            queues: std::array::from_fn(|_| Ring::new(config.queue_len)),
            nonempty: 0,
            always_open: true,
            wire,
            seen_bps: config.link_bps,
            ahead_cfg: config.ahead_ns,
            ahead_ns: 0,
            tx_delay_ns: config.tx_delay_ns,
            wire_free_at: 0,
            gates: 0,
            gates_from: u64::MAX,
            gates_next: 0,
            open_since: [0; NTC],
            win_from: [u64::MAX; NTC],
            win_until: [0; NTC],
            lut: [0; Tc::COUNT],
            txq: [DEFAULT_TXQ; NTC],
            lut_until: 0,
            num_tc: MAX_TC,
            max_wire: [u64::MAX; NTC],
            fit_len: [usize::MAX; NTC],
            max_sdu: [usize::MAX; NTC],
            max_len: [usize::MAX; NTC],
            head_deferred: 0,
        };
        s.set_wire(wire);
        s.rebuild(0);
        (
            s,
            GateControl {
                shared,
                mirror: Schedule::new(),
            },
        )
    }

    /// True when frames may skip the stage: no gate ever closes and nothing is queued. Check it
    /// once per burst (after the iteration's [`GateStage::release`], which picks up new lists).
    #[inline]
    pub fn bypass(&self) -> bool {
        self.always_open && self.nonempty == 0
    }

    /// Frames queued over all classes.
    pub fn queued(&self) -> usize {
        self.queues.iter().map(Ring::len).sum()
    }

    /// Whether any frame is queued.
    #[inline]
    pub fn has_queued(&self) -> bool {
        self.nonempty != 0
    }

    /// When the wire frees up from what was handed over (model time, ns).
    pub fn wire_free_at(&self) -> u64 {
        self.wire_free_at
    }

    /// The schedule in use (the control thread's last install, as the PMD core has it).
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Class of `tc` under the list governing now (as of the last `release`).
    #[inline]
    pub fn class_of(&self, tc: Tc) -> u8 {
        self.lut[tc.index()]
    }

    /// Queues a frame classified at ingress as `tc`, at `now`. Gives the frame back when its
    /// class's queue is full or it can never fit a window of its class (both counted); the caller
    /// drops it.
    #[inline]
    pub fn enqueue(&mut self, frame: F, tc: Tc, now: u64) -> Result<(), F> {
        // The mask keeps the lookup free of a bounds check (an index is below COUNT, a power
        // of two).
        let class = self.lut[tc.index() & (Tc::COUNT - 1)];
        self.enqueue_class(frame, class, now)
    }

    /// Queues a frame in `class` (masked to 0..=7).
    #[inline]
    pub fn enqueue_class(&mut self, frame: F, class: u8, now: u64) -> Result<(), F> {
        let c = usize::from(class) & (NTC - 1);
        if frame.len() > self.max_len[c] && !self.long_frame_admitted(&frame, c) {
            return Err(frame);
        }
        let ctr = &self.shared.counters.classes[c];
        match self.queues[c].push((frame, now)) {
            Ok(()) => {
                ctr.enqueued.add(1);
                self.nonempty |= 1 << c;
                Ok(())
            }
            Err((frame, _)) => {
                ctr.dropped_full.add(1);
                Err(frame)
            }
        }
    }

    /// A frame longer than class `c`'s first limit: refused (and counted) if it fits no window
    /// or its SDU exceeds queueMaxSDU (a tagged frame may be 4 bytes longer than an untagged
    /// one: 802.1Q's SDU leaves the tag out).
    #[cold]
    fn long_frame_admitted(&self, frame: &F, c: usize) -> bool {
        let ctr = &self.shared.counters.classes[c];
        if frame.len() > self.fit_len[c] {
            ctr.dropped_oversize.add(1);
            return false;
        }
        if frame.sdu_len() > self.max_sdu[c] {
            ctr.dropped_max_sdu.add(1);
            return false;
        }
        true
    }

    /// Accounts frames sent around the stage (bypass) so the wire model knows the wire is busy
    /// when a list arrives. Per burst: `frames` frames totalling `bytes` (without FCS).
    /// The booking never runs more than [`BYPASS_BACKLOG_NS`] ahead of `now`.
    #[inline]
    pub fn bypassed(&mut self, now: u64, frames: usize, bytes: usize) {
        let wire_bytes = bytes.saturating_add(frames.saturating_mul(WIRE_OVERHEAD));
        let ns = (wire_bytes as u128 * u128::from(self.wire.ns_per_byte)) >> 32;
        self.wire_free_at = self
            .wire_free_at
            .max(now)
            .saturating_add(u64::try_from(ns).unwrap_or(u64::MAX))
            .min(now.saturating_add(BYPASS_BACKLOG_NS));
    }

    /// Picks up a new schedule or link speed posted by the control thread. [`GateStage::release`]
    /// calls it; call it directly only when not releasing (launch-time mode).
    #[inline]
    pub fn poll(&mut self, now: u64) {
        if let Some(old) = self.pending_return.take() {
            self.pending_return = self.shared.returns.try_put(old).err();
        }
        if let Some(new) = self.shared.mailbox.take() {
            self.swap(new, now);
        }
        let bps = self.shared.link_bps.load(Ordering::Relaxed);
        if bps != self.seen_bps {
            self.seen_bps = bps;
            self.set_wire(Wire::new(bps));
        }
        if now >= self.lut_until {
            self.rebuild(now);
        }
    }

    #[cold]
    fn swap(&mut self, new: Box<Schedule>, now: u64) {
        let old = std::mem::replace(&mut self.schedule, new);
        // Two swaps before the control thread collected the first: free the older one here.
        drop(self.pending_return.take());
        self.pending_return = self.shared.returns.try_put(old).err();
        self.state_cur = ScheduleCursor::new();
        self.close_cur = ScheduleCursor::new();
        self.win_from = [u64::MAX; NTC];
        self.win_until = [0; NTC];
        self.rebuild(now);
        self.resync(now);
        self.shared.counters.swaps.add(1);
    }

    #[cold]
    fn set_wire(&mut self, wire: Wire) {
        self.wire = wire;
        self.ahead_ns = self.ahead_cfg.unwrap_or_else(|| wire.ns(MAX_FRAME));
        self.set_limits();
    }

    fn set_limits(&mut self) {
        for c in 0..NTC {
            self.fit_len[c] = self.wire.max_len(self.max_wire[c]);
            // The longest untagged frame of that SDU: a tagged one is looked at again.
            let sdu_frame = self.max_sdu[c].saturating_add(crate::wire::ETH_HEADER_LEN);
            self.max_len[c] = self.fit_len[c].min(sdu_frame);
        }
    }

    /// Recomputes the class map and window limits for the list governing `now`.
    #[cold]
    fn rebuild(&mut self, now: u64) {
        let (list, until) = governing(&self.schedule, now);
        self.lut_until = until;
        let (map, num_tc) = match list {
            Some(l) => (*l.map(), l.num_tc()),
            None => ([0u8; MAP_LEN], MAX_TC),
        };
        for (i, slot) in self.lut.iter_mut().enumerate() {
            *slot = if i < MAP_LEN {
                Tc::priority(i as u8).resolve(&map, num_tc)
            } else {
                Tc::class((i - MAP_LEN) as u8).resolve(&map, num_tc)
            };
        }
        // Lists that may still govern from now on: the governing one, and a pending one.
        let lists = [
            list,
            (until != u64::MAX).then(|| self.schedule.admin()).flatten(),
        ];
        // Bypass while no list that may still govern closes a gate or limits an SDU (a
        // queueMaxSDU table needs every frame looked at). Re-evaluated here, at the
        // ConfigChangeTime too, so an open list taking over from a gated one brings bypass back.
        // A queue map, too: each frame's class decides its tx queue.
        self.always_open = lists
            .iter()
            .flatten()
            .all(|l| l.all_gates_always_open() && !l.has_max_sdu() && l.queues().is_none());
        let queues = list.and_then(|l| l.queues());
        for (c, q) in self.txq.iter_mut().enumerate() {
            *q = queues
                .and_then(|qs| qs.get(c))
                .map_or(DEFAULT_TXQ, |q| q.offset);
        }
        for c in 0..NTC {
            self.max_wire[c] = if list.is_none() {
                u64::MAX
            } else {
                lists
                    .iter()
                    .flatten()
                    .map(|l| l.longest_open(c as u8))
                    .max()
                    .unwrap_or(u64::MAX)
            };
            // queueMaxSDU of the list governing now (taprio, too, checks at enqueue).
            self.max_sdu[c] = match list.map_or(0, |l| l.max_sdu()[c]) {
                0 => usize::MAX,
                n => n as usize,
            };
        }
        self.set_limits();
        // Classes the new list does not have would be closed forever.
        if num_tc < self.num_tc {
            for c in usize::from(num_tc)..NTC {
                self.discard_class(c);
            }
        }
        self.num_tc = num_tc;
    }

    fn discard_class(&mut self, c: usize) {
        while self.queues[c].pop().is_some() {
            self.shared.counters.classes[c].discarded.add(1);
        }
        self.nonempty &= !(1 << c);
        self.head_deferred &= !(1 << c);
    }

    /// Hands every queued frame back (port shutdown), counted as discarded.
    pub fn flush(&mut self, mut out: impl FnMut(F)) {
        for c in 0..NTC {
            while let Some((f, _)) = self.queues[c].pop() {
                self.shared.counters.classes[c].discarded.add(1);
                out(f);
            }
        }
        self.nonempty = 0;
        self.head_deferred = 0;
    }

    /// Gate state at `now`, set outright (after a swap or a clock step back, or a long stall).
    fn resync(&mut self, now: u64) {
        let st = self.state_cur.state(&self.schedule, now);
        let opened = st.gates & !self.gates;
        for c in 0..NTC {
            if opened & (1 << c) != 0 {
                self.open_since[c] = now;
            }
        }
        self.gates = st.gates;
        self.gates_from = now;
        self.gates_next = st.next.unwrap_or(u64::MAX);
    }

    /// Follows the gate operations up to `now`, noting when each class opened.
    #[inline]
    fn track(&mut self, now: u64) {
        if now >= self.gates_from && now < self.gates_next {
            return;
        }
        self.track_slow(now);
    }

    #[cold]
    fn track_slow(&mut self, now: u64) {
        if now < self.gates_from {
            return self.resync(now);
        }
        // Usually one operation passed since the last iteration; after a long stall, resync.
        for _ in 0..64 {
            let t = self.gates_next;
            let st = self.state_cur.state(&self.schedule, t);
            let opened = st.gates & !self.gates;
            for c in 0..NTC {
                if opened & (1 << c) != 0 {
                    self.open_since[c] = t;
                }
            }
            self.gates = st.gates;
            self.gates_from = t;
            self.gates_next = st.next.unwrap_or(u64::MAX);
            if self.gates_next <= t {
                break;
            }
            if now < self.gates_next {
                return;
            }
        }
        self.resync(now);
    }

    /// When the gate of class `c` closes, seen from `t`: `None` if closed at `t`, `u64::MAX` if
    /// never. `t` ≥ the last tracked `now`.
    #[inline]
    fn open_until(&mut self, c: usize, t: u64) -> Option<u64> {
        if t >= self.win_from[c] && t < self.win_until[c] {
            return Some(self.win_until[c]);
        }
        if t < self.gates_next && self.gates & (1 << c) == 0 {
            return None;
        }
        match self.close_cur.gate_close_time(&self.schedule, c as u8, t) {
            None => {
                self.win_from[c] = t;
                self.win_until[c] = u64::MAX;
                Some(u64::MAX)
            }
            Some(x) if x > t => {
                self.win_from[c] = t;
                self.win_until[c] = x;
                Some(x)
            }
            Some(_) => None,
        }
    }

    /// Hands over up to `room` frames to `out` (the port's tx burst), at `now`: strict priority
    /// among classes whose gate is open now, each frame only if it leaves the wire before its
    /// gate closes, and no more than [`StageConfig::ahead_ns`] ahead of the wire nor past the
    /// next gate operation. Call it once per PMD
    /// iteration for every port with a stage (it also picks up new lists). Returns frames handed.
    #[inline]
    pub fn release(&mut self, now: u64, room: usize, mut out: impl FnMut(F)) -> usize {
        self.release_to_queues(now, room, |f, _| out(f))
    }

    /// [`release`](Self::release), telling `out` the tx queue of each frame: its class's first
    /// queue in the governing list's `queues` map, or [`DEFAULT_TXQ`]. Frames of one class come
    /// in runs, so the queue changes only between runs.
    #[inline]
    pub fn release_to_queues(
        &mut self,
        now: u64,
        room: usize,
        mut out: impl FnMut(F, u16),
    ) -> usize {
        self.poll(now);
        if self.nonempty == 0 || room == 0 {
            return 0;
        }
        self.track(now);
        let earliest = now.saturating_add(self.tx_delay_ns);
        let limit = earliest.saturating_add(self.ahead_ns);
        let mut n = 0;
        'frames: while n < room {
            let start = earliest.max(self.wire_free_at);
            // Within the look-ahead, and before the next gate operation: the gates that apply
            // at `start` are those of `now`. Past it the model may find the wire busy until a
            // gate opens, but a frame handed over then leaves at once wherever the model is only
            // approximate (a vdev paced by `speed=`, a NIC that drains faster than modelled): it
            // would be early. And lower classes booked past an opening would pass the class
            // that opens there.
            if start > limit || start >= self.gates_next {
                break;
            }
            let mut cand = self.nonempty;
            while cand != 0 {
                let c = 7 - cand.leading_zeros() as usize;
                cand &= !(1 << c);
                let Some(close) = self.open_until(c, start) else {
                    continue;
                };
                let run = Run {
                    now,
                    start,
                    limit,
                    close,
                    room: room - n,
                };
                let txq = self.txq[c];
                match self.send_run(c, run, &mut |f| out(f, txq)) {
                    0 => self.defer(c),
                    sent => {
                        n += sent;
                        continue 'frames;
                    }
                }
            }
            break;
        }
        n
    }

    /// Sends class `c`'s frames from its head, starting on the wire at `run.start`, for as long
    /// as they end before the gate closes; 0 when the head does not (the caller defers it).
    /// Until the next gate operation no gate changes, so no higher class can become eligible
    /// (closed stays closed, a head that did not fit fits even less later): a run needs no
    /// rescan. The window the run leaves in opened at `open_since` (the gate is open now), the
    /// same for every frame of the run; frames enqueued in one PMD iteration share their enqueue
    /// time too, so their release error and held state are counted once per such group, not
    /// per frame.
    #[inline]
    fn send_run(&mut self, c: usize, run: Run, out: &mut impl FnMut(F)) -> usize {
        let wire = self.wire;
        let q = &mut self.queues[c];
        let Some((head, first_enq)) = q.front() else {
            return 0;
        };
        let mut end = run.start.saturating_add(wire.ns(head.len()));
        if end > run.close {
            return 0;
        }
        // The caller hands over only classes open now.
        let opened = self.open_since[c];
        // A frame behind the head starts within the look-ahead and before the next gate
        // operation (the caller's scan handles what comes after it).
        let last_start = run.limit.min(self.gates_next.saturating_sub(1));
        let ctr = &self.shared.counters.classes[c];
        let mut held = 0u64;
        let mut count = |enq: u64, n: usize| {
            let n = n as u64;
            ctr.release_error
                .record_n(bucket_of(run.now.saturating_sub(opened.max(enq))), n);
            held += if enq < opened { n } else { 0 };
        };
        // The group being counted: its enqueue time and the run index of its first frame.
        let (mut group_enq, mut group_from) = (*first_enq, 0usize);
        let mut free = end;
        let mut sent = 0usize;
        let max = run.room.min(q.len());
        while let Some((frame, enq)) = q.pop() {
            free = end;
            if enq != group_enq {
                count(group_enq, sent - group_from);
                (group_enq, group_from) = (enq, sent);
            }
            out(frame);
            sent += 1;
            if sent >= max {
                break;
            }
            let Some((head, _)) = q.front() else {
                break;
            };
            // The wire is busy from here on: `free` is past the last start, so past earliest.
            let start = free;
            end = start.saturating_add(wire.ns(head.len()));
            if start > last_start || end > run.close {
                break; // the caller's scan decides (and counts a deferral)
            }
        }
        count(group_enq, sent - group_from);
        if held > 0 {
            ctr.held.add(held);
        }
        if q.len() == 0 {
            self.nonempty &= !(1 << c);
        }
        self.wire_free_at = free;
        self.head_deferred &= !(1 << c);
        sent
    }

    /// The head of class `c` does not fit before its gate closes.
    #[cold]
    fn defer(&mut self, c: usize) {
        let Some((head, _)) = self.queues[c].front() else {
            return;
        };
        let wt = self.wire.ns(head.len());
        let ctr = &self.shared.counters.classes[c];
        if wt > self.max_wire[c] {
            // It fits no window of the list now running: it would block its queue forever.
            if self.queues[c].pop().is_some() {
                ctr.discarded.add(1);
            }
            if self.queues[c].len() == 0 {
                self.nonempty &= !(1 << c);
            }
            self.head_deferred &= !(1 << c);
        } else if self.head_deferred & (1 << c) == 0 {
            self.head_deferred |= 1 << c;
            ctr.guard_deferrals.add(1);
        }
    }

    /// Launch-time offload: the launch time for a frame of `len` bytes in `class`, handed over at
    /// `now` — the earliest instant after the frames already booked on the wire at which it fits
    /// inside an open window of its class ([`launch_time`]) — and books the wire up to its end.
    /// `None`: no window within [`LAUNCH_HORIZON_NS`] fits it (drop it).
    pub fn launch_time(
        &mut self,
        class: u8,
        len: usize,
        now: u64,
        granularity_ns: u64,
    ) -> Option<u64> {
        let wt = self.wire.ns(len);
        let earliest = now.saturating_add(self.tx_delay_ns).max(self.wire_free_at);
        let t = launch_time(
            &self.schedule,
            class,
            wt,
            earliest,
            granularity_ns,
            LAUNCH_HORIZON_NS,
        )?;
        self.wire_free_at = t.saturating_add(wt);
        Some(t)
    }
}

/// A stage's counters and state, read out by the control thread.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct GateStats {
    pub link_bps: u64,
    /// Whether a list is running (oper) on the control side's view.
    pub oper: bool,
    /// When the pending (admin) list takes over, if one is pending.
    pub config_change_time: Option<u64>,
    /// 802.1Qbv ConfigChangeError.
    pub config_change_errors: u64,
    /// Schedules the PMD core has picked up.
    pub schedule_swaps: u64,
    /// Classes of the running (or pending) list; all 8 without a list.
    pub classes: Vec<ClassStats>,
}

/// Why a list was not installed on a port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateInstallError {
    #[error(
        "line {line}: sched-entry interval {interval_ns} ns is shorter than a minimum frame \
         ({MIN_FRAME} bytes) takes at the port's {mbps} Mb/s ({min_ns} ns): no frame could leave \
         in it"
    )]
    IntervalTooShort {
        line: usize,
        interval_ns: u64,
        min_ns: u64,
        mbps: u64,
    },
    #[error(transparent)]
    Schedule(#[from] InstallError),
}

/// Tx queues a port needs for `list`'s `queues` map (0 without one): a list mapping a class to
/// a queue the port lacks is refused, as taprio refuses it.
pub fn tx_queues_needed(list: &GateControlList) -> u16 {
    list.queues().map_or(0, |qs| {
        qs.iter()
            .map(|q| q.offset.saturating_add(q.count))
            .max()
            .unwrap_or(0)
    })
}

/// Shortest interval an entry may have at `link_bps`: the time of a minimum frame's 60 bytes,
/// as taprio requires (`length_to_duration(q, ETH_ZLEN)` in sch_taprio.c). A shorter entry could
/// never send, and a list of them would make the PMD core step through gate operations
/// instead of forwarding.
pub fn min_interval_ns(link_bps: u64) -> u64 {
    let bps = u128::from(link_bps.max(MIN_LINK_BPS));
    u64::try_from((MIN_FRAME as u128 * 8_000_000_000).div_ceil(bps)).unwrap_or(u64::MAX)
}

/// Every entry of `list` shorter than [`min_interval_ns`] at `link_bps`, as the error
/// [`GateControl::install`] refuses the first with (`gcl check --speed` lists them all).
pub fn short_entries(
    list: &GateControlList,
    link_bps: u64,
) -> impl Iterator<Item = GateInstallError> + '_ {
    let min_ns = min_interval_ns(link_bps);
    list.entries()
        .iter()
        .filter(move |e| e.interval < min_ns)
        .map(move |e| GateInstallError::IntervalTooShort {
            line: e.line,
            interval_ns: e.interval,
            min_ns,
            mbps: link_bps / 1_000_000,
        })
}

impl GateControl {
    /// Makes `list` the admin list at its ConfigChangeTime computed from `now` (the same clock
    /// the PMD core uses), and posts the schedule to the PMD core. Refused, changing nothing,
    /// when an entry is shorter than [`min_interval_ns`] at the port's link speed.
    pub fn install(
        &mut self,
        list: GateControlList,
        now: u64,
    ) -> Result<Installed, GateInstallError> {
        let bps = self.shared.link_bps.load(Ordering::Relaxed);
        if let Some(e) = short_entries(&list, bps).next() {
            return Err(e);
        }
        self.collect();
        let r = self.mirror.install(list, now)?;
        self.post();
        Ok(r)
    }

    /// Removes the list: every gate open, queued frames drain, then bypass.
    pub fn clear(&mut self) {
        self.collect();
        self.mirror = Schedule::new();
        self.post();
    }

    fn post(&mut self) {
        // A schedule posted earlier and not yet picked up is superseded: free it here.
        drop(self.shared.mailbox.put(Box::new(self.mirror.clone())));
    }

    /// Frees schedules the PMD core has replaced. `install` does it; call it now and then (e.g.
    /// with the stats) so an old list does not linger.
    pub fn collect(&mut self) {
        drop(self.shared.returns.take());
    }

    /// Promotes the mirror's admin list once due (for reporting; the PMD core needs no advance).
    pub fn advance(&mut self, now: u64) {
        self.mirror.advance(now);
    }

    /// The schedule as installed (control side's view).
    pub fn schedule(&self) -> &Schedule {
        &self.mirror
    }

    /// New link speed (bits/s), e.g. on a link-up event; 0 (link down) is ignored.
    pub fn set_link_speed(&self, bps: u64) {
        if bps != 0 {
            self.shared.link_bps.store(bps, Ordering::Relaxed);
        }
    }

    /// Reads the counters.
    pub fn stats(&self) -> GateStats {
        let num_tc = self
            .mirror
            .oper()
            .or(self.mirror.admin())
            .map_or(MAX_TC, |l| l.num_tc());
        let counters = &self.shared.counters;
        GateStats {
            link_bps: self.shared.link_bps.load(Ordering::Relaxed),
            oper: self.mirror.oper().is_some(),
            config_change_time: self.mirror.config_change_time(),
            config_change_errors: self.mirror.config_change_errors(),
            schedule_swaps: counters.swaps.get(),
            classes: (0..num_tc)
                .map(|c| counters.classes[usize::from(c)].snapshot(c))
                .collect(),
        }
    }
}
