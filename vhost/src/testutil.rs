//! Test utilities: a mock guest (memfd-backed memory with driver-side split rings) and a mock
//! frontend speaking the vhost-user protocol as QEMU does. Built for tests, and for dependent
//! crates with the `test-util` feature.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use crate::error::ProtocolError;
use crate::memory::GuestMemory;
use crate::protocol::{
    Endpoint, MemoryRegion, MemoryTableHeader, Pod, Request, VringAddr, VringState, FLAG_NEED_REPLY,
};
use crate::virtqueue::{
    ring_sizes, Desc, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
};

/// A memfd of `size` bytes.
pub fn memfd(size: u64) -> OwnedFd {
    memfd_named(c"vhost-test", size)
}

/// A memfd of `size` bytes with a recognisable name (visible in /proc/self/fd).
pub fn memfd_named(name: &std::ffi::CStr, size: u64) -> OwnedFd {
    // SAFETY: the name is a valid C string; memfd_create returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
    // SAFETY: fd is fresh and ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: fd is a valid memfd.
    let r = unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) };
    assert_eq!(r, 0, "ftruncate: {}", io::Error::last_os_error());
    fd
}

/// An eventfd, for call/kick/err.
pub fn eventfd() -> OwnedFd {
    // SAFETY: eventfd returns a new fd or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    assert!(fd >= 0);
    // SAFETY: fd is fresh and ours.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Reads and resets an eventfd counter (0 if it was not signalled).
pub fn eventfd_take(fd: BorrowedFd<'_>) -> u64 {
    let mut v: u64 = 0;
    // SAFETY: reads 8 bytes into a live u64.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    if n == 8 {
        v
    } else {
        0
    }
}

/// Guest RAM: one memfd mapped into this process, as the "frontend" sees it.
pub struct MockGuest {
    fd: OwnedFd,
    base: *mut u8,
    size: u64,
    /// Guest-physical address of the first byte.
    pub gpa_base: u64,
}

impl MockGuest {
    pub fn new(size: u64) -> Self {
        let fd = memfd(size);
        // SAFETY: a fresh shared mapping of the whole memfd.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        MockGuest {
            fd,
            base: base.cast(),
            size,
            gpa_base: 0x4000_0000,
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The frontend-virtual address of a guest-physical one (QEMU: its own mapping address).
    pub fn uva(&self, gpa: u64) -> u64 {
        gpa - self.gpa_base + self.base as u64
    }

    /// The SET_MEM_TABLE region describing this RAM.
    pub fn region(&self) -> MemoryRegion {
        MemoryRegion {
            guest_phys_addr: self.gpa_base,
            memory_size: self.size,
            userspace_addr: self.base as u64,
            mmap_offset: 0,
        }
    }

    /// The backend's view, built as SET_MEM_TABLE would.
    pub fn memory(&self) -> GuestMemory {
        let fd = self.fd.try_clone().expect("dup");
        GuestMemory::from_regions(&[self.region()], vec![fd]).expect("valid table")
    }

    fn host(&self, gpa: u64, len: usize) -> *mut u8 {
        let off = gpa.checked_sub(self.gpa_base).expect("gpa below RAM");
        assert!(off + len as u64 <= self.size, "gpa beyond RAM");
        // SAFETY: checked just above.
        unsafe { self.base.add(off as usize) }
    }

    pub fn write(&self, gpa: u64, b: &[u8]) {
        // SAFETY: host() bounds-checks; guest RAM never aliases `b`.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), self.host(gpa, b.len()), b.len()) }
    }

    pub fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        // SAFETY: as in write.
        unsafe { std::ptr::copy_nonoverlapping(self.host(gpa, len), v.as_mut_ptr(), len) }
        v
    }

    pub fn write_u16(&self, gpa: u64, v: u16) {
        self.write(gpa, &v.to_le_bytes())
    }

    pub fn read_u16(&self, gpa: u64) -> u16 {
        u16::from_le_bytes(self.read(gpa, 2).try_into().unwrap())
    }

    pub fn read_u32(&self, gpa: u64) -> u32 {
        u32::from_le_bytes(self.read(gpa, 4).try_into().unwrap())
    }
}

impl Drop for MockGuest {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new().
        unsafe { libc::munmap(self.base.cast(), self.size as usize) };
    }
}

/// The driver side of one split ring laid out in a [`MockGuest`].
#[derive(Debug, Clone)]
pub struct MockVring {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    next_desc: u16,
    avail_idx: u16,
}

impl MockVring {
    /// Lays out a ring of `size` entries at `gpa` (16-aligned), zeroed.
    pub fn new(g: &MockGuest, gpa: u64, size: u16) -> Self {
        let (dl, al, ul) = ring_sizes(size);
        let avail = gpa + dl;
        let used = (avail + al + 3) & !3;
        g.write(gpa, &vec![0; (used + ul - gpa) as usize]);
        MockVring {
            size,
            desc: gpa,
            avail,
            used,
            next_desc: 0,
            avail_idx: 0,
        }
    }

    /// Bytes the ring occupies from its start.
    pub fn footprint(&self) -> u64 {
        self.used + ring_sizes(self.size).2 - self.desc
    }

    /// SET_VRING_ADDR payload for vring `index`.
    pub fn addr(&self, g: &MockGuest, index: u32) -> VringAddr {
        VringAddr {
            index,
            flags: 0,
            desc_user_addr: g.uva(self.desc),
            used_user_addr: g.uva(self.used),
            avail_user_addr: g.uva(self.avail),
            log_guest_addr: 0,
        }
    }

    pub fn write_desc_at(g: &MockGuest, gpa: u64, d: Desc) {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&d.addr.to_le_bytes());
        b[8..12].copy_from_slice(&d.len.to_le_bytes());
        b[12..14].copy_from_slice(&d.flags.to_le_bytes());
        b[14..].copy_from_slice(&d.next.to_le_bytes());
        g.write(gpa, &b);
    }

    pub fn set_desc(&self, g: &MockGuest, i: u16, d: Desc) {
        Self::write_desc_at(g, self.desc + 16 * u64::from(i), d);
    }

    fn alloc(&mut self) -> u16 {
        let i = self.next_desc;
        self.next_desc = (self.next_desc + 1) % self.size;
        i
    }

    /// Writes a chain of (gpa, len, device-writable) buffers and makes it available.
    pub fn add_chain(&mut self, g: &MockGuest, bufs: &[(u64, u32, bool)]) -> u16 {
        let ids: Vec<u16> = bufs.iter().map(|_| self.alloc()).collect();
        for (k, &(addr, len, w)) in bufs.iter().enumerate() {
            let last = k + 1 == bufs.len();
            let mut flags = if w { VIRTQ_DESC_F_WRITE } else { 0 };
            if !last {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            let next = if last { 0 } else { ids[k + 1] };
            self.set_desc(
                g,
                ids[k],
                Desc {
                    addr,
                    len,
                    flags,
                    next,
                },
            );
        }
        self.push_avail(g, ids[0]);
        ids[0]
    }

    /// Writes an indirect table at `table` holding `bufs` and makes a one-descriptor chain
    /// pointing at it available.
    pub fn add_indirect(&mut self, g: &MockGuest, table: u64, bufs: &[(u64, u32, bool)]) -> u16 {
        for (k, &(addr, len, w)) in bufs.iter().enumerate() {
            let last = k + 1 == bufs.len();
            let mut flags = if w { VIRTQ_DESC_F_WRITE } else { 0 };
            if !last {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            let d = Desc {
                addr,
                len,
                flags,
                next: if last { 0 } else { k as u16 + 1 },
            };
            Self::write_desc_at(g, table + 16 * k as u64, d);
        }
        let head = self.alloc();
        self.set_desc(
            g,
            head,
            Desc {
                addr: table,
                len: 16 * bufs.len() as u32,
                flags: VIRTQ_DESC_F_INDIRECT,
                next: 0,
            },
        );
        self.push_avail(g, head);
        head
    }

    /// Puts `head` in the avail ring and publishes the new idx.
    pub fn push_avail(&mut self, g: &MockGuest, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        g.write_u16(self.avail + 4 + 2 * slot, head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        g.write_u16(self.avail + 2, self.avail_idx);
    }

    /// Overwrites avail->idx (malicious guests).
    pub fn set_avail_idx(&mut self, g: &MockGuest, idx: u16) {
        self.avail_idx = idx;
        g.write_u16(self.avail + 2, idx);
    }

    pub fn set_avail_flags(&self, g: &MockGuest, flags: u16) {
        g.write_u16(self.avail, flags);
    }

    pub fn set_used_event(&self, g: &MockGuest, v: u16) {
        g.write_u16(self.avail + 4 + 2 * u64::from(self.size), v);
    }

    pub fn used_idx(&self, g: &MockGuest) -> u16 {
        g.read_u16(self.used + 2)
    }

    pub fn used_flags(&self, g: &MockGuest) -> u16 {
        g.read_u16(self.used)
    }

    pub fn avail_event(&self, g: &MockGuest) -> u16 {
        g.read_u16(self.used + 4 + 8 * u64::from(self.size))
    }

    /// used->ring[i % size] as (id, len).
    pub fn used_elem(&self, g: &MockGuest, i: u16) -> (u32, u32) {
        let p = self.used + 4 + 8 * u64::from(i % self.size);
        (g.read_u32(p), g.read_u32(p + 4))
    }
}

/// A vhost-user frontend, enough to drive the handshake QEMU performs.
pub struct Frontend {
    ep: Endpoint,
    /// Set need-reply on every message (after REPLY_ACK was negotiated).
    pub reply_ack: bool,
}

impl Frontend {
    pub fn new(stream: UnixStream) -> Self {
        Frontend {
            ep: Endpoint::new(stream),
            reply_ack: false,
        }
    }

    /// Sends a request with no reply of its own; returns the ack value (0 = success) when
    /// `reply_ack` is set, else 0.
    pub fn send(
        &self,
        req: Request,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Result<u64, ProtocolError> {
        let flags = if self.reply_ack { FLAG_NEED_REPLY } else { 0 };
        self.ep.send(req as u32, flags, payload, fds)?;
        if self.reply_ack {
            let r = self.ep.recv_reply(req as u32)?;
            return Ok(u64::from_bytes(&r).unwrap_or(u64::MAX));
        }
        Ok(0)
    }

    /// Sends a request that has a reply and returns the reply payload.
    pub fn get(&self, req: Request, payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        self.ep.send(req as u32, 0, payload, &[])?;
        self.ep.recv_reply(req as u32)
    }

    pub fn get_u64(&self, req: Request) -> Result<u64, ProtocolError> {
        let r = self.get(req, &[])?;
        u64::from_bytes(&r).ok_or(ProtocolError::BadPayloadSize {
            request: req as u32,
            size: r.len(),
            expected: 8,
        })
    }

    pub fn set_u64(&self, req: Request, v: u64) -> Result<u64, ProtocolError> {
        self.send(req, &v.to_ne_bytes(), &[])
    }

    pub fn set_state(&self, req: Request, index: u32, num: u32) -> Result<u64, ProtocolError> {
        self.send(req, VringState { index, num }.as_bytes(), &[])
    }

    /// SET_MEM_TABLE with one fd per region.
    pub fn set_mem_table(
        &self,
        regions: &[MemoryRegion],
        fds: &[BorrowedFd<'_>],
    ) -> Result<u64, ProtocolError> {
        let mut p = MemoryTableHeader {
            nregions: regions.len() as u32,
            padding: 0,
        }
        .as_bytes()
        .to_vec();
        for r in regions {
            p.extend_from_slice(r.as_bytes());
        }
        self.send(Request::SetMemTable, &p, fds)
    }

    /// SET_VRING_KICK/CALL/ERR with an eventfd, or in polling mode (bit 8) without.
    pub fn set_vring_fd(
        &self,
        req: Request,
        index: u32,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<u64, ProtocolError> {
        let v = u64::from(index)
            | if fd.is_none() {
                crate::protocol::VRING_NOFD_MASK
            } else {
                0
            };
        match fd {
            Some(fd) => self.send(req, &v.to_ne_bytes(), &[fd]),
            None => self.send(req, &v.to_ne_bytes(), &[]),
        }
    }

    /// Raw send for malformed-message tests.
    pub fn send_raw(
        &self,
        req: u32,
        flags: u32,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), ProtocolError> {
        self.ep.send(req, flags, payload, fds)
    }

    /// Raw bytes, `fds` riding on the first of them (for framing tests: a message in pieces,
    /// fds on any byte).
    pub fn send_raw_bytes(
        &self,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), ProtocolError> {
        self.ep.send_bytes(bytes, fds)
    }

    pub fn recv_reply(&self, req: u32) -> Result<Vec<u8>, ProtocolError> {
        self.ep.recv_reply(req)
    }

    pub fn stream(&self) -> &UnixStream {
        self.ep.stream()
    }
}
