//! The forwarding database: MAC+VLAN → port, learned from source addresses, aged out.
//!
//! Shared by every PMD core without locks: a fixed array of 8-slot buckets (two cache lines,
//! aligned to them) whose slots are claimed with one CAS. A lookup reads at most one bucket;
//! learning writes only when something changed (new MAC, a move, or a new second of
//! last-seen), so a steady flow does not bounce cache lines between cores. The table never
//! grows: its size is fixed at start (`--fdb-size`), and a MAC that finds its bucket full is not
//! learned (counted, and its frames are flooded) unless an expired entry can be reused.
//!
//! A table larger than the caches makes every lookup a miss. [`Fdb::probe`] hashes a key once
//! and [`Fdb::prefetch`]es the line it most likely is in, so that a burst can hash all its
//! frames first and learn and look up afterwards, its misses overlapping (as DPDK's bulk hash
//! lookups do). Each key has a home line in its bucket (one more bit of its hash) and goes to
//! the other line only when its home is full: at half load about 24 entries in 25 are in their
//! home line (random addresses), so a lookup reads one line, and the second only when the first
//! has no match. (With every key filling its bucket from the front, as before, the first line
//! held four in five: one lookup in five needed both lines, twice the memory traffic beyond the
//! caches and a branch that mispredicted that often.)
use crate::wire::MacAddr;
use std::alloc::Layout;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// Slots per bucket: a lookup scans one bucket.
const BUCKET: usize = 8;
/// Key tag so that no valid key is 0 (0 marks an empty slot).
const KEY_VALID: u64 = 1 << 63;
/// Value tag: set once the port and time are written (a slot can be claimed but not yet filled).
const VAL_VALID: u64 = 1 << 63;

#[derive(Default)]
struct Slot {
    key: AtomicU64,
    val: AtomicU64,
}

/// One bucket: two cache lines of [`LINE`] slots, aligned so that it never straddles a third.
#[derive(Default)]
#[repr(align(128))]
struct Bucket([Line; 2]);

/// One cache line of a bucket.
type Line = [Slot; LINE];

// A bucket is its two lines, and a line one cache line: `Probe::buddy` relies on it.
const _: () = assert!(std::mem::size_of::<Line>() == 64 && std::mem::size_of::<Bucket>() == 128);

/// Starts loading the home line of `p` into the caches `HINT` names (`_MM_HINT_*`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_line<const HINT: i32>(p: Probe<'_>) {
    let line: *const Line = p.home.as_ptr();
    // SAFETY: a prefetch is only a hint: it reads nothing the program sees and cannot fault;
    // the address is that of a line of the table.
    unsafe { std::arch::x86_64::_mm_prefetch::<HINT>(line.cast()) };
}

/// Fibonacci hashing's multiplier (2^64 / φ): the top bits of `key * K` are well mixed, even for
/// keys that differ only in their low bits (addresses in sequence).
const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// A key and its home line, hashed once: what a burst computes for every frame before it touches
/// the table. Only for the table that made it (`Fdb::probe`).
#[derive(Clone, Copy)]
pub(crate) struct Probe<'a> {
    key: u64,
    /// The key's home line in its bucket, as a pointer derived from the table's own (not from
    /// a reference to the line), so that the other line of the bucket is reachable from it.
    home: NonNull<Line>,
    table: PhantomData<&'a Bucket>,
}

impl<'a> Probe<'a> {
    /// The key's home line.
    #[inline(always)]
    fn home(self) -> &'a Line {
        // SAFETY: `home` points at a line of an initialised bucket of the table that made the
        // probe (`Fdb::probe`), which outlives 'a; lines are only accessed through atomics.
        unsafe { self.home.as_ref() }
    }

    /// The other line of the key's bucket.
    #[inline(always)]
    fn buddy(self) -> &'a Line {
        const SIZE: usize = std::mem::size_of::<Line>();
        let p = self.home.as_ptr();
        // Buckets are two lines, aligned to their size: a line at an offset of 0 in its bucket
        // has its buddy after it, one at SIZE before it.
        let off = if p as usize & SIZE == 0 {
            SIZE as isize
        } else {
            -(SIZE as isize)
        };
        // SAFETY: `home` is one of its bucket's two lines, derived from the table's allocation
        // (`Fdb::probe`), so the line at `off` is the other one, in the same bucket of the same
        // allocation, initialised and alive as long as the table ('a).
        unsafe { &*p.wrapping_byte_offset(off) }
    }
}

/// Slots per cache line (a bucket's two lines).
const LINE: usize = BUCKET / 2;

#[inline]
fn key_of(mac: MacAddr, vlan: u16) -> u64 {
    KEY_VALID | (u64::from(vlan & 0x0fff) << 48) | mac.to_u64()
}
#[inline]
fn val_of(port: u16, now: u32) -> u64 {
    VAL_VALID | (u64::from(port) << 32) | u64::from(now)
}
#[inline]
fn val_port(v: u64) -> u16 {
    (v >> 32) as u16
}
#[inline]
fn val_time(v: u64) -> u32 {
    v as u32
}

/// What learning a source address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// Already known on this port (maybe refreshed).
    Known,
    /// A new entry.
    New,
    /// The address moved from another port.
    Moved { from: u16 },
    /// The bucket was full of live entries: not learned.
    Full,
}

/// One entry, as shown to the operator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub mac: String,
    pub vlan: u16,
    pub port: u16,
    pub age_s: u32,
}

/// The buckets, in one allocation that huge pages can back: a table beyond the caches is also
/// beyond the TLB's reach with 4 KiB pages (32 MiB is 8192 of them), so that each miss would
/// add a page walk. Tables of 2 MiB or more are aligned to 2 MiB and advised as huge-page
/// memory (`MADV_HUGEPAGE`, for `transparent_hugepage=madvise`) before their first touch.
struct Table {
    ptr: NonNull<Bucket>,
    len: usize,
    layout: Layout,
}

/// The size of an x86-64 huge page.
const HUGE_PAGE: usize = 2 << 20;

// SAFETY: the table owns its buckets as a Box<[Bucket]> would; buckets are atomics.
unsafe impl Send for Table {}
// SAFETY: as for Send: shared access is through atomics only.
unsafe impl Sync for Table {}

impl Table {
    fn new(len: usize) -> Table {
        let size = len * std::mem::size_of::<Bucket>();
        let align = if size >= HUGE_PAGE {
            HUGE_PAGE
        } else {
            std::mem::align_of::<Bucket>()
        };
        let layout = Layout::from_size_align(size, align).expect("an FDB that fits memory");
        // SAFETY: the layout has a non-zero size (at least two buckets).
        let raw = unsafe { std::alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(raw.cast::<Bucket>()) else {
            std::alloc::handle_alloc_error(layout)
        };
        if align == HUGE_PAGE {
            // SAFETY: the range is the allocation just made; advice changes no content. A
            // kernel without transparent huge pages refuses it: 4 KiB pages then, as before.
            unsafe { libc::madvise(raw.cast(), size, libc::MADV_HUGEPAGE) };
        }
        for i in 0..len {
            // SAFETY: i < len: inside the allocation, aligned for a Bucket; written once.
            unsafe { ptr.as_ptr().add(i).write(Bucket::default()) };
        }
        Table { ptr, len, layout }
    }
}

impl std::ops::Deref for Table {
    type Target = [Bucket];
    fn deref(&self) -> &[Bucket] {
        // SAFETY: `len` initialised buckets live at `ptr` until drop.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; buckets need no drop (atomics).
        unsafe { std::alloc::dealloc(self.ptr.as_ptr().cast(), self.layout) };
    }
}

/// The slot holding the key of `p`, found without a branch per slot (which slot a random host
/// is in cannot be predicted, and a mispredicted branch costs as much as the rest of a lookup):
/// the four slots of the home line, then those of the other line only when the home line has
/// no match (at half load, about one host in 25, and every key not in the table; comparing all
/// eight keys always was 1.3-1.8x slower with the table beyond the caches, where the second
/// line then had to arrive for every lookup).
#[inline(always)]
fn find(p: Probe<'_>) -> Option<&Slot> {
    let matches = |line: &Line| {
        (0..LINE).fold(0u32, |m, i| {
            m | u32::from(line[i].key.load(Ordering::Acquire) == p.key) << i
        })
    };
    let mut line = p.home();
    let mut m = matches(line);
    if m == 0 {
        line = p.buddy();
        m = matches(line);
    }
    (m != 0).then(|| &line[m.trailing_zeros() as usize & (LINE - 1)])
}

/// Records `port` and `now` in the slot that holds the key: written only when something changed
/// (a move, or a new second), so that a steady flow leaves the line shared between cores.
#[inline]
fn refresh(s: &Slot, port: u16, now: u32) -> Learned {
    let (v, want) = (s.val.load(Ordering::Relaxed), val_of(port, now));
    if v == want {
        return Learned::Known; // nothing to write: the line stays shared
    }
    s.val.store(want, Ordering::Release);
    match v {
        v if v & VAL_VALID != 0 && val_port(v) != port => Learned::Moved { from: val_port(v) },
        _ => Learned::Known,
    }
}

pub struct Fdb {
    buckets: Table,
    /// 64 − log2(buckets): the bucket is the top bits of the hash.
    shift: u32,
    aging_s: u32,
    /// The table takes at least half the last-level cache: see [`Fdb::beyond_cache`].
    beyond_cache: bool,
}

/// The last-level cache's size in bytes, as the kernel reports it (sysfs; glibc's
/// `_SC_LEVEL3_CACHE_SIZE` said 320 MiB for this 32 MiB one in a VM), or 32 MiB when unknown.
fn llc_bytes() -> usize {
    let size = |dir: &str| -> Option<usize> {
        let text = std::fs::read_to_string(format!("{dir}/size")).ok()?;
        let text = text.trim();
        let (num, unit) = match text.strip_suffix('K') {
            Some(n) => (n, 1 << 10),
            None => match text.strip_suffix('M') {
                Some(n) => (n, 1 << 20),
                None => (text, 1),
            },
        };
        num.parse::<usize>().ok()?.checked_mul(unit)
    };
    (0..8)
        .map(|i| format!("/sys/devices/system/cpu/cpu0/cache/index{i}"))
        .filter_map(|d| size(&d))
        .max()
        .filter(|&n| n > 0)
        .unwrap_or(32 << 20)
}

impl Fdb {
    /// A table of at least `capacity` entries (rounded up to a power-of-two number of buckets,
    /// at least two; 16 bytes an entry) whose entries expire `aging_s` seconds after their MAC
    /// was last seen.
    pub fn new(capacity: usize, aging_s: u32) -> Fdb {
        let n = capacity.div_ceil(BUCKET).max(2).next_power_of_two();
        Fdb {
            buckets: Table::new(n),
            shift: 64 - n.trailing_zeros(),
            aging_s,
            beyond_cache: n * std::mem::size_of::<Bucket>() >= llc_bytes() / 2,
        }
    }

    /// Whether the table takes half the last-level cache or more, so that its lookups mostly
    /// go to memory: a burst then prefetches its buckets a few frames ahead of their use
    /// rather than all at once (see [`crate::forward::L2::decide_burst`]).
    #[inline]
    pub(crate) fn beyond_cache(&self) -> bool {
        self.beyond_cache
    }

    /// The table, handled as if it were beyond the caches (tests of that path).
    #[cfg(test)]
    pub(crate) fn treated_as_beyond_cache(mut self) -> Fdb {
        self.beyond_cache = true;
        self
    }

    /// The number of entries the table can hold.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * BUCKET
    }

    fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.buckets.iter().flat_map(|b| b.0.iter().flatten())
    }

    /// Hashes `mac` in `vlan`: the key and its home line.
    #[inline]
    pub(crate) fn probe(&self, mac: MacAddr, vlan: u16) -> Probe<'_> {
        let key = key_of(mac, vlan);
        let h = key.wrapping_mul(K);
        let i = (h >> self.shift) as usize;
        debug_assert!(i < self.buckets.len);
        // The bit below the bucket's (`shift` ≥ 1: at least two buckets).
        let line = ((h >> (self.shift - 1)) & 1) as usize;
        // SAFETY: `i` is the top log2(len) bits of a u64 (`shift` = 64 − log2(len), and `len`
        // is a power of two), so `i < len`: an initialised bucket, and `line` < 2 one of its
        // lines. No reference is made: the pointer keeps the table's provenance.
        let home = unsafe {
            let bucket = self.buckets.ptr.as_ptr().add(i);
            NonNull::new_unchecked(std::ptr::addr_of_mut!((*bucket).0).cast::<Line>().add(line))
        };
        Probe {
            key,
            home,
            table: PhantomData,
        }
    }

    /// Starts loading the home line of `p` into the first-level cache, so that its lookup or
    /// learning does not wait for memory (about one entry in 25, at half load, is in the other
    /// line, and then waits for it).
    #[inline]
    pub(crate) fn prefetch(&self, p: Probe<'_>) {
        #[cfg(target_arch = "x86_64")]
        prefetch_line::<{ std::arch::x86_64::_MM_HINT_T0 }>(p);
    }

    /// [`Fdb::prefetch`] of a source's home line and a destination's (if any).
    #[inline]
    pub(crate) fn prefetch_both(&self, src: Probe<'_>, dst: Option<Probe<'_>>) {
        self.prefetch(src);
        if let Some(d) = dst {
            self.prefetch(d);
        }
    }

    /// [`Fdb::prefetch_both`] with the hint for the outer caches (`prefetcht2`): for lines
    /// needed later than the next few frames, so that they are on their way from memory
    /// without crowding the first-level cache's misses while they come (asking for all of a
    /// burst's into the first-level cache at once was slower; see
    /// [`crate::forward::L2::decide_burst`]).
    #[inline]
    pub(crate) fn prefetch_both_outer(&self, src: Probe<'_>, dst: Option<Probe<'_>>) {
        #[cfg(target_arch = "x86_64")]
        {
            prefetch_line::<{ std::arch::x86_64::_MM_HINT_T2 }>(src);
            if let Some(d) = dst {
                prefetch_line::<{ std::arch::x86_64::_MM_HINT_T2 }>(d);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (src, dst);
    }

    /// The port `mac` was last seen on in `vlan`.
    #[inline]
    pub fn lookup(&self, mac: MacAddr, vlan: u16) -> Option<u16> {
        self.lookup_probed(self.probe(mac, vlan))
    }

    /// [`Fdb::lookup`] of a hashed key.
    #[inline]
    pub(crate) fn lookup_probed(&self, p: Probe<'_>) -> Option<u16> {
        let v = find(p)?.val.load(Ordering::Acquire);
        (v & VAL_VALID != 0).then_some(val_port(v))
    }

    /// Records that `mac` in `vlan` was seen on `port` at `now` (seconds, coarse clock).
    #[inline]
    pub fn learn(&self, mac: MacAddr, vlan: u16, port: u16, now: u32) -> Learned {
        self.learn_probed(self.probe(mac, vlan), port, now)
    }

    /// [`Fdb::learn`] of a hashed key.
    #[inline]
    pub(crate) fn learn_probed(&self, p: Probe<'_>, port: u16, now: u32) -> Learned {
        match find(p) {
            Some(s) => refresh(s, port, now),
            None => self.claim(p, port, now),
        }
    }

    /// Learns a key `find` did not see: claims an empty slot, else reuses an expired one that
    /// aging has not reached yet.
    ///
    /// One pass over the bucket, the key's home line first, each line in slot order, looks for
    /// the key again while it picks the slot: another core may have claimed a slot for this
    /// very key since `find` looked, and a slot picked by a second, separate scan would then be
    /// a second entry for the key. In one ordered pass, two cores learning the same key pick
    /// the same first free slot, and the one whose CAS fails finds the key there.
    #[inline(never)]
    fn claim(&self, p: Probe<'_>, port: u16, now: u32) -> Learned {
        let key = p.key;
        let (mut free, mut stale) = (None, None);
        for s in p.home().iter().chain(p.buddy()) {
            let k = s.key.load(Ordering::Acquire);
            if k == key {
                return refresh(s, port, now);
            }
            if k == 0 {
                free.get_or_insert(s);
            } else if stale.is_none() && self.expired(s.val.load(Ordering::Relaxed), now) {
                stale = Some(s);
            }
        }
        for (s, expect) in [(free, 0u64), (stale, u64::MAX)] {
            let Some(s) = s else { continue };
            let cur = if expect == 0 {
                0
            } else {
                // Invalidate the old value first so no reader pairs the new key with it.
                s.val.store(0, Ordering::Release);
                s.key.load(Ordering::Acquire)
            };
            if s.key
                .compare_exchange(cur, key, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                s.val.store(val_of(port, now), Ordering::Release);
                return Learned::New;
            }
            // Another core took the slot first (possibly with this very key): look again.
            if s.key.load(Ordering::Acquire) == key {
                return Learned::Known;
            }
        }
        Learned::Full
    }

    #[inline]
    fn expired(&self, v: u64, now: u32) -> bool {
        v & VAL_VALID == 0 || now.wrapping_sub(val_time(v)) >= self.aging_s
    }

    /// Removes entries not seen for the aging time; returns how many went. Control side only.
    /// Racing a PMD core's refresh can drop a live entry: it is relearned by its next frame.
    pub fn age(&self, now: u32) -> usize {
        let mut n = 0;
        for s in self.slots() {
            let k = s.key.load(Ordering::Acquire);
            if k != 0 && self.expired(s.val.load(Ordering::Acquire), now) {
                s.val.store(0, Ordering::Release);
                if s.key
                    .compare_exchange(k, 0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    n += 1;
                }
            }
        }
        n
    }

    /// Forgets everything learned on `port` (it went down or away). Control side only.
    pub fn flush_port(&self, port: u16) -> usize {
        let mut n = 0;
        for s in self.slots() {
            let k = s.key.load(Ordering::Acquire);
            let v = s.val.load(Ordering::Acquire);
            if k != 0 && v & VAL_VALID != 0 && val_port(v) == port {
                s.val.store(0, Ordering::Release);
                if s.key
                    .compare_exchange(k, 0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    n += 1;
                }
            }
        }
        n
    }

    /// Every live entry (control side; walks the whole table).
    pub fn entries(&self, now: u32) -> Vec<Entry> {
        self.slots()
            .filter_map(|s| {
                let k = s.key.load(Ordering::Acquire);
                let v = s.val.load(Ordering::Acquire);
                (k != 0 && v & VAL_VALID != 0).then(|| Entry {
                    mac: MacAddr::from_u64(k & 0xffff_ffff_ffff).to_string(),
                    vlan: ((k >> 48) & 0x0fff) as u16,
                    port: val_port(v),
                    age_s: now.wrapping_sub(val_time(v)),
                })
            })
            .collect()
    }

    /// Number of live entries (control side).
    pub fn len(&self) -> usize {
        self.slots()
            .filter(|s| s.key.load(Ordering::Relaxed) != 0)
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(i: u64) -> MacAddr {
        MacAddr::from_u64(0x0200_0000_0000 | i)
    }

    #[test]
    fn learns_and_looks_up_per_vlan() {
        let f = Fdb::new(64, 300);
        assert_eq!(f.lookup(mac(1), 0), None);
        assert_eq!(f.learn(mac(1), 0, 3, 10), Learned::New);
        assert_eq!(f.learn(mac(1), 0, 3, 10), Learned::Known);
        assert_eq!(f.lookup(mac(1), 0), Some(3));
        // Same MAC in another VLAN is another entry.
        assert_eq!(f.lookup(mac(1), 10), None);
        assert_eq!(f.learn(mac(1), 10, 4, 10), Learned::New);
        assert_eq!(f.lookup(mac(1), 10), Some(4));
        assert_eq!(f.lookup(mac(1), 0), Some(3));
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn moves_follow_the_host() {
        let f = Fdb::new(64, 300);
        f.learn(mac(7), 0, 1, 0);
        assert_eq!(f.learn(mac(7), 0, 2, 1), Learned::Moved { from: 1 });
        assert_eq!(f.lookup(mac(7), 0), Some(2));
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn ages_out_and_refreshes() {
        let f = Fdb::new(64, 300);
        f.learn(mac(1), 0, 1, 0);
        f.learn(mac(2), 0, 2, 0);
        f.learn(mac(2), 0, 2, 200); // refreshed
        assert_eq!(f.age(299), 0);
        assert_eq!(f.age(300), 1);
        assert_eq!(f.lookup(mac(1), 0), None);
        assert_eq!(f.lookup(mac(2), 0), Some(2));
        assert_eq!(f.age(500), 1);
        assert!(f.is_empty());
    }

    #[test]
    fn capacity_is_bounded() {
        let f = Fdb::new(64, 300);
        assert_eq!(f.capacity(), 64);
        let mut full = 0;
        for i in 0..1000 {
            if f.learn(mac(i), 0, 1, 0) == Learned::Full {
                full += 1;
            }
        }
        assert!(f.len() <= 64);
        assert_eq!(full, 1000 - f.len());
        // Once entries expire, their slots are reused even before aging runs.
        assert_eq!(f.learn(mac(5000), 0, 1, 400), Learned::New);
        assert_eq!(f.lookup(mac(5000), 0), Some(1));
    }

    #[test]
    fn addresses_in_sequence_spread_over_the_buckets() {
        // 2^16 hosts numbered in sequence (as a hypervisor hands out MACs), in two VLANs, in a
        // table sized for twice as many entries: hashed by the top bits of the product, each
        // bucket gets its share; bits from the middle of it crowded them into few buckets.
        let hosts = 1 << 16;
        let f = Fdb::new(4 * hosts as usize, 300);
        for vlan in [0, 10] {
            let full = (0..hosts)
                .filter(|&i| f.learn(mac(i), vlan, 1, 0) == Learned::Full)
                .count();
            assert_eq!(full, 0, "vlan {vlan}");
        }
        assert_eq!(f.len(), 2 * hosts as usize);
        assert_eq!(f.lookup(mac(hosts - 1), 10), Some(1));
    }

    #[test]
    fn at_half_load_nearly_every_entry_is_in_its_home_line() {
        // Random addresses (splitmix64's finaliser) at half the capacity: a lookup of most hosts
        // then reads the one line a burst prefetched (about 96 %; 80 % when every key filled
        // its bucket from the front).
        let hosts = 1u64 << 14;
        let f = Fdb::new(2 * hosts as usize, 300);
        let host = |i: u64| {
            let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            MacAddr::from_u64(0x0200_0000_0000 | ((z ^ (z >> 31)) & 0xff_ffff_ffff))
        };
        let learned: Vec<u64> = (0..hosts)
            .filter(|&i| f.learn(host(i), 7, (i % 5) as u16, 0) == Learned::New)
            .collect();
        assert!(
            learned.len() as u64 >= hosts * 99 / 100,
            "{}",
            learned.len()
        );
        let mut at_home = 0;
        for &i in &learned {
            let p = f.probe(host(i), 7);
            assert_eq!(f.lookup_probed(p), Some((i % 5) as u16));
            at_home += usize::from(
                p.home()
                    .iter()
                    .any(|s| s.key.load(Ordering::Relaxed) == p.key),
            );
        }
        assert!(
            at_home * 100 >= learned.len() * 93,
            "{at_home} of {}",
            learned.len()
        );
    }

    #[test]
    fn flush_port_forgets_only_that_port() {
        let f = Fdb::new(64, 300);
        f.learn(mac(1), 0, 1, 0);
        f.learn(mac(2), 0, 2, 0);
        assert_eq!(f.flush_port(1), 1);
        assert_eq!(f.lookup(mac(1), 0), None);
        assert_eq!(f.lookup(mac(2), 0), Some(2));
        let e = f.entries(5);
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].mac.as_str(), e[0].port, e[0].age_s),
            ("02:00:00:00:00:02", 2, 5)
        );
    }

    #[test]
    fn concurrent_learning_never_duplicates_a_key() {
        let f = std::sync::Arc::new(Fdb::new(4096, 300));
        let hs: Vec<_> = (0..2)
            .map(|t| {
                let f = f.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        f.learn(mac(i), 0, t, 0);
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        let mut keys: Vec<_> = f.entries(0).into_iter().map(|e| e.mac).collect();
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), n);
        for i in 0..2000 {
            assert!(f.lookup(mac(i), 0).is_some() || f.len() == f.capacity());
        }
    }
}
