//! The 802.1Qbv gate in the running switch, on the real clock (CLOCK_TAI, the default), between
//! namespaces behind `net_af_packet` ports on one PMD core.
//!
//! h1 sends a critical UDP flow (dst port 7000, classified `--tc-rule h1:udp-dst=7000:class=1`),
//! h3 floods best-effort UDP (class 0) at h2, whose egress port carries a GCL with a 1 ms cycle
//! and `base-time 0`, so the cycle phase of an instant is `t_TAI mod 1 ms`. h2 receives on UDP
//! sockets with kernel receive timestamps (SO_TIMESTAMPNS, CLOCK_REALTIME, stamped when the veth
//! hands the frame to h2's stack, i.e. right after the switch's transmit): the phase of each
//! arrival, after converting REALTIME to TAI with the measured offset, tells when the gate let it
//! go. The switch's own counters (`ctl stats` → `gate`) are checked too.
//!
//! The machine has 2 CPUs and is shared: the PMD busy-polls CPU 1, and every thread of this test
//! is pinned to CPU 0 so it never preempts the PMD. Bounds are on fractions and on structure
//! (what a gate that does not gate could not produce), not on single timings.

mod common;

use common::tas::*;
use common::*;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CYCLE_NS: u64 = 1_000_000;
const CRIT_PORT: u16 = 7000;
const BE_PORT: u16 = 9000;
const BE_SMALL_PORT: u16 = 9001;
/// Reference flow h1 → h3 (ungated egress), sent just before each critical frame: same
/// sender, ingress port and PMD, so `critical − reference` arrival is the delay the gate adds,
/// free of the host's own scheduling noise.
const REF_PORT: u16 = 7001;
const WAIT: Duration = Duration::from_secs(15);
/// Delivery allowance after a gate event: switch hand-over → af_packet tx → veth → h2's receive
/// timestamp. Measured here (see the test output): median ~5-15 µs, p99 ~30-60 µs under the
/// flood on the shared 2-CPU machine. 150 µs keeps fractions of the window apart (a gate that
/// did not gate puts ~65 % of uniform arrivals outside [0, 200 + 150 µs)).
const SLACK_NS: i64 = 150_000;
/// How early (ns) an arrival may precede the window's opening: the switch reads CLOCK_TAI
/// through the TSC, calibrated once a second; offsets seen here are a few µs.
const EARLY_NS: i64 = 20_000;

const TAG: &[u8; 4] = b"TSNQ";

/// `t` (TAI ns) relative to the opening of a window at cycle offset `open` (ns): in
/// [−EARLY_NS, CYCLE − EARLY_NS).
fn since_open(t_tai: u64, open: u64) -> i64 {
    phase_since_open(t_tai, open, CYCLE_NS, EARLY_NS)
}

// ---------------------------------------------------------------------------------------------
// Frames and sockets
// ---------------------------------------------------------------------------------------------

/// An untagged Ethernet/IPv4/UDP frame of `len` bytes (without FCS) from `src` to `dst`, whose
/// payload starts with TAG, `seq` and the send time (REALTIME ns, patched in by [`stamp`]).
fn udp_frame(src: &Host, dst: &Host, dport: u16, len: usize, seq: u64) -> Vec<u8> {
    let mut head = TAG.to_vec();
    head.extend_from_slice(&seq.to_be_bytes());
    head.extend_from_slice(&0u64.to_be_bytes());
    udp_frame_to((src.mac, src.ip), (dst.mac, dst.ip), dport, len, &head)
}

/// Writes the send time into a frame built by [`udp_frame`].
fn stamp(f: &mut [u8], t: u64) {
    f[54..62].copy_from_slice(&t.to_be_bytes());
}

/// One datagram received at h2: its TAG payload fields and the kernel receive time (REALTIME).
#[derive(Clone, Copy, Debug)]
struct Rx {
    seq: u64,
    sent_ns: u64,
    rx_ns: u64,
    len: usize,
}

/// A UDP socket in `h`'s namespace with kernel receive timestamps and a large buffer.
fn ts_socket(h: &Host, port: u16) -> UdpSocket {
    let s = h.udp(port);
    let fd = s.as_raw_fd();
    let one: libc::c_int = 1;
    let buf: libc::c_int = 16 << 20;
    // SAFETY: setsockopt with int options on a valid socket.
    unsafe {
        assert_eq!(
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                &one as *const _ as *const libc::c_void,
                4
            ),
            0,
            "SO_TIMESTAMPNS: {}",
            std::io::Error::last_os_error()
        );
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &buf as *const _ as *const libc::c_void,
            4,
        );
    }
    s
}

/// Receives one datagram within `timeout` (None on timeout), with its kernel timestamp.
fn recv_ts(s: &UdpSocket, timeout: Duration) -> Option<Rx> {
    let fd = s.as_raw_fd();
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) } <= 0 {
        return None;
    }
    let mut buf = [0u8; 2048];
    let mut ctrl = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: zeroed msghdr is valid; it points at live buffers of the stated sizes.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&ctrl) as _;
    // SAFETY: as above.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 20 || buf[..4] != TAG[..] {
        return None;
    }
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
    assert!(rx_ns != 0, "no SCM_TIMESTAMPNS on a received datagram");
    Some(Rx {
        seq: u64::from_be_bytes(buf[4..12].try_into().unwrap()),
        sent_ns: u64::from_be_bytes(buf[12..20].try_into().unwrap()),
        rx_ns,
        len: n as usize + 42,
    })
}

/// A thread (pinned to CPU 0) collecting everything `s` receives until `stop`, then a last
/// 300 ms of stragglers.
fn collector(s: UdpSocket, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Rx>> {
    std::thread::spawn(move || {
        pin_cpu0();
        let mut got = Vec::new();
        let mut quiet_since: Option<Instant> = None;
        loop {
            match recv_ts(&s, Duration::from_millis(50)) {
                Some(r) => {
                    got.push(r);
                    quiet_since = None;
                }
                None if stop.load(Ordering::Relaxed) => {
                    let q = *quiet_since.get_or_insert_with(Instant::now);
                    if q.elapsed() > Duration::from_millis(300) {
                        break;
                    }
                }
                None => {}
            }
        }
        got
    })
}

/// The UDP flows a test receives: every socket opened before anything is sent (so no frame is
/// missed), the paths marked for it proven end to end from h1, then one collector per socket.
struct Receivers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<Rx>>>,
}

impl Receivers {
    /// `flows`: (receiving host, UDP port, whether to prove the path first).
    fn start(lab: &Lab, tx1: &RawSocket, flows: &[(&str, u16, bool)]) -> Receivers {
        let socks: Vec<UdpSocket> = flows
            .iter()
            .map(|&(host, port, _)| ts_socket(lab.host(host), port))
            .collect();
        for (&(host, port, prove), s) in flows.iter().zip(&socks) {
            if prove {
                prove_path(lab, tx1, host, s, port);
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let threads = socks
            .into_iter()
            .map(|s| collector(s, stop.clone()))
            .collect();
        Receivers { stop, threads }
    }

    /// Stops the collectors: what each flow received, in the order of `flows`.
    fn finish<const N: usize>(self) -> [Vec<Rx>; N] {
        self.stop.store(true, Ordering::Relaxed);
        let got: Vec<Vec<Rx>> = self
            .threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        got.try_into().expect("one result per flow")
    }
}

// ---------------------------------------------------------------------------------------------
// Switch set-up and stats
// ---------------------------------------------------------------------------------------------

/// Writes the GCL and starts the switch: h1, h2 (gated, `h2_opts`), h3; one PMD core; UDP 7000
/// from h1 → class 1. Then makes the FDB learn all three hosts.
fn start(lab: &mut Lab, gcl: &str, h2_opts: &str) {
    lab.add_host("h1", 1);
    lab.add_host("h2", 2);
    lab.add_host("h3", 3);
    let file = lab.dir.join("h2.gcl");
    std::fs::write(&file, gcl).unwrap();
    let gcl_arg = format!("h2={}", file.display());
    let rule = format!("h1:udp-dst={CRIT_PORT}:class=1");
    lab.start_switch(
        &[("h1", ""), ("h2", h2_opts), ("h3", "")],
        &[
            "--main-core",
            "0",
            "--pmd-cores",
            "1",
            "--gcl",
            &gcl_arg,
            "--tc-rule",
            &rule,
            "--log-level",
            "info",
        ],
    );
    // Learning: broadcasts from each host until another sees one and the FDB shows it.
    let socks: Vec<RawSocket> = ["h1", "h2", "h3"]
        .iter()
        .map(|n| lab.host(n).raw())
        .collect();
    for (i, name) in ["h1", "h2", "h3"].iter().enumerate() {
        let h = lab.host(name);
        let m = marker(&format!("learn-{name}"));
        let f = frame(BROADCAST, h.mac, None, ETH_TEST, &m);
        let witness = &socks[(i + 1) % 3];
        assert!(
            send_until_received(&socks[i], &f, witness, &m, WAIT).is_some(),
            "learning broadcast from {name} never crossed the switch"
        );
        if let Err(fdb) = lab.switch().wait_fdb(h.mac, 0, name, WAIT) {
            panic!("fdb never learned {name}: {fdb:?}");
        }
    }
}

/// Sends a frame carrying `seq` on UDP `port` from h1 until h2's socket `rx` gets it: the path
/// works end to end (first frames may meet an FDB or gate warming up).
fn prove_path(lab: &Lab, tx: &RawSocket, to: &str, rx: &UdpSocket, port: u16) {
    let (h1, dst) = (lab.host("h1"), lab.host(to));
    let deadline = Instant::now() + WAIT;
    let mut f = udp_frame(h1, dst, port, 100, u64::MAX);
    while Instant::now() < deadline {
        stamp(&mut f, realtime_ns());
        tx.send(&f);
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            if let Some(r) = recv_ts(rx, Duration::from_millis(50)) {
                if r.seq == u64::MAX {
                    // Drain duplicates of the probe.
                    while recv_ts(rx, Duration::from_millis(100)).is_some() {}
                    return;
                }
            }
        }
    }
    panic!("no UDP/{port} frame from h1 reached {to} within {WAIT:?}");
}

/// Sends `n` critical frames from h1 (one every `period_ns`, a period slightly off the cycle so
/// the send phase sweeps the whole cycle), each just after a reference frame to h3.
fn send_critical(lab: &Lab, tx: &RawSocket, n: u64, period_ns: u64) {
    let (h1, h2, h3) = (lab.host("h1"), lab.host("h2"), lab.host("h3"));
    let mut f = udp_frame(h1, h2, CRIT_PORT, 64, 0);
    let mut r = udp_frame(h1, h3, REF_PORT, 64, 0);
    let t0 = clock_ns(libc::CLOCK_MONOTONIC) + 1_000_000;
    for seq in 0..n {
        sleep_until_mono(t0 + seq * period_ns);
        send_pair(tx, &mut r, &mut f, seq);
    }
}

/// Sends the reference frame, then the critical one, both carrying `seq`.
fn send_pair(tx: &RawSocket, reference: &mut [u8], critical: &mut [u8], seq: u64) {
    for f in [reference, critical] {
        f[46..54].copy_from_slice(&seq.to_be_bytes());
        stamp(f, realtime_ns());
        tx.send(f);
    }
}

/// Per sequence number present in both: critical arrival − reference arrival (ns), sorted.
fn gate_delays(crit: &[Rx], refs: &[Rx], n: u64) -> Vec<i64> {
    let r: std::collections::HashMap<u64, u64> = refs
        .iter()
        .filter(|x| x.seq < n)
        .map(|x| (x.seq, x.rx_ns))
        .collect();
    let mut d: Vec<i64> = crit
        .iter()
        .filter_map(|c| Some(c.rx_ns as i64 - *r.get(&c.seq)? as i64))
        .collect();
    d.sort_unstable();
    d
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// Class 1 (critical) open [0, 200 µs), class 0 (best effort) open [200 µs, 1 ms).
const GCL_CRITICAL_FIRST: &str = "\
num_tc 2
map 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
base-time 0
cycle-time 1000000
sched-entry S 02 200000
sched-entry S 01 800000
";
const CRIT_WINDOW_NS: i64 = 200_000;

/// Critical frames cross a saturated best-effort class inside their window, without loss.
///
/// h2's port is modelled at 100 Mb/s (`speed=100`): a 1400-byte best-effort frame takes
/// 113.92 µs on the wire, so at most 7 fit the 800 µs best-effort window (8 would if the
/// gate let them into the critical window). h3 floods 1400-byte frames at ~3× that rate, so
/// class 0 never runs dry (its queue overflows: `dropped_full` > 0).
#[test]
fn critical_window_holds_under_best_effort_flood() {
    let mut lab = Lab::new("tas_flood");
    start(&mut lab, GCL_CRITICAL_FIRST, "speed=100");
    pin_cpu0();
    let (h1, h2, h3) = (lab.host("h1"), lab.host("h2"), lab.host("h3"));
    let tx1 = h1.raw();
    let tx3 = h3.raw();
    let flows = [
        ("h2", CRIT_PORT, true),
        ("h3", REF_PORT, true),
        ("h2", BE_PORT, true),
    ];
    let rx = Receivers::start(&lab, &tx1, &flows);
    let tai_off = tai_offset_ns();

    // Flood: 1400-byte frames at ~20 kpps (bursts of 4 every 200 µs), until told to stop.
    let flood_stop = Arc::new(AtomicBool::new(false));
    let flood_sent = Arc::new(AtomicU64::new(0));
    let mut be = udp_frame(h3, h2, BE_PORT, 1400, 0);
    let flood = {
        let (stop, sent) = (flood_stop.clone(), flood_sent.clone());
        std::thread::spawn(move || {
            pin_cpu0();
            let t0 = clock_ns(libc::CLOCK_MONOTONIC);
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..4 {
                    be[46..54].copy_from_slice(&seq.to_be_bytes());
                    stamp(&mut be, realtime_ns());
                    tx3.send(&be);
                    seq += 1;
                }
                sleep_until_mono(t0 + seq / 4 * 200_000);
            }
            sent.store(seq, Ordering::Relaxed);
        })
    };
    // Let the flood fill class 0, then measure.
    std::thread::sleep(Duration::from_millis(300));
    let t_a = Instant::now();
    let (g0, clock0) = gate(lab.switch(), "h2");
    let loss0 = PmdLoss::now(lab.switch());
    let n_crit = 5000;
    send_critical(&lab, &tx1, n_crit, 1_013_000);
    std::thread::sleep(Duration::from_millis(20));
    let (g1, clock1) = gate(lab.switch(), "h2");
    let elapsed = t_a.elapsed();
    let loss = PmdLoss::now(lab.switch()).since(loss0);
    let quiet = loss.quiet(elapsed);
    flood_stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    let [crit, refs, be_all] = rx.finish();
    let (gend, _) = gate(lab.switch(), "h2");

    // --- (a) no critical frame lost ---
    let mut seen = vec![0u32; n_crit as usize];
    for r in crit.iter().filter(|r| r.seq < n_crit) {
        seen[r.seq as usize] += 1;
    }
    let missing: Vec<usize> = (0..seen.len()).filter(|&i| seen[i] == 0).collect();
    let dup = seen.iter().filter(|&&c| c > 1).count();

    // --- (b) arrival phases ---
    let to_tai = |rt: u64| (rt as i64 + tai_off) as u64;
    let mut crit_open: Vec<i64> = crit
        .iter()
        .filter(|r| r.seq < n_crit)
        .map(|r| since_open(to_tai(r.rx_ns), 0))
        .collect();
    crit_open.sort_unstable();
    let in_window = crit_open
        .iter()
        .filter(|&&x| x < CRIT_WINDOW_NS + SLACK_NS)
        .count();
    // Best effort: only frames sent during the measurement; their time since the BE window
    // opened (200 µs). Inside the critical window means ≥ 800 µs after the BE window opened.
    let be: Vec<&Rx> = be_all.iter().filter(|r| r.len >= 1400).collect();
    let mut be_open: Vec<i64> = be
        .iter()
        .map(|r| since_open(to_tai(r.rx_ns), CRIT_WINDOW_NS as u64))
        .collect();
    be_open.sort_unstable();
    // [860 µs, 980 µs) after the BE window opened = [60 µs, 180 µs) of the cycle: deep inside
    // the critical window, beyond any delivery delay of a frame handed over before 1 ms.
    let be_in_crit = be_open
        .iter()
        .filter(|&&x| (860_000..980_000).contains(&x))
        .count();

    // --- (d) latency ---
    let mut lat: Vec<i64> = crit
        .iter()
        .filter(|r| r.seq < n_crit)
        .map(|r| r.rx_ns as i64 - r.sent_ns as i64)
        .collect();
    lat.sort_unstable();
    let added = gate_delays(&crit, &refs, n_crit);

    // --- (c) stats ---
    let sent1 = delta(&g0, &g1, 1, "sent");
    let sent0 = delta(&g0, &g1, 0, "sent");
    let held1 = delta(&g0, &g1, 1, "held");
    let held0 = delta(&g0, &g1, 0, "held");
    let full0 = delta(&g0, &g1, 0, "dropped_full");
    let guard0 = delta(&g0, &g1, 0, "guard_deferrals");
    let cycles = elapsed.as_nanos() as u64 / CYCLE_NS + 2;
    let be_wire_ns = (1400 + 24) * 80; // ns at 100 Mb/s
    let be_per_cycle = (CYCLE_NS - CRIT_WINDOW_NS as u64) / be_wire_ns;

    let report = format!(
        "critical: sent {n_crit}, received {} (missing {}, first {:?}, duplicates {dup})\n\
         critical arrival − window open: min {:.1} p50 {:.1} p95 {:.1} p99 {:.1} max {:.1} µs; \
         in [0, {} µs): {in_window} ({:.2} %)\n\
         critical latency rx − send: min {:.1} p50 {:.1} p99 {:.1} max {:.1} µs\n\
         delay the gate adds (critical − reference arrival, {} pairs): p1 {:.1} p50 {:.1} p99 {:.1} max {:.1} µs\n\
         best effort: flood sent {}, received {} (1400 B); arrival − BE window open: p1 {:.1} p50 {:.1} \
         p99 {:.1} µs; inside [60, 180) µs of the cycle: {be_in_crit} ({:.2} %)\n\
         gate over {elapsed:?} (≤ {cycles} cycles): class 1 sent {sent1} held {held1}; class 0 sent {sent0} \
         (limit {be_per_cycle}/cycle = {}) held {held0} dropped_full {full0} guard_deferrals {guard0}\n\
         class 1 release error: {}\nclass 0 release error: {}\nclock before {clock0}\nclock after {clock1}\n\
         tai offset {tai_off} ns; {} ({})",
        crit.len(),
        missing.len(),
        missing.iter().take(10).collect::<Vec<_>>(),
        us(percentile(&crit_open, 0.0)),
        us(percentile(&crit_open, 0.5)),
        us(percentile(&crit_open, 0.95)),
        us(percentile(&crit_open, 0.99)),
        us(percentile(&crit_open, 1.0)),
        us(CRIT_WINDOW_NS + SLACK_NS),
        100.0 * in_window as f64 / crit_open.len().max(1) as f64,
        us(percentile(&lat, 0.0)),
        us(percentile(&lat, 0.5)),
        us(percentile(&lat, 0.99)),
        us(percentile(&lat, 1.0)),
        added.len(),
        us(percentile(&added, 0.01)),
        us(percentile(&added, 0.5)),
        us(percentile(&added, 0.99)),
        us(percentile(&added, 1.0)),
        flood_sent.load(Ordering::Relaxed),
        be.len(),
        us(percentile(&be_open, 0.01)),
        us(percentile(&be_open, 0.5)),
        us(percentile(&be_open, 0.99)),
        100.0 * be_in_crit as f64 / be_open.len().max(1) as f64,
        cycles * be_per_cycle,
        g1["classes"][1]["release_error"],
        g1["classes"][0]["release_error"],
        loss.describe(),
        if quiet { "quiet: strict latency bounds" } else { "loaded: loose latency bounds" },
    );
    eprintln!("{report}");

    // (a) Every critical frame arrived, once.
    assert!(
        missing.is_empty() && dup == 0,
        "critical frames lost or duplicated under the flood\n{report}"
    );
    // (b) ≥ 95 % of critical arrivals within the window + delivery slack (uniform: 35 %).
    assert!(
        in_window * 100 >= crit_open.len() * 95,
        "critical arrivals outside their window\n{report}"
    );
    // Best effort concentrates outside the critical window: a uniform spread would put 12 %
    // into [60, 180) µs of the cycle; allow 1 %.
    assert!(
        be.len() >= 1000,
        "too few best-effort frames reached h2 to judge their phases\n{report}"
    );
    assert!(
        be_in_crit * 100 <= be.len(),
        "best-effort frames arrived inside the critical window\n{report}"
    );
    // (c) The gate's own account: every critical frame sent by class 1, with a release-error
    // histogram; most were held (sent while the gate was closed: the send phase sweeps the
    // cycle, 80 % of it closed for class 1); class 0 saturated (its queue overflowed, frames
    // held over the critical window, guard band hit at the end of its window) and yet never
    // more than the 7 frames per cycle its window fits: an 8th per cycle would have had to
    // go out in the critical window.
    assert!(
        sent1 >= n_crit,
        "gate class 1 sent {sent1} < {n_crit}\n{report}"
    );
    let re1 = &g1["classes"][1]["release_error"];
    assert!(
        re1["p99_ns"].as_u64().is_some() && re1["count"].as_u64() >= Some(n_crit),
        "class 1 release error not reported\n{report}"
    );
    assert!(
        held1 * 2 >= n_crit,
        "class 1 held {held1} frames: expected most of {n_crit}\n{report}"
    );
    assert!(
        full0 > 0 && held0 > 0,
        "class 0 not saturated (the flood should overflow its queue)\n{report}"
    );
    assert!(
        sent0 <= cycles * be_per_cycle,
        "class 0 sent more than its window can fit: gating or guard band broken\n{report}"
    );
    assert!(
        sent0 * 10 >= cycles * be_per_cycle,
        "class 0 sent {sent0}, far below its window's capacity {}: the gate starves it\n{report}",
        cycles * be_per_cycle
    );
    assert!(
        guard0 <= sent0 && class_counter(&gend, 0, "dropped_oversize") == 0,
        "implausible guard-band counters\n{report}"
    );
    // (d) Latency the gate adds to a critical frame (its arrival minus that of the reference
    // frame sent just before it through the same ingress and PMD to an ungated port): at most
    // the wait for the next window, 800 µs, plus the release delay. Raw rx − send latency is
    // reported, not asserted: on this shared 2-CPU machine the host's own path (softirq on a
    // busy CPU 0) adds milliseconds under load, with or without a gate.
    assert!(
        added.len() as u64 * 10 >= n_crit * 9,
        "too few reference/critical pairs arrived\n{report}"
    );
    // Always: the median added delay stays under a cycle (expected ~ 0.8 × 400 µs). When the
    // PMD had its CPU (quiet), also the p95 and the raw latency stay under a cycle + slack; when
    // the machine takes CPU 1 from the PMD for milliseconds, frames wait for it, not the gate.
    // "Quiet" counts the hypervisor's steal of CPU 1 too (1-2 % under load here, invisible to
    // the guest's scheduler). (p95, not p99: a busy CPU 0 delays the kernel's delivery of ~1 %
    // by a millisecond or more even when the PMD waited for nothing, with the pre-2026-12
    // switch too.)
    assert!(
        percentile(&added, 0.5) < CYCLE_NS as i64,
        "the gate delays critical frames beyond a cycle\n{report}"
    );
    if quiet {
        assert!(
            percentile(&added, 0.95) < CYCLE_NS as i64 + SLACK_NS
                && percentile(&lat, 0.95) < CYCLE_NS as i64 + SLACK_NS,
            "the gate delays critical frames beyond a cycle + slack on a quiet CPU\n{report}"
        );
    }
}

/// Class 1 open [0, 980 µs), class 0 open [980 µs, 1 ms): a 20 µs best-effort window.
const GCL_SHORT_BE: &str = "\
num_tc 2
map 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
base-time 0
cycle-time 1000000
sched-entry S 02 980000
sched-entry S 01 20000
";

/// The guard band: at 100 Mb/s a 1400-byte frame (113.9 µs) can never fit the 20 µs
/// best-effort window, so it is refused at enqueue (`dropped_oversize`) and never sent; a
/// 142-byte frame (13.3 µs) fits, but only one per window: the second of a back-to-back pair is
/// deferred (guard band) to the next cycle. The critical class still passes untouched.
#[test]
fn guard_band_keeps_frames_that_cannot_fit() {
    let mut lab = Lab::new("tas_guard");
    start(&mut lab, GCL_SHORT_BE, "speed=100");
    pin_cpu0();
    let (h1, h2, h3) = (lab.host("h1"), lab.host("h2"), lab.host("h3"));
    let tx1 = h1.raw();
    let tx3 = h3.raw();
    let flows = [
        ("h2", CRIT_PORT, true),
        ("h3", REF_PORT, true),
        ("h2", BE_PORT, false),
        ("h2", BE_SMALL_PORT, true),
    ];
    let rx = Receivers::start(&lab, &tx1, &flows);
    let tai_off = tai_offset_ns();
    let (g0, _) = gate(lab.switch(), "h2");
    let loss0 = PmdLoss::now(lab.switch());
    let t_a = Instant::now();

    // 1500 ms: a critical frame every 1.013 ms; a 1400-byte frame every 5th; a pair of
    // 142-byte frames every 5th (offset), back to back.
    let n = 1500u64;
    let (mut big_sent, mut pairs) = (0u64, 0u64);
    let mut crit = udp_frame(h1, h2, CRIT_PORT, 64, 0);
    let mut reference = udp_frame(h1, h3, REF_PORT, 64, 0);
    let mut big = udp_frame(h3, h2, BE_PORT, 1400, 0);
    let mut small = udp_frame(h3, h2, BE_SMALL_PORT, 142, 0);
    let t0 = clock_ns(libc::CLOCK_MONOTONIC) + 1_000_000;
    for seq in 0..n {
        sleep_until_mono(t0 + seq * 1_013_000);
        send_pair(&tx1, &mut reference, &mut crit, seq);
        if seq % 5 == 0 {
            big[46..54].copy_from_slice(&seq.to_be_bytes());
            stamp(&mut big, realtime_ns());
            tx3.send(&big);
            big_sent += 1;
        }
        if seq % 5 == 2 {
            for k in 0..2 {
                small[46..54].copy_from_slice(&(pairs * 2 + k).to_be_bytes());
                stamp(&mut small, realtime_ns());
                tx3.send(&small);
            }
            pairs += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(50));
    let [crit_got, refs, big_got, small_got] = rx.finish();
    let (g1, _) = gate(lab.switch(), "h2");
    let loss = PmdLoss::now(lab.switch()).since(loss0);
    let quiet = loss.quiet(t_a.elapsed());

    let to_tai = |rt: u64| (rt as i64 + tai_off) as u64;
    let crit_seqs: std::collections::BTreeSet<u64> = crit_got
        .iter()
        .filter(|r| r.seq < n)
        .map(|r| r.seq)
        .collect();
    let mut lat: Vec<i64> = crit_got
        .iter()
        .map(|r| r.rx_ns as i64 - r.sent_ns as i64)
        .collect();
    lat.sort_unstable();
    let added = gate_delays(&crit_got, &refs, n);
    // Small frames: time since the BE window (980 µs) opened, and the gap within each pair.
    let mut small_open: Vec<i64> = small_got
        .iter()
        .map(|r| since_open(to_tai(r.rx_ns), 980_000))
        .collect();
    small_open.sort_unstable();
    let small_in_window = small_open
        .iter()
        .filter(|&&x| x < 20_000 + SLACK_NS)
        .count();
    let mut by_seq = std::collections::BTreeMap::new();
    for r in &small_got {
        by_seq.insert(r.seq, r.rx_ns);
    }
    let gaps: Vec<i64> = (0..pairs)
        .filter_map(|p| {
            let a = by_seq.get(&(2 * p))?;
            let b = by_seq.get(&(2 * p + 1))?;
            Some(*b as i64 - *a as i64)
        })
        .collect();
    let split_pairs = gaps.iter().filter(|&&g| g >= 500_000).count();

    let oversize0 = delta(&g0, &g1, 0, "dropped_oversize");
    let sent0 = delta(&g0, &g1, 0, "sent");
    let guard0 = delta(&g0, &g1, 0, "guard_deferrals");
    let held0 = delta(&g0, &g1, 0, "held");
    let sent1 = delta(&g0, &g1, 1, "sent");
    let report = format!(
        "critical: sent {n}, received {}; latency p50 {:.1} p99 {:.1} max {:.1} µs; \
         gate-added (critical − reference, {} pairs) p50 {:.1} p99 {:.1} max {:.1} µs\n\
         1400-byte best effort: sent {big_sent}, received {}; class 0 dropped_oversize {oversize0}\n\
         142-byte best effort: {pairs} pairs sent, {} frames received; arrival − BE window open \
         p50 {:.1} p99 {:.1} max {:.1} µs, {small_in_window} within 20 µs + slack; pairs split \
         over cycles (gap ≥ 500 µs): {split_pairs} of {} (gaps p50 {:.1} µs)\n\
         gate: class 0 sent {sent0} held {held0} guard_deferrals {guard0}; class 1 sent {sent1}\n\
         class 0 release error: {}\nclass 1 release error: {}\n{} ({})",
        crit_seqs.len(),
        us(percentile(&lat, 0.5)),
        us(percentile(&lat, 0.99)),
        us(percentile(&lat, 1.0)),
        added.len(),
        us(percentile(&added, 0.5)),
        us(percentile(&added, 0.99)),
        us(percentile(&added, 1.0)),
        big_got.len(),
        small_got.len(),
        us(percentile(&small_open, 0.5)),
        us(percentile(&small_open, 0.99)),
        us(percentile(&small_open, 1.0)),
        gaps.len(),
        {
            let mut g = gaps.clone();
            g.sort_unstable();
            us(percentile(&g, 0.5))
        },
        g1["classes"][0]["release_error"],
        g1["classes"][1]["release_error"],
        loss.describe(),
        if quiet { "quiet" } else { "loaded" },
    );
    eprintln!("{report}");

    // The critical class passes untouched: every frame, within a cycle.
    assert_eq!(crit_seqs.len() as u64, n, "critical frames lost\n{report}");
    assert!(
        sent1 >= n
            && added.len() as u64 * 10 >= n * 9
            && percentile(&added, 0.5) < CYCLE_NS as i64
            // p95 on a quiet PMD: see critical_window_holds_under_best_effort_flood.
            && (!quiet || percentile(&added, 0.95) < CYCLE_NS as i64),
        "critical class held back\n{report}"
    );
    // Frames that can never fit: never sent, each counted once as oversize.
    assert!(
        big_got.is_empty(),
        "a 1400-byte frame left through a 20 µs window at 100 Mb/s\n{report}"
    );
    // (≥ 98 %: a loaded CPU 0 may drop a frame before it reaches the switch.)
    assert!(
        oversize0 <= big_sent && oversize0 * 100 >= big_sent * 98,
        "every 1400-byte frame must be refused as oversize\n{report}"
    );
    // Frames that fit: all sent, inside their window, one per window (guard band).
    assert!(
        small_got.len() as u64 * 100 >= 2 * pairs * 98 && sent0 >= small_got.len() as u64,
        "142-byte frames lost\n{report}"
    );
    // At the receiver's kernel: on a PMD that waited for its CPU (loaded), delivery after the
    // hand-over moves some arrivals out of the window that the stage released inside it.
    let in_window_pct = if quiet { 95 } else { 85 };
    assert!(
        small_in_window * 100 >= small_open.len() * in_window_pct,
        "142-byte frames outside their 20 µs window\n{report}"
    );
    assert!(
        split_pairs * 10 >= gaps.len() * 9 && guard0 * 2 >= pairs,
        "back-to-back pairs were not split over cycles by the guard band\n{report}"
    );
    assert!(
        held0 * 2 >= 2 * pairs,
        "class 0 frames should mostly wait for their window\n{report}"
    );
}

/// Class 1 (critical) open [500 µs, 700 µs) of each 1 ms cycle: GCL_CRITICAL_FIRST's window
/// moved by half a cycle.
const GCL_CRITICAL_LATE: &str = "\
num_tc 2
map 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
base-time 0
cycle-time 1000000
sched-entry S 01 500000
sched-entry S 02 200000
sched-entry S 01 300000
";

/// `tsn-vswitch ctl --ctl SOCK ARGS...`: (success, stdout, stderr).
fn ctl_cmd(sw: &Switch, args: &[&str]) -> (bool, String, String) {
    let out = run_with_timeout(
        std::process::Command::new(env!("CARGO_BIN_EXE_tsn-vswitch"))
            .arg("ctl")
            .arg("--ctl")
            .arg(&sw.ctl)
            .args(args),
        Duration::from_secs(15),
    )
    .unwrap_or_else(|e| panic!("ctl {args:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends `n` critical frames h1 → h2 and returns each one's arrival relative to the opening of
/// the window at cycle offset `open`.
fn critical_phases(lab: &Lab, tx: &RawSocket, n: u64, open: u64) -> Vec<i64> {
    let rx = ts_socket(lab.host("h2"), CRIT_PORT);
    prove_path(lab, tx, "h2", &rx, CRIT_PORT);
    let stop = Arc::new(AtomicBool::new(false));
    let t = collector(rx, stop.clone());
    send_critical(lab, tx, n, 1_013_000);
    std::thread::sleep(Duration::from_millis(20));
    stop.store(true, Ordering::Relaxed);
    let tai_off = tai_offset_ns();
    let mut ph: Vec<i64> = t
        .join()
        .unwrap()
        .iter()
        .filter(|r| r.seq < n)
        .map(|r| since_open((r.rx_ns as i64 + tai_off) as u64, open))
        .collect();
    ph.sort_unstable();
    ph
}

/// `ctl gcl PORT FILE` replaces a running list as `tc qdisc replace ... taprio` does: bad
/// requests change nothing; a good one takes effect at its ConfigChangeTime, after which the
/// critical frames arrive in the new window, not the old one.
#[test]
fn a_list_replaced_at_runtime_moves_the_critical_window() {
    let mut lab = Lab::new("tas_replace");
    start(&mut lab, GCL_CRITICAL_FIRST, "speed=100");
    pin_cpu0();
    let tx1 = lab.host("h1").raw();
    let n = 400;
    let inside = |ph: &[i64]| {
        ph.iter()
            .filter(|&&x| x < CRIT_WINDOW_NS + SLACK_NS)
            .count()
    };

    let before = critical_phases(&lab, &tx1, n, 0);
    assert!(
        before.len() as u64 >= n * 9 / 10 && inside(&before) * 10 >= before.len() * 8,
        "before the change, critical frames arrive in [0, 200 µs): {} of {} inside; phases \
         (µs) p50 {:.1} p99 {:.1}",
        inside(&before),
        before.len(),
        us(percentile(&before, 0.5)),
        us(percentile(&before, 0.99))
    );

    // Bad requests: a clear error each, and the running list stays.
    let dir = lab.dir.clone();
    let bad = dir.join("bad.gcl");
    std::fs::write(&bad, "num_tc 9\n").unwrap();
    let late = dir.join("late.gcl");
    std::fs::write(&late, GCL_CRITICAL_LATE).unwrap();
    // At h2's 100 Mb/s a minimum frame takes 4800 ns: a 1000 ns entry is refused.
    let short = dir.join("short.gcl");
    std::fs::write(
        &short,
        "num_tc 2\nmap 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\nbase-time 0\n\
         sched-entry S 01 100000\nsched-entry S 02 1000\n",
    )
    .unwrap();
    let short_s = short.to_string_lossy();
    let fifo = dir.join("fifo.gcl");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let (bad_s, late_s) = (bad.to_string_lossy(), late.to_string_lossy());
    let fifo_s = fifo.to_string_lossy();
    let sw = lab.switch();
    for (args, needle) in [
        (vec!["gcl", "nosuch", &*late_s], "no port named 'nosuch'"),
        (vec!["gcl", "h1", &*late_s], "port 'h1' has no gate stage"),
        (vec!["gcl", "h2", &*bad_s], "bad.gcl:1:"),
        (
            vec!["gcl", "h2", "/nonexistent/x.gcl"],
            "cannot read /nonexistent/x.gcl",
        ),
        // Read on the control thread: an endless device or a FIFO must not stall it.
        (
            vec!["gcl", "h2", "/dev/zero"],
            "cannot read /dev/zero: not a regular file",
        ),
        (vec!["gcl", "h2", &*fifo_s], "fifo.gcl: not a regular file"),
        (
            vec!["gcl", "h2", &*short_s],
            "short.gcl: line 5: sched-entry interval 1000 ns is shorter",
        ),
    ] {
        let (ok, _, err) = ctl_cmd(sw, &args);
        assert!(
            !ok && err.contains(needle),
            "ctl {args:?}: want an error with {needle:?}, got {err}"
        );
    }

    let (ok, out, err) = ctl_cmd(sw, &["gcl", "h2", &late_s]);
    assert!(ok, "ctl gcl h2 late.gcl failed: {err}");
    let reply: serde_json::Value = serde_json::from_str(&out).expect("JSON reply");
    let cct = reply["config_change_time"]
        .as_u64()
        .unwrap_or_else(|| panic!("no config_change_time in {reply}"));
    // The new list starts at a cycle boundary after now; wait past it (TAI, as --clock tai).
    let deadline = Instant::now() + WAIT;
    while clock_ns(libc::CLOCK_TAI) < cct + 2 * CYCLE_NS {
        assert!(
            Instant::now() < deadline,
            "ConfigChangeTime {cct} never came"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let after = critical_phases(&lab, &tx1, n, 500_000);
    assert!(
        after.len() as u64 >= n * 9 / 10 && inside(&after) * 10 >= after.len() * 8,
        "after the change, critical frames arrive in [500 µs, 700 µs): {} of {} inside; \
         phases (µs) p50 {:.1} p99 {:.1}\n--- switch ---\n{}",
        inside(&after),
        after.len(),
        us(percentile(&after, 0.5)),
        us(percentile(&after, 0.99)),
        lab.switch().log_text()
    );
    assert!(
        lab.switch()
            .log_text()
            .contains("gate control list replaced"),
        "the switch logs the replacement"
    );
}

/// Every gate always open, but best effort (class 0) limited to a 500-byte SDU (taprio's
/// `max-sdu`); the critical class has no limit.
const GCL_MAX_SDU: &str = "\
num_tc 2
map 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
base-time 0
max-sdu 500 0
sched-entry S 03 1000000
";

/// queueMaxSDU (802.1Q-2018 §8.6.8.4): frames of a class whose SDU exceeds its limit are
/// dropped at the gate and counted, shorter ones of that class and long ones of an unlimited
/// class pass. The gates never close, so this also checks that a max-sdu table keeps the
/// stage from being bypassed.
#[test]
fn queue_max_sdu_drops_longer_frames_of_its_class_only() {
    let mut lab = Lab::new("tas_sdu");
    start(&mut lab, GCL_MAX_SDU, "speed=1000");
    pin_cpu0();
    let (h1, h2, h3) = (lab.host("h1"), lab.host("h2"), lab.host("h3"));
    let tx1 = h1.raw();
    let tx3 = h3.raw();
    let flows = [
        ("h2", CRIT_PORT, true),
        ("h2", BE_PORT, false),
        ("h2", BE_SMALL_PORT, true),
    ];
    let rx = Receivers::start(&lab, &tx1, &flows);
    let (g0, _) = gate(lab.switch(), "h2");
    // SDU = frame − 14-byte header: 1400 → 1386 (over 500), 514 → 500 (the limit), 142 → 128.
    let n = 300u64;
    let mut crit = udp_frame(h1, h2, CRIT_PORT, 1400, 0);
    let mut big = udp_frame(h3, h2, BE_PORT, 1400, 0);
    let mut edge = udp_frame(h3, h2, BE_SMALL_PORT, 514, 0);
    let t0 = clock_ns(libc::CLOCK_MONOTONIC) + 1_000_000;
    for seq in 0..n {
        sleep_until_mono(t0 + seq * 500_000);
        for (f, tx) in [(&mut crit, &tx1), (&mut big, &tx3), (&mut edge, &tx3)] {
            f[46..54].copy_from_slice(&seq.to_be_bytes());
            stamp(f, realtime_ns());
            tx.send(f);
        }
    }
    std::thread::sleep(Duration::from_millis(50));
    let seqs = |v: &[Rx]| -> std::collections::BTreeSet<u64> {
        v.iter().filter(|r| r.seq < n).map(|r| r.seq).collect()
    };
    let [crit_got, big_got, edge_got] = rx.finish().map(|v| seqs(&v));
    let (g1, _) = gate(lab.switch(), "h2");
    let too_long = delta(&g0, &g1, 0, "dropped_max_sdu");
    let report = format!(
        "sent {n} of each; received: critical 1400 B {}, best effort 1400 B {}, best effort \
         514 B {}; class 0 dropped_max_sdu {too_long} sent {}; class 1 dropped_max_sdu {} \
         sent {}",
        crit_got.len(),
        big_got.len(),
        edge_got.len(),
        delta(&g0, &g1, 0, "sent"),
        delta(&g0, &g1, 1, "dropped_max_sdu"),
        delta(&g0, &g1, 1, "sent"),
    );
    eprintln!("{report}");
    assert!(
        big_got.is_empty(),
        "a best-effort frame over its class's max-sdu left the switch\n{report}"
    );
    // (≥ 98 %: a loaded CPU 0 may drop a frame before it reaches the switch.)
    assert!(
        too_long <= n && too_long * 100 >= n * 98,
        "every over-long best-effort frame must be counted as dropped_max_sdu\n{report}"
    );
    assert!(
        edge_got.len() as u64 * 100 >= n * 98 && crit_got.len() as u64 * 100 >= n * 98,
        "frames within the limit, or of an unlimited class, were lost\n{report}"
    );
    assert_eq!(
        delta(&g0, &g1, 1, "dropped_max_sdu"),
        0,
        "the unlimited class dropped frames as too long\n{report}"
    );
}
