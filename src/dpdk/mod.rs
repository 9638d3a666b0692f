//! DPDK: raw FFI (`ffi`) and the small safe wrappers the switch uses (EAL, mempool, mbuf,
//! ethdev). Every `unsafe` block lives here, next to the invariant it relies on.
pub mod eal;
pub mod ethdev;
pub mod ffi;
pub mod mbuf;
pub mod mempool;

pub use eal::{Eal, EalConfig};
pub use ethdev::{EthPort, RxQueue, TxHandle};
pub use mbuf::{Burst, Mbuf, Recycle, BURST};
pub use mempool::Mempool;

use std::ffi::CStr;

/// Errors from DPDK calls; each names what was attempted and DPDK's reason.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    #[error("EAL initialisation failed: {0}")]
    EalInit(String),
    #[error("DPDK rejected devargs '{devargs}': {reason}")]
    Probe { devargs: String, reason: String },
    #[error("device '{0}' was probed but no ethdev port carries that name")]
    NoSuchPort(String),
    #[error("creating mempool '{name}' failed: {reason}")]
    Mempool { name: String, reason: String },
    #[error("{op} on port {port} failed: {reason}")]
    Port {
        op: &'static str,
        port: u16,
        reason: String,
    },
    #[error("launching work on lcore {lcore} failed: {reason}")]
    Launch { lcore: u32, reason: String },
}

/// DPDK's text for an errno value (positive or negative).
pub fn strerror(errnum: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string.
    unsafe { CStr::from_ptr(ffi::rte_strerror(errnum.abs())) }
        .to_string_lossy()
        .into_owned()
}

/// The calling thread's `rte_errno` as text.
pub fn last_error() -> String {
    // SAFETY: reads a thread-local int through the shim; no preconditions.
    strerror(unsafe { ffi::tsn_rte_errno() })
}

/// TSC frequency in Hz (valid after EAL init).
pub fn tsc_hz() -> u64 {
    // SAFETY: plain getter of a value EAL measured at init.
    unsafe { ffi::rte_get_tsc_hz() }
}

/// Current TSC value (`rdtsc`).
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: reads the time-stamp counter; no memory is touched.
    unsafe { core::arch::x86_64::_rdtsc() }
}
