//! IEEE 802.1Qbv gate control lists for tsn-vswitch.
//!
//! Pure computation, no I/O: parse a list written with Linux `tc … taprio` words ([`parse`]),
//! validate it, answer "which gates are open at t, and when does that change" ([`GateControlList`],
//! [`Cursor`]), switch from a running list to a new one as 802.1Qbv's admin → oper machinery does
//! ([`Schedule`]), and render the `gcl check` report ([`check_report`]).
//!
//! Time is u64 nanoseconds of the list's clock. Gate masks are 8 bits, bit i = traffic class i.
//!
//! Decisions where taprio or the issue left room:
//! - `base-time` is required (taprio defaults it to 0; write `base-time 0` for that). `num_tc`,
//!   `map` and at least one `sched-entry` are required too, as taprio requires them on creation.
//! - `map` takes exactly 16 classes; `queues` is checked for shape (one `COUNT@OFFSET` per class,
//!   count ≥ 1) and otherwise ignored; `clockid` is recorded ([`GateControlList::clockid`]) but
//!   not used. Any other keyword, and any keyword given twice, is an error.
//! - Before a list takes effect every gate is open, reported as the 8-bit mask `0xff`.
//! - "next" is the next gate *operation* (end of the current entry), even if it sets the same
//!   gates: with a single entry it is the next cycle boundary. Use
//!   [`GateControlList::gate_close_time`] for merged per-class windows.
//! - Instants past 2^64-1 ns are reported as `None` instead of overflowing.

mod admin;
mod error;
mod model;
mod parser;
mod report;
mod schedule;
mod validate;

pub use admin::{InstallError, Installed, Schedule, ScheduleCursor};
pub use error::{ErrorKind, ParseError, Warning, WarningKind};
pub use model::{
    ClockId, Entry, GateCommand, GateControlList, GateState, Window, ALL_GATES_OPEN, MAP_LEN,
    MAX_SDU, MAX_TC,
};
pub use parser::{parse, Parsed};
pub use report::check_report;
pub use schedule::Cursor;
