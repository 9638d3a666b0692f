//! The backend state machine of one vhost-user-net device: the control side ([`VhostUserNet`],
//! on the switch's control thread, one message at a time) and the PMD handles it hands out.
//!
//! A `VhostUserNet` outlives connections: a frontend connects, negotiates, runs, disconnects (all
//! queues go not-ready, memory is released once the PMD handles have let go of it), and a
//! reconnecting frontend starts afresh on the same object and the same PMD handles.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::{io, mem::size_of};

use crate::error::{DeviceError, ProtocolError};
use crate::memory::GuestMemory;
use crate::metrics::{MetricsSnapshot, QueueMetrics};
use crate::net::{HDR_LEN_LEGACY, HDR_LEN_MRG};
use crate::protocol::{
    Endpoint, MemoryRegion, MemoryTableHeader, Message, Pod, ProtocolFeatures, Request,
    VirtioFeatures, VringAddr, VringState, MAX_REGIONS, VRING_INDEX_MASK, VRING_NOFD_MASK,
};
use crate::queue::{QueueConfig, QueueShared, RxQueue, TxQueue};
use crate::virtqueue::{Ring, MAX_QUEUE_SIZE};

/// virtio 1.1 §2.1: device status DRIVER_OK.
pub const STATUS_DRIVER_OK: u8 = 4;

/// Static configuration of a device.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Queue pairs offered (GET_QUEUE_NUM); vrings are 2 × this.
    pub queue_pairs: u16,
    /// Largest MTU accepted from NET_SET_MTU.
    pub max_mtu: u16,
    /// How long GET_VRING_BASE waits for a PMD handle to reach its quiescent point.
    pub stop_timeout: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            queue_pairs: 1,
            max_mtu: 9216,
            stop_timeout: Duration::from_secs(1),
        }
    }
}

/// Control-side counters (plain integers: only the control thread touches them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ControlStats {
    pub messages: u64,
    /// Messages that failed (NACKed when the frontend asked for an ack).
    pub errors: u64,
    pub connections: u64,
    /// GET_VRING_BASE answered without the PMD handle having acknowledged the stop.
    pub stop_timeouts: u64,
    /// Frontends dropped because their memory file shrank under us (`take_memory_fault`).
    pub memory_faults: u64,
}

/// Control-side state of one vring.
#[derive(Debug, Default)]
struct Vring {
    size: u16,
    addr: Option<VringAddr>,
    base: u16,
    started: bool,
    enabled: bool,
    kick: Option<OwnedFd>,
    call: Option<Arc<OwnedFd>>,
    err: Option<OwnedFd>,
    start_id: u64,
    err_signalled: bool,
}

/// One vhost-user-net backend device (control side).
#[derive(Debug)]
pub struct VhostUserNet {
    cfg: NetConfig,
    queues: Vec<Arc<QueueShared>>,
    ep: Option<Endpoint>,
    features: VirtioFeatures,
    protocol: ProtocolFeatures,
    mem: Option<Arc<GuestMemory>>,
    vrings: Vec<Vring>,
    status: u8,
    mtu: Option<u16>,
    retired: Vec<Arc<QueueConfig>>,
    next_start_id: u64,
    stats: ControlStats,
}

fn u64_payload(v: u64) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

impl VhostUserNet {
    pub fn new(cfg: NetConfig) -> Self {
        let pairs = cfg.queue_pairs.clamp(1, 128);
        let nvrings = usize::from(pairs) * 2;
        VhostUserNet {
            cfg: NetConfig {
                queue_pairs: pairs,
                ..cfg
            },
            queues: (0..nvrings as u16)
                .map(|i| Arc::new(QueueShared::new(i)))
                .collect(),
            ep: None,
            features: VirtioFeatures::empty(),
            protocol: ProtocolFeatures::empty(),
            mem: None,
            vrings: (0..nvrings).map(|_| Vring::default()).collect(),
            status: 0,
            mtu: None,
            retired: Vec::new(),
            next_start_id: 1,
            stats: ControlStats::default(),
        }
    }

    /// PMD handles of queue pair `q`: (port rx = guest TX vring 2q+1, port tx = guest RX vring
    /// 2q). `None` if `q` is out of range or a handle for one of them is still alive (one owner
    /// per vring; drop the old handles to move a queue to another core).
    pub fn queue_pair(&self, q: u16) -> Option<(RxQueue, TxQueue)> {
        let rx = self.queues.get(usize::from(q) * 2 + 1)?;
        let tx = self.queues.get(usize::from(q) * 2)?;
        if rx.attached() || tx.attached() {
            return None;
        }
        Some((RxQueue::new(rx.clone()), TxQueue::new(tx.clone())))
    }

    pub fn queue_pairs(&self) -> u16 {
        self.cfg.queue_pairs
    }

    /// Starts serving a new connection, dropping any previous one.
    pub fn attach(&mut self, stream: UnixStream) {
        self.disconnect();
        self.ep = Some(Endpoint::new(stream));
        self.stats.connections += 1;
    }

    pub fn is_connected(&self) -> bool {
        self.ep.is_some()
    }

    /// The connected socket, for the caller's own poll/epoll loop.
    pub fn socket(&self) -> Option<&UnixStream> {
        self.ep.as_ref().map(Endpoint::stream)
    }

    /// Connection lost (or dropped by us): every queue goes not-ready and all per-connection state
    /// is forgotten. Guest memory stays mapped until each PMD handle passes its quiescent point.
    pub fn disconnect(&mut self) {
        self.ep = None;
        self.reset_state();
    }

    fn reset_state(&mut self) {
        self.features = VirtioFeatures::empty();
        self.protocol = ProtocolFeatures::empty();
        self.mem = None;
        self.status = 0;
        self.mtu = None;
        for v in &mut self.vrings {
            *v = Vring::default();
        }
        for q in &self.queues {
            q.clear_broken();
        }
        self.publish_all();
        self.reclaim();
    }

    /// Blocks for one message, handles it and replies. A fatal error (the frontend went away or
    /// broke framing) disconnects; any other error has already been NACKed where the frontend
    /// asked for acks and leaves the connection usable.
    pub fn handle_message(&mut self) -> Result<(), DeviceError> {
        let ep = self.ep.as_ref().ok_or(DeviceError::NotConnected)?;
        let msg = match ep.recv_message() {
            Ok(m) => m,
            Err(e) => {
                self.disconnect();
                return Err(e.into());
            }
        };
        self.stats.messages += 1;
        let request = msg.header.request;
        let kind = msg.request();
        let wants_ack = msg.need_reply()
            && self.protocol.contains(ProtocolFeatures::REPLY_ACK)
            && !kind.is_some_and(Request::has_reply);
        let result = self.process(msg);
        let sent = match (&result, wants_ack) {
            (Ok(Some(payload)), _) => self.reply(request, payload),
            (Ok(None), true) => self.reply(request, &u64_payload(0)),
            (Err(_), true) => self.reply(request, &u64_payload(1)),
            _ => Ok(()),
        };
        self.service();
        if let Err(e) = sent {
            self.disconnect();
            return Err(e.into());
        }
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                self.stats.errors += 1;
                // A request that owes a reply cannot be left unanswered, nor answered with
                // something made up: the connection ends.
                if e.is_fatal() || kind.is_some_and(Request::has_reply) {
                    self.disconnect();
                }
                Err(e)
            }
        }
    }

    /// Non-blocking variant: waits at most `timeout` for the socket to become readable, then
    /// handles one message. Returns whether a message was handled.
    pub fn poll_message(&mut self, timeout: Duration) -> Result<bool, DeviceError> {
        let ep = self.ep.as_ref().ok_or(DeviceError::NotConnected)?;
        let mut pfd = libc::pollfd {
            fd: ep.stream().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(ProtocolError::Io(e).into());
        }
        if n == 0 {
            return Ok(false);
        }
        self.handle_message().map(|()| true)
    }

    /// Serves `stream` until the frontend disconnects; non-fatal errors go to `on_error`.
    /// Returns Ok on an orderly disconnect.
    pub fn run(
        &mut self,
        stream: UnixStream,
        mut on_error: impl FnMut(&DeviceError),
    ) -> Result<(), DeviceError> {
        self.attach(stream);
        loop {
            match self.handle_message() {
                Ok(()) => {}
                Err(DeviceError::Protocol(ProtocolError::Disconnected)) => return Ok(()),
                Err(e) if !self.is_connected() => return Err(e),
                Err(e) => on_error(&e),
            }
        }
    }

    fn reply(&self, request: u32, payload: &[u8]) -> Result<(), ProtocolError> {
        match &self.ep {
            Some(ep) => ep.reply(request, payload),
            None => Ok(()),
        }
    }

    /// Control-side housekeeping, done after every message; call it periodically too: frees
    /// retired configs (and so unmaps old guest memory) once no PMD handle holds them, and
    /// signals the error eventfd of queues that broke.
    pub fn service(&mut self) {
        self.reclaim();
        for (v, q) in self.vrings.iter_mut().zip(&self.queues) {
            if q.is_broken() && !v.err_signalled {
                v.err_signalled = true;
                if let Some(fd) = &v.err {
                    let one: u64 = 1;
                    // SAFETY: writes a live u64 to an eventfd we own.
                    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
                }
            }
        }
    }

    /// Whether an access to this frontend's guest memory faulted since the last call (its file
    /// shrank under us: the SIGBUS was caught and the region now reads as zeroes, see
    /// [`crate::guard`]). If so the frontend is disconnected, as for a broken connection, and
    /// the device waits for the next one. Cheap (a few atomic loads): call it every loop.
    pub fn take_memory_fault(&mut self) -> bool {
        let tables = self
            .mem
            .iter()
            .chain(self.retired.iter().filter_map(|c| c.mem.as_ref()));
        // Every table, so that each fault is reported once.
        let hit = tables.fold(false, |hit, m| m.take_fault() | hit);
        if hit {
            self.stats.memory_faults += 1;
            self.disconnect();
        }
        hit
    }

    /// Drops retired configs nobody else references any more.
    pub fn reclaim(&mut self) {
        self.retired.retain(|c| Arc::strong_count(c) > 1);
    }

    /// Retired configs still held by some PMD handle (for tests and diagnostics).
    pub fn retired_count(&self) -> usize {
        self.retired.len()
    }

    fn vring_index(&self, i: u64) -> Result<usize, DeviceError> {
        usize::try_from(i)
            .ok()
            .filter(|&i| i < self.vrings.len())
            .ok_or(DeviceError::BadVringIndex(i as u32))
    }

    fn status_ok(&self) -> bool {
        !self.protocol.contains(ProtocolFeatures::STATUS) || self.status & STATUS_DRIVER_OK != 0
    }

    /// Builds vring `i`'s config from control state and publishes it if it changed.
    fn publish(&mut self, i: usize) {
        let v = &self.vrings[i];
        let enabled = if self.features.contains(VirtioFeatures::PROTOCOL_FEATURES) {
            v.enabled
        } else {
            true // without PROTOCOL_FEATURES rings start enabled (vhost-user.rst "Ring states")
        };
        let ring = match (&self.mem, &v.addr) {
            (Some(mem), Some(a))
                if self.ep.is_some() && v.started && enabled && self.status_ok() =>
            {
                Ring::new(
                    mem,
                    v.size,
                    a.desc_user_addr,
                    a.avail_user_addr,
                    a.used_user_addr,
                )
            }
            _ => None,
        };
        let mrg = self.features.contains(VirtioFeatures::NET_MRG_RXBUF);
        let cfg = QueueConfig {
            mem: ring.and(self.mem.clone()),
            ring,
            start_id: v.start_id,
            base: v.base,
            call: v.call.clone(),
            hdr_len: if mrg || self.features.contains(VirtioFeatures::VERSION_1) {
                HDR_LEN_MRG
            } else {
                HDR_LEN_LEGACY
            },
            mrg,
            event_idx: self.features.contains(VirtioFeatures::RING_EVENT_IDX),
        };
        if let Some(old) = self.queues[i].publish(cfg) {
            self.retired.push(old);
        }
    }

    fn publish_all(&mut self) {
        for i in 0..self.vrings.len() {
            self.publish(i);
        }
    }

    /// Whether vring `i` is processed by its PMD handle right now (as published).
    pub fn vring_ready(&self, i: u16) -> bool {
        self.queues
            .get(usize::from(i))
            .is_some_and(|q| q.current().ring.is_some())
    }

    /// Queue pairs whose two vrings are both ready.
    pub fn ready_queue_pairs(&self) -> u16 {
        (0..self.cfg.queue_pairs)
            .filter(|q| self.vring_ready(2 * q) && self.vring_ready(2 * q + 1))
            .count() as u16
    }

    /// Link status as the switch sees the port: a frontend is connected and at least one queue
    /// pair runs. (The guest's own link bit lives in QEMU's config space.)
    pub fn link_up(&self) -> bool {
        self.is_connected() && self.ready_queue_pairs() > 0
    }

    /// MTU set by the frontend (NET_SET_MTU), if any.
    pub fn mtu(&self) -> Option<u16> {
        self.mtu
    }

    pub fn acked_features(&self) -> VirtioFeatures {
        self.features
    }

    pub fn acked_protocol_features(&self) -> ProtocolFeatures {
        self.protocol
    }

    pub fn control_stats(&self) -> ControlStats {
        self.stats
    }

    /// Whether a PMD handle has reported vring `i` broken (until the frontend restarts it).
    pub fn vring_broken(&self, i: u16) -> bool {
        self.queues
            .get(usize::from(i))
            .is_some_and(|q| q.is_broken())
    }

    /// Counters of vring `i` alone (guest TX vrings are odd), e.g. to see which guest queues
    /// carried traffic.
    pub fn vring_metrics(&self, i: u16) -> Option<&QueueMetrics> {
        self.queues.get(usize::from(i)).map(|q| q.metrics())
    }

    /// Sum of all queue counters (relaxed reads; off the fast path).
    pub fn metrics(&self) -> MetricsSnapshot {
        let mut s = MetricsSnapshot::default();
        for q in &self.queues {
            s.add_queue(q.metrics(), q.index % 2 == 1);
        }
        s
    }

    /// Handles one message; `Ok(Some(payload))` is a reply to send.
    fn process(&mut self, msg: Message) -> Result<Option<Vec<u8>>, DeviceError> {
        let Some(req) = msg.request() else {
            return Err(ProtocolError::Unsupported(msg.header.request).into());
        };
        use Request::*;
        match req {
            GetFeatures => {
                msg.no_body()?;
                Ok(Some(u64_payload(VirtioFeatures::offered().bits())))
            }
            SetFeatures => {
                let f: u64 = msg.body()?;
                let feats = VirtioFeatures::from_bits(f)
                    .filter(|f| VirtioFeatures::offered().contains(*f))
                    .ok_or(DeviceError::FeaturesNotOffered(f))?;
                self.features = feats;
                self.publish_all();
                Ok(None)
            }
            GetProtocolFeatures => {
                msg.no_body()?;
                Ok(Some(u64_payload(ProtocolFeatures::offered().bits())))
            }
            SetProtocolFeatures => {
                let f: u64 = msg.body()?;
                let feats = ProtocolFeatures::from_bits(f)
                    .filter(|f| ProtocolFeatures::offered().contains(*f))
                    .ok_or(DeviceError::ProtocolFeaturesNotOffered(f))?;
                self.protocol = feats;
                self.publish_all();
                Ok(None)
            }
            SetOwner => {
                msg.no_body()?;
                Ok(None)
            }
            ResetOwner => {
                msg.no_body()?;
                self.reset_state();
                Ok(None)
            }
            GetQueueNum => {
                msg.no_body()?;
                Ok(Some(u64_payload(u64::from(self.cfg.queue_pairs))))
            }
            SetMemTable => {
                self.set_mem_table(msg)?;
                Ok(None)
            }
            SetVringNum => {
                let s: VringState = msg.body()?;
                let i = self.vring_index(u64::from(s.index))?;
                if s.num == 0 || !s.num.is_power_of_two() || s.num > MAX_QUEUE_SIZE {
                    return Err(DeviceError::BadQueueSize(s.num));
                }
                self.vrings[i].size = s.num as u16;
                self.publish(i);
                Ok(None)
            }
            SetVringAddr => {
                let a: VringAddr = msg.body()?;
                let i = self.vring_index(u64::from(a.index))?;
                if a.desc_user_addr % 16 != 0
                    || a.avail_user_addr % 2 != 0
                    || a.used_user_addr % 4 != 0
                {
                    return Err(DeviceError::MisalignedRing(a.index));
                }
                self.vrings[i].addr = Some(a);
                self.publish(i);
                Ok(None)
            }
            SetVringBase => {
                let s: VringState = msg.body()?;
                let i = self.vring_index(u64::from(s.index))?;
                let base = u16::try_from(s.num).map_err(|_| DeviceError::BadVringBase(s.num))?;
                self.vrings[i].base = base;
                self.publish(i);
                Ok(None)
            }
            GetVringBase => {
                let s: VringState = msg.body()?;
                let i = self.vring_index(u64::from(s.index))?;
                let num = self.stop_vring(i);
                let reply = VringState {
                    index: s.index,
                    num: u32::from(num),
                };
                Ok(Some(reply.as_bytes().to_vec()))
            }
            SetVringKick | SetVringCall | SetVringErr => {
                let v: u64 = msg.body()?;
                let i = self.vring_index(v & VRING_INDEX_MASK)?;
                let nofd = v & VRING_NOFD_MASK != 0;
                let mut fds = msg.fds;
                let want = usize::from(!nofd);
                if fds.len() != want {
                    return Err(ProtocolError::BadFdCount {
                        request: msg.header.request,
                        got: fds.len(),
                        want,
                    }
                    .into());
                }
                let fd = fds.pop();
                let vr = &mut self.vrings[i];
                match req {
                    SetVringKick => {
                        // The ring starts on kick (vhost-user.rst "Ring states"). We poll, so
                        // the kick fd is only kept, never read.
                        vr.kick = fd;
                        vr.started = true;
                        vr.start_id = self.next_start_id;
                        vr.err_signalled = false;
                        self.next_start_id += 1;
                        self.queues[i].set_last_avail(vr.base);
                        self.queues[i].clear_broken();
                    }
                    SetVringCall => vr.call = fd.map(Arc::new),
                    _ => vr.err = fd,
                }
                self.publish(i);
                Ok(None)
            }
            SetVringEnable => {
                let s: VringState = msg.body()?;
                let i = self.vring_index(u64::from(s.index))?;
                self.vrings[i].enabled = s.num != 0;
                self.publish(i);
                Ok(None)
            }
            NetSetMtu => {
                let m: u64 = msg.body()?;
                if !(68..=u64::from(self.cfg.max_mtu)).contains(&m) {
                    return Err(DeviceError::BadMtu {
                        mtu: m,
                        max: self.cfg.max_mtu,
                    });
                }
                self.mtu = Some(m as u16);
                Ok(None)
            }
            SetStatus => {
                let s: u64 = msg.body()?;
                self.status = s as u8;
                self.publish_all();
                Ok(None)
            }
            GetStatus => {
                msg.no_body()?;
                Ok(Some(u64_payload(u64::from(self.status))))
            }
            _ => Err(ProtocolError::Unsupported(msg.header.request).into()),
        }
    }

    /// SET_MEM_TABLE: the new table is built completely before anything changes; on failure the
    /// old table stays in force and the new fds are closed.
    fn set_mem_table(&mut self, msg: Message) -> Result<(), DeviceError> {
        let hdr =
            MemoryTableHeader::from_prefix(&msg.payload).ok_or(ProtocolError::BadPayloadSize {
                request: msg.header.request,
                size: msg.payload.len(),
                expected: size_of::<MemoryTableHeader>(),
            })?;
        let n = hdr.nregions as usize;
        let rsz = size_of::<MemoryRegion>();
        let need = size_of::<MemoryTableHeader>() + n.min(MAX_REGIONS) * rsz;
        // Frontends send exactly `n` regions or the full 8-slot array.
        let max = size_of::<MemoryTableHeader>() + MAX_REGIONS * rsz;
        if n > MAX_REGIONS {
            return Err(crate::error::MemoryError::TooManyRegions(n).into());
        }
        if msg.payload.len() < need || msg.payload.len() > max {
            return Err(ProtocolError::BadPayloadSize {
                request: msg.header.request,
                size: msg.payload.len(),
                expected: need,
            }
            .into());
        }
        let mut regions = [MemoryRegion::default(); MAX_REGIONS];
        for (k, r) in regions.iter_mut().enumerate().take(n) {
            let off = size_of::<MemoryTableHeader>() + k * rsz;
            *r = MemoryRegion::from_bytes(&msg.payload[off..off + rsz]).expect("length checked");
        }
        let mem = GuestMemory::from_regions(&regions[..n], msg.fds)?;
        self.mem = Some(Arc::new(mem));
        self.publish_all();
        Ok(())
    }

    /// GET_VRING_BASE: stops the ring, waits (bounded) for its PMD handle to acknowledge, and
    /// returns the next avail index to process.
    fn stop_vring(&mut self, i: usize) -> u16 {
        self.vrings[i].started = false;
        self.vrings[i].kick = None;
        self.publish(i);
        let q = &self.queues[i];
        let deadline = Instant::now() + self.cfg.stop_timeout;
        while !q.quiescent() {
            if Instant::now() >= deadline {
                self.stats.stop_timeouts += 1;
                break;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        let base = q.last_avail();
        self.vrings[i].base = base;
        base
    }
}

/// Server mode: listens on a socket path; QEMU connects as client (`server=off`).
#[derive(Debug)]
pub struct Listener {
    inner: UnixListener,
    path: PathBuf,
}

impl Listener {
    /// Binds `path`, replacing a stale socket file left by a previous run (never another kind of
    /// file).
    pub fn bind(path: impl AsRef<Path>) -> io::Result<Self> {
        use std::os::unix::fs::FileTypeExt;
        let path = path.as_ref().to_path_buf();
        if let Ok(md) = std::fs::symlink_metadata(&path) {
            if md.file_type().is_socket() {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(Listener {
            inner: UnixListener::bind(&path)?,
            path,
        })
    }

    /// Accepts the next frontend (blocking).
    pub fn accept(&self) -> io::Result<UnixStream> {
        self.inner.accept().map(|(s, _)| s)
    }

    pub fn listener(&self) -> &UnixListener {
        &self.inner
    }

    /// Accepts frontends one at a time forever, serving each until it disconnects; a
    /// reconnecting frontend is accepted again.
    pub fn serve(
        &self,
        dev: &mut VhostUserNet,
        mut on_error: impl FnMut(&DeviceError),
    ) -> io::Result<()> {
        loop {
            let s = self.accept()?;
            if let Err(e) = dev.run(s, &mut on_error) {
                on_error(&e);
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Client mode: connects to a frontend listening on `path` (QEMU `server=on`), retrying.
pub fn connect(
    path: impl AsRef<Path>,
    attempts: u32,
    interval: Duration,
) -> io::Result<UnixStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no connection attempt made");
    for n in 0..attempts.max(1) {
        match UnixStream::connect(path.as_ref()) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
        if n + 1 < attempts {
            std::thread::sleep(interval);
        }
    }
    Err(last)
}
