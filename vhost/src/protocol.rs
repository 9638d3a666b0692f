//! vhost-user message framing over a Unix stream socket (QEMU docs/interop/vhost-user.rst).
//!
//! We frame messages ourselves instead of using rust-vmm's `vhost` crate: the backend must fstat
//! every memory fd, close the fds of any rejected message, and never block a PMD core; owning the
//! ~300 lines of framing makes each of those a visible, tested line rather than a property of a
//! dependency's internals.
//!
//! Two ends: [`Connection`] is the backend's, a non-blocking byte stream with its own input and
//! output buffers, so the switch's one control thread never waits on a frontend; [`Endpoint`] is
//! a blocking frontend, used by tests and tools.

use std::collections::VecDeque;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use bitflags::bitflags;

use crate::error::ProtocolError;

/// Header flag bits (vhost-user.rst "Header").
pub const VERSION: u32 = 0x1;
pub const VERSION_MASK: u32 = 0x3;
pub const FLAG_REPLY: u32 = 0x4;
pub const FLAG_NEED_REPLY: u32 = 0x8;

/// Largest payload accepted; SET_MEM_TABLE with 8 regions is 264 bytes, GET_CONFIG at most 268.
pub const MAX_PAYLOAD: usize = 4096;
/// At most 8 fds arrive with one message (SET_MEM_TABLE).
pub const MAX_FDS: usize = 8;
/// Regions in one SET_MEM_TABLE.
pub const MAX_REGIONS: usize = 8;
/// SET_VRING_KICK/CALL/ERR payload: the queue index is in bits 0-7 ...
pub const VRING_INDEX_MASK: u64 = 0xff;
/// ... and bit 8 says "no fd attached, poll instead".
pub const VRING_NOFD_MASK: u64 = 0x100;

/// Requests sent by the frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Request {
    GetFeatures = 1,
    SetFeatures = 2,
    SetOwner = 3,
    ResetOwner = 4,
    SetMemTable = 5,
    SetLogBase = 6,
    SetLogFd = 7,
    SetVringNum = 8,
    SetVringAddr = 9,
    SetVringBase = 10,
    GetVringBase = 11,
    SetVringKick = 12,
    SetVringCall = 13,
    SetVringErr = 14,
    GetProtocolFeatures = 15,
    SetProtocolFeatures = 16,
    GetQueueNum = 17,
    SetVringEnable = 18,
    SendRarp = 19,
    NetSetMtu = 20,
    SetBackendReqFd = 21,
    IotlbMsg = 22,
    SetVringEndian = 23,
    GetConfig = 24,
    SetConfig = 25,
    GetInflightFd = 31,
    SetInflightFd = 32,
    ResetDevice = 34,
    GetMaxMemSlots = 36,
    AddMemReg = 37,
    RemMemReg = 38,
    SetStatus = 39,
    GetStatus = 40,
}

impl Request {
    pub fn from_u32(v: u32) -> Option<Self> {
        use Request::*;
        Some(match v {
            1 => GetFeatures,
            2 => SetFeatures,
            3 => SetOwner,
            4 => ResetOwner,
            5 => SetMemTable,
            6 => SetLogBase,
            7 => SetLogFd,
            8 => SetVringNum,
            9 => SetVringAddr,
            10 => SetVringBase,
            11 => GetVringBase,
            12 => SetVringKick,
            13 => SetVringCall,
            14 => SetVringErr,
            15 => GetProtocolFeatures,
            16 => SetProtocolFeatures,
            17 => GetQueueNum,
            18 => SetVringEnable,
            19 => SendRarp,
            20 => NetSetMtu,
            21 => SetBackendReqFd,
            22 => IotlbMsg,
            23 => SetVringEndian,
            24 => GetConfig,
            25 => SetConfig,
            31 => GetInflightFd,
            32 => SetInflightFd,
            34 => ResetDevice,
            36 => GetMaxMemSlots,
            37 => AddMemReg,
            38 => RemMemReg,
            39 => SetStatus,
            40 => GetStatus,
            _ => return None,
        })
    }

    /// Requests that always answer with a payload; need-reply changes nothing for them.
    pub fn has_reply(self) -> bool {
        use Request::*;
        matches!(
            self,
            GetFeatures
                | GetProtocolFeatures
                | GetVringBase
                | GetQueueNum
                | GetConfig
                | GetInflightFd
                | GetMaxMemSlots
                | GetStatus
        )
    }
}

bitflags! {
    /// Virtio device feature bits this backend knows (virtio 1.1 §5.1.3, §6; vhost-user.rst).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct VirtioFeatures: u64 {
        const NET_MTU = 1 << 3;
        const NET_MRG_RXBUF = 1 << 15;
        const NET_STATUS = 1 << 16;
        const NET_MQ = 1 << 22;
        /// Dirty logging for live migration: never advertised (no SET_LOG_BASE support).
        const LOG_ALL = 1 << 26;
        const RING_INDIRECT_DESC = 1 << 28;
        const RING_EVENT_IDX = 1 << 29;
        const PROTOCOL_FEATURES = 1 << 30;
        const VERSION_1 = 1 << 32;
        /// Buffers are used in the order they were made available (virtio 1.1 §2.6.9). Both
        /// directions already walk the avail ring and fill the used ring strictly in order, so
        /// offering it costs nothing and lets drivers take their cheaper in-order paths (DPDK's
        /// virtio PMD does).
        const IN_ORDER = 1 << 35;
    }
}

impl VirtioFeatures {
    /// What this backend offers: no offloads (so no header fields to honour), no logging.
    pub fn offered() -> Self {
        Self::NET_MTU
            | Self::NET_MRG_RXBUF
            | Self::NET_STATUS
            | Self::NET_MQ
            | Self::RING_INDIRECT_DESC
            | Self::RING_EVENT_IDX
            | Self::PROTOCOL_FEATURES
            | Self::VERSION_1
            | Self::IN_ORDER
    }
}

bitflags! {
    /// vhost-user protocol feature bits (vhost-user.rst "Protocol features").
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ProtocolFeatures: u64 {
        const MQ = 1 << 0;
        /// Never advertised: dirty logging is not supported.
        const LOG_SHMFD = 1 << 1;
        const RARP = 1 << 2;
        const REPLY_ACK = 1 << 3;
        const NET_MTU = 1 << 4;
        const BACKEND_REQ = 1 << 5;
        const CONFIG = 1 << 9;
        const CONFIGURE_MEM_SLOTS = 1 << 15;
        const STATUS = 1 << 16;
    }
}

impl ProtocolFeatures {
    /// QEMU 7.2's vhost-user-net and DPDK's virtio-user both work with this set.
    pub fn offered() -> Self {
        Self::MQ | Self::REPLY_ACK | Self::NET_MTU | Self::STATUS
    }
}

/// Marker for `#[repr(C)]` payloads without padding whose every bit pattern is valid, so they can
/// be read from and written to raw message bytes.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, contain only integers and have no padding bytes.
pub unsafe trait Pod: Copy + Default {
    /// Reads `Self` from exactly `size_of::<Self>()` bytes.
    fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != size_of::<Self>() {
            return None;
        }
        // SAFETY: the length is checked above and any bit pattern is a valid `Self` (trait contract).
        Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<Self>()) })
    }

    /// Reads `Self` from the start of `b`, which may be longer.
    fn from_prefix(b: &[u8]) -> Option<Self> {
        b.get(..size_of::<Self>()).and_then(Self::from_bytes)
    }

    fn as_bytes(&self) -> &[u8] {
        // SAFETY: `Self` has no padding (trait contract), so every byte is initialised.
        unsafe { std::slice::from_raw_parts((self as *const Self).cast::<u8>(), size_of::<Self>()) }
    }
}

/// The 12-byte message header; fields are native-endian.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    pub request: u32,
    pub flags: u32,
    pub size: u32,
}

/// SET_VRING_NUM / SET_VRING_BASE / GET_VRING_BASE / SET_VRING_ENABLE payload.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VringState {
    pub index: u32,
    pub num: u32,
}

/// SET_VRING_ADDR payload. Note the order: desc, **used**, avail, log. Ring addresses are
/// frontend virtual addresses.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VringAddr {
    pub index: u32,
    pub flags: u32,
    pub desc_user_addr: u64,
    pub used_user_addr: u64,
    pub avail_user_addr: u64,
    pub log_guest_addr: u64,
}

/// One region of SET_MEM_TABLE.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryRegion {
    pub guest_phys_addr: u64,
    pub memory_size: u64,
    pub userspace_addr: u64,
    pub mmap_offset: u64,
}

/// The fixed part of SET_MEM_TABLE, followed by `nregions` [`MemoryRegion`]s.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryTableHeader {
    pub nregions: u32,
    pub padding: u32,
}

// SAFETY: all four are repr(C), integer-only, and their fields are laid out without padding.
unsafe impl Pod for Header {}
// SAFETY: as above.
unsafe impl Pod for VringState {}
// SAFETY: as above (u32, u32, then u64s at 8-byte offsets).
unsafe impl Pod for VringAddr {}
// SAFETY: as above.
unsafe impl Pod for MemoryRegion {}
// SAFETY: as above.
unsafe impl Pod for MemoryTableHeader {}
// SAFETY: a plain integer.
unsafe impl Pod for u64 {}

/// One received message with the fds that came with it. Dropping it closes the fds.
#[derive(Debug)]
pub struct Message {
    pub header: Header,
    pub payload: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

impl Message {
    pub fn request(&self) -> Option<Request> {
        Request::from_u32(self.header.request)
    }

    pub fn need_reply(&self) -> bool {
        self.header.flags & FLAG_NEED_REPLY != 0
    }

    /// The payload as `T`, requiring its exact size.
    pub fn body<T: Pod>(&self) -> Result<T, ProtocolError> {
        T::from_bytes(&self.payload).ok_or(ProtocolError::BadPayloadSize {
            request: self.header.request,
            size: self.payload.len(),
            expected: size_of::<T>(),
        })
    }

    /// Requires an empty payload.
    pub fn no_body(&self) -> Result<(), ProtocolError> {
        if self.payload.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::BadPayloadSize {
                request: self.header.request,
                size: self.payload.len(),
                expected: 0,
            })
        }
    }
}

/// One end of a vhost-user connection.
#[derive(Debug)]
pub struct Endpoint {
    stream: UnixStream,
}

const CMSG_BUF_LEN: usize = 128;

/// One recvmsg on `fd` into `buf` (flags added to MSG_CMSG_CLOEXEC), appending any SCM_RIGHTS
/// fds to `fds`. EINTR is retried; EAGAIN comes back as an `Io` error of kind `WouldBlock`. On a
/// unix stream socket the kernel ends a read right after the bytes that carried fds, so the fds
/// of one call belong to the last bytes it returned.
fn recv_with_fds(
    fd: RawFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    flags: libc::c_int,
) -> Result<usize, ProtocolError> {
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut cbuf = [0u64; CMSG_BUF_LEN / 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    loop {
        // SAFETY: msghdr is plain data; all-zero is a valid empty value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = CMSG_BUF_LEN as _;
        // SAFETY: msg points at live buffers of the stated sizes for the duration of the call.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC | flags) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        // Take ownership of every fd first, so that any error below closes them.
        let mut cmsg = if msg.msg_controllen > 0 {
            // SAFETY: msg was filled by recvmsg; CMSG_FIRSTHDR only reads its control fields.
            unsafe { libc::CMSG_FIRSTHDR(&msg) }
        } else {
            std::ptr::null_mut()
        };
        while !cmsg.is_null() {
            // SAFETY: cmsg is a header inside cbuf, as returned by CMSG_FIRSTHDR/NXTHDR.
            let c = unsafe { &*cmsg };
            if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SCM_RIGHTS {
                // SAFETY: CMSG_LEN(0) is a pure computation.
                let hdr_len = unsafe { libc::CMSG_LEN(0) } as usize;
                let count = (c.cmsg_len as usize).saturating_sub(hdr_len) / size_of::<RawFd>();
                // SAFETY: the data of an SCM_RIGHTS cmsg is `count` fds inside cbuf.
                let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<RawFd>();
                for i in 0..count {
                    // SAFETY: i < count, inside the cmsg data; the fd is fresh and ours.
                    let fd = unsafe { std::ptr::read_unaligned(data.add(i)) };
                    // SAFETY: the kernel just installed this fd for us; nobody else owns it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
            // SAFETY: as for CMSG_FIRSTHDR.
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            fds.clear();
            return Err(ProtocolError::FdOverflow);
        }
        return Ok(n as usize);
    }
}

impl Endpoint {
    pub fn new(stream: UnixStream) -> Self {
        Endpoint { stream }
    }

    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// One recvmsg into `buf`, appending any SCM_RIGHTS fds to `fds`. Returns the bytes read.
    fn recv_some(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> Result<usize, ProtocolError> {
        let mut got = Vec::new();
        let r = recv_with_fds(self.stream.as_raw_fd(), buf, &mut got, 0);
        fds.extend(got);
        r
    }

    fn recv_exact(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> Result<(), ProtocolError> {
        let mut got = 0;
        while got < buf.len() {
            let n = self.recv_some(&mut buf[got..], fds)?;
            if n == 0 {
                return Err(if got == 0 {
                    ProtocolError::Disconnected
                } else {
                    ProtocolError::Truncated {
                        got,
                        want: buf.len(),
                    }
                });
            }
            got += n;
        }
        Ok(())
    }

    /// Reads one whole message (blocking, honouring the socket's read timeout).
    pub fn recv_message(&self) -> Result<Message, ProtocolError> {
        let mut fds = Vec::new();
        let mut hb = [0u8; size_of::<Header>()];
        self.recv_exact(&mut hb, &mut fds)?;
        let header = Header::from_bytes(&hb).expect("header buffer has header size");
        if header.flags & VERSION_MASK != VERSION {
            return Err(ProtocolError::BadVersion(header.flags & VERSION_MASK));
        }
        let size = header.size as usize;
        if size > MAX_PAYLOAD {
            return Err(ProtocolError::PayloadTooLarge {
                size,
                max: MAX_PAYLOAD,
            });
        }
        let mut payload = vec![0u8; size];
        match self.recv_exact(&mut payload, &mut fds) {
            Ok(()) => {}
            Err(ProtocolError::Disconnected) => {
                return Err(ProtocolError::Truncated {
                    got: size_of::<Header>(),
                    want: size_of::<Header>() + size,
                })
            }
            Err(e) => return Err(e),
        }
        if fds.len() > MAX_FDS {
            return Err(ProtocolError::FdOverflow);
        }
        Ok(Message {
            header,
            payload,
            fds,
        })
    }

    /// Sends one message; `fds` travel with its first byte.
    pub fn send(
        &self,
        request: u32,
        flags: u32,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), ProtocolError> {
        if fds.len() > MAX_FDS {
            return Err(ProtocolError::FdOverflow);
        }
        let header = Header {
            request,
            flags: flags | VERSION,
            size: payload.len() as u32,
        };
        let mut buf = Vec::with_capacity(size_of::<Header>() + payload.len());
        buf.extend_from_slice(header.as_bytes());
        buf.extend_from_slice(payload);
        self.send_bytes(&buf, fds)
    }

    /// Sends raw bytes (blocking); `fds` travel with the first byte.
    pub fn send_bytes(&self, buf: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), ProtocolError> {
        if fds.len() > MAX_FDS {
            return Err(ProtocolError::FdOverflow);
        }
        let mut sent = 0;
        let mut cbuf = [0u64; CMSG_BUF_LEN / 8];
        while sent < buf.len() {
            let mut iov = libc::iovec {
                iov_base: buf[sent..].as_ptr() as *mut libc::c_void,
                iov_len: buf.len() - sent,
            };
            // SAFETY: msghdr is plain data; all-zero is a valid empty value.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            if sent == 0 && !fds.is_empty() {
                let data_len = std::mem::size_of_val(fds) as u32;
                // SAFETY: pure computations of cmsg sizes.
                let space = unsafe { libc::CMSG_SPACE(data_len) } as usize;
                msg.msg_control = cbuf.as_mut_ptr().cast();
                msg.msg_controllen = space as _;
                // SAFETY: cbuf is aligned and at least `space` bytes (8 fds need 56).
                let c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
                // SAFETY: c points into cbuf, which has room for the header and data.
                unsafe {
                    (*c).cmsg_level = libc::SOL_SOCKET;
                    (*c).cmsg_type = libc::SCM_RIGHTS;
                    (*c).cmsg_len = libc::CMSG_LEN(data_len) as _;
                    let data = libc::CMSG_DATA(c).cast::<RawFd>();
                    for (i, fd) in fds.iter().enumerate() {
                        std::ptr::write_unaligned(data.add(i), fd.as_raw_fd());
                    }
                }
            }
            // SAFETY: msg references live buffers; MSG_NOSIGNAL turns a closed peer into EPIPE.
            let n = unsafe { libc::sendmsg(self.stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            sent += n as usize;
        }
        Ok(())
    }

    /// Sends a reply (REPLY flag set) to `request`.
    pub fn reply(&self, request: u32, payload: &[u8]) -> Result<(), ProtocolError> {
        self.send(request, FLAG_REPLY, payload, &[])
    }

    /// Frontend side: waits for the reply to `request` and returns its payload.
    pub fn recv_reply(&self, request: u32) -> Result<Vec<u8>, ProtocolError> {
        let m = self.recv_message()?;
        if m.header.request != request || m.header.flags & FLAG_REPLY == 0 {
            return Err(ProtocolError::UnexpectedReply {
                request,
                got: m.header.request,
            });
        }
        Ok(m.payload)
    }
}

/// A started message must be complete this long after its first byte arrived (or after the
/// message before it was taken, if that is later): a frontend that drips bytes is dropped.
pub const MESSAGE_DEADLINE: Duration = Duration::from_secs(5);
/// Input buffered per connection: two whole messages. Reading stops while it is full (the
/// frontend's socket buffer then fills instead), so a connection's memory is fixed.
const INPUT_CAP: usize = 2 * (size_of::<Header>() + MAX_PAYLOAD);
/// Reply bytes queued per connection beyond what the socket took. A frontend that sends requests
/// but never reads the replies reaches it and is dropped.
pub const OUTPUT_CAP: usize = 64 * 1024;
/// Received fds not yet claimed by a complete message (one recvmsg brings at most 28).
const MAX_QUEUED_FDS: usize = 64;

/// The backend's end of one vhost-user connection: a non-blocking socket with its own input
/// buffer (bytes and the fds that came with them) and output buffer. Nothing here waits: reads
/// take what the socket holds, a message is returned only once complete, replies are written as
/// far as the socket accepts.
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    input: Box<[u8]>,
    in_len: usize,
    /// Stream offset of `input[0]` (bytes taken so far).
    in_offset: u64,
    /// Received fds with the stream offset of the last byte of the read that brought them: the
    /// kernel ends a read right after the bytes that carried fds, so they belong to the message
    /// holding that byte.
    in_fds: VecDeque<(u64, OwnedFd)>,
    /// When the message at the head of `input` started (see [`MESSAGE_DEADLINE`]).
    head_since: Option<Instant>,
    eof: bool,
    output: Vec<u8>,
    out_pos: usize,
}

impl Connection {
    /// Takes `stream` and makes it non-blocking. Reads and writes also pass MSG_DONTWAIT, so
    /// they never block even if that failed or someone flips the socket back to blocking.
    pub fn new(stream: UnixStream) -> Self {
        let _ = stream.set_nonblocking(true);
        Connection {
            stream,
            input: vec![0u8; INPUT_CAP].into_boxed_slice(),
            in_len: 0,
            in_offset: 0,
            in_fds: VecDeque::new(),
            head_since: None,
            eof: false,
            output: Vec::new(),
            out_pos: 0,
        }
    }

    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Whether there is room to read into (and the peer has not closed).
    pub fn wants_read(&self) -> bool {
        !self.eof && self.in_len < self.input.len()
    }

    /// Whether replies wait for the socket to take them.
    pub fn wants_write(&self) -> bool {
        self.out_pos < self.output.len()
    }

    /// Reads what the socket holds, as far as the input buffer has room. Returns the bytes read;
    /// end of stream is remembered and reported by [`Connection::next_message`]. Errors are fatal.
    pub fn fill(&mut self, now: Instant) -> Result<usize, ProtocolError> {
        let mut total = 0;
        while self.wants_read() {
            let mut fds = Vec::new();
            let r = recv_with_fds(
                self.stream.as_raw_fd(),
                &mut self.input[self.in_len..],
                &mut fds,
                libc::MSG_DONTWAIT,
            );
            match r {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    if self.in_len == 0 {
                        self.head_since = Some(now);
                    }
                    self.in_len += n;
                    total += n;
                    let last = self.in_offset + self.in_len as u64 - 1;
                    self.in_fds.extend(fds.into_iter().map(|fd| (last, fd)));
                    if self.in_fds.len() > MAX_QUEUED_FDS {
                        return Err(ProtocolError::TooManyFds {
                            count: self.in_fds.len(),
                            max: MAX_QUEUED_FDS,
                        });
                    }
                    // Check the head's size as soon as its header is here, before waiting for
                    // a payload that would never fit.
                    self.head_header()?;
                }
                Err(ProtocolError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// The header of the message at the head of the input, once its 12 bytes are here, checked
    /// for version and size.
    fn head_header(&self) -> Result<Option<Header>, ProtocolError> {
        let Some(h) = self.input[..self.in_len].get(..size_of::<Header>()) else {
            return Ok(None);
        };
        let header = Header::from_bytes(h).expect("header length");
        if header.flags & VERSION_MASK != VERSION {
            return Err(ProtocolError::BadVersion(header.flags & VERSION_MASK));
        }
        if header.size as usize > MAX_PAYLOAD {
            return Err(ProtocolError::PayloadTooLarge {
                size: header.size as usize,
                max: MAX_PAYLOAD,
            });
        }
        Ok(Some(header))
    }

    /// Bytes the head message needs in all: the header alone until it is complete.
    fn head_len(&self) -> usize {
        let hl = size_of::<Header>();
        match self.input[..self.in_len].get(..hl) {
            Some(h) => hl + Header::from_bytes(h).map_or(0, |h| h.size as usize),
            None => hl,
        }
    }

    /// Whether [`Connection::next_message`] has something to return now: a complete message,
    /// or the end of the stream.
    pub fn has_input(&self) -> bool {
        self.eof || (self.in_len > 0 && self.in_len >= self.head_len())
    }

    /// When the incomplete message at the head of the input must be complete, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        if self.in_len == 0 || self.has_input() {
            return None;
        }
        self.head_since.map(|t| t + MESSAGE_DEADLINE)
    }

    /// Fails when the head message is incomplete past its deadline.
    pub fn check_deadline(&self, now: Instant) -> Result<(), ProtocolError> {
        match self.deadline() {
            Some(d) if now >= d => Err(ProtocolError::MessageTimeout {
                got: self.in_len,
                want: self.head_len(),
                secs: MESSAGE_DEADLINE.as_secs(),
            }),
            _ => Ok(()),
        }
    }

    /// Takes the next complete message with the fds that came with its bytes, if there is one.
    /// Errors (end of stream included) are fatal.
    pub fn next_message(&mut self, now: Instant) -> Result<Option<Message>, ProtocolError> {
        let hl = size_of::<Header>();
        if let Some(header) = self.head_header()? {
            let total = hl + header.size as usize;
            if self.in_len >= total {
                let payload = self.input[hl..total].to_vec();
                let end = self.in_offset + total as u64;
                let mut fds = Vec::new();
                while self.in_fds.front().is_some_and(|(o, _)| *o < end) {
                    fds.extend(self.in_fds.pop_front().map(|(_, fd)| fd));
                }
                self.input.copy_within(total..self.in_len, 0);
                self.in_len -= total;
                self.in_offset = end;
                self.head_since = (self.in_len > 0).then_some(now);
                if fds.len() > MAX_FDS {
                    return Err(ProtocolError::TooManyFds {
                        count: fds.len(),
                        max: MAX_FDS,
                    });
                }
                return Ok(Some(Message {
                    header,
                    payload,
                    fds,
                }));
            }
        }
        if self.eof {
            return Err(if self.in_len == 0 {
                ProtocolError::Disconnected
            } else {
                ProtocolError::Truncated {
                    got: self.in_len,
                    want: self.head_len(),
                }
            });
        }
        Ok(None)
    }

    /// Queues a reply (REPLY flag set) to `request`; [`Connection::flush`] writes it.
    pub fn queue_reply(&mut self, request: u32, payload: &[u8]) -> Result<(), ProtocolError> {
        let queued = self.output.len() - self.out_pos;
        if queued + size_of::<Header>() + payload.len() > OUTPUT_CAP {
            return Err(ProtocolError::ReplyBacklog { max: OUTPUT_CAP });
        }
        let header = Header {
            request,
            flags: FLAG_REPLY | VERSION,
            size: payload.len() as u32,
        };
        self.output.extend_from_slice(header.as_bytes());
        self.output.extend_from_slice(payload);
        Ok(())
    }

    /// Writes queued replies as far as the socket takes them. Errors are fatal.
    pub fn flush(&mut self) -> Result<(), ProtocolError> {
        while self.out_pos < self.output.len() {
            let rest = &self.output[self.out_pos..];
            // SAFETY: sends from a live buffer of the stated length; MSG_NOSIGNAL turns a closed
            // peer into EPIPE, MSG_DONTWAIT makes a full socket EAGAIN.
            let n = unsafe {
                libc::send(
                    self.stream.as_raw_fd(),
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => break,
                    _ => return Err(e.into()),
                }
            }
            self.out_pos += n as usize;
        }
        if self.out_pos == self.output.len() {
            self.output.clear();
            self.out_pos = 0;
        } else if self.out_pos >= OUTPUT_CAP / 2 {
            self.output.drain(..self.out_pos);
            self.out_pos = 0;
        }
        Ok(())
    }
}
