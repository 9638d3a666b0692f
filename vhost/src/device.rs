//! The backend state machine of one vhost-user-net device: the control side ([`VhostUserNet`],
//! on the switch's control thread) and the PMD handles it hands out.
//!
//! A `VhostUserNet` outlives connections: a frontend connects, negotiates, runs, disconnects (all
//! queues go not-ready, memory is released once the PMD handles have let go of it), and a
//! reconnecting frontend starts afresh on the same object and the same PMD handles.
//!
//! The control side never waits on its frontend: the caller's event loop polls the fd of
//! [`VhostUserNet::poll_interest`], sleeps no longer than [`VhostUserNet::next_deadline`] and then
//! calls [`VhostUserNet::serve`], which reads what arrived, handles complete messages (a bounded
//! number per call), writes replies as far as the socket takes them and enforces the
//! connection's deadlines. A GET_VRING_BASE whose PMD handle has not yet let go of the ring is a
//! pending reply completed by a later `serve`; the connection's next messages wait behind it.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::{io, mem::size_of};

use crate::error::{DeviceError, ProtocolError};
use crate::guestfd::{GuestEventfd, GUARD_PERIOD, GUARD_URGENT};
use crate::memory::GuestMemory;
use crate::metrics::{MetricsSnapshot, QueueMetrics};
use crate::net::{HDR_LEN_LEGACY, HDR_LEN_MRG};
use crate::protocol::{
    Connection, MemoryRegion, MemoryTableHeader, Message, Pod, ProtocolFeatures, Request,
    VirtioFeatures, VringAddr, VringState, MAX_REGIONS, VRING_INDEX_MASK, VRING_NOFD_MASK,
};
use crate::queue::{QueueConfig, QueueShared, RxQueue, TxQueue};
use crate::virtqueue::{Ring, MAX_QUEUE_SIZE};

/// virtio 1.1 §2.1: device status DRIVER_OK.
pub const STATUS_DRIVER_OK: u8 = 4;

/// Messages handled per [`VhostUserNet::serve`] call, so one chatty frontend cannot starve the
/// other connections of the loop.
pub const MESSAGES_PER_SERVE: usize = 32;

/// How often the loop comes back to see whether a PMD handle let go of a ring that a pending
/// GET_VRING_BASE stopped (a polling core does so within one burst).
pub const PENDING_POLL: Duration = Duration::from_millis(1);

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
    /// Connections dropped because a started message was not complete within
    /// [`crate::protocol::MESSAGE_DEADLINE`].
    pub message_timeouts: u64,
    /// Connections dropped because the frontend did not read its replies.
    pub reply_backlogs: u64,
    /// KICK/CALL/ERR requests refused because their fd is not an eventfd.
    pub refused_fds: u64,
    /// Error eventfd writes skipped: the counter was full (EAGAIN), or the fd was revoked.
    pub err_writes_skipped: u64,
    /// Connections dropped because the frontend made a call or err eventfd blocking again after
    /// handing it over (see [`crate::guestfd`]).
    pub fds_made_blocking: u64,
    /// [`crate::guestfd::WAKE_SIGNAL`]s sent to a thread whose write to a guest eventfd was
    /// revoked or overdue.
    pub writer_interrupts: u64,
    /// Frontends dropped because their memory file shrank under us (`take_memory_fault`).
    pub memory_faults: u64,
}

/// What [`VhostUserNet::serve`] reports, for the caller to log.
#[derive(Debug)]
pub enum ControlEvent {
    /// A request failed and was NACKed where the frontend asked for acks; the connection stays.
    RequestFailed(DeviceError),
    /// The connection ended: the frontend closed it or broke the protocol, the reason says which.
    Disconnected(DeviceError),
}

/// What the caller's loop should poll for: `fd` readable when `read`, writable when `write`.
/// When neither is set the fd should not be polled at all (a hung-up peer would wake the loop
/// for nothing); [`VhostUserNet::next_deadline`] then says when to call `serve` again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollInterest {
    pub fd: RawFd,
    pub read: bool,
    pub write: bool,
}

/// A GET_VRING_BASE waiting for the PMD handle of its vring to let go of the stopped ring.
#[derive(Debug)]
struct PendingStop {
    request: u32,
    index: u32,
    vring: usize,
    deadline: Instant,
}

/// What handling one message produced.
enum Reply {
    None,
    Now(Vec<u8>),
    /// GET_VRING_BASE: the reply follows once the ring's handle is quiescent.
    Later,
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
    call: Option<Arc<GuestEventfd>>,
    err: Option<Arc<GuestEventfd>>,
    start_id: u64,
    err_signalled: bool,
}

/// One vhost-user-net backend device (control side).
#[derive(Debug)]
pub struct VhostUserNet {
    cfg: NetConfig,
    queues: Vec<Arc<QueueShared>>,
    conn: Option<Connection>,
    pending: Option<PendingStop>,
    features: VirtioFeatures,
    protocol: ProtocolFeatures,
    mem: Option<Arc<GuestMemory>>,
    vrings: Vec<Vring>,
    status: u8,
    mtu: Option<u16>,
    retired: Vec<Arc<QueueConfig>>,
    next_start_id: u64,
    stats: ControlStats,
    /// Every call and err eventfd still held (by a vring, a config, or a write under way), with
    /// the writer mark seen at the last check; see [`VhostUserNet::guard`].
    guarded: Vec<(Arc<GuestEventfd>, u64)>,
    next_guard: Instant,
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
            conn: None,
            pending: None,
            features: VirtioFeatures::empty(),
            protocol: ProtocolFeatures::empty(),
            mem: None,
            vrings: (0..nvrings).map(|_| Vring::default()).collect(),
            status: 0,
            mtu: None,
            retired: Vec::new(),
            next_start_id: 1,
            stats: ControlStats::default(),
            guarded: Vec::new(),
            next_guard: Instant::now(),
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

    /// Starts serving a new connection (made non-blocking), dropping any previous one.
    pub fn attach(&mut self, stream: UnixStream) {
        self.disconnect();
        self.conn = Some(Connection::new(stream));
        self.stats.connections += 1;
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// The connected socket.
    pub fn socket(&self) -> Option<&UnixStream> {
        self.conn.as_ref().map(Connection::stream)
    }

    /// Connection lost (or dropped by us): every queue goes not-ready and all per-connection state
    /// (buffered input, queued replies, a pending GET_VRING_BASE) is forgotten. Guest memory stays
    /// mapped until each PMD handle passes its quiescent point.
    pub fn disconnect(&mut self) {
        self.conn = None;
        self.pending = None;
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

    /// What the caller's loop should poll for, while a frontend is connected.
    pub fn poll_interest(&self) -> Option<PollInterest> {
        let c = self.conn.as_ref()?;
        Some(PollInterest {
            fd: c.stream().as_raw_fd(),
            read: c.wants_read(),
            write: c.wants_write(),
        })
    }

    /// When [`VhostUserNet::serve`] must run again even if the socket stays quiet: now when
    /// complete messages wait in the input buffer, soon while a GET_VRING_BASE is pending, at the
    /// deadline of a started message. `None`: only when the socket is ready.
    pub fn next_deadline(&self) -> Option<Instant> {
        // The guard runs with or without a connection while it holds a guest's eventfds.
        let guard = (!self.guarded.is_empty()).then_some(self.next_guard);
        let Some(c) = self.conn.as_ref() else {
            return guard;
        };
        let now = Instant::now();
        let pending = self
            .pending
            .as_ref()
            .map(|p| p.deadline.min(now + PENDING_POLL));
        let input = (self.pending.is_none() && c.has_input()).then_some(now);
        [pending, input, c.deadline(), guard]
            .into_iter()
            .flatten()
            .min()
    }

    /// Serves the connection without waiting: checks the guest's eventfds (at most every
    /// [`GUARD_PERIOD`], see [`crate::guestfd`]), completes a pending GET_VRING_BASE whose handle
    /// let go (or whose `stop_timeout` passed), reads what the socket holds, handles up to
    /// [`MESSAGES_PER_SERVE`] complete messages (none while a reply is pending), drops a frontend
    /// whose started message is overdue, and writes queued replies as far as the socket takes
    /// them. Failed requests and the end of the connection are reported through `on_event`.
    pub fn serve(&mut self, now: Instant, mut on_event: impl FnMut(ControlEvent)) {
        self.guard(now, &mut on_event);
        if self.conn.is_none() {
            return;
        }
        if let Err(e) = self.serve_connection(now, &mut on_event) {
            match e {
                ProtocolError::MessageTimeout { .. } => self.stats.message_timeouts += 1,
                ProtocolError::ReplyBacklog { .. } => self.stats.reply_backlogs += 1,
                _ => {}
            }
            self.disconnect();
            on_event(ControlEvent::Disconnected(e.into()));
        }
    }

    /// `serve`'s work; an error is fatal for the connection. Returns Ok with the connection gone
    /// when a request failed fatally (already reported).
    fn serve_connection(
        &mut self,
        now: Instant,
        on_event: &mut impl FnMut(ControlEvent),
    ) -> Result<(), ProtocolError> {
        self.complete_pending(now)?;
        self.connection()?.fill(now)?;
        let mut handled = 0;
        while self.pending.is_none() && handled < MESSAGES_PER_SERVE {
            let Some(msg) = self.connection()?.next_message(now)? else {
                break;
            };
            handled += 1;
            if !self.handle_one(msg, now, on_event)? {
                return Ok(());
            }
            // A ring whose handle is idle or gone is quiescent at once.
            self.complete_pending(now)?;
        }
        let c = self.connection()?;
        c.check_deadline(now)?;
        c.flush()?;
        if handled > 0 {
            self.service();
        }
        Ok(())
    }

    fn connection(&mut self) -> Result<&mut Connection, ProtocolError> {
        self.conn.as_mut().ok_or(ProtocolError::Disconnected)
    }

    /// Handles one complete message and queues its reply or ack. Returns whether the connection
    /// stays (a failed request that owes a reply ends it, reported through `on_event`).
    fn handle_one(
        &mut self,
        msg: Message,
        now: Instant,
        on_event: &mut impl FnMut(ControlEvent),
    ) -> Result<bool, ProtocolError> {
        self.stats.messages += 1;
        let request = msg.header.request;
        let kind = msg.request();
        let wants_ack = msg.need_reply()
            && self.protocol.contains(ProtocolFeatures::REPLY_ACK)
            && !kind.is_some_and(Request::has_reply);
        let result = self.process(msg, now);
        let conn = self.connection()?;
        match (&result, wants_ack) {
            (Ok(Reply::Now(payload)), _) => conn.queue_reply(request, payload)?,
            (Ok(Reply::None), true) => conn.queue_reply(request, &u64_payload(0))?,
            (Err(_), true) => conn.queue_reply(request, &u64_payload(1))?,
            _ => {}
        }
        let Err(e) = result else {
            return Ok(true);
        };
        self.stats.errors += 1;
        // A request that owes a reply cannot be left unanswered, nor answered with something
        // made up: the connection ends.
        if e.is_fatal() || kind.is_some_and(Request::has_reply) {
            self.disconnect();
            on_event(ControlEvent::Disconnected(e));
            return Ok(false);
        }
        on_event(ControlEvent::RequestFailed(e));
        Ok(true)
    }

    /// Answers a pending GET_VRING_BASE once its ring's handle is quiescent, or at its deadline
    /// (counted in `stop_timeouts`): the reply is the next avail index the handle would process.
    fn complete_pending(&mut self, now: Instant) -> Result<(), ProtocolError> {
        let Some(p) = &self.pending else {
            return Ok(());
        };
        let q = &self.queues[p.vring];
        if !q.quiescent() {
            if now < p.deadline {
                return Ok(());
            }
            self.stats.stop_timeouts += 1;
        }
        let base = q.last_avail();
        let p = self.pending.take().expect("checked above");
        self.vrings[p.vring].base = base;
        let reply = VringState {
            index: p.index,
            num: u32::from(base),
        };
        self.connection()?.queue_reply(p.request, reply.as_bytes())
    }

    /// For a device served alone (tests, simple tools): waits up to `max_wait` (less if a
    /// deadline comes first) for the socket, then [`VhostUserNet::serve`]s it. Returns at once
    /// when no frontend is connected.
    pub fn wait_and_serve(&mut self, max_wait: Duration, on_event: impl FnMut(ControlEvent)) {
        let Some(i) = self.poll_interest() else {
            return;
        };
        let now = Instant::now();
        let wait = self
            .next_deadline()
            .map_or(max_wait, |d| d.saturating_duration_since(now).min(max_wait));
        let mut pfd = libc::pollfd {
            fd: if i.read || i.write { i.fd } else { -1 },
            events: if i.read { libc::POLLIN } else { 0 } | if i.write { libc::POLLOUT } else { 0 },
            revents: 0,
        };
        // Round up so that a deadline a fraction of a millisecond away is not spun on.
        let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call. Its result only ends the wait:
        // serve() finds out what is ready by itself.
        unsafe { libc::poll(&mut pfd, 1, ms) };
        self.serve(Instant::now(), on_event);
    }

    /// Serves `stream` until the frontend disconnects (for a device served alone); failed
    /// requests go to `on_error`. Returns Ok on an orderly disconnect.
    pub fn run(
        &mut self,
        stream: UnixStream,
        mut on_error: impl FnMut(&DeviceError),
    ) -> Result<(), DeviceError> {
        self.attach(stream);
        let mut end = None;
        while self.is_connected() {
            self.wait_and_serve(Duration::from_secs(1), |ev| match ev {
                ControlEvent::RequestFailed(e) => on_error(&e),
                ControlEvent::Disconnected(e) => end = Some(e),
            });
        }
        match end {
            None | Some(DeviceError::Protocol(ProtocolError::Disconnected)) => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Checks every call and err eventfd still held, at most every [`GUARD_PERIOD`] (every
    /// [`GUARD_URGENT`] while a revoked or overdue write is under way): an fd whose O_NONBLOCK
    /// the frontend cleared is revoked (never written again), the thread of a revoked or overdue
    /// write gets [`crate::guestfd::WAKE_SIGNAL`], and a frontend that made one of its fds
    /// blocking is dropped. Why this bounds every write: see [`crate::guestfd`].
    fn guard(&mut self, now: Instant, on_event: &mut impl FnMut(ControlEvent)) {
        if self.guarded.is_empty() || now < self.next_guard {
            return;
        }
        let mut urgent = false;
        let mut culprit = None;
        for (g, seen) in &mut self.guarded {
            if !g.is_revoked() && !g.nonblocking() {
                g.revoke();
            }
            // Loaded after the revocation: a write that missed it is still marked here.
            let w = g.writer();
            if w != 0 && (g.is_revoked() || w == *seen) {
                if GuestEventfd::interrupt(w) {
                    self.stats.writer_interrupts += 1;
                }
                urgent = true;
            }
            *seen = w;
            if g.is_revoked() && g.conn == self.stats.connections && self.conn.is_some() {
                culprit.get_or_insert((g.request, g.vring));
            }
        }
        self.guarded.retain(|(g, _)| !unused(g));
        self.next_guard = now + if urgent { GUARD_URGENT } else { GUARD_PERIOD };
        if let Some((request, vring)) = culprit {
            // Everything this frontend gave is suspect: none of its fds is written again.
            for (g, _) in &self.guarded {
                if g.conn == self.stats.connections {
                    g.revoke();
                }
            }
            self.stats.fds_made_blocking += 1;
            self.disconnect();
            on_event(ControlEvent::Disconnected(DeviceError::FdMadeBlocking {
                request,
                vring,
            }));
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
                    // A full counter (EAGAIN) or a revoked fd skips the write, counted and not
                    // retried; the write cannot sleep longer than CONTROL_WRITE_BOUND.
                    if !fd.signal_from_control() {
                        self.stats.err_writes_skipped += 1;
                    }
                    if fd.is_revoked() {
                        // The next serve() reports it and drops the frontend.
                        self.next_guard = Instant::now();
                    }
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
                if self.conn.is_some() && v.started && enabled && self.status_ok() =>
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

    /// Handles one message.
    fn process(&mut self, msg: Message, now: Instant) -> Result<Reply, DeviceError> {
        let Some(req) = msg.request() else {
            return Err(ProtocolError::Unsupported(msg.header.request).into());
        };
        use Request::*;
        match req {
            GetFeatures => {
                msg.no_body()?;
                Ok(Reply::Now(u64_payload(VirtioFeatures::offered().bits())))
            }
            SetFeatures => {
                let f: u64 = msg.body()?;
                let feats = VirtioFeatures::from_bits(f)
                    .filter(|f| VirtioFeatures::offered().contains(*f))
                    .ok_or(DeviceError::FeaturesNotOffered(f))?;
                self.features = feats;
                self.publish_all();
                Ok(Reply::None)
            }
            GetProtocolFeatures => {
                msg.no_body()?;
                Ok(Reply::Now(u64_payload(ProtocolFeatures::offered().bits())))
            }
            SetProtocolFeatures => {
                let f: u64 = msg.body()?;
                let feats = ProtocolFeatures::from_bits(f)
                    .filter(|f| ProtocolFeatures::offered().contains(*f))
                    .ok_or(DeviceError::ProtocolFeaturesNotOffered(f))?;
                self.protocol = feats;
                self.publish_all();
                Ok(Reply::None)
            }
            SetOwner => {
                msg.no_body()?;
                Ok(Reply::None)
            }
            ResetOwner => {
                msg.no_body()?;
                self.reset_state();
                Ok(Reply::None)
            }
            GetQueueNum => {
                msg.no_body()?;
                Ok(Reply::Now(u64_payload(u64::from(self.cfg.queue_pairs))))
            }
            SetMemTable => {
                self.set_mem_table(msg)?;
                Ok(Reply::None)
            }
            SetVringNum => {
                let s: VringState = msg.body()?;
                let i = self.vring_index(u64::from(s.index))?;
                if s.num == 0 || !s.num.is_power_of_two() || s.num > MAX_QUEUE_SIZE {
                    return Err(DeviceError::BadQueueSize(s.num));
                }
                self.vrings[i].size = s.num as u16;
                self.publish(i);
                Ok(Reply::None)
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
                Ok(Reply::None)
            }
            SetVringBase => {
                let s: VringState = msg.body()?;
                let i = self.vring_index(u64::from(s.index))?;
                let base = u16::try_from(s.num).map_err(|_| DeviceError::BadVringBase(s.num))?;
                self.vrings[i].base = base;
                self.publish(i);
                Ok(Reply::None)
            }
            GetVringBase => {
                let s: VringState = msg.body()?;
                let i = self.vring_index(u64::from(s.index))?;
                self.stop_vring(i);
                self.pending = Some(PendingStop {
                    request: msg.header.request,
                    index: s.index,
                    vring: i,
                    deadline: now + self.cfg.stop_timeout,
                });
                Ok(Reply::Later)
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
                let fd = match fds.pop().map(|fd| guest_eventfd(fd, req, i)).transpose() {
                    Ok(fd) => fd,
                    Err(e) => {
                        self.stats.refused_fds += 1;
                        return Err(e);
                    }
                };
                let conn = self.stats.connections;
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
                    _ => {
                        // We write call and err fds, so they are guarded (see `guestfd`).
                        let g = fd.map(|fd| Arc::new(GuestEventfd::new(fd, req, i, conn)));
                        if let Some(g) = &g {
                            // Those nobody holds any more go now, so that a frontend resending
                            // fds cannot pile them up between two checks.
                            self.guarded.retain(|(g, _)| !unused(g));
                            self.guarded.push((g.clone(), 0));
                        }
                        match req {
                            SetVringCall => vr.call = g,
                            _ => vr.err = g,
                        }
                    }
                }
                self.publish(i);
                Ok(Reply::None)
            }
            SetVringEnable => {
                let s: VringState = msg.body()?;
                let i = self.vring_index(u64::from(s.index))?;
                self.vrings[i].enabled = s.num != 0;
                self.publish(i);
                Ok(Reply::None)
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
                Ok(Reply::None)
            }
            SetStatus => {
                let s: u64 = msg.body()?;
                self.status = s as u8;
                self.publish_all();
                Ok(Reply::None)
            }
            GetStatus => {
                msg.no_body()?;
                Ok(Reply::Now(u64_payload(u64::from(self.status))))
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

    /// GET_VRING_BASE, first half: stops the ring and publishes that. The reply (the next avail
    /// index to process) waits until the PMD handle has let go of the ring: see
    /// `complete_pending`.
    fn stop_vring(&mut self, i: usize) {
        self.vrings[i].started = false;
        self.vrings[i].kick = None;
        self.publish(i);
    }
}

/// Whether nothing but the guard holds `g` (no vring, config or write): dropping it closes the fd.
fn unused(g: &Arc<GuestEventfd>) -> bool {
    Arc::strong_count(g) == 1 && g.writer() == 0
}

/// Accepts a guest-supplied kick, call or err fd only if it is an eventfd, and makes it
/// non-blocking: a pipe or a socket could block its writer, and a blocking eventfd whose counter
/// is full blocks too, where a non-blocking one fails with EAGAIN (counted, then skipped).
fn guest_eventfd(fd: OwnedFd, request: Request, vring: usize) -> Result<OwnedFd, DeviceError> {
    let raw = fd.as_raw_fd();
    let link = std::fs::read_link(format!("/proc/self/fd/{raw}"));
    if !link.is_ok_and(|l| l.as_os_str() == "anon_inode:[eventfd]") {
        return Err(DeviceError::NotAnEventfd {
            request,
            vring,
            kind: fd_kind(&fd),
        });
    }
    // SAFETY: fcntl on an fd we own; F_GETFL/F_SETFL only read and set its status flags.
    let ok = unsafe {
        let flags = libc::fcntl(raw, libc::F_GETFL);
        flags >= 0 && libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    };
    if !ok {
        return Err(DeviceError::FdFlags {
            request,
            vring,
            source: io::Error::last_os_error(),
        });
    }
    Ok(fd)
}

/// What kind of file `fd` is, for the error refusing it.
fn fd_kind(fd: &OwnedFd) -> &'static str {
    // SAFETY: stat is plain data; all-zero is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into a live stat of the right type.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return "a file that cannot be examined";
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO => "a pipe",
        libc::S_IFSOCK => "a socket",
        libc::S_IFREG => "a regular file",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFDIR => "a directory",
        _ => "another kind of anonymous file",
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

/// Client mode, for an event loop: one connection attempt to a frontend listening on `path`
/// (QEMU `server=on`) that never waits: a frontend whose listen backlog is full gives
/// `WouldBlock` instead of holding the caller. The stream comes back non-blocking.
pub fn try_connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_ref().as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain data; all-zero is a valid empty value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long or contains NUL",
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, &b) in addr.sun_path.iter_mut().zip(bytes) {
        *d = b as libc::c_char;
    }
    // SAFETY: socket() returns a new fd or -1.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is fresh and ours; the OwnedFd inside the stream closes it on every path.
    let stream = unsafe { <UnixStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: addr is a live sockaddr_un of the stated size.
    let r = unsafe {
        libc::connect(
            fd,
            (&addr as *const libc::sockaddr_un).cast(),
            size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stream)
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
