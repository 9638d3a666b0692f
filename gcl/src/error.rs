//! Parse and validation errors, and the warnings a valid list may still deserve.

use std::fmt;

/// Why a gate control list was rejected, with the line it was found on.
///
/// `Display` prints `LINE: reason`; the caller prefixes the file name. Line numbers start at 1;
/// problems with the file as a whole (something missing) point at its last line, and lists built
/// in code rather than parsed carry line 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}: {kind}")]
pub struct ParseError {
    /// 1-based line number (0 when the list was not parsed from text).
    pub line: usize,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl ParseError {
    pub(crate) fn new(line: usize, kind: ErrorKind) -> Self {
        Self { line, kind }
    }
}

/// What is wrong with a gate control list. Each message reads as a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("unknown keyword `{0}` (expected {KEYWORDS})")]
    UnknownKeyword(String),
    #[error("`{keyword}` is given twice (first on line {first})")]
    DuplicateKeyword { keyword: &'static str, first: usize },
    #[error("`{0}` is missing")]
    MissingKeyword(&'static str),
    #[error("there is no sched-entry: a gate control list needs at least one")]
    NoSchedEntry,
    #[error("`{keyword}` needs {expected}")]
    MissingValue {
        keyword: &'static str,
        expected: &'static str,
    },
    #[error("`{value}` is not {expected} (after `{keyword}`)")]
    BadValue {
        keyword: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("`{value}` does not fit in 64 bits (after `{keyword}`)")]
    NumberOverflows {
        keyword: &'static str,
        value: String,
    },
    #[error("unexpected `{token}` after the value of `{keyword}`")]
    ExtraToken {
        keyword: &'static str,
        token: String,
    },
    #[error("num_tc {0} is outside 1..=8")]
    NumTcOutOfRange(u64),
    #[error(
        "map has {0} entries, but taprio's map has 16 (one traffic class per priority 0..=15)"
    )]
    MapHasWrongLength(usize),
    #[error("map sends priority {priority} to class {class}, but num_tc is {num_tc}")]
    MapClassBeyondNumTc {
        priority: usize,
        class: u64,
        num_tc: u8,
    },
    #[error("queues has {got} COUNT@OFFSET pairs, but num_tc is {num_tc}")]
    QueuesCountMismatch { got: usize, num_tc: u8 },
    #[error("queues pair `{0}` has a zero count")]
    QueuesZeroCount(String),
    #[error("unknown sched-entry command `{0}` (expected S, H or R)")]
    UnknownCommand(String),
    #[error("gate mask {mask:#x} opens class {class}, but num_tc is {num_tc}")]
    MaskClassBeyondNumTc { mask: u64, class: u32, num_tc: u8 },
    #[error("the interval is zero: every entry must last at least 1 ns")]
    IntervalIsZero,
    #[error("the intervals sum past 2^64-1 ns")]
    IntervalsOverflow,
    #[error("cycle-time is zero")]
    CycleTimeIsZero,
    #[error("base-time + cycle-time overflows 2^64-1 ns")]
    FirstCycleOverflows,
    #[error(
        "max-sdu has {got} values, but num_tc is {num_tc} (one per traffic class, from class 0)"
    )]
    MaxSduBeyondNumTc { got: usize, num_tc: u8 },
    #[error("max-sdu {value} for class {class} is larger than 65521, the largest SDU of a 65535-byte frame")]
    MaxSduTooLarge { class: usize, value: u64 },
    #[error("unknown clockid `{0}` (expected CLOCK_TAI, CLOCK_REALTIME, CLOCK_MONOTONIC or CLOCK_BOOTTIME)")]
    UnknownClockid(String),
    #[error("queues pair `{0}` has a number past 65535")]
    QueuesValueTooLarge(String),
    #[error("the queues of class {class} ({count}@{offset}) overlap those of class {other}")]
    QueuesOverlap {
        class: usize,
        count: u16,
        offset: u16,
        other: usize,
    },
    #[error("`{value}` starts with 0, which tc reads as octal (after `{keyword}`): write it in decimal without the 0, or in hex with 0x")]
    LeadingZero {
        keyword: &'static str,
        value: String,
    },
    #[error("flags {0:#x} has bits taprio does not define (0x1 txtime-assist, 0x2 full offload)")]
    UnknownFlags(u64),
    #[error(
        "flags 0x3: txtime-assist (0x1) and full offload (0x2) exclude each other, as in taprio"
    )]
    FlagsExclusive,
    #[error("txtime-delay needs flags 0x1 (txtime-assist), as in taprio")]
    TxtimeDelayWithoutAssist,
    #[error(
        "`{0}` where `tc qdisc` should be: a gate control list is a `tc qdisc add|replace|change ... taprio ...` command"
    )]
    NotAQdiscCommand(String),
    #[error("`qdisc {0}` sets no schedule (expected add, replace or change)")]
    QdiscVerb(String),
    #[error("`{0}` before `taprio` is not a qdisc option this switch reads (expected dev, parent, root or handle)")]
    QdiscOption(String),
    #[error("the qdisc is `{0}`, not taprio")]
    NotTaprio(String),
    #[error("the command names no `taprio` qdisc")]
    MissingTaprio,
    #[error("a second `tc` command: a file holds one taprio command line")]
    SecondCommand,
    /// `column` 0: at the end of the document.
    #[error("invalid JSON{}: {reason}", if *.column == 0 { String::new() } else { format!(" at column {}", .column) })]
    JsonSyntax { column: usize, reason: String },
    #[error("`{at}` is not {expected}")]
    JsonValue { at: String, expected: &'static str },
    #[error("`{0}` is missing")]
    JsonMissing(String),
    #[error("`{at}` is given twice")]
    JsonTwice { at: String },
    #[error("unknown member `{name}` in `{at}`")]
    JsonUnknownMember { at: String, name: String },
    #[error("the JSON document holds no ieee802-dot1q-sched-bridge:gate-parameter-table (at its top, as its whole content, or in an ietf-interfaces:interfaces interface, directly or under ieee802-dot1q-bridge:bridge-port)")]
    JsonNoTable,
    #[error("{count} gate-parameter-tables in the document{}: give one, or name the interface", match .interface { Some(name) => format!(" and none of them in an interface named `{name}`"), None => String::new() })]
    JsonSeveralTables {
        count: usize,
        interface: Option<String>,
    },
    #[error("operation-name `{name}` in `{at}` is not an operation of ieee802-dot1q-sched (set-gate-states, set-and-hold-mac or set-and-release-mac)")]
    JsonOperation { at: String, name: String },
    #[error("gate-enabled is false: this table turns scheduling off, and a list given to the switch is meant to gate")]
    JsonGateDisabled,
    #[error("admin-cycle-time {numerator}/{denominator} s is not a positive whole number of nanoseconds")]
    JsonCycleTime { numerator: i64, denominator: i64 },
    #[error("gate-control-entry index {index} is given twice (first on line {first})")]
    JsonDuplicateIndex { index: u64, first: usize },
}

/// The keywords of a list in the text format and after `taprio` on a command line.
pub(crate) const KEYWORDS: &str = "num_tc, map, queues, base-time, cycle-time, \
     cycle-time-extension, sched-entry, max-sdu, clockid, flags or txtime-delay";

/// Something legal but probably unintended; returned as data so the caller decides how to show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line (0 when the list was not parsed from text).
    pub line: usize,
    /// What was noticed.
    pub kind: WarningKind,
}

/// The kinds of [`Warning`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarningKind {
    /// The intervals end before the cycle does: the last entry's gates hold `held` ns longer.
    ListShorterThanCycle {
        sum: u64,
        cycle_time: u64,
        held: u64,
    },
    /// This entry crosses the cycle's end and is cut to `runs` ns.
    EntryCut { index: usize, runs: u64 },
    /// This entry starts at or after the cycle's end and never runs.
    EntryNeverRuns { index: usize },
    /// A command line's `map` named fewer than 16 classes: tc fills the rest with class 0.
    MapFilled { given: usize },
    /// `flags 0x1` (txtime-assist), kept but not needed: the switch's gate releases each frame
    /// inside its window itself, so frames need no launch time from the schedule.
    TxtimeAssist { txtime_delay: Option<u32> },
    /// `flags 0x2` (full offload), kept: the switch's gate runs the schedule, with the gate
    /// states the NIC would apply.
    FullOffload,
    /// An 802.1Qcw `admin-gate-states` other than all open: until a list starts every gate is
    /// open here (as in taprio), so the value is not used.
    AdminGateStatesUnused { states: u8 },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.line, self.kind)
    }
}

impl fmt::Display for WarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ListShorterThanCycle {
                sum,
                cycle_time,
                held,
            } => write!(
                f,
                "the intervals sum to {sum} ns, less than cycle-time {cycle_time} ns: the last entry's gates are held {held} ns longer"
            ),
            Self::EntryCut { index, runs } => write!(
                f,
                "entry {index} crosses the end of the cycle and is cut to {runs} ns"
            ),
            Self::EntryNeverRuns { index } => write!(
                f,
                "entry {index} starts at or after the end of the cycle and never runs"
            ),
            Self::MapFilled { given } => write!(
                f,
                "map names classes for {given} of the 16 priorities: the other {} go to class 0, as tc fills them",
                crate::MAP_LEN.saturating_sub(*given)
            ),
            Self::TxtimeAssist { txtime_delay } => {
                write!(f, "flags 0x1 (txtime-assist)")?;
                if let Some(d) = txtime_delay {
                    write!(f, " and txtime-delay {d}")?;
                }
                write!(
                    f,
                    " kept but not needed: the switch's gate releases each frame inside its window itself"
                )
            }
            Self::FullOffload => write!(
                f,
                "flags 0x2 (full offload) kept: the switch's gate runs the schedule, with the gate states a NIC would apply"
            ),
            Self::AdminGateStatesUnused { states } => write!(
                f,
                "admin-gate-states {states:#04x} is not used: until a list starts every gate is open, as in taprio"
            ),
        }
    }
}
