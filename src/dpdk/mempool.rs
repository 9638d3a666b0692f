//! Packet-buffer pools.
use super::{ffi, last_error, DpdkError};
use std::ffi::CString;
use std::ptr::NonNull;

/// An mbuf pool. DPDK mempools are thread-safe (per-lcore caches plus a lock-free ring).
pub struct Mempool(NonNull<ffi::rte_mempool>);

// SAFETY: rte_mempool operations are multi-producer/multi-consumer safe.
unsafe impl Send for Mempool {}
// SAFETY: as above; shared references only call thread-safe get/put.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// A pool of `n` mbufs with `cache` per-lcore cache and the default data room (2 KiB +
    /// headroom): enough for a 1522-byte frame in one segment.
    pub fn new(name: &str, n: u32, cache: u32, socket: i32) -> Result<Mempool, DpdkError> {
        let cname = CString::new(name).expect("pool name has no NUL");
        // SAFETY: cname outlives the call; DPDK copies the name.
        let p = unsafe {
            ffi::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                n,
                cache,
                0,
                ffi::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
                socket,
            )
        };
        NonNull::new(p)
            .map(Mempool)
            .ok_or_else(|| DpdkError::Mempool {
                name: name.into(),
                reason: last_error(),
            })
    }

    pub fn as_ptr(&self) -> *mut ffi::rte_mempool {
        self.0.as_ptr()
    }

    /// Mbufs currently free in the pool (off the fast path: it walks the caches).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is valid for self's lifetime.
        unsafe { ffi::rte_mempool_avail_count(self.0.as_ptr()) }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: the owner guarantees every mbuf went back and no port still refers to the pool.
        unsafe { ffi::rte_mempool_free(self.0.as_ptr()) };
    }
}
