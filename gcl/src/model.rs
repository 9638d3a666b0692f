//! The validated gate control list and the small types around it.

use crate::error::{ParseError, Warning};
use crate::validate::{self, Raw, RawEntry};

/// Most traffic classes (and gates) a list can name: taprio's `TC_QOPT_MAX_QUEUE` is 16, but a
/// gate mask in 802.1Qbv is 8 bits, one per class.
pub const MAX_TC: u8 = 8;
/// Length of the priority→class map (taprio's `TC_BITMASK + 1`).
pub const MAP_LEN: usize = 16;
/// Largest `max-sdu` value: an SDU of a frame that fits in DPDK's 16-bit `data_len`.
pub const MAX_SDU: u32 = 65_535 - 14;
/// Mask with all 8 gates open: what is reported before a list takes effect.
pub const ALL_GATES_OPEN: u8 = 0xff;

/// The 802.1Qbv gate operation of an entry (Table 8-7).
///
/// `H` and `R` drive 802.1Qbu frame preemption; without preemption they act as `S`, which is all
/// this crate models: the command is kept so the switch can honour it later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GateCommand {
    /// `S`: SetGateStates.
    SetGates,
    /// `H`: Set-And-Hold-MAC.
    SetAndHold,
    /// `R`: Set-And-Release-MAC.
    SetAndRelease,
}

impl GateCommand {
    /// The taprio letter for this command.
    pub fn letter(self) -> char {
        match self {
            Self::SetGates => 'S',
            Self::SetAndHold => 'H',
            Self::SetAndRelease => 'R',
        }
    }
}

/// One `sched-entry`: set the gates to `gates` and keep them for `interval` ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    pub command: GateCommand,
    /// Bit i = gate of traffic class i open.
    pub gates: u8,
    /// Nanoseconds, at least 1.
    pub interval: u64,
    /// Line it was parsed from (0 if built in code).
    pub line: usize,
}

/// Which clock the list's times are in. Parsed so a file written for taprio is accepted; the
/// switch decides what to do with it (it is not used by any computation here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClockId {
    Tai,
    Realtime,
    Monotonic,
    Boottime,
}

impl ClockId {
    /// The name taprio prints.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tai => "CLOCK_TAI",
            Self::Realtime => "CLOCK_REALTIME",
            Self::Monotonic => "CLOCK_MONOTONIC",
            Self::Boottime => "CLOCK_BOOTTIME",
        }
    }
}

/// The tx queues of one traffic class, as taprio's `queues COUNT@OFFSET` gives them: `count`
/// queues from queue `offset`. Kept so the switch can map classes to tx queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxQueues {
    /// At least 1.
    pub count: u16,
    pub offset: u16,
}

/// Gate state at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GateState {
    /// Open gates, bit i = class i.
    pub gates: u8,
    /// Absolute time of the next gate operation (the current entry's end), or `None` if there is
    /// none, or it lies past 2^64-1 ns. An operation may set the same gates again: the value is
    /// where the list moves on, which is what a timer should be armed for.
    pub next: Option<u64>,
}

/// Where an entry actually runs inside a cycle, after cutting to `cycle-time` and holding the last
/// entry to the cycle's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// Offset from the cycle's start, ns.
    pub start: u64,
    /// Offset of the end (exclusive), ns; the last window ends at `cycle_time`.
    pub end: u64,
    pub gates: u8,
    /// Index into [`GateControlList::entries`].
    pub entry: usize,
}

/// For a window in which a class is open: the window (possibly in the next cycle) where the class
/// next closes. Precomputed so `gate_close_time` is O(1) once the window is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseRef {
    /// The class is open in every window: it never closes while this list runs.
    Never,
    /// The class closes at the start of `window`, in the next cycle if `wrap`.
    At { window: usize, wrap: bool },
}

/// A validated gate control list. Build it with [`crate::parse`] or [`GateControlList::new`].
///
/// Invariants (established by validation, relied on without panicking paths): at least one entry
/// and one window, `cycle_time > 0`, `base_time + cycle_time` fits in u64, every mask only names
/// classes below `num_tc`, every map entry is below `num_tc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateControlList {
    pub(crate) num_tc: u8,
    pub(crate) map: [u8; MAP_LEN],
    pub(crate) base_time: u64,
    pub(crate) cycle_time: u64,
    pub(crate) cycle_time_explicit: bool,
    pub(crate) cycle_time_extension: u64,
    pub(crate) entries: Vec<Entry>,
    pub(crate) clockid: Option<ClockId>,
    /// `queues`, one per class from class 0 (validated: `num_tc` of them, pairwise disjoint).
    pub(crate) queues: Option<Vec<TxQueues>>,
    /// taprio's `flags` (0, 0x1 txtime-assist or 0x2 full offload) and `txtime-delay`.
    pub(crate) flags: u32,
    pub(crate) txtime_delay: Option<u32>,
    /// queueMaxSDU per class (802.1Q-2018 §12.29.1.1), 0 = no limit.
    pub(crate) max_sdu: [u32; MAX_TC as usize],
    pub(crate) windows: Vec<Window>,
    pub(crate) close: Vec<[CloseRef; MAX_TC as usize]>,
    /// Per class: see [`GateControlList::longest_open`].
    pub(crate) longest_open: [u64; MAX_TC as usize],
}

impl GateControlList {
    /// Builds and validates a list in code. `cycle_time: None` means the sum of the intervals.
    /// Errors and warnings carry the entries' `line` fields (use 0) and line 0 otherwise.
    pub fn new(
        num_tc: u8,
        map: [u8; MAP_LEN],
        base_time: u64,
        cycle_time: Option<u64>,
        cycle_time_extension: u64,
        entries: &[Entry],
    ) -> Result<(Self, Vec<Warning>), ParseError> {
        if !(1..=MAX_TC).contains(&num_tc) {
            return Err(ParseError::new(
                0,
                crate::ErrorKind::NumTcOutOfRange(num_tc.into()),
            ));
        }
        let raw = Raw {
            num_tc: Some((num_tc, 0)),
            map: Some((map.map(u64::from), 0)),
            base_time: Some((base_time, 0)),
            cycle_time: cycle_time.map(|c| (c, 0)),
            cycle_time_extension: Some((cycle_time_extension, 0)),
            entries: entries
                .iter()
                .map(|e| RawEntry {
                    command: e.command,
                    mask: e.gates.into(),
                    interval: e.interval,
                    line: e.line,
                })
                .collect(),
            queues: None,
            clockid: None,
            max_sdu: None,
            flags: None,
            txtime_delay: None,
            warnings: Vec::new(),
            last_line: 0,
        };
        validate::validate(raw)
    }

    /// Number of traffic classes (1..=8).
    pub fn num_tc(&self) -> u8 {
        self.num_tc
    }
    /// Priority → traffic class (each < `num_tc`).
    pub fn map(&self) -> &[u8; MAP_LEN] {
        &self.map
    }
    /// Traffic class of a priority. Priorities past 15 are masked to 4 bits, as taprio masks
    /// `skb->priority` with `TC_BITMASK`.
    pub fn class_of(&self, priority: u32) -> u8 {
        self.map[(priority & 0xf) as usize]
    }
    /// Instant the list's first cycle starts (when installed standalone).
    pub fn base_time(&self) -> u64 {
        self.base_time
    }
    /// Cycle length, ns (the given `cycle-time`, or the sum of the intervals).
    pub fn cycle_time(&self) -> u64 {
        self.cycle_time
    }
    /// Whether `cycle-time` was given rather than derived.
    pub fn cycle_time_is_explicit(&self) -> bool {
        self.cycle_time_explicit
    }
    /// Most ns the last cycle before a newer list may be stretched (802.1Qbv §Q.5); 0 if absent.
    pub fn cycle_time_extension(&self) -> u64 {
        self.cycle_time_extension
    }
    /// The entries as written.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
    /// The entries as they run in a cycle (cut, held, never-running ones dropped).
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }
    /// The `clockid` line, if any.
    pub fn clockid(&self) -> Option<ClockId> {
        self.clockid
    }
    /// The `queues COUNT@OFFSET` pairs, one per traffic class from class 0, if given.
    pub fn queues(&self) -> Option<&[TxQueues]> {
        self.queues.as_deref()
    }
    /// taprio's `flags`: 0, 0x1 (txtime-assist) or 0x2 (full offload). Recorded only: the
    /// switch's gate runs the schedule whatever they say (the parse warns).
    pub fn flags(&self) -> u32 {
        self.flags
    }
    /// taprio's `txtime-delay` (ns), given only with `flags 0x1`. Recorded only.
    pub fn txtime_delay(&self) -> Option<u32> {
        self.txtime_delay
    }
    /// The queueMaxSDU table (802.1Q-2018 §8.6.8.4, §12.29.1.1; taprio's `max-sdu`): per
    /// class, the largest MAC service data unit — the frame's payload after the Ethernet header
    /// and any VLAN tags — it may transmit; 0 means no limit beyond the port's. Classes past
    /// `num_tc` read 0.
    pub fn max_sdu(&self) -> &[u32; MAX_TC as usize] {
        &self.max_sdu
    }
    /// Whether any class has a queueMaxSDU limit.
    pub fn has_max_sdu(&self) -> bool {
        self.max_sdu.iter().any(|&v| v != 0)
    }
    /// The same list with the queueMaxSDU table `table` (class 0 first, 0 = no limit); fails
    /// as a parsed `max-sdu` line would (more values than `num_tc`, a value past [`MAX_SDU`]).
    pub fn with_max_sdu(mut self, table: &[u32]) -> Result<Self, ParseError> {
        let values: Vec<u64> = table.iter().map(|&v| v.into()).collect();
        self.max_sdu = validate::max_sdu_table(&values, self.num_tc, 0)?;
        Ok(self)
    }
    /// Longest stretch (ns) the gate of `class` stays open while this list runs, merged across
    /// entries and cycles: `u64::MAX` if it never closes, 0 if it never opens (or `class` is not
    /// a class of the list). Computed once at validation, so asking costs nothing: a switch
    /// asks it for every class whenever a list takes over, on its packet-processing core.
    pub fn longest_open(&self, class: u8) -> u64 {
        self.longest_open
            .get(usize::from(class))
            .copied()
            .unwrap_or(0)
    }

    /// Computes [`GateControlList::longest_open`] for every class (O(windows × log windows)).
    pub(crate) fn compute_longest_open(&self) -> [u64; MAX_TC as usize] {
        std::array::from_fn(|c| {
            let bit = 1u8 << c;
            self.windows
                .iter()
                .filter(|w| w.gates & bit != 0)
                .map(|w| {
                    let t = self.base_time.saturating_add(w.start);
                    match self.gate_close_time(c as u8, t) {
                        None => u64::MAX,
                        Some(close) => close.saturating_sub(t),
                    }
                })
                .max()
                .unwrap_or(0)
        })
    }

    /// Mask with the gates of all `num_tc` classes open.
    pub fn all_classes_mask(&self) -> u8 {
        full_mask(self.num_tc)
    }
}

/// Bits 0..num_tc set.
pub(crate) fn full_mask(num_tc: u8) -> u8 {
    match 1u16.checked_shl(num_tc.into()) {
        Some(v) => (v.wrapping_sub(1) & 0xff) as u8,
        None => 0xff,
    }
}
