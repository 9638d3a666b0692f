//! Software prefetches for the copy paths. The rings and buffers a burst touches were last
//! written by the driver's core, so each access is a cross-core cache miss; issuing them for the
//! whole burst before the accesses lets them overlap instead of serialising frame by frame (as
//! rte_vhost prefetches avail entries, descriptors and buffers). A prefetch never faults, so any
//! address is fine, and on other architectures these are no-ops.

/// Starts bringing the line holding `p` into the cache for reading.
#[inline(always)]
pub(crate) fn read(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetcht0 is a hint: it does not fault, read memory architecturally or change
    // any register or flag.
    unsafe {
        std::arch::asm!("prefetcht0 [{}]", in(reg) p, options(nostack, readonly, preserves_flags));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Starts bringing the line holding `p` into the cache in a writable state (an RFO ahead of the
/// store). CPUs without PREFETCHW execute the opcode as a NOP.
#[inline(always)]
pub(crate) fn write(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetchw is a hint: it does not fault, write memory or change any register or
    // flag.
    unsafe {
        std::arch::asm!("prefetchw [{}]", in(reg) p, options(nostack, readonly, preserves_flags));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
