//! Guest memory that shrinks under us must not kill the switch.
//!
//! A frontend can truncate the file behind a region after SET_MEM_TABLE; the next access to a
//! page past the new end raises SIGBUS, whose default action ends the process. Sealing
//! (F_SEAL_SHRINK) would prevent it only for memfds: QEMU's memory-backend-file and DPDK's
//! virtio-user hand over hugetlbfs files, which cannot be sealed, and a check before each access
//! races with the truncation anyway. So the fault itself is caught:
//!
//! - Every mapping of guest memory is registered in a fixed-size, lock-free table of address
//!   ranges ([`GuardedMapping`]: registered right after mmap, deregistered right before munmap).
//! - A process-wide SIGBUS handler (installed once, with the first mapping) looks the faulting
//!   address up. On a hit it replaces that whole mapping, in place, with private anonymous
//!   memory (`MAP_FIXED`; the bounds are huge-page aligned for hugetlbfs files, so this works for
//!   them too), marks the mapping faulted and returns: the faulting access is retried on zero
//!   pages and the thread, PMD core or control thread alike, carries on. Every pointer into the
//!   mapping stays valid, so no code path needs to know.
//! - The control side sees the mark ([`GuestMemory::take_fault`](crate::memory::GuestMemory::take_fault),
//!   `VhostUserNet::take_memory_fault`) and drops the frontend: the port is broken for that
//!   frontend only and serves the next one.
//! - A SIGBUS anywhere else is not ours: it goes to the handler that was there before (Rust's
//!   stack-overflow reporter) or, if there was none, kills the process as it always did.
//!
//! The handler only reads the table, CASes a per-slot flag and calls mmap: no lock, no
//! allocation. A mapping is unmapped only once no thread can access it (see `queue`), so the
//! slot of a mapping that faults cannot change while the handler uses it; slots being written
//! by the control side meanwhile are skipped by a per-slot sequence count.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

/// Guest memory mappings alive at once: 8 regions per table, a few tables per device (the
/// current one and those retired but still held by a PMD core), over all ports.
pub const MAX_MAPPINGS: usize = 1024;

const HEALTHY: u8 = 0;
/// The handler is replacing the mapping (another thread faulting meanwhile just retries).
const REPLACING: u8 = 1;
const FAULTED: u8 = 2;
/// Faulted, and the control side was told.
const REPORTED: u8 = 3;

struct Slot {
    /// Claimed by a mapping (CAS): only its owner writes `base`/`len`.
    used: AtomicBool,
    /// Odd while `base`/`len` are being written (a seqlock, read by the handler).
    seq: AtomicU64,
    base: AtomicUsize,
    len: AtomicUsize,
    fault: AtomicU8,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            used: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            base: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            fault: AtomicU8::new(HEALTHY),
        }
    }

    /// Writes the range under the sequence count (only the slot's owner calls this).
    fn set(&self, base: usize, len: usize) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.base.store(base, Ordering::Relaxed);
        self.len.store(len, Ordering::Relaxed);
        self.fault.store(HEALTHY, Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// A consistent (base, len), or `None` while the owner is writing it.
    fn get(&self) -> Option<(usize, usize)> {
        let s1 = self.seq.load(Ordering::Acquire);
        if s1 & 1 == 1 {
            return None;
        }
        let base = self.base.load(Ordering::Relaxed);
        let len = self.len.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == s1).then_some((base, len))
    }
}

static REGISTRY: [Slot; MAX_MAPPINGS] = [const { Slot::new() }; MAX_MAPPINGS];
static CAUGHT: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// The SIGBUS action before ours, for faults that are not ours.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// SIGBUS faults on guest memory caught (and survived) by this process so far.
pub fn faults_caught() -> u64 {
    CAUGHT.load(Ordering::Relaxed)
}

/// Installs the SIGBUS handler (once per process; later calls only report whether it is in).
fn install() -> bool {
    INSTALL.call_once(|| {
        // SAFETY: plain-data structs filled in by sigaction; the handler is an extern "C" fn
        // with the SA_SIGINFO signature that stays valid for the life of the process.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) != 0 {
                return;
            }
            let _ = PREVIOUS.set(old);
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()) == 0 {
                INSTALLED.store(true, Ordering::Release);
            }
        }
    });
    INSTALLED.load(Ordering::Acquire)
}

/// The registered range holding `addr`, if any.
fn find(addr: usize) -> Option<(&'static Slot, usize, usize)> {
    REGISTRY.iter().find_map(|s| {
        let (base, len) = s.get()?;
        (len != 0 && addr.wrapping_sub(base) < len).then_some((s, base, len))
    })
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: errno is thread-local; the handler must leave it as the interrupted code had it.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel hands an SA_SIGINFO handler a valid siginfo_t.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // si_code > 0: raised by the kernel for a faulting access (not sent with kill).
    if code > 0 {
        if let Some((slot, base, len)) = find(addr) {
            match slot.fault.compare_exchange(
                HEALTHY,
                REPLACING,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // SAFETY: [base, base+len) is a live guest mapping of ours (its slot is
                    // registered and cannot be released while a thread accesses it); replacing
                    // it in place keeps every pointer into it valid.
                    let p = unsafe {
                        libc::mmap(
                            base as *mut libc::c_void,
                            len,
                            libc::PROT_READ | libc::PROT_WRITE,
                            libc::MAP_FIXED
                                | libc::MAP_PRIVATE
                                | libc::MAP_ANONYMOUS
                                | libc::MAP_NORESERVE,
                            -1,
                            0,
                        )
                    };
                    if p != libc::MAP_FAILED {
                        slot.fault.store(FAULTED, Ordering::Release);
                        CAUGHT.fetch_add(1, Ordering::Relaxed);
                        // SAFETY: as above.
                        unsafe { *libc::__errno_location() = errno };
                        return;
                    }
                    // Could not replace it: nothing else can make the access succeed.
                }
                Err(_) => {
                    // Another thread replaced it, or is doing so: retry the access.
                    // SAFETY: as above.
                    unsafe { *libc::__errno_location() = errno };
                    return;
                }
            }
        }
    }
    not_ours(sig, info, ctx);
}

/// A SIGBUS we do not handle: the previous handler gets it, or the default action kills us.
fn not_ours(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let prev = PREVIOUS.get().map(|a| (a.sa_sigaction, a.sa_flags));
    match prev {
        Some((h, flags)) if h != libc::SIG_DFL && h != libc::SIG_IGN => {
            if flags & libc::SA_SIGINFO != 0 {
                // SAFETY: an SA_SIGINFO handler has this signature; it was installed for SIGBUS.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(h) };
                f(sig, info, ctx);
            } else {
                // SAFETY: a plain handler has this signature.
                let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
                f(sig);
            }
        }
        _ => {
            // SAFETY: restores the default action and re-raises: SIGBUS is blocked while we
            // run, so the process dies of it (with its core dump) as soon as we return.
            unsafe {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
                libc::raise(libc::SIGBUS);
            }
        }
    }
}

/// Why a guest mapping could not be made.
#[derive(Debug)]
pub(crate) enum MapError {
    /// mmap failed.
    Mmap(io::Error),
    /// Every registry slot is taken, or the handler could not be installed: the mapping would
    /// be unprotected, so it is not made.
    Unguarded,
}

/// A shared, read-write mapping of a guest memory file, registered with the SIGBUS guard for its
/// whole life. Unmapped on drop (deregistered first).
#[derive(Debug)]
pub(crate) struct GuardedMapping {
    base: *mut u8,
    len: usize,
    slot: usize,
}

// SAFETY: the mapping is owned; the pointer is only dereferenced through bounds-checked
// accessors of `memory`, and guest memory is shared memory anyway.
unsafe impl Send for GuardedMapping {}
// SAFETY: as above; the struct itself is immutable.
unsafe impl Sync for GuardedMapping {}

impl GuardedMapping {
    /// Maps `len` bytes of `fd` from offset 0 and registers them.
    pub(crate) fn map_shared(fd: BorrowedFd<'_>, len: usize) -> Result<Self, MapError> {
        if !install() {
            return Err(MapError::Unguarded);
        }
        // SAFETY: a fresh shared mapping of a file the caller holds open; no existing memory is
        // affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(MapError::Mmap(io::Error::last_os_error()));
        }
        let claimed = REGISTRY.iter().position(|s| {
            s.used
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        });
        let Some(slot) = claimed else {
            // SAFETY: the mapping made just above, not yet used by anything.
            unsafe { libc::munmap(base, len) };
            return Err(MapError::Unguarded);
        };
        REGISTRY[slot].set(base as usize, len);
        Ok(GuardedMapping {
            base: base.cast(),
            len,
            slot,
        })
    }

    pub(crate) fn base(&self) -> *mut u8 {
        self.base
    }

    /// Whether an access faulted and the mapping now holds anonymous zero pages.
    pub(crate) fn faulted(&self) -> bool {
        REGISTRY[self.slot].fault.load(Ordering::Acquire) >= FAULTED
    }

    /// True once after the mapping faulted (the control side reports it once).
    pub(crate) fn take_fault(&self) -> bool {
        REGISTRY[self.slot]
            .fault
            .compare_exchange(FAULTED, REPORTED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }
}

impl Drop for GuardedMapping {
    fn drop(&mut self) {
        let s = &REGISTRY[self.slot];
        s.set(0, 0);
        s.used.store(false, Ordering::Release);
        // SAFETY: base/len are exactly what mmap returned (or the handler's same-range
        // replacement); nothing accesses the mapping any more, and it left the registry first.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::GuestMemory;
    use crate::protocol::MemoryRegion;
    use crate::testutil::memfd;
    use std::os::fd::{AsFd, OwnedFd};

    fn region(size: u64) -> MemoryRegion {
        MemoryRegion {
            guest_phys_addr: 0x100_0000,
            memory_size: size,
            userspace_addr: 0x7100_0000,
            mmap_offset: 0,
        }
    }

    fn truncate(fd: &OwnedFd, size: u64) {
        // SAFETY: ftruncate on a file we own.
        let r = unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) };
        assert_eq!(r, 0, "ftruncate: {}", io::Error::last_os_error());
    }

    /// Reads and writes `mem` through the same copy routines the rings use.
    fn touch(mem: &GuestMemory, gpa: u64) -> Vec<u8> {
        let mut h = 0;
        let mut b = vec![0xa5u8; 16];
        crate::memory::read_guest(mem, &mut h, gpa, &mut b).expect("in bounds");
        crate::memory::write_guest(mem, &mut h, gpa, b"after").expect("in bounds");
        b
    }

    #[test]
    fn a_truncated_memfd_faults_the_region_not_the_process() {
        let size = 0x10000;
        let fd = memfd(size);
        let mem = GuestMemory::from_regions(&[region(size)], vec![fd.try_clone().unwrap()])
            .expect("valid table");
        let gpa = region(size).guest_phys_addr + 0x8000;
        let mut h = 0;
        crate::memory::write_guest(&mem, &mut h, gpa, b"guest data").unwrap();
        assert!(!mem.faulted());
        let caught = faults_caught();

        truncate(&fd, 0);
        // The access faults, the handler swaps zero pages in, the copy completes.
        assert_eq!(touch(&mem, gpa), vec![0u8; 16]);
        assert!(mem.faulted(), "the region is reported faulted");
        assert!(faults_caught() > caught);
        let mut back = [0u8; 5];
        crate::memory::read_guest(&mem, &mut h, gpa, &mut back).unwrap();
        assert_eq!(
            &back, b"after",
            "the replacement is ordinary writable memory"
        );
        assert!(mem.take_fault(), "reported once");
        assert!(!mem.take_fault());
        assert!(mem.faulted());
        drop(mem); // deregisters and unmaps the replacement
    }

    /// The same through a hugetlbfs file (what QEMU's memory-backend-file and DPDK's
    /// virtio-user hand over): huge-page aligned bounds, replaced by small anonymous pages.
    #[test]
    fn a_truncated_hugetlbfs_file_faults_the_region_not_the_process() {
        let dir = std::path::Path::new("/dev/hugepages");
        let path = dir.join(format!("vhost-guard-test-{}", std::process::id()));
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) => {
                // scripts/setup.sh mounts it; without it there is nothing to test here.
                eprintln!("skipped: no hugetlbfs at {}: {e}", dir.display());
                return;
            }
        };
        let _ = std::fs::remove_file(&path);
        let fd: OwnedFd = file.into();
        let huge = 2 << 20;
        // SAFETY: ftruncate on our own file.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), huge as libc::off_t) } != 0 {
            eprintln!("skipped: hugetlbfs file: {}", io::Error::last_os_error());
            return;
        }
        let mem = match GuestMemory::from_regions(&[region(huge)], vec![fd.try_clone().unwrap()]) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("skipped: no free huge page: {e}");
                return;
            }
        };
        let gpa = region(huge).guest_phys_addr + 0x1000;
        let mut h = 0;
        if crate::memory::write_guest(&mem, &mut h, gpa, b"x").is_none() {
            panic!("in bounds");
        }
        // A write that got its huge page (not a fault for want of one) has reached the file.
        if mem.faulted() {
            eprintln!("skipped: no free huge page to back the file");
            return;
        }
        truncate(&fd, 0);
        assert_eq!(touch(&mem, gpa + 0x10_0000), vec![0u8; 16]);
        assert!(mem.faulted());
        assert!(mem.take_fault());
        drop(mem);
        drop(fd);
    }

    /// Set in the environment of the child that must die.
    const CHILD: &str = "VHOST_GUARD_TEST_CHILD";

    /// A SIGBUS outside guest memory is still fatal once the handler is installed: a child
    /// process maps a guest region (installing the handler), then touches a truncated file
    /// that is not guest memory, and must die of SIGBUS.
    #[test]
    fn a_sigbus_elsewhere_still_kills_the_process() {
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "guard::tests::sigbus_outside_guest_memory_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        // SAFETY: only async-signal-safe setrlimit between fork and exec: no core file.
        unsafe {
            cmd.pre_exec(|| {
                let none = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &none);
                Ok(())
            });
        }
        let st = cmd.status().expect("run the child");
        assert_eq!(
            st.signal(),
            Some(libc::SIGBUS),
            "the child must die of SIGBUS, got {st:?}"
        );
    }

    #[test]
    #[ignore = "run by a_sigbus_elsewhere_still_kills_the_process in a child process"]
    fn sigbus_outside_guest_memory_child() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        let g = memfd(0x1000);
        let _mem = GuestMemory::from_regions(&[region(0x1000)], vec![g]).unwrap();
        assert!(INSTALLED.load(Ordering::Acquire));
        let other = memfd(0x1000);
        // SAFETY: a fresh mapping of our own memfd, outside the registry.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                0x1000,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                other.as_fd().as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        truncate(&other, 0);
        // SAFETY: deliberately touches a page past the end of its file: SIGBUS.
        let v = unsafe { std::ptr::read_volatile(p.cast::<u8>()) };
        // Not reached.
        std::process::exit(i32::from(v) + 100);
    }
}
