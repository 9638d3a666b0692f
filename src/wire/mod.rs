//! Typed zero-copy views over packet bytes, in the manner of smoltcp's `wire`: check the length
//! once in `new_checked`, then accessors that cannot panic. Field offsets live in private
//! `field` modules.
mod ethernet;
mod ipv4;
mod udp;
mod vlan;

pub use ethernet::{EtherType, EthernetFrame, MacAddr, HEADER_LEN as ETH_HEADER_LEN};
pub use ipv4::{Ipv4Packet, PROTO_UDP};
pub use udp::UdpDatagram;
pub use vlan::{VlanTag, VLAN_TAG_LEN};

/// The buffer is too short for the header it was asked to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("buffer too short for the header")]
pub struct Truncated;
