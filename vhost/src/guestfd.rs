//! Call and err eventfds that cannot stall the switch, even when the frontend makes them blocking
//! again after handing them over.
//!
//! # The hole
//! A guest's call and err eventfds are made non-blocking on receipt, but O_NONBLOCK is a flag of
//! the open file description, which the frontend shares (SCM_RIGHTS passes a reference to it, like
//! dup). It can clear the flag with F_SETFL at any time and fill the counter
//! (0xffff_ffff_ffff_fffe): our next write of 1 then sleeps until somebody reads the counter — a
//! PMD core (call fd: every port on that core stops) or the control thread (err fd).
//!
//! # What does not close it (tried on Linux 6.18)
//! - A description of our own: `open("/proc/self/fd/N")` of an eventfd fails with ENXIO
//!   (anonymous inodes cannot be reopened); dup and SCM_RIGHTS share the description.
//! - A write that is non-blocking by itself: `pwritev2(RWF_NOWAIT)` on an eventfd fails with
//!   EOPNOTSUPP (eventfd has no `write_iter`). Reads do take RWF_NOWAIT, writes cannot.
//! - Checking the flag, or polling for POLLOUT, before each write: the frontend changes both
//!   between our check and our write.
//! - Draining the counter to wake the sleeping writer: the frontend's own writers sleep on the
//!   same wait queue and refill it first. With 32 of them, a drain every 20 ms freed the writer
//!   only after 48 and 144 drains (1 s, 3 s).
//!
//! # What holds, and why
//! A writer that has to wait in eventfd's write sleeps *interruptibly*: a signal ends the sleep,
//! and with [`WAKE_SIGNAL`]'s handler installed without SA_RESTART the write returns EINTR.
//! Nothing a frontend does can hold back a signal sent to one of our threads. So:
//! - Every write is marked: the writer stores `(sequence << 32) | tid` in `writer`, then loads
//!   `revoked` and writes only if it is clear, then stores 0 (two stores and a load around a
//!   syscall: no measurable cost, see `benches/notify.rs`).
//! - The control loop checks every fd it was given each [`GUARD_PERIOD`] (`VhostUserNet::serve`):
//!   F_GETFL without O_NONBLOCK revokes the fd. So does a write that returned EINTR: a write to a
//!   non-blocking eventfd never sleeps, so EINTR proves the frontend made it blocking.
//! - A revoked fd is never written again, and while its mark stays, its writer is sent
//!   [`WAKE_SIGNAL`] at every check, then 1 ms apart. `revoked` and `writer` are SeqCst on both
//!   sides (a store then a load of the other's variable, as in Dekker's algorithm), so either the
//!   writer sees `revoked` and does not write, or the control side sees its mark and signals it.
//!   A signal that arrives just before the writer enters write() is repeated 1 ms later.
//! - The same mark seen at two checks (one write has lasted ≥ [`GUARD_PERIOD`]) also gets the
//!   signal: that catches a frontend that sets the flag again once our writer sleeps. If the write
//!   was merely slow (preempted), the signal interrupts nothing and costs nothing.
//! - The control thread cannot signal itself: its own (err) writes run under a POSIX timer that
//!   sends it [`WAKE_SIGNAL`] every [`CONTROL_WRITE_BOUND`] until the write returns.
//!
//! # Worst case left
//! A PMD core sleeps at most about 2 × [`GUARD_PERIOD`] (plus the control loop's lateness) once
//! per connection that does it: the write is interrupted, the fd revoked and the frontend
//! dropped, so the next attempt costs a new connection and handshake. The control thread waits at
//! most [`CONTROL_WRITE_BOUND`] (plus timer slack) per err write.

use std::cell::Cell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Once;
use std::time::Duration;

use crate::protocol::Request;

/// The signal that ends a write sleeping on an eventfd the frontend made blocking. SIGURG: its
/// default action is to be ignored (a stray one never kills the switch) and nothing here uses
/// socket out-of-band data. Its handler does nothing; installed without SA_RESTART, it makes the
/// interrupted write return EINTR.
pub const WAKE_SIGNAL: libc::c_int = libc::SIGURG;

/// How often the control side checks the flags of every call and err eventfd it holds, and how
/// long one write may last before its writer is sent [`WAKE_SIGNAL`].
pub const GUARD_PERIOD: Duration = Duration::from_millis(20);

/// The check interval while a revoked or overdue write is still under way.
pub(crate) const GUARD_URGENT: Duration = Duration::from_millis(1);

/// How long a control-thread write to an eventfd may sleep before the timer interrupts it (and
/// again each period after, should a signal land before the write started sleeping).
pub const CONTROL_WRITE_BOUND: Duration = Duration::from_millis(2);

extern "C" fn on_wake_signal(_: libc::c_int) {}

/// Installs [`WAKE_SIGNAL`]'s handler (once per process; later calls do nothing).
pub(crate) fn install_wake_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sigaction is plain data; all-zero is a valid empty value (empty mask, no flags).
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_wake_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // No SA_RESTART: an interrupted eventfd write must return EINTR, not sleep again.
        sa.sa_flags = 0;
        // SAFETY: installs a handler that touches nothing (async-signal-safe) for a valid signal.
        let r = unsafe { libc::sigaction(WAKE_SIGNAL, &sa, std::ptr::null_mut()) };
        assert_eq!(r, 0, "sigaction({WAKE_SIGNAL}) failed");
    });
}

thread_local! {
    static TID: Cell<libc::pid_t> = const { Cell::new(0) };
}

/// This thread's id, for [`WAKE_SIGNAL`] to find it; the first call on a thread also makes
/// sure the signal is installed and not blocked here.
#[inline]
fn this_tid() -> libc::pid_t {
    TID.with(|t| match t.get() {
        0 => first_use(t),
        tid => tid,
    })
}

#[cold]
fn first_use(t: &Cell<libc::pid_t>) -> libc::pid_t {
    install_wake_handler();
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use; pthread_sigmask only
    // changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, WAKE_SIGNAL);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    t.set(tid);
    tid
}

/// A call or err eventfd given by a frontend, with what it takes to write it without ever
/// sleeping for long (see the module docs).
#[derive(Debug)]
pub(crate) struct GuestEventfd {
    fd: OwnedFd,
    /// The message that gave it and its vring, for the error that names it.
    pub(crate) request: Request,
    pub(crate) vring: usize,
    /// The connection it came with (`ControlStats::connections` at the time).
    pub(crate) conn: u64,
    /// `(sequence << 32) | tid` while a write is under way, else 0.
    writer: AtomicU64,
    /// The writer's own sequence (one writer at a time: the vring's handle, or the control
    /// thread for an err fd).
    seq: AtomicU32,
    /// Never written again: the frontend made it blocking.
    revoked: AtomicBool,
}

impl GuestEventfd {
    pub(crate) fn new(fd: OwnedFd, request: Request, vring: usize, conn: u64) -> Self {
        install_wake_handler();
        GuestEventfd {
            fd,
            request,
            vring,
            conn,
            writer: AtomicU64::new(0),
            seq: AtomicU32::new(0),
            revoked: AtomicBool::new(false),
        }
    }

    /// Adds 1 to the counter unless the fd was revoked. Returns whether it did: a full counter
    /// (EAGAIN), a revoked fd and an interrupted write all skip. Never sleeps longer than the
    /// control loop's guard takes to interrupt it (see the module docs). Not for the control
    /// thread, which is the one to interrupt it: see [`GuestEventfd::signal_from_control`].
    #[inline]
    pub(crate) fn signal(&self) -> bool {
        let seq = self.seq.load(Ordering::Relaxed).wrapping_add(1);
        self.seq.store(seq, Ordering::Relaxed);
        self.writer.store(
            u64::from(seq) << 32 | u64::from(this_tid() as u32),
            Ordering::SeqCst,
        );
        let done = !self.revoked.load(Ordering::SeqCst) && self.write_one();
        self.writer.store(0, Ordering::Release);
        done
    }

    /// One write of 1; EINTR revokes the fd (only a write that slept can be interrupted).
    fn write_one(&self) -> bool {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd this struct keeps open.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            self.revoked.store(true, Ordering::SeqCst);
        }
        n == 8
    }

    /// [`GuestEventfd::signal`] for the control thread: the flag is checked first (a frontend
    /// that cleared it loses the fd), and the write runs under a timer that sends this thread
    /// [`WAKE_SIGNAL`] every [`CONTROL_WRITE_BOUND`] until it returns. Without a timer (none
    /// could be created) nothing is written.
    pub(crate) fn signal_from_control(&self) -> bool {
        if self.revoked.load(Ordering::SeqCst) {
            return false;
        }
        if !self.nonblocking() {
            self.revoke();
            return false;
        }
        let Some(_timer) = WakeTimer::start(CONTROL_WRITE_BOUND) else {
            return false;
        };
        self.write_one()
    }

    /// Whether O_NONBLOCK is still set (F_GETFL failing counts as not).
    pub(crate) fn nonblocking(&self) -> bool {
        // SAFETY: F_GETFL on an fd this struct keeps open.
        let f = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_GETFL) };
        f >= 0 && f & libc::O_NONBLOCK != 0
    }

    /// Never write this fd again.
    pub(crate) fn revoke(&self) {
        self.revoked.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::SeqCst)
    }

    /// The mark of the write under way (0: none). Loaded after a [`GuestEventfd::revoke`] it
    /// tells whether a write that did not see the revocation may still be running.
    pub(crate) fn writer(&self) -> u64 {
        self.writer.load(Ordering::SeqCst)
    }

    /// Sends [`WAKE_SIGNAL`] to the thread of mark `w` (never to the calling thread). Returns
    /// whether a signal was sent.
    pub(crate) fn interrupt(w: u64) -> bool {
        let tid = w as u32 as libc::pid_t;
        if tid == 0 || tid == this_tid() {
            return false;
        }
        // SAFETY: tgkill only sends a signal; our handler for it does nothing, and the thread is
        // one of ours (the tgid is our own pid).
        unsafe {
            libc::syscall(
                libc::SYS_tgkill,
                libc::getpid(),
                libc::c_long::from(tid),
                WAKE_SIGNAL,
            ) == 0
        }
    }
}

impl AsFd for GuestEventfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A POSIX timer sending [`WAKE_SIGNAL`] to the calling thread each `period` until dropped.
struct WakeTimer(libc::timer_t);

impl WakeTimer {
    fn start(period: Duration) -> Option<WakeTimer> {
        // SAFETY: sigevent is plain data; all-zero is a valid start, the fields used are set.
        let mut ev: libc::sigevent = unsafe { std::mem::zeroed() };
        ev.sigev_notify = libc::SIGEV_THREAD_ID;
        ev.sigev_signo = WAKE_SIGNAL;
        ev.sigev_notify_thread_id = this_tid();
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: ev and id are live; on success id names a timer we own until timer_delete.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut ev, &mut id) } != 0 {
            return None;
        }
        let t = WakeTimer(id);
        let ts = libc::timespec {
            tv_sec: period.as_secs() as libc::time_t,
            tv_nsec: period.subsec_nanos() as libc::c_long,
        };
        let spec = libc::itimerspec {
            it_interval: ts,
            it_value: ts,
        };
        // SAFETY: arms the timer we own with a live itimerspec.
        if unsafe { libc::timer_settime(t.0, 0, &spec, std::ptr::null_mut()) } != 0 {
            return None;
        }
        Some(t)
    }
}

impl Drop for WakeTimer {
    fn drop(&mut self) {
        // SAFETY: deletes (and so disarms) the timer we own; a signal already sent is handled by
        // the no-op handler.
        unsafe { libc::timer_delete(self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;
    use std::sync::Arc;
    use std::time::Instant;

    /// A blocking eventfd and a second reference to its description (the frontend's copy).
    fn pair() -> (OwnedFd, OwnedFd) {
        // SAFETY: eventfd returns a new fd or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: fresh fd, ours.
        let ours = unsafe { OwnedFd::from_raw_fd(fd) };
        let theirs = ours.try_clone().unwrap();
        (ours, theirs)
    }

    fn set_nonblocking(fd: &OwnedFd, on: bool) {
        // SAFETY: F_SETFL on a live fd.
        let r = unsafe {
            libc::fcntl(
                fd.as_raw_fd(),
                libc::F_SETFL,
                if on { libc::O_NONBLOCK } else { 0 },
            )
        };
        assert_eq!(r, 0);
    }

    fn fill(fd: &OwnedFd) {
        let v: u64 = 0xffff_ffff_ffff_fffe;
        // SAFETY: writes a live u64.
        let n = unsafe { libc::write(fd.as_raw_fd(), (&v as *const u64).cast(), 8) };
        assert_eq!(n, 8);
    }

    fn guest(fd: OwnedFd) -> Arc<GuestEventfd> {
        Arc::new(GuestEventfd::new(fd, Request::SetVringCall, 0, 1))
    }

    #[test]
    fn an_eventfd_cannot_be_reopened_nor_written_with_rwf_nowait() {
        // The premises of the design: if either changes, a simpler defence exists.
        let (ours, _theirs) = pair();
        let path = std::ffi::CString::new(format!("/proc/self/fd/{}", ours.as_raw_fd())).unwrap();
        // SAFETY: open with a valid C string; a returned fd is closed below.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NONBLOCK) };
        if fd >= 0 {
            // SAFETY: the fd just opened.
            unsafe { libc::close(fd) };
        }
        assert!(
            fd < 0,
            "this kernel reopens eventfds: give PMDs their own description"
        );
        let one: u64 = 1;
        let iov = libc::iovec {
            iov_base: (&one as *const u64).cast_mut().cast(),
            iov_len: 8,
        };
        // SAFETY: one live iovec of 8 bytes.
        let n = unsafe { libc::pwritev2(ours.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT) };
        assert!(
            n < 0,
            "this kernel takes RWF_NOWAIT on eventfd writes: use it"
        );
    }

    #[test]
    fn a_write_is_skipped_when_full_and_never_done_once_revoked() {
        let (ours, theirs) = pair();
        set_nonblocking(&ours, true);
        let g = guest(ours);
        assert!(g.signal());
        drop(theirs);
        g.revoke();
        assert!(!g.signal());
        assert!(!g.signal_from_control());
        assert_eq!(g.writer(), 0);
    }

    #[test]
    fn a_writer_sleeping_on_a_blocking_full_eventfd_is_interrupted_and_revokes_it() {
        let (ours, theirs) = pair();
        let g = guest(ours);
        fill(&theirs); // blocking (the frontend cleared O_NONBLOCK) and full
        let w = g.clone();
        let pmd = std::thread::spawn(move || w.signal());
        // Wait for the writer to be in its write, then do what the guard does.
        let t0 = Instant::now();
        while g.writer() == 0 {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "writer never started"
            );
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            !pmd.is_finished(),
            "the write should sleep: the premise of the test"
        );
        let t1 = Instant::now();
        while !pmd.is_finished() {
            assert!(
                t1.elapsed() < Duration::from_secs(10),
                "the signal never freed the writer"
            );
            let w = g.writer();
            if w != 0 {
                GuestEventfd::interrupt(w);
            }
            std::thread::sleep(GUARD_URGENT);
        }
        assert!(!pmd.join().unwrap(), "the interrupted write did not signal");
        assert!(g.is_revoked(), "EINTR proves the fd was made blocking");
        assert_eq!(g.writer(), 0);
        assert!(!g.signal(), "a revoked fd is not written again");
    }

    #[test]
    fn a_control_write_on_a_blocking_full_eventfd_returns_within_its_bound() {
        let (ours, theirs) = pair();
        set_nonblocking(&ours, true);
        let g = guest(ours);
        fill(&theirs);
        // Cleared before the write: seen by the check, nothing written.
        set_nonblocking(&theirs, false);
        assert!(!g.signal_from_control());
        assert!(g.is_revoked());

        // Cleared between the check and the write (simulated: the check passes, then the write
        // finds the flag cleared): the timer interrupts the write.
        let (ours, theirs) = pair();
        set_nonblocking(&ours, true);
        let g = guest(ours);
        fill(&theirs);
        set_nonblocking(&theirs, false);
        let t0 = Instant::now();
        let timer = WakeTimer::start(CONTROL_WRITE_BOUND).expect("timer");
        assert!(!g.write_one());
        drop(timer);
        let took = t0.elapsed();
        assert!(g.is_revoked());
        assert!(
            took < Duration::from_secs(5),
            "the timer never interrupted: {took:?}"
        );
    }
}
