//! tsn-vswitch: a poll-mode L2 switch on DPDK.
pub mod app;
pub mod classify;
pub mod cli;
pub(crate) mod clock;
pub mod config;
pub mod ctl;
pub(crate) mod dpdk;
pub mod fdb;
pub mod forward;
pub(crate) mod pmd;
pub(crate) mod port;
pub(crate) mod stats;
pub mod tas;
pub mod wire;
