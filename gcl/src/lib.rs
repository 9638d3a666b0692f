//! IEEE 802.1Qbv gate control lists for tsn-vswitch.
//!
//! Pure computation, no I/O: parse a list ([`parse`]) written in any of three formats, told
//! apart by content ([`Format`]): the project's text format (taprio's words, one keyword per
//! line), a `tc qdisc … taprio …` command line as typed for Linux, or an IEEE 802.1Qcw
//! `gate-parameter-table` in JSON (RFC 7951); validate it, answer "which gates are open at t,
//! and when does that change" ([`GateControlList`], [`Cursor`]), switch from a running list to
//! a new one as 802.1Qbv's admin → oper machinery does ([`Schedule`]), and render the
//! `gcl check` report ([`check_report`]).
//!
//! Time is u64 nanoseconds of the list's clock. Gate masks are 8 bits, bit i = traffic class i.
//!
//! Decisions where taprio or the issue left room:
//! - `base-time` is required (taprio defaults it to 0; write `base-time 0` for that). `num_tc`,
//!   `map` and at least one `sched-entry` are required too, as taprio requires them on creation.
//! - `map` takes exactly 16 classes; `queues` (one `COUNT@OFFSET` per class, count ≥ 1, ranges
//!   disjoint as taprio wants them) is kept ([`GateControlList::queues`]) for the switch to map
//!   classes to tx queues; `clockid` is recorded ([`GateControlList::clockid`]) for the switch
//!   to check against its clock. Any other keyword, and any keyword given twice, is an error.
//! - `flags` and `txtime-delay` are accepted and recorded as taprio accepts them, with a
//!   warning: they choose how Linux enforces a schedule, and the switch's gate enforces it the
//!   same way whatever they say (see [`parse_text`]).
//! - A command line follows tc where tc's defaults differ (see the `taprio` module); an
//!   802.1Qcw document has no priority map: 8 classes, priority i → class i (see the `qcw`
//!   module).
//! - Before a list takes effect every gate is open, reported as the 8-bit mask `0xff`.
//! - "next" is the next gate *operation* (end of the current entry), even if it sets the same
//!   gates: with a single entry it is the next cycle boundary. Use
//!   [`GateControlList::gate_close_time`] for merged per-class windows.
//! - Instants past 2^64-1 ns are reported as `None` instead of overflowing.

mod admin;
mod error;
mod model;
mod parser;
mod qcw;
mod report;
mod schedule;
mod taprio;
mod validate;

pub use admin::{InstallError, Installed, Schedule, ScheduleCursor};
pub use error::{ErrorKind, ParseError, Warning, WarningKind};
pub use model::{
    ClockId, Entry, GateCommand, GateControlList, GateState, TxQueues, Window, ALL_GATES_OPEN,
    MAP_LEN, MAX_SDU, MAX_TC,
};
pub use parser::{parse, parse_for, parse_text, Format, Parsed};
pub use report::{check_report, report};
pub use schedule::Cursor;
