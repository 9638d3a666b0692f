//! vhost-user backend for virtio-net, for a poll-mode switch. No DPDK: frames are copied out of
//! and into byte slices the caller provides.
//!
//! - [`protocol`]: message framing, SCM_RIGHTS fd passing, feature bits, `#[repr(C)]` payloads.
//! - [`memory`]: guest memory tables (fstat-checked, mmap'ed) and bounds-checked translation.
//! - [`guard`]: survives guest memory files that shrink under us (SIGBUS caught per region).
//! - [`virtqueue`]: split ring accessors, descriptor chain walking (indirect, loop bounds), EVENT_IDX.
//! - [`net`]: virtio-net header handling, guest TX dequeue, mergeable guest RX enqueue.
//! - [`queue`]: the PMD handles [`RxQueue`] / [`TxQueue`] and config publication.
//! - [`device`]: the per-connection state machine [`VhostUserNet`], server/client helpers.
//!
//! # How the switch uses it
//! Control thread:
//! ```no_run
//! # use vhost::*;
//! let mut dev = VhostUserNet::new(NetConfig { queue_pairs: 2, ..NetConfig::default() });
//! let (rx0, tx0) = dev.queue_pair(0).unwrap(); // hand these to PMD cores
//! let listener = Listener::bind("/tmp/vhost0.sock").unwrap();
//! loop {
//!     let stream = listener.accept().unwrap();
//!     dev.attach(stream);
//!     while dev.is_connected() {
//!         // or dev.handle_message() (blocking), or dev.run(stream, on_error)
//!         if let Err(e) = dev.poll_message(std::time::Duration::from_millis(100)) {
//!             eprintln!("vhost: {e}");
//!         }
//!         dev.service(); // reclaim old memory tables, signal error eventfds
//!         if dev.take_memory_fault() {
//!             eprintln!("vhost: the guest memory file shrank; frontend dropped");
//!         }
//!     }
//! }
//! ```
//! PMD core, per burst: `rx.dequeue_burst(&mut bufs, &mut lens)` and
//! `tx.enqueue_burst(&frames)`. Each call starts with the quiescent point (one acquire load; a
//! changed config is picked up there), so a core that polls its handles needs nothing else. A core
//! that stops polling a handle (queue disabled, moved elsewhere) should either drop it or call
//! `sync()` now and then; otherwise the control thread's GET_VRING_BASE for a running ring waits up
//! to `NetConfig::stop_timeout` for it.
//!
//! # Memory publication
//! Guest memory tables are immutable `Arc<GuestMemory>`s inside immutable per-vring configs. The
//! control side replaces a config whole and keeps the old one in a retired list; a PMD handle
//! swaps to the new one at the start of its next burst and acknowledges. The old table is unmapped
//! on the control thread (in `service()`/`reclaim()`) once no handle holds it. No RMW atomics on
//! the fast path; the only syscall is at most one eventfd write per burst.
//!
//! # Trust
//! The frontend and the guest are untrusted: every message size, region, ring address, index,
//! chain and length is checked; a guest violation breaks only that queue (see [`VirtqError`],
//! `take_error()`, metrics `errors`, the vring's error eventfd) until the frontend restarts it.
//! Work per burst is bounded whatever the guest posts: chains of at most 256 descriptors, no
//! zero-length buffers, and a burst starts no chain after 1024 descriptors
//! ([`virtqueue::BURST_DESC_BUDGET`]). A memory file truncated under us faults only its region
//! ([`guard`]): the frontend is dropped (`take_memory_fault`), the process lives.
//!
//! # Not supported (not advertised)
//! Dirty logging (LOG_ALL, LOG_SHMFD, SET_LOG_BASE), offloads (CSUM/GSO), packed rings,
//! IOMMU/IOTLB, CONFIG, CONFIGURE_MEM_SLOTS, inflight tracking, backend-initiated requests.

pub mod device;
pub mod error;
pub mod guard;
pub mod memory;
pub mod metrics;
pub mod net;
mod prefetch;
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
