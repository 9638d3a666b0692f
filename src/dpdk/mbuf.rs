//! An owned packet buffer (single segment as the switch uses them) that frees itself on drop.
use super::{ffi, Mempool};
use std::ptr::NonNull;
use std::sync::Arc;

/// One mbuf, exclusively owned. `repr(transparent)` so a burst array of raw pointers from
/// `rte_eth_rx_burst` can be taken over without copying.
#[repr(transparent)]
pub struct Mbuf(NonNull<ffi::rte_mbuf>);

// SAFETY: an exclusively owned mbuf may move between threads; its pool is thread-safe.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `m` must be a valid mbuf that nobody else will use or free.
    #[inline]
    pub unsafe fn from_raw(m: *mut ffi::rte_mbuf) -> Mbuf {
        // SAFETY: the caller promises non-null validity.
        Mbuf(unsafe { NonNull::new_unchecked(m) })
    }

    /// Gives up ownership (to a tx burst, which frees it once sent).
    #[inline]
    pub fn into_raw(self) -> *mut ffi::rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    #[inline]
    fn raw(&self) -> &ffi::rte_mbuf {
        // SAFETY: we own a valid mbuf.
        unsafe { self.0.as_ref() }
    }

    #[inline]
    fn raw_mut(&mut self) -> &mut ffi::rte_mbuf {
        // SAFETY: we own a valid mbuf exclusively.
        unsafe { self.0.as_mut() }
    }

    /// Frame length (first segment; the switch only makes single-segment mbufs).
    #[inline]
    pub fn len(&self) -> usize {
        self.raw().data_len as usize
    }

    /// The frame bytes of the first segment.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's data room (DPDK invariant).
        unsafe {
            std::slice::from_raw_parts(
                (m.buf_addr as *const u8).add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }

    /// The frame bytes of the first segment, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let m = self.raw_mut();
        // SAFETY: as in `data`, and we own the buffer exclusively (refcnt 1: never shared clones).
        unsafe {
            std::slice::from_raw_parts_mut(
                (m.buf_addr as *mut u8).add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }

    /// Grows the frame at the front by `n` bytes (headroom); None if there is no room.
    #[inline]
    pub fn prepend(&mut self, n: u16) -> Option<&mut [u8]> {
        let m = self.raw_mut();
        if m.data_off < n {
            return None;
        }
        m.data_off -= n;
        m.data_len += n;
        m.pkt_len += u32::from(n);
        Some(self.data_mut())
    }

    /// Removes `n` bytes from the front; None if the frame is shorter.
    #[inline]
    pub fn adj(&mut self, n: u16) -> Option<&mut [u8]> {
        let m = self.raw_mut();
        if m.data_len < n {
            return None;
        }
        m.data_off += n;
        m.data_len -= n;
        m.pkt_len -= u32::from(n);
        Some(self.data_mut())
    }

    /// Sets the frame length (single segment), bounded by the data room.
    pub fn set_len(&mut self, len: u16) -> bool {
        let m = self.raw_mut();
        if u32::from(m.data_off) + u32::from(len) > u32::from(m.buf_len) {
            return false;
        }
        m.data_len = len;
        m.pkt_len = u32::from(len);
        true
    }

    /// A deep copy into a new mbuf from `pool` (flooding: every egress may rewrite its copy).
    #[inline]
    pub fn copy(&self, pool: &super::Mempool) -> Option<Mbuf> {
        // SAFETY: self is valid; the copy is a fresh mbuf we own (or NULL when the pool is empty).
        let c = unsafe { ffi::rte_pktmbuf_copy(self.0.as_ptr(), pool.as_ptr(), 0, u32::MAX) };
        NonNull::new(c).map(Mbuf)
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; after this nobody refers to it.
        unsafe { ffi::rte_pktmbuf_free(self.0.as_ptr()) };
    }
}

/// Frames per rx/tx burst: DPDK's customary 32, which amortises the per-call cost and the ring
/// index updates over enough frames.
pub const BURST: usize = 32;

/// A burst of owned mbufs as raw pointers, the shape `rte_eth_{rx,tx}_burst` take.
pub struct Burst {
    ptrs: [*mut ffi::rte_mbuf; BURST],
    len: usize,
}

// SAFETY: the burst owns its mbufs exclusively, as `Mbuf` does.
unsafe impl Send for Burst {}

impl Default for Burst {
    fn default() -> Self {
        Burst {
            ptrs: [std::ptr::null_mut(); BURST],
            len: 0,
        }
    }
}

impl Burst {
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == BURST
    }
    /// Appends an mbuf; gives it back when the burst is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == BURST {
            return Err(m);
        }
        self.ptrs[self.len] = m.into_raw();
        self.len += 1;
        Ok(())
    }
    /// Total frame bytes in the burst (reads each mbuf header: call per burst, not per frame).
    #[inline]
    pub fn bytes(&self) -> u64 {
        self.ptrs[..self.len]
            .iter()
            // SAFETY: slots 0..len hold valid mbufs owned by this burst.
            .map(|&p| u64::from(unsafe { (*p).data_len }))
            .sum()
    }
    /// The frame bytes of entry `i` (None past the end).
    #[inline]
    pub fn data(&self, i: usize) -> Option<&[u8]> {
        let p = *self.ptrs[..self.len].get(i)?;
        // SAFETY: entries 0..len are valid mbufs owned by this burst; single segment.
        let m = unsafe { &*p };
        // SAFETY: buf_addr + data_off .. + data_len lies in the data room (DPDK invariant).
        Some(unsafe {
            std::slice::from_raw_parts(
                (m.buf_addr as *const u8).add(m.data_off as usize),
                m.data_len as usize,
            )
        })
    }
    /// Each entry's frame bytes, in order; a frame of several segments as empty (the switch
    /// handles single-segment frames only, and an empty one is dropped as malformed).
    #[inline]
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.ptrs[..self.len].iter().map(|&p| {
            // SAFETY: entries 0..len are valid mbufs owned by this burst.
            let m = unsafe { &*p };
            if m.nb_segs != 1 {
                return &[][..];
            }
            // SAFETY: buf_addr + data_off .. + data_len lies in the data room (DPDK invariant);
            // the borrow of self keeps the mbuf alive and unchanged.
            unsafe {
                std::slice::from_raw_parts(
                    (m.buf_addr as *const u8).add(m.data_off as usize),
                    m.data_len as usize,
                )
            }
        })
    }
    /// Mutable access to entry `i` as an `Mbuf` (None past the end).
    #[inline]
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Mbuf> {
        if i >= self.len {
            return None;
        }
        // SAFETY: Mbuf is repr(transparent) over a non-null pointer; entry i is a valid owned mbuf.
        Some(unsafe { &mut *(self.ptrs.as_mut_ptr().add(i) as *mut Mbuf) })
    }
    /// The data rooms of all entries, writable (for copying frames in).
    #[inline]
    pub fn rooms_mut(&mut self) -> impl Iterator<Item = &mut [u8]> + '_ {
        self.ptrs[..self.len].iter().map(|&p| {
            // SAFETY: each entry is a distinct valid mbuf owned by this burst, so the rooms
            // do not overlap; the borrow of self keeps them alive.
            let m = unsafe { &mut *p };
            let room = usize::from(m.buf_len.saturating_sub(m.data_off));
            // SAFETY: buf_addr + data_off .. buf_addr + buf_len is the mbuf's data room.
            unsafe {
                std::slice::from_raw_parts_mut(
                    (m.buf_addr as *mut u8).add(m.data_off as usize),
                    room,
                )
            }
        })
    }
    /// Moves the first `n` entries to the end of `out` (which must have room).
    #[inline]
    pub fn move_front_to(&mut self, n: usize, out: &mut Burst) {
        let n = n.min(self.len).min(BURST - out.len);
        out.ptrs[out.len..out.len + n].copy_from_slice(&self.ptrs[..n]);
        out.len += n;
        self.consume_front(n);
    }
    /// Tops the burst up to `BURST` mbufs from `pool`; false if the pool is short.
    #[inline]
    pub fn refill(&mut self, pool: &super::Mempool) -> bool {
        let want = BURST - self.len;
        if want == 0 {
            return true;
        }
        // SAFETY: the slots len..BURST are free; on success all `want` get fresh owned mbufs.
        let rc = unsafe {
            ffi::rte_pktmbuf_alloc_bulk(
                pool.as_ptr(),
                self.ptrs.as_mut_ptr().add(self.len),
                want as u32,
            )
        };
        if rc == 0 {
            self.len = BURST;
        }
        rc == 0
    }
    /// Takes every mbuf out, in order; those the caller does not take are freed with the
    /// iterator (`drop(b.drain())` empties the burst).
    #[inline]
    pub fn drain(&mut self) -> Drain<'_> {
        let n = std::mem::take(&mut self.len);
        Drain {
            rest: &mut self.ptrs[..n],
        }
    }
    /// Raw access for the ethdev burst calls: (array, current len).
    #[inline]
    pub(crate) fn raw_parts(&mut self) -> (&mut [*mut ffi::rte_mbuf; BURST], &mut usize) {
        (&mut self.ptrs, &mut self.len)
    }
    /// Drops the first `n` entries from the burst (they were handed to the driver).
    #[inline]
    pub(crate) fn consume_front(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        self.ptrs.copy_within(n..self.len, 0);
        self.len -= n;
    }
}

/// The mbufs of a burst being taken out ([`Burst::drain`]): each one the iterator yields is the
/// caller's, the rest are freed when it is dropped.
pub struct Drain<'a> {
    /// Owned mbufs not yielded yet (the burst's length is already 0).
    rest: &'a mut [*mut ffi::rte_mbuf],
}

impl Iterator for Drain<'_> {
    type Item = Mbuf;

    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        let (&mut p, rest) = std::mem::take(&mut self.rest).split_first_mut()?;
        self.rest = rest;
        // SAFETY: `p` is an owned mbuf no longer in `rest`: it is handed out once.
        Some(unsafe { Mbuf::from_raw(p) })
    }
}

impl Drop for Drain<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.rest.is_empty() {
            // SAFETY: `rest` holds owned mbufs nobody else refers to; freed once, here.
            unsafe { ffi::rte_pktmbuf_free_bulk(self.rest.as_mut_ptr(), self.rest.len() as u32) };
        }
    }
}

/// A core's stack of mbufs whose frames it copied out to a guest, handed back to its next
/// receive from a guest as they are: the same buffers (hot in its cache) without a trip through
/// the pool, whose bulk free and alloc took ~11 % of a 64-byte frame's cycles guest to guest.
/// Holds only direct, single-segment, unshared mbufs of `pool`.
pub struct Recycle {
    stash: Burst,
    pool: Arc<Mempool>,
}

impl Recycle {
    pub fn new(pool: Arc<Mempool>) -> Recycle {
        Recycle {
            stash: Burst::default(),
            pool,
        }
    }

    /// Whether `m` can be handed out again with only its `reset` fields set: one segment, its
    /// own data room (not attached to another's or an external buffer), nobody else holding
    /// it (the switch never shares one: a flood copies), from this pool.
    #[inline]
    fn reusable(&self, m: &ffi::rte_mbuf) -> bool {
        let ok = m.refcnt == 1
            && m.nb_segs == 1
            && m.ol_flags & (ffi::RTE_MBUF_F_INDIRECT | ffi::RTE_MBUF_F_EXTERNAL) == 0
            && std::ptr::eq(m.pool, self.pool.as_ptr());
        // One segment ends the chain (DPDK's invariant; `next` is in the second cache line).
        debug_assert!(!ok || m.next.is_null());
        ok
    }

    /// Removes the first `n` entries of `b` (their frames were copied elsewhere): onto the stack
    /// those it can reuse while it has room, the rest back to their pool.
    #[inline]
    pub fn take_front(&mut self, b: &mut Burst, n: usize) {
        let n = n.min(b.len);
        // Counts in locals, not in the bursts: kept in registers rather than stored and
        // reloaded for every frame.
        let (mut top, mut nfree) = (self.stash.len, 0);
        for i in 0..n {
            let p = b.ptrs[i];
            // SAFETY: entries 0..len of `b` are valid mbufs `b` owns exclusively.
            if top < BURST && self.reusable(unsafe { &*p }) {
                self.stash.ptrs[top] = p;
                top += 1;
            } else {
                // Those to free gather at the front of `b` (nfree <= i: nothing unread is lost).
                b.ptrs[nfree] = p;
                nfree += 1;
            }
        }
        self.stash.len = top;
        if nfree > 0 {
            // SAFETY: entries 0..nfree are owned mbufs, removed from `b` below.
            unsafe { ffi::rte_pktmbuf_free_bulk(b.ptrs.as_mut_ptr(), nfree as u32) };
        }
        b.consume_front(n);
    }

    /// Tops `b` up to `BURST` mbufs, reset for a new frame: from the top of the stack (the
    /// latest, hottest), then from the pool; false if the pool is short.
    #[inline]
    pub fn refill(&mut self, b: &mut Burst) -> bool {
        let take = (BURST - b.len).min(self.stash.len);
        let top = self.stash.len - take;
        for (dst, &p) in b.ptrs[b.len..b.len + take]
            .iter_mut()
            .zip(&self.stash.ptrs[top..])
        {
            // SAFETY: the stack owns p exclusively (refcnt 1); it moves to `b` here.
            reset(unsafe { &mut *p });
            *dst = p;
        }
        self.stash.len = top;
        b.len += take;
        b.refill(&self.pool)
    }
}

/// What `rte_pktmbuf_reset` sets in the first cache line, for an mbuf that `Recycle::reusable`
/// admitted (so `next` is already NULL and no external-buffer flag is to be kept); the second
/// line's `tx_offload` is only read under offload flags, which this clears.
#[inline]
fn reset(m: &mut ffi::rte_mbuf) {
    m.data_off = (ffi::RTE_PKTMBUF_HEADROOM as u16).min(m.buf_len);
    m.port = ffi::RTE_MBUF_PORT_INVALID as u16;
    m.ol_flags = 0;
    m.__bindgen_anon_1.packet_type = 0;
    m.pkt_len = 0;
    m.data_len = 0;
    m.vlan_tci = 0;
    m.vlan_tci_outer = 0;
}

impl Drop for Burst {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: slots 0..len hold owned mbufs; free them in one call.
            unsafe { ffi::rte_pktmbuf_free_bulk(self.ptrs.as_mut_ptr(), self.len as u32) };
            self.len = 0;
        }
    }
}
