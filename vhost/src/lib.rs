//! vhost-user backend for virtio-net, for a poll-mode switch. No DPDK: frames are copied out of
//! and into byte slices the caller provides.
//!
//! - [`protocol`]: message framing, SCM_RIGHTS fd passing, feature bits, `#[repr(C)]` payloads.
//! - [`memory`]: guest memory tables (fstat-checked, mmap'ed) and bounds-checked translation.
//! - [`guard`]: survives guest memory files that shrink under us (SIGBUS caught per region).
//! - [`virtqueue`]: split ring accessors, descriptor chain walking (indirect, loop bounds), EVENT_IDX.
//! - [`net`]: virtio-net header handling, guest TX dequeue, mergeable guest RX enqueue.
//! - [`queue`]: the PMD handles [`RxQueue`] / [`TxQueue`] and config publication.
//! - [`guestfd`]: call and err eventfds whose writes cannot stall a thread of ours, even when the
//!   frontend makes them blocking again after handing them over.
//! - [`device`]: the per-device state machine [`VhostUserNet`] (non-blocking, driven by the
//!   caller's event loop), server/client helpers.
//!
//! # How the switch uses it
//! Control thread, one event loop for every device (here one, with `poll(2)`):
//! ```no_run
//! # use vhost::*;
//! # use std::time::{Duration, Instant};
//! let mut dev = VhostUserNet::new(NetConfig { queue_pairs: 2, ..NetConfig::default() });
//! let (rx0, tx0) = dev.queue_pair(0).unwrap(); // hand these to PMD cores
//! let listener = Listener::bind("/tmp/vhost0.sock").unwrap();
//! listener.listener().set_nonblocking(true).unwrap();
//! loop {
//!     // What to wait for: the connection's socket, or the listener while there is none.
//!     let (fd, events) = match dev.poll_interest() {
//!         Some(i) => {
//!             let ev = if i.read { libc::POLLIN } else { 0 } | if i.write { libc::POLLOUT } else { 0 };
//!             (if ev != 0 { i.fd } else { -1 }, ev)
//!         }
//!         None => (std::os::fd::AsRawFd::as_raw_fd(listener.listener()), libc::POLLIN),
//!     };
//!     // How long: no longer than the device's next deadline (a pending GET_VRING_BASE, a
//!     // started message, buffered messages), and never past the loop's own housekeeping.
//!     let now = Instant::now();
//!     let wait = dev.next_deadline().map_or(Duration::from_millis(100), |d| {
//!         d.saturating_duration_since(now).min(Duration::from_millis(100))
//!     });
//!     let mut pfd = libc::pollfd { fd, events, revents: 0 };
//!     // SAFETY: one valid pollfd for the duration of the call.
//!     unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as i32) };
//!     if !dev.is_connected() {
//!         if let Ok(stream) = listener.accept() {
//!             dev.attach(stream); // made non-blocking
//!         }
//!     }
//!     dev.serve(Instant::now(), |ev| match ev {
//!         ControlEvent::RequestFailed(e) => eprintln!("vhost: request failed: {e}"),
//!         ControlEvent::Disconnected(e) => eprintln!("vhost: frontend gone: {e}"),
//!     });
//!     dev.service(); // now and then: reclaim old memory tables, signal error eventfds
//!     if dev.take_memory_fault() {
//!         eprintln!("vhost: the guest memory file shrank; frontend dropped");
//!     }
//! }
//! ```
//! A device served alone can use the blocking helpers instead: `dev.run(stream, on_error)`,
//! `listener.serve(&mut dev, on_error)`, or `dev.wait_and_serve(max_wait, on_event)` in a loop.
//!
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
pub mod guestfd;
pub mod memory;
pub mod metrics;
pub mod net;
mod prefetch;
pub mod protocol;
pub mod queue;
pub mod virtqueue;

#[cfg(any(test, feature = "test-util"))]
pub mod testutil;

pub use device::{
    connect, try_connect, ControlEvent, ControlStats, Listener, NetConfig, PollInterest,
    VhostUserNet,
};
pub use error::{DeviceError, MemoryError, ProtocolError, VirtqError};
pub use metrics::{MetricsSnapshot, QueueMetrics};
pub use net::MAX_BURST;
pub use protocol::{ProtocolFeatures, VirtioFeatures};
pub use queue::{RxQueue, TxQueue};

#[cfg(test)]
mod tests;
