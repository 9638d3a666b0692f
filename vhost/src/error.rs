//! One error enum per component. Variants read as sentences so that a log line needs no context.

use std::io;

/// Errors of the vhost-user wire protocol (framing, payload validation, socket I/O).
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("the frontend closed the connection")]
    Disconnected,
    #[error("the connection closed in the middle of a message ({got} of {want} bytes)")]
    Truncated { got: usize, want: usize },
    #[error("the message header has version {0:#x}, only version 0x1 is spoken")]
    BadVersion(u32),
    #[error("the message payload of {size} bytes exceeds the {max}-byte limit")]
    PayloadTooLarge { size: usize, max: usize },
    #[error("request {request} carries {size} payload bytes, {expected} expected")]
    BadPayloadSize {
        request: u32,
        size: usize,
        expected: usize,
    },
    #[error("request {request} came with {got} file descriptors, {want} expected")]
    BadFdCount {
        request: u32,
        got: usize,
        want: usize,
    },
    #[error("more file descriptors arrived than fit the control buffer; they were closed")]
    FdOverflow,
    #[error("{count} file descriptors arrived with too few message bytes (at most {max} are held); they were closed")]
    TooManyFds { count: usize, max: usize },
    #[error(
        "the frontend took more than {secs} s to send a message ({got} of {want} bytes arrived)"
    )]
    MessageTimeout { got: usize, want: usize, secs: u64 },
    #[error("the frontend does not read its replies (more than {max} bytes queued)")]
    ReplyBacklog { max: usize },
    #[error("request {0} is not supported by this backend")]
    Unsupported(u32),
    #[error("a reply was expected for request {request} but {got} arrived")]
    UnexpectedReply { request: u32, got: u32 },
    #[error("socket I/O failed: {0}")]
    Io(#[from] io::Error),
}

/// Errors building a guest memory table. Every one leaves the previous table in force and closes
/// the file descriptors that came with the rejected table.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("the table has {0} regions, at most 8 are accepted")]
    TooManyRegions(usize),
    #[error("the table lists {regions} regions but {fds} file descriptors came with it")]
    FdCountMismatch { regions: usize, fds: usize },
    #[error("region {0} has zero size")]
    EmptyRegion(usize),
    #[error("region {0} wraps around the address space")]
    RegionOverflow(usize),
    #[error("regions {0} and {1} overlap")]
    Overlap(usize, usize),
    #[error("region {0} is not backed by a regular file (memfd, hugetlbfs, shm)")]
    NotAFile(usize),
    #[error("region {index} ends at file offset {end} but its file has only {file_size} bytes")]
    RegionBeyondFile {
        index: usize,
        end: u64,
        file_size: u64,
    },
    #[error("fstat on the fd of region {index} failed: {source}")]
    Fstat { index: usize, source: io::Error },
    #[error("mmap of region {index} failed: {source}")]
    Mmap { index: usize, source: io::Error },
    #[error(
        "region {0} cannot be guarded against its file shrinking (all {max} guard slots in use)",
        max = crate::guard::MAX_MAPPINGS
    )]
    Unguarded(usize),
}

/// A guest's violation of the split-virtqueue rules (virtio 1.1 §2.6). Any of them marks the
/// queue broken: it stops being processed until the frontend restarts the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VirtqError {
    #[error("avail idx moved from {last} to {idx}, more than the queue size {size} (§2.6.6)")]
    AvailIdxJump { last: u16, idx: u16, size: u16 },
    #[error("descriptor index {index} is out of range for a queue of size {size}")]
    DescIndexOutOfRange { index: u32, size: u16 },
    #[error(
        "a descriptor chain is longer than {0} descriptors, the queue size or 256 if smaller \
         (loop or over-long chain, §2.6.5.3)"
    )]
    ChainTooLong(u16),
    #[error("a descriptor chain contains a zero-length buffer, which can hold no byte")]
    ZeroLengthBuffer,
    #[error("an indirect table of {0} bytes is empty or not a multiple of 16 (§2.6.5.3.1)")]
    BadIndirectLen(u32),
    #[error("an indirect descriptor also has the NEXT flag (§2.6.5.3.1)")]
    IndirectWithNext,
    #[error("an indirect table contains an indirect descriptor (§2.6.5.3.1)")]
    NestedIndirect,
    #[error("an indirect table at {addr:#x}+{len} is not inside one guest memory region")]
    IndirectOutOfMemory { addr: u64, len: u32 },
    #[error("a buffer at {addr:#x}+{len} is outside guest memory")]
    BufferOutOfMemory { addr: u64, len: u32 },
    #[error("the guest's transmit chain contains a device-writable descriptor")]
    WritableInTxChain,
    #[error("the guest's receive chain contains a device-read-only descriptor")]
    ReadOnlyInRxChain,
    #[error("a descriptor chain's total length overflows")]
    LengthOverflow,
}

/// Errors of the backend state machine for one connection.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("the memory table was rejected: {0}")]
    Memory(#[from] MemoryError),
    #[error("vring index {0} does not exist on this device")]
    BadVringIndex(u32),
    #[error("queue size {0} is not a power of two in 1..=32768 (§2.6)")]
    BadQueueSize(u32),
    #[error("vring {0} addresses are misaligned (desc 16, avail 2, used 4; §2.6)")]
    MisalignedRing(u32),
    #[error("features {0:#x} were not offered")]
    FeaturesNotOffered(u64),
    #[error("protocol features {0:#x} were not offered")]
    ProtocolFeaturesNotOffered(u64),
    #[error("MTU {mtu} is outside 68..={max}")]
    BadMtu { mtu: u64, max: u16 },
    #[error("vring base {0} does not fit a split ring's 16-bit index")]
    BadVringBase(u32),
    #[error("no frontend is connected")]
    NotConnected,
    #[error("the fd given with {request:?} for vring {vring} is {kind}, not an eventfd")]
    NotAnEventfd {
        request: crate::protocol::Request,
        vring: usize,
        kind: &'static str,
    },
    #[error(
        "the frontend made the eventfd it gave with {request:?} for vring {vring} blocking again \
         (O_NONBLOCK cleared after hand-over): none of its fds is written any more"
    )]
    FdMadeBlocking {
        request: crate::protocol::Request,
        vring: usize,
    },
    #[error("the eventfd given with {request:?} for vring {vring} cannot be made non-blocking: {source}")]
    FdFlags {
        request: crate::protocol::Request,
        vring: usize,
        source: io::Error,
    },
}

impl DeviceError {
    /// Errors after which the byte stream can no longer be trusted to be in sync.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            DeviceError::Protocol(
                ProtocolError::Disconnected
                    | ProtocolError::Truncated { .. }
                    | ProtocolError::BadVersion(_)
                    | ProtocolError::PayloadTooLarge { .. }
                    | ProtocolError::FdOverflow
                    | ProtocolError::TooManyFds { .. }
                    | ProtocolError::MessageTimeout { .. }
                    | ProtocolError::ReplyBacklog { .. }
                    | ProtocolError::Io(_)
            ) | DeviceError::NotConnected
        )
    }
}
