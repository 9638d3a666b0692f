//! virtio-net on top of the split ring (virtio 1.1 §5.1.6): guest TX chains copied out with the
//! header skipped, frames copied into guest RX chains behind a zeroed header, merging several
//! chains per frame when VIRTIO_NET_F_MRG_RXBUF is negotiated.
//!
//! No offloads are negotiated, so the TX header carries nothing we must honour and the RX header
//! is all zeroes (GSO_NONE, no checksum flags) apart from `num_buffers`.

use crate::error::VirtqError;
use crate::memory::{read_guest, write_guest, GuestMemory};
use crate::metrics::QueueMetrics;
use crate::prefetch;
use crate::virtqueue::{
    ChainWalker, Ring, BURST_DESC_BUDGET, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
};

/// Frames per burst, as in DPDK's PMDs: bounds the work between two publication checks.
pub const MAX_BURST: usize = 32;
/// `struct virtio_net_hdr_mrg_rxbuf`: with VERSION_1 or MRG_RXBUF (§5.1.6).
pub const HDR_LEN_MRG: usize = 12;
/// `struct virtio_net_hdr` of legacy devices without MRG_RXBUF.
pub const HDR_LEN_LEGACY: usize = 10;
/// Offset of `num_buffers` in the 12-byte header.
const NUM_BUFFERS_OFF: usize = 10;

/// Ring-walking state a PMD handle owns.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct VqState {
    /// Next avail ring entry to consume.
    pub last_avail: u16,
    /// Next used ring entry to fill (published once per burst).
    pub used_idx: u16,
    /// EVENT_IDX: whether a notification decision was already taken since the ring started.
    pub signalled_valid: bool,
    /// The used idx before the first publication whose notification decision is still to be
    /// taken (deferred bursts: see `queue::Handle::settle`).
    pub unsettled_from: Option<u16>,
    /// Last guest memory region hit (translation cache).
    pub hint: usize,
}

/// What one burst works on.
pub(crate) struct Burst<'a> {
    pub ring: &'a Ring,
    pub mem: &'a GuestMemory,
    pub hdr_len: usize,
    pub mrg: bool,
    pub metrics: &'a QueueMetrics,
}

/// §2.6.6 / Linux vhost: avail idx may run ahead of us by at most the queue size.
fn pending(ring: &Ring, last_avail: u16) -> Result<u16, VirtqError> {
    let idx = ring.avail_idx();
    let n = idx.wrapping_sub(last_avail);
    if n > ring.size() {
        return Err(VirtqError::AvailIdxJump {
            last: last_avail,
            idx,
            size: ring.size(),
        });
    }
    Ok(n)
}

/// Prefetches the head descriptors of the next `n` avail entries from `last_avail`: their loads
/// then overlap instead of each waiting for the previous frame's copy. The entries are read
/// again (and checked) when the chains are walked; a guest racing them only wastes a prefetch.
#[inline]
fn prefetch_heads(ring: &Ring, last_avail: u16, n: usize) {
    for k in 0..n.min(MAX_BURST) {
        ring.prefetch_desc(ring.avail_entry(last_avail.wrapping_add(k as u16)));
    }
}

fn head_at(ring: &Ring, idx: u16) -> Result<u16, VirtqError> {
    let head = ring.avail_entry(idx);
    if head >= ring.size() {
        return Err(VirtqError::DescIndexOutOfRange {
            index: u32::from(head),
            size: ring.size(),
        });
    }
    Ok(head)
}

/// The usual guest TX chain, checked without walking it: one readable descriptor holding the
/// header and a frame of at most `room` bytes, in one memory region. Returns the frame's host
/// address and length; `None` for anything else (several or indirect descriptors, a frame too
/// short or too long, a writable or unmapped buffer), which `read_tx_chain` then walks, checks
/// and reports as before.
#[inline(always)]
fn one_tx_buffer(
    b: &Burst<'_>,
    st: &mut VqState,
    head: u16,
    room: usize,
) -> Option<(*const u8, usize)> {
    let d = b.ring.desc(head)?;
    let len = (d.len as usize).checked_sub(b.hdr_len)?;
    if d.flags & (VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_INDIRECT) != 0
        || len == 0
        || len > room
    {
        return None;
    }
    let addr = d.addr.checked_add(b.hdr_len as u64)?;
    let p = b.mem.gpa_to_host(addr, len as u64, &mut st.hint)?;
    Some((p, len))
}

enum TxOutcome {
    /// Copied into the destination, this long.
    Frame(usize),
    /// One guest buffer, this long, not copied yet (see `read_tx_chain`).
    Held(*const u8, usize),
    Short,
    Oversize,
}

/// Copies one TX chain into `dst`; its descriptors are taken off `budget`.
///
/// A frame that is the whole of one guest buffer (the common layout: DPDK's virtio PMD and
/// Linux put the header and the frame in one descriptor) is not copied here: `Held` gives its
/// host address, and the caller copies it with the rest of the burst's (`DeferredReads`).
///
/// Not inlined: inlined into `dequeue` (as LLVM chooses once the budget is threaded through), the
/// ring bench's guest-TX burst takes ~40 % longer for the same instructions (1.12 µs against
/// 0.80 µs per 32 frames, `cargo bench -p vhost --features test-util --bench ring`), and the
/// vhost loopback lost ~24 %.
#[inline(never)]
fn read_tx_chain(
    b: &Burst<'_>,
    st: &mut VqState,
    head: u16,
    dst: &mut [u8],
    budget: &mut u32,
) -> Result<TxOutcome, VirtqError> {
    let mut walker = ChainWalker::new(b.ring, b.mem, head);
    let mut skip = b.hdr_len as u64;
    let mut total: u64 = 0;
    let mut oversize = false;
    // The frame's first buffer, translated and not copied yet (into dst[..total]).
    let mut held: Option<*const u8> = None;
    while let Some(d) = walker.next_desc(&mut st.hint)? {
        if d.flags & VIRTQ_DESC_F_WRITE != 0 {
            return Err(VirtqError::WritableInTxChain);
        }
        let bad = VirtqError::BufferOutOfMemory {
            addr: d.addr,
            len: d.len,
        };
        let mut len = u64::from(d.len);
        let s = skip.min(len);
        let addr = d.addr.checked_add(s).ok_or(bad)?;
        len -= s;
        skip -= s;
        if len == 0 {
            if d.len == 0 {
                return Err(VirtqError::ZeroLengthBuffer);
            }
            continue;
        }
        let off = total;
        total = total.checked_add(len).ok_or(VirtqError::LengthOverflow)?;
        if oversize || total > dst.len() as u64 {
            oversize = true;
            continue;
        }
        if off == 0 {
            if let Some(p) = b.mem.gpa_to_host(addr, len, &mut st.hint) {
                DeferredReads::prefetch(p, len as usize);
                held = Some(p);
                continue;
            }
        } else if let Some(p) = held.take() {
            // A second buffer: the first one is copied now, in order.
            // SAFETY: p was translated for `off` bytes just above, in this burst; dst[..off]
            // is inside dst (off < total <= dst.len()); guest memory never aliases our buffers.
            unsafe { std::ptr::copy_nonoverlapping(p, dst.as_mut_ptr(), off as usize) };
        }
        read_guest(
            b.mem,
            &mut st.hint,
            addr,
            &mut dst[off as usize..total as usize],
        )
        .ok_or(bad)?;
    }
    *budget = budget.saturating_sub(walker.walked());
    Ok(if skip > 0 || total == 0 {
        TxOutcome::Short
    } else if oversize {
        TxOutcome::Oversize
    } else if let Some(p) = held {
        TxOutcome::Held(p, total as usize)
    } else {
        TxOutcome::Frame(total as usize)
    })
}

/// Frames of one TX burst that are each one guest buffer, copied out only once the whole burst
/// has been walked. The buffers were last written by another core (the driver's, or ours a
/// loop earlier, with the line since moved), so each copy starts with a miss on its first
/// line; copied as each chain is walked, the misses of a burst queue one behind the other
/// (the next frame's descriptor and buffer are not even known yet), and the copies were
/// ~40 % of the PMD's time in a saturated loopback. Gathered and prefetched first, they
/// overlap. rte_vhost batches small dequeue copies the same way.
struct DeferredReads {
    /// (guest source, our destination, bytes)
    copies: [(*const u8, *mut u8, usize); MAX_BURST],
    n: usize,
}

impl DeferredReads {
    fn new() -> Self {
        DeferredReads {
            copies: [(std::ptr::null(), std::ptr::null_mut(), 0); MAX_BURST],
            n: 0,
        }
    }

    /// Asks for the lines of a buffer about to be read (small frames entirely; a big copy
    /// streams by itself after its first lines).
    #[inline]
    fn prefetch(p: *const u8, len: usize) {
        let mut off = 0;
        while off < len.min(PREFETCH_BYTES) {
            prefetch::read(p.wrapping_add(off));
            off += 64;
        }
        prefetch::read(p.wrapping_add(len.saturating_sub(1)));
    }

    /// `src` must have been translated in this burst for `dst.len()` bytes, and `dst` must not
    /// be touched again before `flush`. At most MAX_BURST pushes per burst.
    #[inline]
    fn push(&mut self, src: *const u8, dst: &mut [u8]) {
        self.copies[self.n] = (src, dst.as_mut_ptr(), dst.len());
        self.n += 1;
    }

    /// Copies every held frame into its output buffer.
    #[inline]
    fn flush(&mut self) {
        for &(src, dst, len) in &self.copies[..self.n] {
            // SAFETY: src was translated for `len` bytes in this burst (`read_tx_chain`), whose
            // memory table stays mapped until the burst ends; dst is the caller's buffer, of at
            // least `len` bytes, not touched since `push` (`dequeue` holds it exclusively and
            // moves on to the next one); guest memory never aliases it.
            unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
        }
        self.n = 0;
    }
}

/// Guest TX → `bufs`. Returns (frames written, violation if one stopped the burst). Consumed
/// chains are written to the used ring with length 0 (the device wrote nothing), not yet published.
/// Once the burst has walked [`BURST_DESC_BUDGET`] descriptors it takes no further chain: they
/// stay available for the next burst.
pub(crate) fn dequeue(
    b: &Burst<'_>,
    st: &mut VqState,
    bufs: &mut [&mut [u8]],
    lens: &mut [usize],
) -> (usize, Option<VirtqError>) {
    let n = match pending(b.ring, st.last_avail) {
        Ok(n) => usize::from(n)
            .min(bufs.len())
            .min(lens.len())
            .min(MAX_BURST),
        Err(e) => return (0, Some(e)),
    };
    prefetch_heads(b.ring, st.last_avail, n);
    let mut out = 0;
    let mut bytes = 0u64;
    let mut used = UsedShadow::new(st.used_idx);
    let mut err = None;
    let mut budget = BURST_DESC_BUDGET;
    let mut reads = DeferredReads::new();
    for _ in 0..n {
        if budget == 0 {
            b.metrics.budget_stops.add(1);
            break;
        }
        let head = match head_at(b.ring, st.last_avail) {
            Ok(h) => h,
            Err(e) => {
                err = Some(e);
                break;
            }
        };
        // The usual chain (one buffer) is checked without the walk, then goes the same way.
        let outcome = match one_tx_buffer(b, st, head, bufs[out].len()) {
            Some((p, len)) => {
                DeferredReads::prefetch(p, len);
                budget -= 1;
                Ok(TxOutcome::Held(p, len))
            }
            None => read_tx_chain(b, st, head, bufs[out], &mut budget),
        };
        match outcome {
            Ok(TxOutcome::Held(p, len)) => {
                reads.push(p, &mut bufs[out][..len]);
                lens[out] = len;
                out += 1;
                bytes += len as u64;
            }
            Ok(TxOutcome::Frame(len)) => {
                lens[out] = len;
                out += 1;
                bytes += len as u64;
            }
            Ok(TxOutcome::Short) => b.metrics.drop_short.add(1),
            Ok(TxOutcome::Oversize) => b.metrics.drop_oversize.add(1),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
        used.push(b.ring, head, 0);
        st.used_idx = st.used_idx.wrapping_add(1);
        st.last_avail = st.last_avail.wrapping_add(1);
    }
    // Before the used idx is published: the guest may reuse the buffers from then on.
    reads.flush();
    used.flush(b.ring);
    b.metrics.packets.add(out as u64);
    b.metrics.bytes.add(bytes);
    (out, err)
}

/// Used-ring elements of one burst, written to the ring together before the used idx is
/// published (as rte_vhost's shadow used ring): the ring's cache lines, which the driver polls,
/// change hands once per burst instead of once per frame, interleaved with the frame copies.
struct UsedShadow {
    /// Used idx of `elems[0]`.
    idx0: u16,
    elems: [(u16, u32); SHADOW],
    n: usize,
}

/// Used elements buffered before a write-out (a burst of 32 frames with up to two buffers each).
const SHADOW: usize = 2 * MAX_BURST;

impl UsedShadow {
    fn new(used_idx: u16) -> Self {
        UsedShadow {
            idx0: used_idx,
            elems: [(0, 0); SHADOW],
            n: 0,
        }
    }

    #[inline]
    fn push(&mut self, ring: &Ring, head: u16, len: u32) {
        if self.n == SHADOW {
            self.flush(ring);
        }
        self.elems[self.n] = (head, len);
        self.n += 1;
    }

    /// Writes the buffered elements (not the idx: `finish` publishes it once per burst).
    #[inline]
    fn flush(&mut self, ring: &Ring) {
        for (k, &(head, len)) in self.elems[..self.n].iter().enumerate() {
            ring.write_used(self.idx0.wrapping_add(k as u16), head, len);
        }
        self.idx0 = self.idx0.wrapping_add(self.n as u16);
        self.n = 0;
    }

    /// Forgets elements at and after `used_idx` (a frame that did not fit is given back).
    /// Elements already flushed past it are unpublished and get overwritten later.
    #[inline]
    fn rewind(&mut self, used_idx: u16) {
        let keep = usize::from(used_idx.wrapping_sub(self.idx0));
        if keep <= self.n {
            self.n = keep;
        } else {
            self.idx0 = used_idx;
            self.n = 0;
        }
    }
}

/// Bytes of a deferred frame's destination prefetched at `push` (beyond them, only the last line).
const PREFETCH_BYTES: usize = 256;

/// Frames of one RX burst that each fit in their first guest buffer, copied only once the whole
/// burst has found its buffers. Each copy stores into lines the driver's core last touched
/// (its header and frame lines), so done one frame at a time the next frame's avail-entry and
/// descriptor loads queue behind those stores; gathered first, the descriptor loads of the
/// burst overlap and then the stores do (rte_vhost batches small copies for the same reason).
/// Must be flushed before the used idx is published.
struct DeferredCopies<'f> {
    /// Host address of the header (frame at `+ hdr_len`), bounds-checked for `hdr_len + len`.
    dst: [*mut u8; MAX_BURST],
    frames: [&'f [u8]; MAX_BURST],
    n: usize,
}

impl<'f> DeferredCopies<'f> {
    fn new() -> Self {
        DeferredCopies {
            dst: [std::ptr::null_mut(); MAX_BURST],
            frames: [&[]; MAX_BURST],
            n: 0,
        }
    }

    /// `dst` must have been translated for `hdr_len + frame.len()` bytes in this burst. At most
    /// one push per frame and at most MAX_BURST frames per burst.
    #[inline]
    fn push(&mut self, dst: *mut u8, frame: &'f [u8], hdr_len: usize) {
        // Ask for the frame's lines now: the RFOs run while the rest of the burst finds its
        // buffers, and the copies in `flush` then hit. Small frames (the latency-bound case)
        // entirely; a big copy streams by itself.
        let f = dst.wrapping_add(hdr_len);
        // A header line that holds no frame byte is only read here (`flush` rewrites it only
        // if it differs), and the driver reads num_buffers from it next: fetched for writing,
        // it would leave the driver's cache, and the driver would miss on it for every frame.
        if (dst as usize) / 64 != (f as usize) / 64 {
            prefetch::read(dst);
        }
        for off in (0..frame.len().min(PREFETCH_BYTES)).step_by(64) {
            prefetch::write(f.wrapping_add(off));
        }
        prefetch::write(f.wrapping_add(frame.len().saturating_sub(1)));
        self.dst[self.n] = dst;
        self.frames[self.n] = frame;
        self.n += 1;
    }

    /// Writes every deferred header (all zero but num_buffers = 1 in the 12-byte layout: each
    /// frame took one buffer) and frame.
    ///
    /// A header is stored only where the buffer does not hold it already, as rte_vhost and
    /// DPDK's virtio driver do with theirs. A driver that recycles its buffers (DPDK's, with
    /// the header in an mbuf's headroom, on a line of its own) finds the header it last saw
    /// there, and only reads it (num_buffers on receive; its transmit path compares the same
    /// bytes before it clears them): left unwritten, the line stays in both cores' caches,
    /// where a store would move it to ours and make the driver miss on it for every frame.
    #[inline]
    fn flush(&mut self, hdr_len: usize) {
        let mut hdr = [0u8; HDR_LEN_MRG];
        if hdr_len == HDR_LEN_MRG {
            hdr[NUM_BUFFERS_OFF..].copy_from_slice(&1u16.to_le_bytes());
        }
        let want = HeaderWords::new(&hdr[..hdr_len]);
        for (&p, f) in self.dst[..self.n].iter().zip(&self.frames[..self.n]) {
            // SAFETY: [p, p + hdr_len + f.len()) was bounds-checked against one region mapped
            // for the whole burst (`push`); the sources are our own buffers, so no overlap.
            // The buffer is the device's until the used idx is published (a guest writing
            // into it meanwhile races only itself), and the header is read as plain bytes.
            unsafe {
                if !want.at(p) {
                    std::ptr::copy_nonoverlapping(hdr.as_ptr(), p, hdr_len);
                }
                std::ptr::copy_nonoverlapping(f.as_ptr(), p.add(hdr_len), f.len());
            }
        }
        self.n = 0;
    }
}

/// A virtio-net header (10 or 12 bytes) as its first and last 8 bytes, to compare it with a
/// buffer's in two overlapping loads rather than a byte loop.
struct HeaderWords {
    len: usize,
    first: u64,
    last: u64,
}

impl HeaderWords {
    #[inline(always)]
    fn new(hdr: &[u8]) -> Self {
        let len = hdr.len();
        debug_assert!((8..=16).contains(&len));
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&hdr[at..at + 8]);
            u64::from_ne_bytes(w)
        };
        HeaderWords {
            len,
            first: word(0),
            last: word(len - 8),
        }
    }

    /// Whether the header's bytes are at `p`.
    ///
    /// # Safety
    /// `p..p + len` must be readable.
    #[inline(always)]
    unsafe fn at(&self, p: *const u8) -> bool {
        // SAFETY: 8 <= len and the caller guarantees len readable bytes at p.
        unsafe {
            std::ptr::read_unaligned(p.cast::<u64>()) == self.first
                && std::ptr::read_unaligned(p.add(self.len - 8).cast::<u64>()) == self.last
        }
    }
}

/// The usual guest RX chain, checked without walking it: a first descriptor, writable and not
/// indirect, with room for `whole` bytes (header and frame) in one memory region: the frame
/// takes only that buffer (num_buffers 1), wherever the chain goes on. Returns its host address;
/// `None` for anything else, which `write_rx_chain` then walks, checks and reports as before.
#[inline(always)]
fn one_rx_buffer(b: &Burst<'_>, st: &mut VqState, head: u16, whole: usize) -> Option<*mut u8> {
    let d = b.ring.desc(head)?;
    if d.flags & (VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_INDIRECT) != VIRTQ_DESC_F_WRITE
        || (d.len as usize) < whole
    {
        return None;
    }
    b.mem.gpa_to_host(d.addr, whole as u64, &mut st.hint)
}

/// The byte stream "header then frame" written into RX chains.
struct RxSource<'a> {
    hdr: [u8; HDR_LEN_MRG],
    hdr_len: usize,
    frame: &'a [u8],
    pos: usize,
    /// Host addresses of the two `num_buffers` bytes, found while writing the header.
    nb: [Option<*mut u8>; 2],
}

impl RxSource<'_> {
    fn total(&self) -> usize {
        self.hdr_len + self.frame.len()
    }
    fn done(&self) -> bool {
        self.pos >= self.total()
    }
}

/// Fills one RX chain from `src`; returns the bytes written into it. Its descriptors are taken
/// off `budget`. The usual chain (one buffer for the whole frame) is taken by `one_rx_buffer`
/// before this walk; what comes here (several buffers, indirect tables) is copied at once.
fn write_rx_chain(
    b: &Burst<'_>,
    st: &mut VqState,
    head: u16,
    src: &mut RxSource<'_>,
    budget: &mut i32,
) -> Result<u32, VirtqError> {
    let mut walker = ChainWalker::new(b.ring, b.mem, head);
    let mut written: u32 = 0;
    while !src.done() {
        let Some(d) = walker.next_desc(&mut st.hint)? else {
            break;
        };
        if d.flags & VIRTQ_DESC_F_WRITE == 0 {
            return Err(VirtqError::ReadOnlyInRxChain);
        }
        let bad = VirtqError::BufferOutOfMemory {
            addr: d.addr,
            len: d.len,
        };
        if d.len == 0 {
            return Err(VirtqError::ZeroLengthBuffer);
        }
        let mut room = d.len as usize;
        let mut addr = d.addr;
        while room > 0 && !src.done() {
            let n;
            if src.pos < src.hdr_len {
                n = room.min(src.hdr_len - src.pos);
                let part = &src.hdr[src.pos..src.pos + n];
                write_guest(b.mem, &mut st.hint, addr, part).ok_or(bad)?;
                if b.mrg {
                    for (k, slot) in src.nb.iter_mut().enumerate() {
                        let byte = NUM_BUFFERS_OFF + k;
                        if (src.pos..src.pos + n).contains(&byte) {
                            let a = addr + (byte - src.pos) as u64;
                            *slot = b.mem.gpa_to_host(a, 1, &mut st.hint);
                        }
                    }
                }
            } else {
                let fpos = src.pos - src.hdr_len;
                n = room.min(src.frame.len() - fpos);
                write_guest(b.mem, &mut st.hint, addr, &src.frame[fpos..fpos + n]).ok_or(bad)?;
            }
            // n <= room <= d.len, so these stay inside the descriptor's checked range.
            src.pos += n;
            room -= n;
            addr = addr.checked_add(n as u64).ok_or(bad)?;
            written += n as u32;
        }
    }
    *budget -= walker.walked() as i32;
    Ok(written)
}

/// Frames → guest RX. Returns (frames delivered, violation if one stopped the burst). Delivery is
/// all-or-nothing per frame and in order: the first frame that finds too few guest buffers, or
/// needs a chain once the burst has walked [`BURST_DESC_BUDGET`] descriptors, ends the burst, and
/// its partially used chains are given back (not consumed).
pub(crate) fn enqueue(
    b: &Burst<'_>,
    st: &mut VqState,
    frames: &[&[u8]],
) -> (usize, Option<VirtqError>) {
    let mut left = match pending(b.ring, st.last_avail) {
        Ok(n) => n,
        Err(e) => return (0, Some(e)),
    };
    let attempted = frames.len().min(MAX_BURST);
    prefetch_heads(b.ring, st.last_avail, attempted.min(usize::from(left)));
    let mut done = 0;
    let mut bytes = 0u64;
    let mut used = UsedShadow::new(st.used_idx);
    let mut defer = DeferredCopies::new();
    // Signed: a chain's descriptors are taken off with one subtraction, and it may overdraw.
    let mut budget = BURST_DESC_BUDGET as i32;
    'frames: for frame in &frames[..attempted] {
        // The usual case first, without walking a chain: one writable buffer takes the header
        // and the frame. Anything else (and any error) is for the general path below.
        if left > 0 && budget > 0 {
            let whole = b.hdr_len + frame.len();
            if let Some((head, p)) = head_at(b.ring, st.last_avail)
                .ok()
                .and_then(|h| Some((h, one_rx_buffer(b, st, h, whole)?)))
            {
                defer.push(p, frame, b.hdr_len);
                used.push(b.ring, head, whole as u32);
                st.used_idx = st.used_idx.wrapping_add(1);
                st.last_avail = st.last_avail.wrapping_add(1);
                left -= 1;
                budget -= 1;
                bytes += frame.len() as u64;
                done += 1;
                continue;
            }
        }
        // Only the ring positions need restoring if the frame does not fit (the translation
        // hint is a cache); saving two u16s, not the whole state, keeps this in registers.
        let saved = (st.last_avail, st.used_idx);
        let saved_left = left;
        let mut src = RxSource {
            hdr: [0; HDR_LEN_MRG],
            hdr_len: b.hdr_len,
            frame,
            pos: 0,
            nb: [None, None],
        };
        if !b.mrg && b.hdr_len == HDR_LEN_MRG {
            // §5.1.6.4: num_buffers is 1 when MRG_RXBUF is not negotiated.
            src.hdr[NUM_BUFFERS_OFF..].copy_from_slice(&1u16.to_le_bytes());
        }
        let mut nbufs: u16 = 0;
        loop {
            if left == 0 || budget <= 0 {
                if budget <= 0 {
                    b.metrics.budget_stops.add(1);
                }
                (st.last_avail, st.used_idx) = saved;
                used.rewind(st.used_idx);
                left = saved_left;
                break 'frames;
            }
            let res = head_at(b.ring, st.last_avail)
                .and_then(|h| Ok((h, write_rx_chain(b, st, h, &mut src, &mut budget)?)));
            let (head, wrote) = match res {
                Ok(x) => x,
                Err(e) => {
                    (st.last_avail, st.used_idx) = saved;
                    used.rewind(st.used_idx);
                    defer.flush(b.hdr_len);
                    used.flush(b.ring);
                    b.metrics.packets.add(done as u64);
                    b.metrics.bytes.add(bytes);
                    return (done, Some(e));
                }
            };
            used.push(b.ring, head, wrote);
            st.used_idx = st.used_idx.wrapping_add(1);
            st.last_avail = st.last_avail.wrapping_add(1);
            left -= 1;
            nbufs += 1;
            if src.done() {
                break;
            }
            if !b.mrg {
                // One chain per frame without MRG_RXBUF, and this one is too small.
                (st.last_avail, st.used_idx) = saved;
                used.rewind(st.used_idx);
                left = saved_left;
                break 'frames;
            }
        }
        if b.mrg {
            for (k, p) in src.nb.iter().enumerate() {
                if let Some(p) = p {
                    // SAFETY: p was translated for one byte inside guest memory during this burst,
                    // and the memory table cannot change before the burst ends.
                    unsafe { std::ptr::write_volatile(*p, nbufs.to_le_bytes()[k]) };
                }
            }
        }
        bytes += frame.len() as u64;
        done += 1;
    }
    let _ = left;
    defer.flush(b.hdr_len);
    used.flush(b.ring);
    b.metrics.packets.add(done as u64);
    b.metrics.bytes.add(bytes);
    b.metrics.drop_no_buffer.add((attempted - done) as u64);
    (done, None)
}
