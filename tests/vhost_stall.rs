//! Frontends that try to stall the switch without sending a malformed value, one test per class
//! (issue 10): the control thread and the PMD core must never wait on them.
//!
//! Topology: namespace hosts h1, h2 -- af_packet ports "h1", "h2" -- [switch, one PMD core] --
//! vhost-user port "evil" -- this test, speaking vhost-user with `vhost::testutil` over a memfd
//! guest (vring 0 = guest RX, vring 1 = guest TX).
//!
//! Each test checks, while its attack runs: h1 keeps pinging h2 through the same PMD core (a few
//! echoes may be lost, never a multi-second run of them) and `tsn-vswitch ctl stats` answers
//! within [`CTL_BOUND`]; afterwards: the switch lives, the attacked port serves a well-behaved
//! frontend again (handshake and a frame to h1), and the switch holds no more fds than before.
//!
//! - `call_fd_classes`: a blocking, full pipe as a call fd is refused; a blocking eventfd whose
//!   counter is full is accepted, made non-blocking, and RX traffic still reaches the guest with
//!   the skipped interrupts counted (the PMD core would block in write() otherwise).
//! - `err_fd_classes`: the same pipe as an err fd is refused; a full blocking eventfd is accepted
//!   and a broken ring's error signal is skipped and counted (the control thread would block).
//! - `call_fd_made_blocking_after_handover`: the frontend clears O_NONBLOCK on its own reference
//!   to the call eventfd (the file description is shared), fills the counter, and RX traffic
//!   arrives: the switch revokes the fd (interrupting the PMD write if it already slept) and
//!   drops the frontend with one log line and a counter.
//! - `call_fd_made_blocking_then_non_blocking_again`: the same, but the flag is set again as soon
//!   as the PMD core sleeps in its write, so the flag looks right: the overdue write is
//!   interrupted all the same.
//! - `err_fd_made_blocking_after_handover`: the same trick on an err fd, then the ring breaks.
//! - `message_dripped_byte_by_byte`: a valid message, one byte every 0.8 s: the frontend is
//!   dropped at the message deadline with one log line and a counter.
//! - `pipelined_get_vring_base`: 50 GET_VRING_BASE in one write with the rings running, some for a
//!   ring whose PMD handle does not move: replies come in order, nobody else waits.
//! - `guest_that_never_takes_its_frames_costs_only_them`: a guest posts no RX buffers while
//!   more frames are flooded to it than the mbuf pool holds: each is dropped and counted, its
//!   mbuf goes back to the pool, and h1 still pings h2.
mod common;

use common::evil::*;
use common::*;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vhost::protocol::{Header, Pod, Request, VringState, FLAG_NEED_REPLY, VERSION};

/// `ctl stats` must answer within this during an attack.
const CTL_BOUND: Duration = Duration::from_secs(3);
/// Longest run of lost echoes allowed (at one echo per 0.2 s: 2 s).
const MAX_LOST_RUN: usize = 10;

/// The frontend's guest and handshake.
const SETUP: Setup = Setup::BASE;

// ---------------------------------------------------------------------------------------------
// File descriptors a careless or hostile frontend hands over
// ---------------------------------------------------------------------------------------------

/// A blocking pipe whose buffer is full: (read end, write end).
fn full_pipe() -> (OwnedFd, OwnedFd) {
    let mut p = [0; 2];
    // SAFETY: pipe2 fills two fds.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh fds, ours.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
    set_flags(&w, libc::O_NONBLOCK);
    let buf = [0u8; 4096];
    // SAFETY: writes from a live buffer.
    while unsafe { libc::write(w.as_raw_fd(), buf.as_ptr().cast(), buf.len()) } > 0 {}
    set_flags(&w, 0);
    (r, w)
}

/// A blocking eventfd whose counter is at its maximum: a blocking write of 1 would wait.
fn full_blocking_eventfd() -> OwnedFd {
    // SAFETY: eventfd returns a new fd or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: fresh fd, ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let v: u64 = 0xffff_ffff_ffff_fffe;
    // SAFETY: writes a live u64 to our own eventfd.
    let n = unsafe { libc::write(fd.as_raw_fd(), (&v as *const u64).cast(), 8) };
    assert_eq!(n, 8);
    fd
}

/// A blocking eventfd with its counter at 0, as a frontend may hand it over.
fn blocking_eventfd() -> OwnedFd {
    // SAFETY: eventfd returns a new fd or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: fresh fd, ours.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// What a hostile frontend does to its own reference to a call or err eventfd it handed over:
/// the counter emptied (while still non-blocking), O_NONBLOCK cleared (for the switch too: the
/// description is shared), the counter filled, so that the switch's next write of 1 sleeps.
fn make_blocking_and_full(fd: &OwnedFd) {
    let mut v = 0u64;
    // SAFETY: reads into a live u64; the fd is still non-blocking (EAGAIN when empty).
    unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    set_flags(fd, 0);
    let v: u64 = 0xffff_ffff_ffff_fffe;
    // SAFETY: writes a live u64; the counter is 0, so this does not wait.
    let n = unsafe { libc::write(fd.as_raw_fd(), (&v as *const u64).cast(), 8) };
    assert_eq!(n, 8);
}

fn set_flags(fd: &OwnedFd, flags: libc::c_int) {
    // SAFETY: F_SETFL on our own fd.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) };
    assert_eq!(r, 0);
}

fn is_nonblocking(fd: &OwnedFd) -> bool {
    // SAFETY: F_GETFL on our own fd.
    let f = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    f >= 0 && f & libc::O_NONBLOCK != 0
}

// ---------------------------------------------------------------------------------------------
// The frontend and its guest
// ---------------------------------------------------------------------------------------------

/// A vhost-user message as bytes.
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

// ---------------------------------------------------------------------------------------------
// Observing the switch
// ---------------------------------------------------------------------------------------------

/// The switch's PMD threads (DPDK names its worker lcores `rte-worker-N`).
fn pmd_threads(sw: &Switch) -> Vec<String> {
    let pid = sw.pid().expect("switch running");
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).expect("switch tasks");
    let t: Vec<String> = tasks
        .filter_map(|e| e.ok())
        .map(|e| e.path().display().to_string())
        .filter(|p| {
            fs::read_to_string(format!("{p}/comm")).is_ok_and(|c| c.starts_with("rte-worker"))
        })
        .collect();
    assert!(!t.is_empty(), "no PMD thread found in the switch");
    t
}

/// Whether one of `threads` sleeps ('S'): a PMD core never does unless a write holds it.
fn a_pmd_sleeps(threads: &[String]) -> bool {
    threads.iter().any(|p| {
        let st = fs::read_to_string(format!("{p}/stat")).unwrap_or_default();
        st.rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next())
            == Some("S")
    })
}

/// What runs beside an attack: h1 pinging h2 every 0.2 s through the switch, and `ctl stats`
/// asked every 0.3 s with each answer timed.
struct Watch {
    started: Instant,
    ping: Child,
    stop: Arc<AtomicBool>,
    ctl: Option<JoinHandle<()>>,
    ctl_times: Arc<Mutex<Vec<Duration>>>,
    ctl_failures: Arc<Mutex<Vec<String>>>,
}

impl Watch {
    fn start(lab: &Lab) -> Watch {
        let (h1, h2) = (lab.host("h1"), lab.host("h2"));
        let ping = Command::new("ip")
            .args([
                "netns", "exec", &h1.ns, "ping", "-n", "-i", "0.2", "-W", "1",
            ])
            .arg(h2.ip.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ping");
        let stop = Arc::new(AtomicBool::new(false));
        let ctl_times = Arc::new(Mutex::new(Vec::new()));
        let ctl_failures = Arc::new(Mutex::new(Vec::new()));
        let ctl_path = lab.switch().ctl.clone();
        let (s, t, f) = (stop.clone(), ctl_times.clone(), ctl_failures.clone());
        let ctl = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let out = run_with_timeout(
                    Command::new(BIN)
                        .arg("ctl")
                        .arg("--ctl")
                        .arg(&ctl_path)
                        .arg("stats"),
                    Duration::from_secs(15),
                );
                let took = t0.elapsed();
                match out {
                    Ok(o) if o.status.success() => t.lock().unwrap().push(took),
                    Ok(o) => f.lock().unwrap().push(format!(
                        "exit {}: {}",
                        o.status,
                        String::from_utf8_lossy(&o.stderr)
                    )),
                    Err(e) => f.lock().unwrap().push(e),
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        Watch {
            started: Instant::now(),
            ping,
            stop,
            ctl: Some(ctl),
            ctl_times,
            ctl_failures,
        }
    }

    /// Stops both and asserts what they saw.
    fn finish(mut self, what: &str) {
        // Watch long enough to tell a stall from a lost echo, however fast the attack went.
        let min = Duration::from_secs(4);
        std::thread::sleep(min.saturating_sub(self.started.elapsed()));
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ctl.take() {
            t.join().unwrap();
        }
        // SAFETY: signalling our own child (`ip netns exec` execs ping): SIGINT makes ping stop
        // and print what it saw.
        unsafe { libc::kill(self.ping.id() as libc::pid_t, libc::SIGINT) };
        let mut out = String::new();
        self.ping
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let _ = self.ping.wait();
        let seqs: Vec<usize> = out
            .lines()
            .filter_map(|l| l.split("icmp_seq=").nth(1))
            .filter_map(|s| s.split_whitespace().next()?.parse().ok())
            .collect();
        let sent = out
            .lines()
            .find_map(|l| {
                l.split(" packets transmitted")
                    .next()
                    .filter(|_| l.contains("transmitted"))
            })
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or(0);
        assert!(
            sent >= 10,
            "{what}: ping ran too briefly to tell anything:\n{out}"
        );
        // The longest run of sequence numbers without a reply (the tail included).
        let mut got = vec![false; sent + 1];
        for &s in &seqs {
            if s < got.len() {
                got[s] = true;
            }
        }
        let (mut run, mut longest) = (0, 0);
        for &g in &got[1..] {
            run = if g { 0 } else { run + 1 };
            longest = longest.max(run);
        }
        // The last echo may still be in flight when ping is stopped.
        let lost = sent.saturating_sub(seqs.len());
        eprintln!(
            "{what}: ping h1 -> h2: {sent} sent, {} answered, longest gap {longest} echoes",
            seqs.len()
        );
        assert!(
            longest <= MAX_LOST_RUN && lost * 10 <= sent,
            "{what}: h1 -> h2 lost {lost} of {sent} echoes, {longest} in a row:\n{out}"
        );
        let failures = self.ctl_failures.lock().unwrap();
        assert!(
            failures.is_empty(),
            "{what}: ctl stats failed during the attack: {failures:?}"
        );
        let times = self.ctl_times.lock().unwrap();
        let worst = times.iter().max().copied().unwrap_or_default();
        eprintln!(
            "{what}: ctl stats answered {} times, slowest {worst:?}",
            times.len()
        );
        assert!(!times.is_empty(), "{what}: ctl stats never answered");
        assert!(
            worst <= CTL_BOUND,
            "{what}: ctl stats took {worst:?} during the attack (bound {CTL_BOUND:?})"
        );
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.ping.kill();
        let _ = self.ping.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// A scenario's frame
// ---------------------------------------------------------------------------------------------

struct Scenario {
    lab: Lab,
    sock: PathBuf,
    fds_before: usize,
    h1raw: RawSocket,
}

impl Scenario {
    fn start(test: &str) -> Scenario {
        let (lab, sock) = evil_lab(test);
        assert_h1_pings_h2(&lab, "before the attack");
        let fds_before = fd_count(lab.switch());
        let h1raw = lab.host("h1").raw();
        Scenario {
            lab,
            sock,
            fds_before,
            h1raw,
        }
    }

    fn sw(&self) -> &Switch {
        self.lab.switch()
    }

    /// A broadcast from h1, flooded to the guest (which makes the switch use its RX ring).
    fn h1_broadcast(&self, label: &str) {
        let f = frame(
            BROADCAST,
            self.lab.host("h1").mac,
            None,
            ETH_TEST,
            &marker(label),
        );
        self.h1raw.send(&f);
    }

    /// After the attack: the port serves a well-behaved frontend (handshake, a frame to h1), and
    /// once that one leaves too the switch holds no more fds than before the scenario.
    fn finish(self, what: &str) {
        let sw = self.sw();
        assert_alive(sw, what);
        wait_link(sw, false, what);
        let mut good = Evil::connect(&self.sock, &SETUP);
        wait_link(sw, true, &format!("{what}: good frontend"));
        good.frame_reaches_h1(sw, &self.h1raw, &format!("{what}: good frontend"));
        drop(good);
        // Old configs (holding the guest's fds and memory) are released once the PMD handles
        // move on: traffic toward the port makes the guest-RX handle do so.
        wait_link_ticking(sw, false, &format!("{what}: good frontend gone"), || {
            self.h1_broadcast("release")
        });
        assert_fds_back(sw, self.fds_before, what, || self.h1_broadcast("release"));
        let log = sw.log_text();
        assert!(
            !log.contains("panicked"),
            "{what}: the switch panicked:\n{log}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

#[test]
fn call_fd_classes() {
    let sc = Scenario::start("stall-call");
    let sw = sc.sw();
    let mut ev = Evil::connect(&sc.sock, &SETUP);
    wait_link(sw, true, "call: connected");
    let watch = Watch::start(&sc.lab);

    // A blocking, full pipe: refused, counted, the connection stays.
    let (_pipe_r, pipe_w) = full_pipe();
    let refused0 = counter(sw, "refused_fds");
    let a = ev
        .fe
        .set_vring_fd(Request::SetVringCall, 0, Some(pipe_w.as_fd()))
        .expect("SET_VRING_CALL answered");
    assert_eq!(a, 1, "a pipe as call fd must be NACKed");
    assert_eq!(counter(sw, "refused_fds"), refused0 + 1);
    assert!(
        sw.log_text().contains("is a pipe, not an eventfd"),
        "the refusal is logged with its reason"
    );

    // A blocking eventfd whose counter is full: accepted and made non-blocking.
    let call = full_blocking_eventfd();
    ack_ok(
        ev.fe
            .set_vring_fd(Request::SetVringCall, 0, Some(call.as_fd())),
        "SET_VRING_CALL with a full blocking eventfd",
    );
    assert!(
        is_nonblocking(&call),
        "the switch must make a guest's call eventfd non-blocking"
    );
    // RX traffic toward that guest: delivered, and the interrupts it cannot raise are counted.
    // The guest asks for an interrupt at each next frame (EVENT_IDX: used_event = used idx).
    ev.post_rx_buffers(QSZ);
    let skipped = wait_counter(sw, "notifications_skipped", 3, || {
        ev.rx.set_used_event(&ev.g, ev.rx.used_idx(&ev.g));
        sc.h1_broadcast("to-guest");
    });
    assert!(skipped >= 3, "skipped interrupts must be counted");
    let used = ev.rx.used_idx(&ev.g);
    assert!(
        used >= 3,
        "frames reached the guest's RX ring: used idx {used}"
    );
    assert!(counter(sw, "to_guest_packets") >= 3);
    watch.finish("call fd");
    drop(ev);
    sc.finish("call fd");
}

#[test]
fn err_fd_classes() {
    let sc = Scenario::start("stall-err");
    let sw = sc.sw();
    let mut ev = Evil::connect(&sc.sock, &SETUP);
    wait_link(sw, true, "err: connected");
    let watch = Watch::start(&sc.lab);

    let (_pipe_r, pipe_w) = full_pipe();
    let refused0 = counter(sw, "refused_fds");
    let a = ev
        .fe
        .set_vring_fd(Request::SetVringErr, 1, Some(pipe_w.as_fd()))
        .expect("SET_VRING_ERR answered");
    assert_eq!(a, 1, "a pipe as err fd must be NACKed");
    assert_eq!(counter(sw, "refused_fds"), refused0 + 1);

    let err = full_blocking_eventfd();
    ack_ok(
        ev.fe
            .set_vring_fd(Request::SetVringErr, 1, Some(err.as_fd())),
        "SET_VRING_ERR with a full blocking eventfd",
    );
    assert!(
        is_nonblocking(&err),
        "the err eventfd must be made non-blocking"
    );
    // Break the guest's TX ring: the switch signals the err eventfd, which cannot take it.
    let g = &ev.g;
    ev.tx.push_avail(g, QSZ + 7);
    let errors = wait_counter(sw, "queue_errors", 1, || {});
    assert_eq!(errors, 1, "the ring violation is counted");
    let skipped = wait_counter(sw, "err_writes_skipped", 1, || {});
    assert_eq!(skipped, 1, "the skipped error signal is counted once");
    // The control thread still serves this connection too.
    assert_eq!(ev.fe.get_u64(Request::GetQueueNum).ok(), Some(1));
    std::thread::sleep(Duration::from_secs(2));
    watch.finish("err fd");
    drop(ev);
    sc.finish("err fd");
}

const MADE_BLOCKING: &str = "blocking again (O_NONBLOCK cleared after hand-over)";

#[test]
fn call_fd_made_blocking_after_handover() {
    let sc = Scenario::start("stall-callnb");
    let sw = sc.sw();
    let mut ev = Evil::connect(&sc.sock, &SETUP);
    wait_link(sw, true, "call made blocking: connected");
    let watch = Watch::start(&sc.lab);

    // A blocking eventfd as the guest RX call fd: accepted and made non-blocking.
    let call = blocking_eventfd();
    ack_ok(
        ev.fe
            .set_vring_fd(Request::SetVringCall, 0, Some(call.as_fd())),
        "SET_VRING_CALL with a blocking eventfd",
    );
    assert!(is_nonblocking(&call));
    // Then blocking again through our copy, counter full, and RX traffic toward the guest,
    // which asks for an interrupt at every frame.
    ev.post_rx_buffers(QSZ);
    make_blocking_and_full(&call);
    let deadline = Instant::now() + WAIT;
    loop {
        ev.rx.set_used_event(&ev.g, ev.rx.used_idx(&ev.g));
        sc.h1_broadcast("to-guest");
        std::thread::sleep(Duration::from_millis(20));
        if !evil_connected(sw) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the frontend that made its call fd blocking was never dropped: {}",
            evil_port(sw)
        );
    }
    assert_eq!(counter(sw, "fds_made_blocking"), 1);
    assert_eq!(
        log_count(sw, &[MADE_BLOCKING]),
        1,
        "one clear log line for the dropped frontend"
    );
    eprintln!(
        "call made blocking: {} frames reached the guest, writer interrupts {}, skipped {}",
        ev.rx.used_idx(&ev.g),
        counter(sw, "writer_interrupts"),
        counter(sw, "notifications_skipped")
    );
    if let Some(l) = sw.log_text().lines().find(|l| l.contains(MADE_BLOCKING)) {
        eprintln!("call made blocking: the log says: {l}");
    }
    // Whatever the frontend does with its fd now reaches no thread of the switch.
    set_flags(&call, libc::O_NONBLOCK);
    watch.finish("call fd made blocking");
    drop(ev);
    sc.finish("call fd made blocking");
}

#[test]
fn call_fd_made_blocking_then_non_blocking_again() {
    let sc = Scenario::start("stall-callnb2");
    let sw = sc.sw();
    let pmds = pmd_threads(sw);
    let watch = Watch::start(&sc.lab);
    let mut slept = false;
    // The guard may see the cleared flag before a frame makes the PMD core write; then the
    // frontend is dropped without any sleep, and the attack is tried again.
    for attempt in 0..5 {
        let mut ev = Evil::connect(&sc.sock, &SETUP);
        wait_link(sw, true, "call made blocking then not: connected");
        let call = blocking_eventfd();
        ack_ok(
            ev.fe
                .set_vring_fd(Request::SetVringCall, 0, Some(call.as_fd())),
            "SET_VRING_CALL",
        );
        ev.post_rx_buffers(QSZ);
        let interrupts0 = counter(sw, "writer_interrupts");
        make_blocking_and_full(&call);
        ev.rx.set_used_event(&ev.g, ev.rx.used_idx(&ev.g));
        sc.h1_broadcast("to-guest");
        let t0 = Instant::now();
        while !a_pmd_sleeps(&pmds) && t0.elapsed() < Duration::from_millis(500) {
            std::hint::spin_loop();
        }
        // Make the fd look right again the moment the PMD core sleeps.
        set_flags(&call, libc::O_NONBLOCK);
        slept = t0.elapsed() < Duration::from_millis(500);
        let deadline = Instant::now() + WAIT;
        while evil_connected(sw) {
            assert!(
                Instant::now() < deadline,
                "attempt {attempt}: the frontend was never dropped (PMD slept: {slept}): {}",
                evil_port(sw)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "attempt {attempt}: PMD slept: {slept}, writer interrupts {}",
            counter(sw, "writer_interrupts") - interrupts0
        );
        assert!(!a_pmd_sleeps(&pmds), "a PMD core still sleeps");
        drop(ev);
        wait_link(sw, false, "attack over");
        if slept {
            assert!(
                counter(sw, "writer_interrupts") > interrupts0,
                "the sleeping write was not interrupted"
            );
            break;
        }
    }
    assert!(slept, "in 5 attempts no frame made the PMD core write");
    assert!(counter(sw, "fds_made_blocking") >= 1);
    watch.finish("call fd made blocking then non-blocking again");
    sc.finish("call fd made blocking then non-blocking again");
}

#[test]
fn err_fd_made_blocking_after_handover() {
    let sc = Scenario::start("stall-errnb");
    let sw = sc.sw();
    let mut ev = Evil::connect(&sc.sock, &SETUP);
    wait_link(sw, true, "err made blocking: connected");
    let watch = Watch::start(&sc.lab);

    let err = blocking_eventfd();
    ack_ok(
        ev.fe
            .set_vring_fd(Request::SetVringErr, 1, Some(err.as_fd())),
        "SET_VRING_ERR with a blocking eventfd",
    );
    assert!(is_nonblocking(&err));
    make_blocking_and_full(&err);
    // Break the guest's TX ring: the switch would signal the err eventfd.
    let g = &ev.g;
    ev.tx.push_avail(g, QSZ + 7);
    let deadline = Instant::now() + WAIT;
    while evil_connected(sw) {
        assert!(
            Instant::now() < deadline,
            "the frontend that made its err fd blocking was never dropped: {}",
            evil_port(sw)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(counter(sw, "fds_made_blocking"), 1);
    assert_eq!(log_count(sw, &[MADE_BLOCKING]), 1);
    assert!(
        sw.log_text().contains("SetVringErr for vring 1"),
        "the log names the fd"
    );
    // The control thread kept serving throughout: the watch's `ctl stats` proves it.
    watch.finish("err fd made blocking");
    drop(ev);
    sc.finish("err fd made blocking");
}

#[test]
fn message_dripped_byte_by_byte() {
    let sc = Scenario::start("stall-drip");
    let sw = sc.sw();
    let ev = Evil::connect(&sc.sock, &SETUP);
    wait_link(sw, true, "drip: connected");
    let timeouts0 = counter(sw, "message_timeouts");
    let watch = Watch::start(&sc.lab);
    // SET_VRING_ENABLE (20 bytes), one byte every 0.8 s: 16 s, past the 5 s deadline.
    let msg = raw(
        Request::SetVringEnable,
        FLAG_NEED_REPLY,
        VringState { index: 0, num: 1 }.as_bytes(),
    );
    let t0 = Instant::now();
    let mut stream = ev.fe.stream();
    let mut sent = 0;
    for b in &msg {
        if stream.write_all(std::slice::from_ref(b)).is_err() {
            break; // the switch dropped us
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(800));
        if evil_port(sw)["backend"]["connected"].as_bool() == Some(false) {
            break;
        }
    }
    let took = t0.elapsed();
    assert!(
        sent < msg.len(),
        "the switch waited for the whole dripped message"
    );
    eprintln!("drip: dropped after {sent} bytes, {took:?}");
    assert_eq!(counter(sw, "message_timeouts"), timeouts0 + 1);
    assert_eq!(
        log_count(sw, &["took more than 5 s to send a message"]),
        1,
        "one clear log line for the dropped frontend"
    );
    watch.finish("drip");
    drop(ev);
    sc.finish("drip");
}

#[test]
fn pipelined_get_vring_base() {
    let sc = Scenario::start("stall-pipe");
    let sw = sc.sw();
    let mut ev = Evil::connect(&sc.sock, &SETUP);
    wait_link(sw, true, "pipeline: connected");
    // The guest-RX handle takes the running ring at its first frame for the guest, then, with
    // no more traffic toward the guest, never moves: a stop of that ring waits stop_timeout.
    ev.post_rx_buffers(4);
    let used0 = ev.rx.used_idx(&ev.g);
    let deadline = Instant::now() + WAIT;
    while ev.rx.used_idx(&ev.g) == used0 {
        assert!(Instant::now() < deadline, "no frame ever reached the guest");
        sc.h1_broadcast("prime");
        std::thread::sleep(Duration::from_millis(100));
    }
    let stop_timeouts0 = counter(sw, "stop_timeouts");
    let watch = Watch::start(&sc.lab);
    // 50 GET_VRING_BASE, each followed by a KICK that restarts its ring; every tenth for the
    // guest RX ring, the rest for the guest TX ring (polled all the time by the PMD core).
    let mut bytes = Vec::new();
    let rings: Vec<u32> = (0..50).map(|k| u32::from(k % 10 == 5) ^ 1).collect();
    for &i in &rings {
        let get = VringState { index: i, num: 0 };
        bytes.extend(raw(Request::GetVringBase, 0, get.as_bytes()));
        bytes.extend(raw(
            Request::SetVringKick,
            0,
            &(u64::from(i) | 0x100).to_ne_bytes(),
        ));
    }
    let t0 = Instant::now();
    ev.fe.stream().write_all(&bytes).unwrap();
    ev.fe
        .stream()
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    for (k, &i) in rings.iter().enumerate() {
        let r = ev
            .fe
            .recv_reply(Request::GetVringBase as u32)
            .unwrap_or_else(|e| panic!("reply {k} of 50: {e}"));
        let st = VringState::from_bytes(&r).expect("VringState reply");
        assert_eq!(st.index, i, "reply {k} answers request {k}");
    }
    let took = t0.elapsed();
    let timeouts = counter(sw, "stop_timeouts") - stop_timeouts0;
    eprintln!("pipeline: 50 replies in {took:?}, {timeouts} stop timeouts");
    assert!(
        timeouts <= 5,
        "only stops of the idle guest-RX ring may time out"
    );
    // The connection is still served in order after them.
    ev.fe.reply_ack = true;
    assert_eq!(ev.fe.get_u64(Request::GetQueueNum).ok(), Some(1));
    watch.finish("pipeline");
    drop(ev);
    sc.finish("pipeline");
}

#[test]
fn guest_that_never_takes_its_frames_costs_only_them() {
    let sc = Scenario::start("stall-norx");
    let sw = sc.sw();
    // Posts no RX buffers: every frame the switch sends it is dropped (tx_full).
    let ev = Evil::connect(&sc.sock, &SETUP);
    wait_link(sw, true, "norx: connected");
    let free = |sw: &Switch| {
        let s = sw
            .ctl_json("stats")
            .unwrap_or_else(|e| panic!("norx: ctl stats: {e}"));
        s["mbufs_free"].as_u64().expect("mbufs_free")
    };
    let dropped = |sw: &Switch| evil_port(sw)["drops"]["tx_full"].as_u64().unwrap_or(0);
    let before = free(sw);
    // More frames dropped at the guest than the pool holds: each drop must give its mbuf back.
    let want = before + 2048;
    let deadline = Instant::now() + 4 * WAIT;
    let mut k = 0u64;
    loop {
        let d = dropped(sw);
        if d >= want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "norx: {d} of {want} frames dropped for the guest within {:?}, {} mbufs free \
             ({before} before); evil: {}",
            4 * WAIT,
            free(sw),
            evil_port(sw)
        );
        for _ in 0..2000 {
            sc.h1_broadcast(&format!("norx{k}"));
            k += 1;
        }
    }
    // Back in the pool, but for what the PMD core keeps (its stack of 32, spare bursts).
    let deadline = Instant::now() + WAIT;
    loop {
        let f = free(sw);
        if f + 256 >= before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "norx: {f} mbufs free after {} drops, {before} before: the drops leaked theirs",
            dropped(sw)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_h1_pings_h2(&sc.lab, "norx: after the guest's drops");
    drop(ev);
    sc.finish("norx");
}
