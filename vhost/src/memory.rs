//! Guest memory: the regions of one SET_MEM_TABLE, mapped from their fds, and bounds-checked
//! translation of guest-physical addresses (descriptors) and frontend-virtual addresses (rings).
//!
//! A [`GuestMemory`] is immutable once built and shared through `Arc`. A new table never modifies
//! an old one: the control side builds the new table completely (so a failing mmap leaves the old
//! one in force), publishes it, and the old mapping disappears only when the last `Arc` to it is
//! dropped, which the publication scheme in `queue` arranges to happen after every PMD core has
//! stopped using it.
//!
//! Ranges spanning two regions: buffers (descriptor data) may span regions that are adjacent in
//! guest-physical space — the copy routines walk region by region. Rings and indirect tables must
//! lie inside one region (they are accessed through a single host pointer); otherwise they are
//! rejected.
//!
//! Every mapping is registered with [`crate::guard`]: a file that shrinks under us faults that
//! region (it then reads as zeroes, see [`GuestMemory::faulted`]) instead of killing the process.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::error::MemoryError;
use crate::guard::{GuardedMapping, MapError};
use crate::protocol::{MemoryRegion as RegionMsg, MAX_REGIONS};

/// One mapped region. The mapping is owned and unmapped on drop.
#[derive(Debug)]
pub struct Region {
    guest_phys: u64,
    size: u64,
    user_addr: u64,
    /// Host address of the region's first byte (mapping base + mmap offset).
    host: *mut u8,
    map: GuardedMapping,
}

// SAFETY: the region owns its mapping; the raw pointers are only dereferenced through the
// bounds-checked accessors, and guest memory is shared memory anyway (accessed with volatile or
// byte copies, never through Rust references that assume exclusivity).
unsafe impl Send for Region {}
// SAFETY: as above; the struct itself is immutable.
unsafe impl Sync for Region {}

impl Region {
    pub fn guest_phys(&self) -> u64 {
        self.guest_phys
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn user_addr(&self) -> u64 {
        self.user_addr
    }

    /// Host pointer for `[gpa, gpa+len)` if it lies inside this region.
    #[inline]
    fn gpa_range(&self, gpa: u64, len: u64) -> Option<*mut u8> {
        let off = gpa.checked_sub(self.guest_phys)?;
        let end = off.checked_add(len)?;
        if end > self.size {
            return None;
        }
        // SAFETY: off < end <= size, so the result stays inside the mapping.
        Some(unsafe { self.host.add(off as usize) })
    }
}

/// An immutable guest memory table.
#[derive(Debug, Default)]
pub struct GuestMemory {
    regions: Vec<Region>,
}

impl GuestMemory {
    /// Validates and maps a table. `fds[i]` backs `regions[i]`. The fds are consumed: closed once
    /// mapped, and closed as well when the table is rejected — no leak either way.
    pub fn from_regions(regions: &[RegionMsg], fds: Vec<OwnedFd>) -> Result<Self, MemoryError> {
        if regions.len() > MAX_REGIONS {
            return Err(MemoryError::TooManyRegions(regions.len()));
        }
        if regions.len() != fds.len() {
            return Err(MemoryError::FdCountMismatch {
                regions: regions.len(),
                fds: fds.len(),
            });
        }
        for (i, r) in regions.iter().enumerate() {
            if r.memory_size == 0 {
                return Err(MemoryError::EmptyRegion(i));
            }
            let last = r.memory_size - 1;
            if r.guest_phys_addr.checked_add(last).is_none()
                || r.userspace_addr.checked_add(last).is_none()
                || r.mmap_offset.checked_add(r.memory_size).is_none()
                || usize::try_from(r.memory_size).is_err()
            {
                return Err(MemoryError::RegionOverflow(i));
            }
        }
        // Overlaps would make translation ambiguous.
        for (i, a) in regions.iter().enumerate() {
            for (j, b) in regions.iter().enumerate().skip(i + 1) {
                let overlap = |a0: u64, b0: u64| {
                    a0 < b0.wrapping_add(b.memory_size) && b0 < a0.wrapping_add(a.memory_size)
                };
                if overlap(a.guest_phys_addr, b.guest_phys_addr)
                    || overlap(a.userspace_addr, b.userspace_addr)
                {
                    return Err(MemoryError::Overlap(i, j));
                }
            }
        }
        let mut mapped = Vec::with_capacity(regions.len());
        for (i, (r, fd)) in regions.iter().zip(fds.iter()).enumerate() {
            mapped.push(map_region(i, r, fd)?);
        }
        // `fds` drops here: the mappings keep the memory alive without them.
        Ok(GuestMemory { regions: mapped })
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Whether an access to this table faulted (a file shrank under us: SIGBUS caught by
    /// [`crate::guard`]); its faulted regions now read as zeroes. The frontend must go.
    pub fn faulted(&self) -> bool {
        self.regions.iter().any(|r| r.map.faulted())
    }

    /// Like [`faulted`](Self::faulted), but true only once per faulted region, for reporting.
    pub fn take_fault(&self) -> bool {
        // Every region, not just the first hit: each is reported once.
        self.regions
            .iter()
            .fold(false, |hit, r| r.map.take_fault() | hit)
    }

    /// Host pointer for the guest-physical range `[gpa, gpa+len)` inside a single region.
    /// `hint` remembers the last region hit, so the common case is one comparison.
    #[inline]
    pub fn gpa_to_host(&self, gpa: u64, len: u64, hint: &mut usize) -> Option<*mut u8> {
        if let Some(p) = self.regions.get(*hint).and_then(|r| r.gpa_range(gpa, len)) {
            return Some(p);
        }
        for (i, r) in self.regions.iter().enumerate() {
            if let Some(p) = r.gpa_range(gpa, len) {
                *hint = i;
                return Some(p);
            }
        }
        None
    }

    /// The longest contiguous host run starting at `gpa`, capped at `len` (≥ 1 byte), for copies
    /// that may cross into an adjacent region.
    #[inline]
    pub fn gpa_chunk(&self, gpa: u64, len: u64, hint: &mut usize) -> Option<(*mut u8, u64)> {
        let chunk = |r: &Region| {
            let off = gpa.checked_sub(r.guest_phys)?;
            if off >= r.size {
                return None;
            }
            let n = (r.size - off).min(len);
            // SAFETY: off < size, inside the mapping.
            Some((unsafe { r.host.add(off as usize) }, n))
        };
        if let Some(c) = self.regions.get(*hint).and_then(chunk) {
            return Some(c);
        }
        for (i, r) in self.regions.iter().enumerate() {
            if let Some(c) = chunk(r) {
                *hint = i;
                return Some(c);
            }
        }
        None
    }

    /// Host pointer for the frontend-virtual range `[uva, uva+len)` (ring addresses), which must
    /// lie inside a single region.
    pub fn uva_to_host(&self, uva: u64, len: u64) -> Option<*mut u8> {
        self.regions.iter().find_map(|r| {
            let off = uva.checked_sub(r.user_addr)?;
            if off.checked_add(len)? > r.size {
                return None;
            }
            // SAFETY: off + len <= size, inside the mapping.
            Some(unsafe { r.host.add(off as usize) })
        })
    }
}

fn map_region(i: usize, r: &RegionMsg, fd: &OwnedFd) -> Result<Region, MemoryError> {
    // SAFETY: `st` is plain data that fstat fills in; the fd is open for the call's duration.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(MemoryError::Fstat {
            index: i,
            source: io::Error::last_os_error(),
        });
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(MemoryError::NotAFile(i));
    }
    let file_size = st.st_size as u64;
    // Checked in from_regions: no overflow.
    let end = r.mmap_offset + r.memory_size;
    // A region past the end of its file would SIGBUS on first touch (rte_vhost's failure mode).
    if end > file_size {
        return Err(MemoryError::RegionBeyondFile {
            index: i,
            end,
            file_size,
        });
    }
    // Map from file offset 0 (mmap offsets must be page- or hugepage-aligned, mmap_offset need
    // not be), with the length rounded up to the file's block size, which is the huge page size
    // on hugetlbfs where munmap requires it.
    let align = (st.st_blksize as u64).max(4096);
    let map_len = end
        .checked_next_multiple_of(align)
        .and_then(|l| usize::try_from(l).ok())
        .ok_or(MemoryError::RegionOverflow(i))?;
    let map = GuardedMapping::map_shared(fd.as_fd(), map_len).map_err(|e| match e {
        MapError::Mmap(source) => MemoryError::Mmap { index: i, source },
        MapError::Unguarded => MemoryError::Unguarded(i),
    })?;
    Ok(Region {
        guest_phys: r.guest_phys_addr,
        size: r.memory_size,
        user_addr: r.userspace_addr,
        // SAFETY: mmap_offset < end <= map_len, inside the mapping.
        host: unsafe { map.base().add(r.mmap_offset as usize) },
        map,
    })
}

/// Copies guest memory `[gpa, gpa+dst.len())` into `dst`; `None` if any byte is outside.
#[inline]
pub(crate) fn read_guest(
    mem: &GuestMemory,
    hint: &mut usize,
    gpa: u64,
    dst: &mut [u8],
) -> Option<()> {
    let mut done = 0usize;
    while done < dst.len() {
        let a = gpa.checked_add(done as u64)?;
        let (p, n) = mem.gpa_chunk(a, (dst.len() - done) as u64, hint)?;
        // SAFETY: p..p+n is inside a mapping (gpa_chunk), dst[done..done+n] is inside dst, and
        // guest memory never aliases a Rust slice we own.
        unsafe { std::ptr::copy_nonoverlapping(p, dst.as_mut_ptr().add(done), n as usize) };
        done += n as usize;
    }
    Some(())
}

/// Copies `src` into guest memory at `gpa`; `None` if any byte is outside (then nothing past the
/// last in-bounds chunk is written).
#[inline]
pub(crate) fn write_guest(mem: &GuestMemory, hint: &mut usize, gpa: u64, src: &[u8]) -> Option<()> {
    let mut done = 0usize;
    while done < src.len() {
        let a = gpa.checked_add(done as u64)?;
        let (p, n) = mem.gpa_chunk(a, (src.len() - done) as u64, hint)?;
        // SAFETY: as in read_guest, in the other direction.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr().add(done), p, n as usize) };
        done += n as usize;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::memfd;

    fn region(gpa: u64, size: u64, uva: u64, off: u64) -> RegionMsg {
        RegionMsg {
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: uva,
            mmap_offset: off,
        }
    }

    #[test]
    fn translates_and_bounds_checks() {
        let fd = memfd(0x4000);
        let m =
            GuestMemory::from_regions(&[region(0x10000, 0x3000, 0x7000_0000, 0x1000)], vec![fd])
                .unwrap();
        let mut h = 0;
        assert!(m.gpa_to_host(0x10000, 0x3000, &mut h).is_some());
        assert!(m.gpa_to_host(0x10000, 0x3001, &mut h).is_none());
        assert!(m.gpa_to_host(0xffff, 1, &mut h).is_none());
        assert!(m.gpa_to_host(u64::MAX, 2, &mut h).is_none());
        assert!(m.uva_to_host(0x7000_2fff, 1).is_some());
        assert!(m.uva_to_host(0x7000_2fff, 2).is_none());
        // The mmap offset is honoured: writing at gpa 0x10000 lands at file offset 0x1000.
        write_guest(&m, &mut h, 0x10000, b"abc").unwrap();
        let mut b = [0u8; 3];
        read_guest(&m, &mut h, 0x10000, &mut b).unwrap();
        assert_eq!(&b, b"abc");
    }

    #[test]
    fn copies_span_adjacent_regions() {
        let m = GuestMemory::from_regions(
            &[
                region(0, 0x1000, 0x1_0000, 0),
                region(0x1000, 0x1000, 0x2_0000, 0),
            ],
            vec![memfd(0x1000), memfd(0x1000)],
        )
        .unwrap();
        let mut h = 0;
        write_guest(&m, &mut h, 0xffe, b"wxyz").unwrap();
        let mut b = [0u8; 4];
        read_guest(&m, &mut h, 0xffe, &mut b).unwrap();
        assert_eq!(&b, b"wxyz");
        assert!(
            m.gpa_to_host(0xffe, 4, &mut h).is_none(),
            "single-pointer ranges must not span"
        );
        assert!(read_guest(&m, &mut h, 0x1ffe, &mut b).is_none());
    }

    #[test]
    fn rejects_region_larger_than_its_file() {
        let e = GuestMemory::from_regions(&[region(0, 0x2000, 0, 0)], vec![memfd(0x1000)]);
        assert!(matches!(
            e,
            Err(MemoryError::RegionBeyondFile { index: 0, .. })
        ));
        let e = GuestMemory::from_regions(&[region(0, 0x1000, 0, 0x1000)], vec![memfd(0x1000)]);
        assert!(matches!(e, Err(MemoryError::RegionBeyondFile { .. })));
    }

    #[test]
    fn rejects_bad_tables() {
        let e = GuestMemory::from_regions(&[region(0, 0, 0, 0)], vec![memfd(0x1000)]);
        assert!(matches!(e, Err(MemoryError::EmptyRegion(0))));
        let e = GuestMemory::from_regions(&[region(u64::MAX, 0x1000, 0, 0)], vec![memfd(0x1000)]);
        assert!(matches!(e, Err(MemoryError::RegionOverflow(0))));
        let e = GuestMemory::from_regions(
            &[region(0, 0x1000, 0, 0), region(0x800, 0x1000, 0x10000, 0)],
            vec![memfd(0x1000), memfd(0x1000)],
        );
        assert!(matches!(e, Err(MemoryError::Overlap(0, 1))));
        let e = GuestMemory::from_regions(&[region(0, 0x1000, 0, 0)], vec![]);
        assert!(matches!(e, Err(MemoryError::FdCountMismatch { .. })));
        let devnull = std::fs::File::open("/dev/null").unwrap();
        let e = GuestMemory::from_regions(&[region(0, 0x1000, 0, 0)], vec![devnull.into()]);
        assert!(matches!(e, Err(MemoryError::NotAFile(0))));
    }

    #[test]
    fn rejected_tables_close_their_fds() {
        let fd = crate::testutil::memfd_named(c"vhost-close-check", 0x1000);
        let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let still_open = || {
            std::fs::read_link(&link)
                .is_ok_and(|t| t.to_string_lossy().contains("vhost-close-check"))
        };
        assert!(still_open());
        let _ = GuestMemory::from_regions(&[region(0, 0x2000, 0, 0)], vec![fd]);
        assert!(!still_open());
    }
}
