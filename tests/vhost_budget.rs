//! A guest that makes its PMD core walk descriptors forever, and a frontend that shrinks its
//! memory file under the switch (issue 10, items 2 and 3), against the running switch.
//!
//! Topology: namespace hosts h1, h2 -- af_packet ports "h1", "h2" -- [switch, one PMD core] --
//! vhost-user port "evil", served by this test with `vhost::testutil::{Frontend, MockGuest}`
//! (a QEMU-like handshake over a memfd guest; vring 0 = guest RX, vring 1 = guest TX).
//!
//! 1. `guest_rx_descriptor_attacks_cost_only_their_queue`: with MRG_RXBUF and a 32768-entry
//!    guest RX queue, (a) every head is the same 32768-long chain of zero-length buffers (before,
//!    each frame for the guest walked 32768 × 32768 descriptors, again every burst): a ring
//!    violation, the queue breaks; (b) 32768 one-byte buffers and 1500-byte frames, which need
//!    1512 of them: legal, but each burst stops at the descriptor budget and gives the frame
//!    back. Meanwhile h1 pings h2 through the same PMD core: small loss, no reply later than 1 s.
//! 2. `truncated_guest_memory_breaks_only_its_port`: the frontend truncates its memory file
//!    after SET_MEM_TABLE: the switch survives the SIGBUS, answers `ctl stats`, logs one error
//!    and counts it, drops that frontend; h1 <-> h2 keep pinging; a well-behaved frontend then
//!    works on the same port.
//!
//! 3. `testpmd_traffic_stays_within_the_budget`: a real frontend (testpmd virtio-user, mergeable
//!    buffers) at 60 and 1514 bytes in bursts of 32 both ways never meets the budget.
//!
//! Scenarios 1 and 2 end with the switch holding no more file descriptors than before them.
mod common;

use common::evil::*;
use common::*;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use vhost::protocol::{ProtocolFeatures, VirtioFeatures};
use vhost::virtqueue::{VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};

/// Guest RX queue of the attacks: the largest split queue.
const BIG_QSZ: u16 = 32768;
/// Guest RX buffers (offset into guest RAM).
const RX_BUFS: u64 = 0x20_0000;

/// 4 MiB of guest RAM (room for a 32768-entry RX ring before the TX ring); no NET_MTU.
const SETUP: Setup = Setup {
    guest_size: 4 << 20,
    tx_ring: 0x10_0000,
    tx_slots: 0x11_0000,
    tx_slot_count: 32,
    protocol: Setup::BASE.protocol.difference(ProtocolFeatures::NET_MTU),
    virtio: Setup::BASE.virtio.union(VirtioFeatures::RING_INDIRECT_DESC),
    ..Setup::BASE
};

const LOG_VIOLATION: &str = "guest violated the virtio ring protocol";
const LOG_MEMFAULT: &str = "guest memory file shrank under the switch";

// ---------------------------------------------------------------------------------------------
// The frontend
// ---------------------------------------------------------------------------------------------

impl Evil {
    /// Writes the whole guest RX descriptor table at once: descriptor `i` is `desc(i)` as
    /// (addr, len, flags, next).
    fn rx_table(&self, desc: impl Fn(u16) -> (u64, u32, u16, u16)) {
        let mut t = Vec::with_capacity(16 * usize::from(self.rx.size));
        for i in 0..self.rx.size {
            let (addr, len, flags, next) = desc(i);
            t.extend_from_slice(&addr.to_le_bytes());
            t.extend_from_slice(&len.to_le_bytes());
            t.extend_from_slice(&flags.to_le_bytes());
            t.extend_from_slice(&next.to_le_bytes());
        }
        self.g.write(self.rx.desc, &t);
    }

    /// Fills the whole guest RX avail ring with `head(slot)` and makes it all available.
    fn rx_make_all_available(&self, head: impl Fn(u16) -> u16) {
        let ring: Vec<u8> = (0..self.rx.size)
            .flat_map(|k| head(k).to_le_bytes())
            .collect();
        self.g.write(self.rx.avail + 4, &ring);
        std::sync::atomic::fence(Ordering::Release);
        self.g.write_u16(self.rx.avail + 2, self.rx.size);
    }
}

// ---------------------------------------------------------------------------------------------
// Observing the switch
// ---------------------------------------------------------------------------------------------

/// What `ping` reported: (sent, received, max RTT in ms).
fn ping_summary(out: &std::process::Output) -> (u32, u32, f64) {
    let text = String::from_utf8_lossy(&out.stdout);
    let mut sent = 0;
    let mut recv = 0;
    let mut max = 0.0;
    for l in text.lines() {
        if l.contains("packets transmitted") {
            let nums: Vec<u32> = l
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|w| w.parse().ok())
                .collect();
            sent = nums.first().copied().unwrap_or(0);
            recv = nums.get(1).copied().unwrap_or(0);
        }
        if let Some(rest) = l.split("= ").nth(1).filter(|_| l.starts_with("rtt")) {
            max = rest
                .split('/')
                .nth(2)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
        }
    }
    (sent, recv, max)
}

/// h1 pings h2 25 times, 0.2 s apart (5 s), while `during` runs in a loop until it is over;
/// asserts small loss and no reply later than 1 s (ping's own -W 1 counts those as lost).
fn pings_survive(lab: &Lab, what: &str, mut during: impl FnMut()) {
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    let done = AtomicBool::new(false);
    let out = std::thread::scope(|s| {
        let pinger = s.spawn(|| {
            let o = h1.ping(h2.ip, 25);
            done.store(true, Ordering::Release);
            o
        });
        while !done.load(Ordering::Acquire) {
            during();
            std::thread::sleep(Duration::from_millis(20));
        }
        pinger.join().expect("ping thread")
    });
    let (sent, recv, max) = ping_summary(&out);
    assert!(
        sent == 25 && recv >= 22 && max < 1000.0,
        "{what}: h1 -> h2 pings through the attacked core: {recv}/{sent} answered, max RTT \
         {max} ms\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    eprintln!("{what}: {recv}/{sent} pings answered, max RTT {max} ms");
}

fn start_lab(test: &str) -> (Lab, PathBuf) {
    let (lab, sock) = evil_lab(test);
    assert_h1_pings_h2(&lab, "before any guest");
    (lab, sock)
}

/// A broadcast from h1: flooded to h2 and into the guest's RX queue, on the PMD core that polls
/// h1.
fn flood_frame(lab: &Lab, payload_len: usize) -> Vec<u8> {
    let mut m = marker("flood");
    m.resize(payload_len, 0x5a);
    frame(BROADCAST, lab.host("h1").mac, None, ETH_TEST, &m)
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

#[test]
fn guest_rx_descriptor_attacks_cost_only_their_queue() {
    let (lab, sock) = start_lab("budget");
    let sw = lab.switch();
    let h1raw = lab.host("h1").raw();
    let tick = flood_frame(&lab, 46);
    let fds0 = fd_count(sw);

    // (a) Every head is descriptor 0, the start of one chain through all 32768 descriptors, each
    // a zero-length buffer.
    let errors0 = counter(sw, "queue_errors");
    let ev = Evil::connect(
        &sock,
        &Setup {
            rx_qsz: BIG_QSZ,
            ..SETUP
        },
    );
    wait_link(sw, true, "zero-length attack: connected");
    let buf = ev.gpa(RX_BUFS);
    ev.rx_table(|i| {
        let last = i == BIG_QSZ - 1;
        let flags = VIRTQ_DESC_F_WRITE | if last { 0 } else { VIRTQ_DESC_F_NEXT };
        (buf, 0, flags, if last { 0 } else { i + 1 })
    });
    ev.rx_make_all_available(|_| 0);
    let small = flood_frame(&lab, 100);
    pings_survive(&lab, "zero-length chains", || h1raw.send(&small));
    let errors = wait_counter(sw, "queue_errors", errors0 + 1, || h1raw.send(&small));
    assert_eq!(
        errors,
        errors0 + 1,
        "the zero-length buffer breaks the guest RX queue, counted once: {}",
        evil_port(sw)
    );
    assert_eq!(wait_log(sw, &[LOG_VIOLATION], 1), 1, "logged once");
    assert_eq!(
        ev.rx.used_idx(&ev.g),
        0,
        "nothing consumed from a broken chain"
    );
    assert_alive(sw, "zero-length attack");
    drop(ev);
    wait_link(sw, false, "zero-length attack: frontend gone");
    assert_fds_back(sw, fds0, "zero-length attack", || h1raw.send(&tick));

    // (b) 32768 one-byte buffers, each its own chain, and 1500-byte frames for the guest: each
    // needs 1512 buffers, more than a burst may walk, so every burst stops at the budget and
    // gives the frame back. Legal, so no error; bounded, so the pings do not notice.
    let ev = Evil::connect(
        &sock,
        &Setup {
            rx_qsz: BIG_QSZ,
            ..SETUP
        },
    );
    wait_link(sw, true, "one-byte buffers: connected");
    let buf = ev.gpa(RX_BUFS);
    ev.rx_table(|i| (buf + u64::from(i), 1, VIRTQ_DESC_F_WRITE, 0));
    ev.rx_make_all_available(|k| k);
    let stops0 = counter(sw, "budget_stops");
    let errors0 = counter(sw, "queue_errors");
    let big = flood_frame(&lab, 1486);
    assert_eq!(big.len(), 1500);
    pings_survive(&lab, "one-byte buffers", || h1raw.send(&big));
    let stops = wait_counter(sw, "budget_stops", stops0 + 1, || h1raw.send(&big));
    assert!(
        stops > stops0,
        "bursts into the guest stop at the descriptor budget: {}",
        evil_port(sw)
    );
    assert_eq!(
        counter(sw, "queue_errors"),
        errors0,
        "the budget is no violation"
    );
    // Small frames still fit (72 buffers each) and reach the guest.
    let before = evil_port(sw)["backend"]["to_guest_packets"]
        .as_u64()
        .unwrap_or(0);
    let small = flood_frame(&lab, 46);
    let deadline = Instant::now() + WAIT;
    while evil_port(sw)["backend"]["to_guest_packets"]
        .as_u64()
        .unwrap_or(0)
        == before
    {
        assert!(
            Instant::now() < deadline,
            "small frames never reached the guest"
        );
        h1raw.send(&small);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_alive(sw, "one-byte buffers");
    drop(ev);
    wait_link(sw, false, "one-byte buffers: frontend gone");
    assert_fds_back(sw, fds0, "one-byte buffers", || h1raw.send(&tick));
    assert!(
        !sw.log_text().contains("panicked"),
        "the switch log reports a panic"
    );
}

#[test]
fn truncated_guest_memory_breaks_only_its_port() {
    let (mut lab, sock) = start_lab("truncate");
    let sw = lab.switch();
    let h1raw = lab.host("h1").raw();
    let tick = flood_frame(&lab, 46);
    let fds0 = fd_count(sw);

    // A working guest first: its frames reach h1.
    let mut ev = Evil::connect(&sock, &SETUP);
    wait_link(sw, true, "first frontend");
    ev.frame_reaches_h1(sw, &h1raw, "before the truncation");

    // The frontend truncates its memory file. From here on this process must not touch the
    // guest's RAM either (its own mapping would fault just the same).
    let faults0 = counter(sw, "memory_faults");
    let errors0 = counter(sw, "queue_errors");
    // SAFETY: ftruncate on the guest's memfd, which we own.
    let r = unsafe { libc::ftruncate(ev.g.fd().as_raw_fd(), 0) };
    assert_eq!(r, 0, "ftruncate: {}", std::io::Error::last_os_error());
    let flood = flood_frame(&lab, 100);
    let faults = wait_counter(sw, "memory_faults", faults0 + 1, || h1raw.send(&flood));
    assert_alive(sw, "after the truncation");
    assert_eq!(
        faults,
        faults0 + 1,
        "the fault is counted once: {}",
        evil_port(sw)
    );
    assert_eq!(wait_log(sw, &[LOG_MEMFAULT], 1), 1, "one clear error line");
    wait_link(sw, false, "the faulted frontend is dropped");
    assert_eq!(
        evil_port(sw)["backend"]["connected"].as_bool(),
        Some(false),
        "the switch disconnected the frontend"
    );
    assert_eq!(
        counter(sw, "queue_errors"),
        errors0,
        "zero pages read after the fault are not blamed on the guest as ring violations"
    );
    pings_survive(&lab, "after the truncation", || h1raw.send(&flood));
    let line = sw
        .log_text()
        .lines()
        .find(|l| l.contains(LOG_MEMFAULT))
        .map(str::to_owned)
        .unwrap_or_default();
    eprintln!("the switch logged: {line}");
    assert!(line.contains("ERROR"), "logged as an error: {line}");
    // Never touch the truncated RAM: forget the mapping (the test process ends soon).
    let Evil { fe, g, .. } = ev;
    drop(fe);
    std::mem::forget(g);
    assert_fds_back(sw, fds0, "after the truncation", || h1raw.send(&tick));

    // A well-behaved frontend on the same port works.
    let mut good = Evil::connect(&sock, &SETUP);
    wait_link(sw, true, "a new frontend after the fault");
    good.frame_reaches_h1(sw, &h1raw, "after the truncation");
    assert_eq!(counter(sw, "memory_faults"), faults0 + 1);
    drop(good);
    wait_link(sw, false, "the new frontend left");
    assert_fds_back(sw, fds0, "the whole scenario", || h1raw.send(&tick));
    assert!(
        !sw.log_text().contains("panicked"),
        "the switch log reports a panic"
    );
    let status = lab.stop_switch();
    assert!(status.success(), "switch exits 0 on SIGTERM: {status:?}");
}

// ---------------------------------------------------------------------------------------------
// Legitimate traffic never meets the budget
// ---------------------------------------------------------------------------------------------

const VM_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x02];

/// dpdk-testpmd with a virtio-user port (mergeable RX buffers, its default) forwarding with
/// macswap; killed on drop.
struct Testpmd(std::process::Child);

impl Drop for Testpmd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// testpmd's first burst is 32 frames of 1518 bytes (FCS included); then h1 sends the guest
/// full bursts of 1514- and 60-byte frames, which testpmd sends back: both directions at their
/// largest and smallest frames, bursts of 32. No burst may stop at the budget, no queue break.
#[test]
fn testpmd_traffic_stays_within_the_budget() {
    let mut lab = Lab::new("budgettp");
    lab.add_host("h1", 1);
    let sock = lab.dir.join("vm.sock");
    let mut args = lab.port_args(&[("h1", "")]);
    args.push("--port".into());
    args.push(format!("vm=vhost-user:{}", sock.display()));
    let raw = lab.host("h1").raw();
    lab.start_switch_args(args);
    let h1 = lab.host("h1");
    let log = std::fs::File::create(lab.dir.join("testpmd.log")).expect("testpmd log");
    let vdev = format!(
        "net_virtio_user0,path={},queues=1,mac={}",
        sock.display(),
        mac_str(&VM_MAC)
    );
    // Main lcore on core 1 (idle), forwarding on core 0: the switch's PMD owns core 1.
    let tp = Testpmd(
        std::process::Command::new("dpdk-testpmd")
            .args(["-l", "0,1", "--main-lcore", "1", "--in-memory"])
            .args(["--single-file-segments", "--no-pci", "-m", "256"])
            .args(["--vdev", &vdev, "--"])
            .args(["--forward-mode=macswap", "--auto-start", "--tx-first"])
            .args(["--txpkts=1514", "--burst=32", "--stats-period=1"])
            .args(["--nb-cores=1", "--no-lsc-interrupt"])
            .arg(format!("--eth-peer=0,{}", mac_str(&h1.mac)))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dpdk-testpmd runs (scripts/setup.sh installs it)"),
    );
    let sw = lab.switch();
    let vm = |key: &str| sw.backend_u64("vm", key);
    let deadline = Instant::now() + Duration::from_secs(60);
    while vm("from_guest_packets") < 32 {
        assert!(
            Instant::now() < deadline,
            "testpmd's first burst never came through"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut m = marker("big");
    m.resize(1500, 0x3c);
    let big = frame(VM_MAC, h1.mac, None, ETH_TEST, &m);
    assert_eq!(big.len(), 1514);
    let small = frame(VM_MAC, h1.mac, None, ETH_TEST, &marker("small"));
    assert_eq!(small.len(), 60);
    let to0 = vm("to_guest_packets");
    let from0 = vm("from_guest_packets");
    for _ in 0..50 {
        for f in [&big, &small] {
            for _ in 0..32 {
                raw.send(f);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let deadline = Instant::now() + WAIT;
    while vm("from_guest_packets") < from0 + 1000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (to, from) = (
        vm("to_guest_packets") - to0,
        vm("from_guest_packets") - from0,
    );
    eprintln!("testpmd: {to} frames into the guest, {from} back out");
    assert!(
        to >= 1000 && from >= 1000,
        "frames went both ways: {to} in, {from} out"
    );
    assert_eq!(
        vm("budget_stops"),
        0,
        "no legitimate burst meets the budget"
    );
    assert_eq!(vm("queue_errors"), 0, "no legitimate chain is a violation");
    drop(tp);
    let status = lab.stop_switch();
    assert!(status.success(), "switch exits 0 on SIGTERM: {status:?}");
}
