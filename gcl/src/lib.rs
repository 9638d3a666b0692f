//! IEEE 802.1Qbv gate control lists for tsn-vswitch.
//!
//! Pure computation, no I/O: parse a list written with Linux `tc … taprio` words ([`parse`]),
//! validate it, answer "which gates are open at t, and when does that change" ([`GateControlList`],
//! [`Cursor`]), switch from a running list to a new one as 802.1Qbv's admin → oper machinery does
//! ([`Schedule`]), and render the `gcl check` report ([`check_report`]).
//!
//! Time is u64 nanoseconds of the list's clock. Gate masks are 8 bits, bit i = traffic class i.

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
    MAX_TC,
};
pub use parser::{parse, Parsed};
pub use report::check_report;
pub use schedule::Cursor;
