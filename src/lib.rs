//! tsn-vswitch: a poll-mode L2 switch on DPDK.
pub mod app;
pub mod cli;
pub mod config;
pub mod ctl;
pub mod dpdk;
pub mod fdb;
pub mod forward;
pub mod pmd;
pub mod stats;
pub mod wire;
