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
    #[error("unknown keyword `{0}` (expected num_tc, map, queues, base-time, cycle-time, cycle-time-extension, sched-entry, max-sdu or clockid)")]
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
}

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
        }
    }
}
