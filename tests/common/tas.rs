//! Scaffolding of the 802.1Qbv gate tests: clocks, CPU pinning, what the shared machine took
//! from the PMD threads, cycle phases, percentiles, and the gate counters of `ctl stats`.
use super::{in_netns, Host, Switch};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Clocks, CPUs
// ---------------------------------------------------------------------------------------------

pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// CLOCK_TAI − CLOCK_REALTIME (ns): the kernel's TAI offset, whole seconds (0 unless set).
pub fn tai_offset_ns() -> i64 {
    let mut best = i64::MAX;
    let mut off = 0;
    for _ in 0..5 {
        let a = clock_ns(libc::CLOCK_REALTIME);
        let t = clock_ns(libc::CLOCK_TAI);
        let b = clock_ns(libc::CLOCK_REALTIME);
        let width = (b - a) as i64;
        if width < best {
            best = width;
            off = t as i64 - (a as i64 + width / 2);
        }
    }
    // The offset is an integral number of seconds: round away the read-out noise.
    (off as f64 / 1e9).round() as i64 * 1_000_000_000
}

/// Pins the calling thread to CPU 0 (the PMD core is CPU 1).
pub fn pin_cpu0() {
    // SAFETY: plain syscall on a zeroed-then-filled cpu_set_t for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

pub fn sleep_until_mono(t_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (t_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (t_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: valid timespec; absolute sleep on CLOCK_MONOTONIC (EINTR: retried by callers' loop).
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        );
    }
}

/// `t` (TAI ns) relative to the opening of a window at cycle offset `open` (ns) of a `cycle`
/// (ns): in [−early, cycle − early).
pub fn phase_since_open(t_tai: u64, open: u64, cycle: u64, early: i64) -> i64 {
    let ph = (t_tai + cycle - open % cycle) % cycle;
    let x = (ph as i64 + early).rem_euclid(cycle as i64);
    x - early
}

/// Nanoseconds the switch's PMD thread (DPDK's `rte-worker-N`) has waited on a run queue for
/// its CPU (schedstat `run_delay`): how much the shared machine took from it.
pub fn pmd_run_delay_ns(sw: &Switch) -> u64 {
    let pid = sw.pid().expect("switch running");
    let mut total = 0;
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if comm.starts_with("rte-worker") || comm.starts_with("lcore-worker") {
            let st = std::fs::read_to_string(p.join("schedstat")).unwrap_or_default();
            total += st
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// Nanoseconds the hypervisor has stolen from `cpu` (`/proc/stat` steal, in USER_HZ ticks of
/// 10 ms): time the vCPU was runnable but the host ran something else. The guest's scheduler does
/// not see it, so the PMD's run-queue wait misses it; here it is measured at 1-2 % of CPU 1 under
/// load, in slices long enough to hold a frame a whole cycle.
pub fn cpu_steal_ns(cpu: usize) -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let name = format!("cpu{cpu}");
    stat.lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .and_then(|l| l.split_whitespace().nth(8))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |ticks| ticks * 10_000_000)
}

/// What the shared machine took from the PMD core (CPU 1) over a stretch of a test: its
/// thread's run-queue wait, and the hypervisor's steal of its vCPU.
#[derive(Clone, Copy)]
pub struct PmdLoss {
    pub run_delay_ns: u64,
    pub steal_ns: u64,
}

impl PmdLoss {
    pub fn now(sw: &Switch) -> PmdLoss {
        PmdLoss {
            run_delay_ns: pmd_run_delay_ns(sw),
            steal_ns: cpu_steal_ns(1),
        }
    }

    pub fn since(self, before: PmdLoss) -> PmdLoss {
        PmdLoss {
            run_delay_ns: self.run_delay_ns.saturating_sub(before.run_delay_ns),
            steal_ns: self.steal_ns.saturating_sub(before.steal_ns),
        }
    }

    /// The PMD had its CPU to itself for all but 1 % of `elapsed`: strict bounds apply.
    pub fn quiet(self, elapsed: Duration) -> bool {
        (self.run_delay_ns + self.steal_ns) * 100 < elapsed.as_nanos() as u64
    }

    /// The hypervisor took CPU 1 away for 1 % of `elapsed` or more (unlike [`PmdLoss::quiet`],
    /// blind to the waits of PMD threads that share the CPU with each other by design).
    pub fn host_disturbed(self, elapsed: Duration) -> bool {
        self.steal_ns * 100 >= elapsed.as_nanos() as u64
    }

    /// Nanoseconds of CPU 1 that neither of `lcores` PMD threads sharing it had over `elapsed`,
    /// beyond what they take from each other (each waits while the others run: (lcores − 1) ×
    /// `elapsed` of waiting in all): what the rest of the machine took.
    pub fn taken_by_others(self, elapsed: Duration, lcores: u64) -> u64 {
        let shares = (lcores.max(1) - 1) * elapsed.as_nanos() as u64;
        (self.run_delay_ns + self.steal_ns).saturating_sub(shares)
    }

    pub fn describe(self) -> String {
        format!(
            "PMD thread waited {:.1} ms for its CPU; hypervisor stole {:.0} ms of CPU 1",
            self.run_delay_ns as f64 / 1e6,
            self.steal_ns as f64 / 1e6
        )
    }
}

pub fn percentile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn us(ns: i64) -> f64 {
    ns as f64 / 1000.0
}

/// The gate stats of port `port`, per class, from `ctl stats`.
pub fn gate(sw: &Switch, port: &str) -> (serde_json::Value, serde_json::Value) {
    let v = sw.ctl_json("stats").unwrap_or_else(|e| panic!("{e}"));
    let p = v["ports"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == port))
        .unwrap_or_else(|| panic!("no port {port} in stats: {v}"))
        .clone();
    assert!(
        p["gate"].is_object(),
        "port {port} has no gate in stats: {p}"
    );
    (p["gate"].clone(), v["clock"].clone())
}

pub fn class_counter(g: &serde_json::Value, class: usize, key: &str) -> u64 {
    g["classes"][class][key]
        .as_u64()
        .unwrap_or_else(|| panic!("gate stats: class {class} has no counter {key}: {g}"))
}

/// Counter deltas of one class between two snapshots.
pub fn delta(a: &serde_json::Value, b: &serde_json::Value, class: usize, key: &str) -> u64 {
    class_counter(b, class, key) - class_counter(a, class, key)
}

// ---------------------------------------------------------------------------------------------
// A receiver with kernel timestamps
// ---------------------------------------------------------------------------------------------

/// A packet socket in a host's namespace that receives the frames of one EtherType (after the
/// kernel took an 802.1Q tag off: bound to the inner type, it sees no other traffic, a flood of
/// another type included), each with the kernel's receive timestamp (SO_TIMESTAMPNS,
/// CLOCK_REALTIME: stamped when the veth hands the frame to the namespace's stack, i.e. right
/// after the switch's transmit).
pub struct TsPacketSocket {
    fd: OwnedFd,
}

impl TsPacketSocket {
    pub fn open(h: &Host, ethertype: u16) -> TsPacketSocket {
        let ifname = h.ifname.clone();
        in_netns(&h.ns, move || Self::open_here(&ifname, ethertype))
            .unwrap_or_else(|e| panic!("packet socket on {} in {}: {e}", h.ifname, h.ns))
    }

    fn open_here(ifname: &str, ethertype: u16) -> io::Result<TsPacketSocket> {
        let proto = ethertype.to_be();
        let c = std::ffi::CString::new(ifname).unwrap();
        // SAFETY: plain syscalls with correctly sized arguments on an fd we own.
        unsafe {
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::c_int::from(proto),
            );
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let one: libc::c_int = 1;
            let buf: libc::c_int = 16 << 20;
            for (opt, v) in [(libc::SO_TIMESTAMPNS, &one), (libc::SO_RCVBUFFORCE, &buf)] {
                if libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    v as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                ) < 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = libc::if_nametoindex(c.as_ptr()) as libc::c_int;
            if sll.sll_ifindex == 0
                || libc::bind(
                    fd.as_raw_fd(),
                    &sll as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                ) < 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(TsPacketSocket { fd })
        }
    }

    /// One frame within `timeout` (None on timeout): its bytes and its kernel receive time
    /// (CLOCK_REALTIME ns).
    pub fn recv(&self, timeout: Duration) -> Option<(Vec<u8>, u64)> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) } <= 0 {
            return None;
        }
        let mut buf = vec![0u8; 2048];
        let mut ctrl = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: a zeroed msghdr is valid; it points at live buffers of the stated sizes.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&ctrl) as _;
        // SAFETY: as above.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n <= 0 {
            return None;
        }
        buf.truncate(n as usize);
        let mut rx_ns = 0;
        // SAFETY: walking the control buffer the kernel filled, with the libc CMSG helpers.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                    rx_ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        assert!(rx_ns != 0, "no SCM_TIMESTAMPNS on a received frame");
        Some((buf, rx_ns))
    }
}

/// Waits until the gates' clock has locked onto its reference: two calibrations after its last
/// step, the last one finding it within 1 µs. Until then (the first few seconds) the TSC rate
/// comes from a short first interval and the clock may be off by up to the 20 µs step
/// threshold, slewed away over a second: a gate would open that early or late.
pub fn wait_clock_locked(sw: &Switch, timeout: Duration) -> serde_json::Value {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let v = sw.ctl_json("stats").unwrap_or_else(|e| panic!("{e}"));
        let c = v["clock"].clone();
        let n = |k: &str| {
            c[k].as_i64()
                .unwrap_or_else(|| panic!("clock stats: no {k}: {c}"))
        };
        if n("calibrations") >= n("steps") + 2 && n("offset_ns").abs() <= 1000 {
            return c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gates' clock did not lock within {timeout:?}: {c}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
