//! Split virtqueue mechanics (virtio 1.1 §2.6): ring accessors on host pointers, descriptor chain
//! walking with every guest-controlled value checked, the used ring and notification decisions.
//!
//! All ring fields are little-endian (VERSION_1; legacy guests on the little-endian hosts we run on
//! have the same layout). Ring memory is shared with a running guest, so it is only touched through
//! volatile accesses, atomics, or byte copies — never through Rust references.

use std::sync::atomic::{AtomicU16, Ordering};

use crate::error::VirtqError;
use crate::memory::GuestMemory;

/// §2.6.5: descriptor flags.
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;
/// §2.6.6: the driver does not want interrupts.
pub const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// §2.6.8: the device does not want kicks.
pub const VRING_USED_F_NO_NOTIFY: u16 = 1;
/// §2.6: the largest split queue.
pub const MAX_QUEUE_SIZE: u32 = 32768;
pub const DESC_SIZE: u64 = 16;

/// Byte sizes of the three parts of a split ring of `size` entries (§2.6), event fields included.
pub fn ring_sizes(size: u16) -> (u64, u64, u64) {
    let n = size as u64;
    (DESC_SIZE * n, 6 + 2 * n, 6 + 8 * n)
}

/// One descriptor as read from guest memory (§2.6.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

/// Reads one descriptor at `p` (16 bytes, any alignment).
///
/// # Safety
/// `p..p+16` must be inside a live guest mapping.
#[inline]
unsafe fn read_desc(p: *const u8) -> Desc {
    // SAFETY: caller guarantees 16 readable bytes; unaligned reads tolerate indirect tables at
    // odd addresses.
    unsafe {
        Desc {
            addr: u64::from_le(std::ptr::read_unaligned(p.cast::<u64>())),
            len: u32::from_le(std::ptr::read_unaligned(p.add(8).cast::<u32>())),
            flags: u16::from_le(std::ptr::read_unaligned(p.add(12).cast::<u16>())),
            next: u16::from_le(std::ptr::read_unaligned(p.add(14).cast::<u16>())),
        }
    }
}

/// Host pointers to the three parts of one split ring. Only valid while the [`GuestMemory`] they
/// were translated against is alive; `queue::QueueConfig` keeps both together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ring {
    desc: *const u8,
    avail: *mut u8,
    used: *mut u8,
    size: u16,
    /// The longest chain accepted: `min(size, MAX_CHAIN_DESCS)`.
    chain_max: u16,
}

impl Ring {
    /// Translates ring addresses (frontend virtual) against `mem`. Each part must lie inside one
    /// region and be aligned as §2.6 requires (desc 16, avail 2, used 4), which also makes the
    /// atomic accesses below aligned.
    pub fn new(mem: &GuestMemory, size: u16, desc: u64, avail: u64, used: u64) -> Option<Ring> {
        if size == 0 || !size.is_power_of_two() || u32::from(size) > MAX_QUEUE_SIZE {
            return None;
        }
        let (dl, al, ul) = ring_sizes(size);
        let d = mem.uva_to_host(desc, dl)?;
        let a = mem.uva_to_host(avail, al)?;
        let u = mem.uva_to_host(used, ul)?;
        if (d as usize) % 16 != 0 || (a as usize) % 2 != 0 || (u as usize) % 4 != 0 {
            return None;
        }
        Some(Ring {
            desc: d,
            avail: a,
            used: u,
            size,
            chain_max: size.min(MAX_CHAIN_DESCS),
        })
    }

    #[inline]
    pub fn size(&self) -> u16 {
        self.size
    }

    /// The longest descriptor chain accepted on this ring: `min(size, MAX_CHAIN_DESCS)`.
    #[inline]
    pub fn chain_max(&self) -> u16 {
        self.chain_max
    }

    #[inline]
    fn avail_u16(&self, byte_off: usize) -> &AtomicU16 {
        // SAFETY: byte_off < 6 + 2*size (callers), inside the avail ring checked in `new`, 2-aligned.
        unsafe { &*self.avail.add(byte_off).cast::<AtomicU16>() }
    }

    #[inline]
    fn used_u16(&self, byte_off: usize) -> &AtomicU16 {
        // SAFETY: byte_off < 6 + 8*size (callers), inside the used ring checked in `new`, 2-aligned.
        unsafe { &*self.used.add(byte_off).cast::<AtomicU16>() }
    }

    /// avail->idx, with acquire ordering so ring entries and descriptors read after it are at
    /// least as new (§2.7.13: the driver writes idx last).
    #[inline]
    pub fn avail_idx(&self) -> u16 {
        u16::from_le(self.avail_u16(2).load(Ordering::Acquire))
    }

    #[inline]
    pub fn avail_flags(&self) -> u16 {
        u16::from_le(self.avail_u16(0).load(Ordering::Relaxed))
    }

    /// avail->ring[idx % size].
    #[inline]
    pub fn avail_entry(&self, idx: u16) -> u16 {
        let slot = (idx & (self.size - 1)) as usize;
        u16::from_le(self.avail_u16(4 + 2 * slot).load(Ordering::Relaxed))
    }

    /// used_event, after avail->ring (§2.6.7, EVENT_IDX).
    #[inline]
    pub fn used_event(&self) -> u16 {
        u16::from_le(
            self.avail_u16(4 + 2 * self.size as usize)
                .load(Ordering::Relaxed),
        )
    }

    /// Descriptor `i` of the main table; `None` when out of range.
    #[inline]
    pub fn desc(&self, i: u16) -> Option<Desc> {
        if i >= self.size {
            return None;
        }
        // SAFETY: i < size, so the 16 bytes are inside the table checked in `new`.
        Some(unsafe { read_desc(self.desc.add(16 * i as usize)) })
    }

    /// Prefetches descriptor `i` of the main table (nothing when out of range).
    #[inline]
    pub fn prefetch_desc(&self, i: u16) {
        if i < self.size {
            // A hint only: the address is inside the table checked in `new` anyway.
            crate::prefetch::read(self.desc.wrapping_add(16 * i as usize));
        }
    }

    /// Writes used->ring[idx % size] (not yet visible: see `publish_used_idx`).
    ///
    /// Only where the element does not hold these values already: an in-order ring gives back
    /// the same heads lap after lap, with the same lengths when the frames are alike, and a
    /// store of an unchanged element would take its line out of the driver's cache, which then
    /// misses on it. Left alone, the line stays shared (only the device writes it).
    #[inline]
    pub fn write_used(&self, idx: u16, id: u16, len: u32) {
        let slot = (idx & (self.size - 1)) as usize;
        // SAFETY: the element is inside the used ring checked in `new`, 4-aligned.
        unsafe {
            let p = self.used.add(4 + 8 * slot).cast::<u32>();
            let (id, len) = (u32::from(id).to_le(), len.to_le());
            if std::ptr::read_volatile(p) != id || std::ptr::read_volatile(p.add(1)) != len {
                std::ptr::write_volatile(p, id);
                std::ptr::write_volatile(p.add(1), len);
            }
        }
    }

    /// used->idx with release ordering: used elements and buffer contents written before are
    /// visible to the driver once it sees the new idx (§2.7.14).
    #[inline]
    pub fn publish_used_idx(&self, idx: u16) {
        self.used_u16(2).store(idx.to_le(), Ordering::Release);
    }

    pub fn used_idx(&self) -> u16 {
        u16::from_le(self.used_u16(2).load(Ordering::Relaxed))
    }

    pub fn set_used_flags(&self, flags: u16) {
        self.used_u16(0).store(flags.to_le(), Ordering::Relaxed);
    }

    /// avail_event, after used->ring (§2.6.8, EVENT_IDX).
    pub fn set_avail_event(&self, v: u16) {
        self.used_u16(4 + 8 * self.size as usize)
            .store(v.to_le(), Ordering::Relaxed);
    }
}

/// §2.6.7.1: whether the driver asked to be notified when used idx moves from `old` to `new`.
#[inline]
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// The longest descriptor chain accepted, indirect head and table included (the queue size, if
/// smaller, bounds it too); a longer one is a violation. rte_vhost, which OVS-DPDK guests are used
/// to, gives up on chains of more than 256 buffers (BUF_VECTOR_MAX), Linux's vhost on more than
/// 1024 (UIO_MAXIOV); virtio-net drivers stay far below: a Linux guest's chain is at most
/// MAX_SKB_FRAGS + 2 buffers (19 by default, 47 at most) plus an indirect head, DPDK's one per
/// mbuf segment plus the header.
pub const MAX_CHAIN_DESCS: u16 = 256;

/// Descriptors one burst may walk on one queue before it starts no further chain, whatever the
/// guest posts: indirect heads, table entries and every buffer of chains given back (a frame
/// that did not fit) included. As a chain is at most [`MAX_CHAIN_DESCS`] long, a burst walks
/// fewer than `BURST_DESC_BUDGET + MAX_CHAIN_DESCS` = 1280 descriptors: one guest's queue costs
/// its PMD core a bounded slice per burst. A burst that reaches the budget ends there (guest TX:
/// the next chain stays available for the next burst, which always completes at least one;
/// guest RX: the frame being placed and the rest of the burst are not delivered).
///
/// 32 per frame of a full burst of [`crate::net::MAX_BURST`], and legitimate traffic stays well
/// below it: a full burst of a Linux guest's longest TX chains (an indirect head and 19 buffers)
/// walks 640; of 2 KiB frames (the largest this switch carries) into a Linux guest's smallest
/// mergeable RX buffers (~128 bytes, after a run of small frames) 544; DPDK's virtio-user uses one
/// or two descriptors per frame.
pub const BURST_DESC_BUDGET: u32 = 1024;

/// Walks one descriptor chain, through at most one indirect table, checking every index, flag and
/// length the guest controls. The descriptors visited are bounded by the ring's chain limit
/// (`min(queue size, MAX_CHAIN_DESCS)`; §2.6.5.3: "A driver MUST NOT create a descriptor chain
/// longer than the Queue Size"), which also terminates loops. A buffer of length 0 can hold no
/// byte of a frame: it is a violation, so that every descriptor walked moves at least one byte;
/// the callers in `net` check it where a buffer turns out to hold less than they need (off the
/// one-buffer-per-frame fast path).
pub struct ChainWalker<'a> {
    ring: &'a Ring,
    mem: &'a GuestMemory,
    next: Option<u16>,
    /// Descriptors visited so far (what the walk costs the burst's budget).
    walked: u16,
    /// (table host pointer, entries, next entry)
    indirect: Option<(*const u8, u32, Option<u16>)>,
}

impl<'a> ChainWalker<'a> {
    pub fn new(ring: &'a Ring, mem: &'a GuestMemory, head: u16) -> Self {
        ChainWalker {
            ring,
            mem,
            next: Some(head),
            walked: 0,
            indirect: None,
        }
    }

    /// Descriptors visited so far (what the walk costs the burst's budget).
    #[inline]
    pub fn walked(&self) -> u32 {
        u32::from(self.walked)
    }

    #[inline]
    fn spend(&mut self) -> Result<(), VirtqError> {
        if self.walked >= self.ring.chain_max {
            return Err(VirtqError::ChainTooLong(self.ring.chain_max));
        }
        self.walked += 1;
        Ok(())
    }

    /// The next data descriptor of the chain, or `None` at its end.
    #[inline]
    pub fn next_desc(&mut self, hint: &mut usize) -> Result<Option<Desc>, VirtqError> {
        if let Some((table, count, next)) = self.indirect {
            let Some(i) = next else { return Ok(None) };
            if u32::from(i) >= count {
                return Err(VirtqError::DescIndexOutOfRange {
                    index: u32::from(i),
                    size: self.ring.size,
                });
            }
            self.spend()?;
            // SAFETY: i < count and the table's count*16 bytes were translated as one range.
            let d = unsafe { read_desc(table.add(16 * i as usize)) };
            if d.flags & VIRTQ_DESC_F_INDIRECT != 0 {
                return Err(VirtqError::NestedIndirect);
            }
            let n = (d.flags & VIRTQ_DESC_F_NEXT != 0).then_some(d.next);
            self.indirect = Some((table, count, n));
            return Ok(Some(d));
        }
        let Some(i) = self.next else { return Ok(None) };
        let d = self.ring.desc(i).ok_or(VirtqError::DescIndexOutOfRange {
            index: u32::from(i),
            size: self.ring.size,
        })?;
        self.spend()?;
        if d.flags & VIRTQ_DESC_F_INDIRECT != 0 {
            // §2.6.5.3.1: no NEXT with INDIRECT, len a non-zero multiple of 16, no nesting.
            if d.flags & VIRTQ_DESC_F_NEXT != 0 {
                return Err(VirtqError::IndirectWithNext);
            }
            if d.len == 0 || d.len % 16 != 0 {
                return Err(VirtqError::BadIndirectLen(d.len));
            }
            let count = d.len / 16;
            if count > u32::from(self.ring.chain_max - self.walked) {
                return Err(VirtqError::ChainTooLong(self.ring.chain_max));
            }
            let table = self.mem.gpa_to_host(d.addr, u64::from(d.len), hint).ok_or(
                VirtqError::IndirectOutOfMemory {
                    addr: d.addr,
                    len: d.len,
                },
            )?;
            self.next = None;
            self.indirect = Some((table, count, Some(0)));
            return self.next_desc(hint);
        }
        self.next = (d.flags & VIRTQ_DESC_F_NEXT != 0).then_some(d.next);
        Ok(Some(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_event_matches_spec_examples() {
        // used idx moved 0 -> 1 and the driver asked for an event at 0: notify.
        assert!(need_event(0, 1, 0));
        // Driver asked for idx 5, we moved 0 -> 3: no.
        assert!(!need_event(5, 3, 0));
        // Crossing 5 while moving 3 -> 8: yes.
        assert!(need_event(5, 8, 3));
        // Wrap-around.
        assert!(need_event(0xffff, 2, 0xfffe));
    }

    #[test]
    fn ring_sizes_per_spec() {
        assert_eq!(ring_sizes(256), (4096, 6 + 512, 6 + 2048));
    }
}
