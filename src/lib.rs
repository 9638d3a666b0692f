//! tsn-vswitch: a poll-mode L2 switch on DPDK.
pub mod app;
pub mod classify;
pub mod cli;
pub mod clock;
pub mod config;
pub mod ctl;
pub mod dpdk;
pub mod fdb;
pub mod forward;
pub mod pmd;
pub mod port;
pub mod stats;
pub mod tas;
pub mod wire;
