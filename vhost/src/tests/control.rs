//! The non-blocking control side, driven by hand: the test writes bytes, calls `serve` with the
//! time it chooses, and reads what came back. Nothing here may wait on the frontend.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::device::{ControlEvent, NetConfig, VhostUserNet, MESSAGES_PER_SERVE};
use crate::error::{DeviceError, ProtocolError};
use crate::protocol::{
    Header, Pod, Request, VringState, FLAG_NEED_REPLY, MESSAGE_DEADLINE, OUTPUT_CAP, VERSION,
};
use crate::queue::{RxQueue, TxQueue};
use crate::testutil::{eventfd, Frontend, MockGuest, MockVring};

const QSZ: u16 = 64;

fn raw(request: Request, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = Header {
        request: request as u32,
        flags: flags | VERSION,
        size: payload.len() as u32,
    }
    .as_bytes()
    .to_vec();
    b.extend_from_slice(payload);
    b
}

/// Serves once at `now`; returns what it reported.
fn serve(dev: &mut VhostUserNet, now: Instant) -> Vec<ControlEvent> {
    let mut ev = Vec::new();
    dev.serve(now, |e| ev.push(e));
    ev
}

fn disconnected(ev: &[ControlEvent]) -> Option<&DeviceError> {
    ev.iter().find_map(|e| match e {
        ControlEvent::Disconnected(e) => Some(e),
        _ => None,
    })
}

/// A blocking eventfd (as a careless frontend might make it).
fn blocking_eventfd() -> OwnedFd {
    // SAFETY: eventfd returns a new fd or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: fresh fd, ours.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn nonblocking(fd: &OwnedFd) -> bool {
    // SAFETY: F_GETFL on a live fd.
    let f = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    f & libc::O_NONBLOCK != 0
}

/// Fills an eventfd's counter to its maximum: the next write of 1 would block (or fail).
fn fill_counter(fd: &OwnedFd) {
    let v: u64 = 0xffff_ffff_ffff_fffe;
    // SAFETY: writes a live u64.
    let n = unsafe { libc::write(fd.as_raw_fd(), (&v as *const u64).cast(), 8) };
    assert_eq!(n, 8);
}

/// A blocking pipe whose buffer is full.
fn full_pipe() -> (OwnedFd, OwnedFd) {
    let mut p = [0; 2];
    // SAFETY: pipe2 fills two fds.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh fds, ours.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
    // SAFETY: F_SETFL on our fd; fill it non-blocking, then make it blocking again.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let buf = [0u8; 4096];
    // SAFETY: writes from a live buffer.
    while unsafe { libc::write(w.as_raw_fd(), buf.as_ptr().cast(), buf.len()) } > 0 {}
    // SAFETY: as above.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETFL, 0) };
    (r, w)
}

/// A device with one queue pair, its handles, and a frontend whose vrings run (no
/// PROTOCOL_FEATURES, so rings start enabled; the handles have seen the running config).
struct Rig {
    dev: VhostUserNet,
    rxq: RxQueue,
    txq: TxQueue,
    fe: Frontend,
    guest: MockGuest,
    rings: [MockVring; 2],
    kicks: [OwnedFd; 2],
    now: Instant,
}

impl Rig {
    fn new() -> Rig {
        let mut dev = VhostUserNet::new(NetConfig::default());
        let (rxq, txq) = dev.queue_pair(0).unwrap();
        let (be, fe) = UnixStream::pair().unwrap();
        dev.attach(be);
        let guest = MockGuest::new(1 << 20);
        let rings = [
            MockVring::new(&guest, guest.gpa_base, QSZ),
            MockVring::new(&guest, guest.gpa_base + 0x4000, QSZ),
        ];
        let mut r = Rig {
            dev,
            rxq,
            txq,
            fe: Frontend::new(fe),
            guest,
            rings,
            kicks: [eventfd(), eventfd()],
            now: Instant::now(),
        };
        super::start_two_vrings(&r.fe, &r.guest, &r.rings, &r.kicks, QSZ);
        let now = r.now;
        assert!(serve(&mut r.dev, now).is_empty());
        assert!(r.rxq.sync() && r.txq.sync(), "rings run");
        r
    }

    fn serve(&mut self) -> Vec<ControlEvent> {
        let now = self.now;
        serve(&mut self.dev, now)
    }

    fn write(&self, bytes: &[u8]) {
        self.fe.stream().write_all(bytes).unwrap();
    }

    /// Reads one reply without waiting: it must be there already.
    fn reply(&self, request: Request) -> Vec<u8> {
        self.fe.stream().set_nonblocking(true).unwrap();
        let r = self.fe.recv_reply(request as u32);
        self.fe.stream().set_nonblocking(false).unwrap();
        r.unwrap_or_else(|e| panic!("no reply to {request:?} yet: {e}"))
    }

    fn no_reply_yet(&self) {
        let mut b = [0u8; 1];
        // SAFETY: a non-blocking peek into a live byte.
        let n = unsafe {
            libc::recv(
                self.fe.stream().as_raw_fd(),
                b.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        assert_eq!(n, -1, "a reply arrived early");
    }
}

#[test]
fn a_message_dripped_byte_by_byte_is_handled_once_complete_with_its_fds() {
    let mut r = Rig::new();
    // SET_VRING_CALL for vring 0, the eventfd riding on a middle byte.
    let call = eventfd();
    let msg = raw(Request::SetVringCall, FLAG_NEED_REPLY, &0u64.to_ne_bytes());
    let m0 = r.dev.control_stats().messages;
    for (k, b) in msg.iter().enumerate() {
        if k == 7 {
            r.fe.send_raw_bytes(std::slice::from_ref(b), &[call.as_fd()])
                .unwrap();
        } else {
            r.write(std::slice::from_ref(b));
        }
        // Every call returns at once; nothing is handled before the last byte.
        assert!(r.serve().is_empty());
        assert_eq!(
            r.dev.control_stats().messages - m0,
            u64::from(k + 1 == msg.len())
        );
    }
    // Without REPLY_ACK negotiated there is no ack; the call fd is in force.
    r.no_reply_yet();
    assert_eq!(r.dev.control_stats().errors, 0);
    assert!(nonblocking(&call));
}

#[test]
fn a_stalled_message_ends_the_connection_at_its_deadline() {
    let mut r = Rig::new();
    let msg = raw(
        Request::SetVringNum,
        0,
        VringState { index: 0, num: 64 }.as_bytes(),
    );
    r.write(&msg[..5]);
    assert!(r.serve().is_empty());
    let d = r
        .dev
        .next_deadline()
        .expect("a started message has a deadline");
    assert!(d <= r.now + MESSAGE_DEADLINE);
    r.now += MESSAGE_DEADLINE - Duration::from_millis(100);
    r.write(&msg[5..14]);
    assert!(
        r.serve().is_empty(),
        "bytes keep coming, but the deadline counts from the first"
    );
    r.now += Duration::from_millis(200);
    let ev = r.serve();
    assert!(
        matches!(
            disconnected(&ev),
            Some(DeviceError::Protocol(ProtocolError::MessageTimeout {
                got: 14,
                want: 20,
                ..
            }))
        ),
        "{ev:?}"
    );
    assert!(!r.dev.is_connected());
    assert_eq!(r.dev.control_stats().message_timeouts, 1);
    assert!(
        !r.rxq.sync() && !r.txq.sync(),
        "a dropped frontend's rings stop"
    );
}

#[test]
fn an_oversized_header_ends_the_connection_before_its_payload() {
    let mut r = Rig::new();
    let mut h = raw(Request::SetMemTable, 0, &[]);
    h[8..12].copy_from_slice(&(1u32 << 20).to_ne_bytes());
    r.write(&h);
    let ev = r.serve();
    assert!(
        matches!(
            disconnected(&ev),
            Some(DeviceError::Protocol(ProtocolError::PayloadTooLarge { .. }))
        ),
        "{ev:?}"
    );
}

#[test]
fn messages_per_serve_are_bounded_and_the_rest_waits_for_the_next_call() {
    let mut r = Rig::new();
    let n = 3 * MESSAGES_PER_SERVE + 5;
    let mut bytes = Vec::new();
    for _ in 0..n {
        bytes.extend(raw(Request::GetQueueNum, 0, &[]));
    }
    r.write(&bytes);
    let m0 = r.dev.control_stats().messages;
    assert!(r.serve().is_empty());
    assert_eq!(
        r.dev.control_stats().messages - m0,
        MESSAGES_PER_SERVE as u64
    );
    assert!(
        r.dev.next_deadline().is_some_and(|d| d <= Instant::now()),
        "buffered messages: the loop must come back at once"
    );
    for _ in 0..10 {
        r.serve();
    }
    assert_eq!(r.dev.control_stats().messages - m0, n as u64);
    for _ in 0..n {
        assert_eq!(r.reply(Request::GetQueueNum), 1u64.to_ne_bytes());
    }
    assert!(r.dev.next_deadline().is_none());
}

#[test]
fn pipelined_get_vring_base_are_pending_replies_answered_in_order() {
    let mut r = Rig::new();
    // The guest-TX handle saw the running ring and is never polled again: each stop waits for
    // stop_timeout. Ten stops (the ring restarted by a KICK in between) and a GET_QUEUE_NUM
    // behind them, all in one write.
    let mut bytes = Vec::new();
    for _ in 0..10 {
        let get = VringState { index: 1, num: 0 };
        bytes.extend(raw(Request::GetVringBase, 0, get.as_bytes()));
        bytes.extend(raw(Request::SetVringKick, 0, &0x101u64.to_ne_bytes()));
    }
    bytes.extend(raw(Request::GetQueueNum, 0, &[]));
    r.write(&bytes);
    let timeout = NetConfig::default().stop_timeout;
    for _ in 0..10 {
        let t = Instant::now();
        assert!(r.serve().is_empty());
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "serve never sleeps"
        );
        r.no_reply_yet();
        let d = r
            .dev
            .next_deadline()
            .expect("a pending reply has a deadline");
        assert!(
            d <= Instant::now() + Duration::from_millis(50),
            "the loop polls soon"
        );
        r.now += timeout;
        r.serve();
        let rep = VringState::from_bytes(&r.reply(Request::GetVringBase)).unwrap();
        assert_eq!(rep.index, 1);
    }
    r.serve();
    assert_eq!(r.reply(Request::GetQueueNum), 1u64.to_ne_bytes());
    assert_eq!(r.dev.control_stats().stop_timeouts, 10);

    // A handle that reaches its quiescent point completes the reply before the timeout.
    let get = VringState { index: 0, num: 0 };
    r.write(&raw(Request::GetVringBase, 0, get.as_bytes()));
    r.serve();
    r.no_reply_yet();
    assert!(!r.txq.sync(), "the ring is stopped");
    r.serve();
    assert_eq!(
        VringState::from_bytes(&r.reply(Request::GetVringBase)).unwrap(),
        get
    );
    assert_eq!(r.dev.control_stats().stop_timeouts, 10);
    assert!(r.dev.is_connected());
}

#[test]
fn kick_call_and_err_must_be_eventfds_and_become_non_blocking() {
    let mut r = Rig::new();
    let (_rd, wr) = full_pipe();
    let file = crate::testutil::memfd(4096);
    let (sock, _peer) = UnixStream::pair().unwrap();
    let mut sent = 0;
    for req in [
        Request::SetVringCall,
        Request::SetVringErr,
        Request::SetVringKick,
    ] {
        for fd in [wr.as_fd(), file.as_fd(), sock.as_fd()] {
            r.fe.send_raw(req as u32, 0, &0u64.to_ne_bytes(), &[fd])
                .unwrap();
            sent += 1;
        }
    }
    let ev = r.serve();
    assert_eq!(ev.len(), sent);
    for e in &ev {
        assert!(
            matches!(
                e,
                ControlEvent::RequestFailed(DeviceError::NotAnEventfd { .. })
            ),
            "{e:?}"
        );
    }
    let text = format!(
        "{:?}",
        ev.iter()
            .map(|e| match e {
                ControlEvent::RequestFailed(e) => e.to_string(),
                _ => String::new(),
            })
            .collect::<Vec<_>>()
    );
    assert!(text.contains("is a pipe, not an eventfd"), "{text}");
    assert_eq!(r.dev.control_stats().refused_fds, sent as u64);
    assert!(r.dev.is_connected());

    // A blocking eventfd is accepted and made non-blocking.
    let call = blocking_eventfd();
    let err = blocking_eventfd();
    r.fe.set_vring_fd(Request::SetVringCall, 0, Some(call.as_fd()))
        .unwrap();
    r.fe.set_vring_fd(Request::SetVringErr, 0, Some(err.as_fd()))
        .unwrap();
    assert!(r.serve().is_empty());
    assert!(nonblocking(&call) && nonblocking(&err));

    // Its counter full, a frame for the guest is delivered and the interrupt skipped, counted.
    fill_counter(&call);
    let a = r.guest.gpa_base + 0x10000;
    let g = &r.guest;
    r.rings[0].add_chain(g, &[(a, 2048, true)]);
    assert_eq!(r.txq.enqueue_burst(&[&[0x55u8; 60][..]]), 1);
    let m = r.dev.metrics();
    assert_eq!((m.to_guest_packets, m.notifications_skipped), (1, 1));

    // A broken ring with a full error eventfd: the write is skipped, counted, never retried.
    fill_counter(&err);
    r.rings[0].push_avail(&r.guest, QSZ + 3);
    assert_eq!(r.txq.enqueue_burst(&[&[0x55u8; 60][..]]), 0);
    assert!(r.dev.vring_broken(0));
    r.dev.service();
    r.dev.service();
    assert_eq!(r.dev.control_stats().err_writes_skipped, 1);
}

#[test]
fn a_frontend_that_never_reads_its_replies_is_dropped() {
    let mut r = Rig::new();
    let one = raw(Request::GetFeatures, 0, &[]);
    let mut reason = None;
    // Far more replies than the socket buffer and OUTPUT_CAP hold together.
    let per_write = 256;
    let batch: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * per_write)
        .collect();
    r.fe.stream().set_nonblocking(true).unwrap();
    for _ in 0..(64 * OUTPUT_CAP / (20 * per_write)) {
        let _ = r.fe.stream().write(&batch);
        for _ in 0..per_write / MESSAGES_PER_SERVE + 1 {
            if let Some(e) = disconnected(&r.serve()) {
                reason = Some(e.to_string());
            }
        }
        if reason.is_some() {
            break;
        }
    }
    let reason = reason.expect("the frontend must be dropped");
    assert!(reason.contains("does not read its replies"), "{reason}");
    assert_eq!(r.dev.control_stats().reply_backlogs, 1);
}

#[test]
fn reconnecting_clears_buffered_input_and_a_pending_reply() {
    let mut r = Rig::new();
    r.write(&raw(
        Request::GetVringBase,
        0,
        VringState { index: 1, num: 0 }.as_bytes(),
    ));
    r.write(&raw(Request::GetQueueNum, 0, &[])[..6]);
    r.serve();
    assert!(r.dev.next_deadline().is_some());
    let (be, fe) = UnixStream::pair().unwrap();
    r.dev.attach(be);
    assert!(
        r.dev.next_deadline().is_none(),
        "a fresh connection owes nothing"
    );
    let fe = Frontend::new(fe);
    fe.send_raw(Request::GetQueueNum as u32, 0, &[], &[])
        .unwrap();
    r.serve();
    fe.stream().set_nonblocking(true).unwrap();
    assert_eq!(
        fe.recv_reply(Request::GetQueueNum as u32).unwrap(),
        1u64.to_ne_bytes()
    );
}
