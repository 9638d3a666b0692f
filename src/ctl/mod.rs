//! The control socket: `tsn-vswitch ctl` sends one [`Request`] as a JSON line, the switch answers
//! one [`Reply`] and closes.
//!
//! - [`protocol`]: the request and reply types, shared by client, server and command line;
//! - [`server`]: the non-blocking server the control loop drives, and the socket's creation;
//! - [`client`]: `tsn-vswitch ctl`;
//! - [`table`]: the aligned tables of `ctl show`.
pub mod client;
pub mod protocol;
pub(crate) mod server;
pub(crate) mod table;

pub use protocol::{Reply, Request, ShowWhat};
pub use server::CtlGroup;
pub(crate) use server::{CtlServer, ServerStats};
