//! vhost-user backend for virtio-net, for a poll-mode switch.
//!
//! - [`protocol`]: message framing, fd passing, feature bits.
//! - [`memory`]: guest memory tables (mmap, fstat-checked) and address translation.
//! - [`virtqueue`]: split ring accessors, descriptor chain walking, EVENT_IDX.
//! - [`net`]: virtio-net header handling, guest TX dequeue, mergeable guest RX enqueue.
//! - [`queue`]: PMD handles ([`RxQueue`], [`TxQueue`]) and config publication.
//! - [`device`]: the per-connection state machine ([`VhostUserNet`]).
//!
//! No DPDK: frames are copied out of and into byte slices the caller provides.

pub mod device;
pub mod error;
pub mod memory;
pub mod metrics;
pub mod net;
pub mod protocol;
pub mod queue;
pub mod virtqueue;

#[cfg(any(test, feature = "test-util"))]
pub mod testutil;

pub use device::{connect, ControlStats, Listener, NetConfig, VhostUserNet};
pub use error::{DeviceError, MemoryError, ProtocolError, VirtqError};
pub use metrics::{MetricsSnapshot, QueueMetrics};
pub use net::MAX_BURST;
pub use protocol::{ProtocolFeatures, VirtioFeatures};
pub use queue::{RxQueue, TxQueue};

#[cfg(test)]
mod tests;
