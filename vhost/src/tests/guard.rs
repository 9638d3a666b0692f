//! A frontend that makes its call or err eventfd blocking again after handing it over (F_SETFL
//! on its own reference to the shared file description) and fills the counter: no write of ours
//! may stay asleep on it, and the frontend is dropped with a counter.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::device::{ControlEvent, NetConfig, VhostUserNet};
use crate::error::DeviceError;
use crate::guestfd::GUARD_PERIOD;
use crate::protocol::Request;
use crate::queue::{RxQueue, TxQueue};
use crate::testutil::{eventfd, Frontend, MockGuest, MockVring};

const QSZ: u16 = 64;
/// Bound for what must happen (a loaded machine).
const WAIT: Duration = Duration::from_secs(10);

/// An eventfd the frontend keeps a reference to: (what it sends, its own copy).
fn shared_eventfd() -> (OwnedFd, OwnedFd) {
    // SAFETY: eventfd returns a new fd or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: fresh fd, ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let copy = fd.try_clone().unwrap();
    (fd, copy)
}

/// What the hostile frontend does to its copy: clear O_NONBLOCK (also ours: the description is
/// shared) and fill the counter, so that a write of 1 sleeps.
fn make_blocking_and_full(fd: &OwnedFd) {
    // Still non-blocking (made so by the device): empty the counter first.
    crate::testutil::eventfd_take(fd.as_fd());
    set_nonblocking(fd, false);
    let v: u64 = 0xffff_ffff_ffff_fffe;
    // SAFETY: writes a live u64 (the counter is 0: it does not block).
    let n = unsafe { libc::write(fd.as_raw_fd(), (&v as *const u64).cast(), 8) };
    assert_eq!(n, 8);
}

fn set_nonblocking(fd: &OwnedFd, on: bool) {
    // SAFETY: F_GETFL/F_SETFL on a live fd.
    unsafe {
        let f = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        let f = if on {
            f | libc::O_NONBLOCK
        } else {
            f & !libc::O_NONBLOCK
        };
        assert_eq!(libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, f), 0);
    }
}

/// The state letter of thread `tid` of this process ('S': sleeping).
fn thread_state(tid: libc::pid_t) -> char {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    // "tid (comm) S ...": the state follows the last ')'.
    stat.rsplit(')')
        .next()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.chars().next())
        .unwrap_or('?')
}

struct Rig {
    dev: VhostUserNet,
    _rxq: RxQueue,
    txq: Option<TxQueue>,
    fe: Frontend,
    guest: MockGuest,
    rings: [MockVring; 2],
    _kicks: [OwnedFd; 2],
    events: Vec<ControlEvent>,
}

impl Rig {
    /// A device whose vrings run (no PROTOCOL_FEATURES, no EVENT_IDX: the guest asks for an
    /// interrupt at every used buffer), with `call` as guest-RX call fd and `err` as its err fd.
    fn new(call: Option<&OwnedFd>, err: Option<&OwnedFd>) -> Rig {
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
            _rxq: rxq,
            txq: Some(txq),
            fe: Frontend::new(fe),
            guest,
            rings,
            _kicks: [eventfd(), eventfd()],
            events: Vec::new(),
        };
        super::start_two_vrings(&r.fe, &r.guest, &r.rings, &r._kicks, QSZ);
        let fe = &r.fe;
        if let Some(c) = call {
            fe.set_vring_fd(Request::SetVringCall, 0, Some(c.as_fd()))
                .unwrap();
        }
        if let Some(e) = err {
            fe.set_vring_fd(Request::SetVringErr, 0, Some(e.as_fd()))
                .unwrap();
        }
        r.serve(Instant::now());
        assert!(r.events.is_empty(), "{:?}", r.events);
        assert!(r.txq.as_mut().unwrap().sync(), "guest RX vring runs");
        r
    }

    fn serve(&mut self, now: Instant) {
        let ev = &mut self.events;
        self.dev.serve(now, |e| ev.push(e));
    }

    /// Posts one receive buffer for the next frame.
    fn post_rx_buffer(&mut self) {
        let a = self.guest.gpa_base + 0x10000;
        let g = &self.guest;
        self.rings[0].add_chain(g, &[(a, 2048, true)]);
    }

    /// Enqueues one frame on another thread (a PMD core); returns it and its thread id.
    fn pmd_enqueue(&mut self) -> (JoinHandle<(TxQueue, usize)>, libc::pid_t) {
        let mut txq = self.txq.take().expect("handle here");
        let (tx, rx) = mpsc::channel();
        let t = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() }).unwrap();
            let n = txq.enqueue_burst(&[&[0x55u8; 60][..]]);
            (txq, n)
        });
        (t, rx.recv().unwrap())
    }

    /// Serves as the control loop does (every millisecond, real time) until `t` returns.
    fn serve_until_done(&mut self, t: &JoinHandle<(TxQueue, usize)>) -> Duration {
        let t0 = Instant::now();
        while !t.is_finished() {
            assert!(
                t0.elapsed() < WAIT,
                "the PMD thread still sleeps in its write after {WAIT:?}"
            );
            self.serve(Instant::now());
            std::thread::sleep(Duration::from_millis(1));
        }
        t0.elapsed()
    }

    fn dropped_for(&self) -> Option<(Request, usize)> {
        self.events.iter().find_map(|e| match e {
            ControlEvent::Disconnected(DeviceError::FdMadeBlocking { request, vring }) => {
                Some((*request, *vring))
            }
            _ => None,
        })
    }
}

#[test]
fn a_call_fd_made_blocking_is_revoked_and_its_frontend_dropped_before_any_write() {
    let (call, theirs) = shared_eventfd();
    let mut r = Rig::new(Some(&call), None);
    // A well-behaved guest's interrupts, with the guard running meanwhile: nothing happens.
    let mut now = Instant::now();
    for _ in 0..3 {
        r.post_rx_buffer();
        assert_eq!(r.txq.as_mut().unwrap().enqueue_burst(&[&[1u8; 60][..]]), 1);
        now += GUARD_PERIOD;
        r.serve(now);
    }
    assert!(r.events.is_empty(), "{:?}", r.events);
    assert_eq!(r.dev.metrics().notifications_skipped, 0);

    make_blocking_and_full(&theirs);
    now += GUARD_PERIOD;
    r.serve(now);
    assert_eq!(r.dropped_for(), Some((Request::SetVringCall, 0)));
    assert_eq!(
        r.events.len(),
        1,
        "one event, so one log line: {:?}",
        r.events
    );
    let s = r.dev.control_stats();
    assert_eq!((s.fds_made_blocking, s.writer_interrupts), (1, 0));
    assert!(!r.dev.is_connected());
    // The handle still runs on the old config until its next burst: that write is not done.
    r.post_rx_buffer();
    let (t, _) = r.pmd_enqueue();
    r.serve_until_done(&t);
    let (_, n) = t.join().unwrap();
    assert_eq!(n, 0, "the ring stopped with the connection");
}

#[test]
fn a_pmd_write_asleep_on_a_call_fd_made_blocking_is_interrupted() {
    let (call, theirs) = shared_eventfd();
    let mut r = Rig::new(Some(&call), None);
    make_blocking_and_full(&theirs);
    r.post_rx_buffer();
    let (t, tid) = r.pmd_enqueue();
    // The PMD thread now sleeps in write() (nothing served yet).
    let t0 = Instant::now();
    while thread_state(tid) != 'S' && !t.is_finished() {
        assert!(t0.elapsed() < WAIT, "the PMD write never slept");
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = r.serve_until_done(&t);
    eprintln!("PMD write interrupted {took:?} after the control loop resumed");
    let (_, n) = t.join().unwrap();
    assert_eq!(n, 1, "the frame was delivered; only the interrupt was lost");
    assert_eq!(r.dropped_for(), Some((Request::SetVringCall, 0)));
    let s = r.dev.control_stats();
    assert_eq!(s.fds_made_blocking, 1);
    assert!(s.writer_interrupts >= 1);
    assert_eq!(r.dev.metrics().notifications_skipped, 1);
}

#[test]
fn a_pmd_write_asleep_is_interrupted_even_when_the_frontend_sets_o_nonblock_again() {
    let (call, theirs) = shared_eventfd();
    let mut r = Rig::new(Some(&call), None);
    make_blocking_and_full(&theirs);
    r.post_rx_buffer();
    let (t, tid) = r.pmd_enqueue();
    let t0 = Instant::now();
    while thread_state(tid) != 'S' {
        assert!(t0.elapsed() < WAIT, "the PMD write never slept");
        assert!(!t.is_finished(), "the PMD write did not sleep");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Our writer sleeps; the flag is set again, so F_GETFL shows nothing wrong.
    set_nonblocking(&theirs, true);
    let took = r.serve_until_done(&t);
    eprintln!("overdue PMD write interrupted {took:?} after the control loop resumed");
    let (_, n) = t.join().unwrap();
    assert_eq!(n, 1);
    // EINTR revoked the fd; the next check drops the frontend.
    let t0 = Instant::now();
    while r.dropped_for().is_none() {
        assert!(t0.elapsed() < WAIT, "the frontend was never dropped");
        r.serve(Instant::now());
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(r.dropped_for(), Some((Request::SetVringCall, 0)));
    assert!(r.dev.control_stats().writer_interrupts >= 1);
}

#[test]
fn an_err_fd_made_blocking_is_not_written_and_its_frontend_dropped() {
    let (err, theirs) = shared_eventfd();
    let mut r = Rig::new(None, Some(&err));
    make_blocking_and_full(&theirs);
    // Break the guest RX ring; the control thread signals the err fd in service().
    r.rings[0].push_avail(&r.guest, QSZ + 3);
    assert_eq!(r.txq.as_mut().unwrap().enqueue_burst(&[&[1u8; 60][..]]), 0);
    assert!(r.dev.vring_broken(0));
    let t0 = Instant::now();
    r.dev.service();
    assert!(t0.elapsed() < WAIT);
    assert_eq!(r.dev.control_stats().err_writes_skipped, 1);
    r.serve(Instant::now());
    assert_eq!(r.dropped_for(), Some((Request::SetVringErr, 0)));
    assert_eq!(r.dev.control_stats().fds_made_blocking, 1);
}
