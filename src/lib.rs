//! tsn-vswitch: a poll-mode L2 switch on DPDK.
pub mod dpdk;
pub mod fdb;
pub mod forward;
pub mod stats;
pub mod wire;
