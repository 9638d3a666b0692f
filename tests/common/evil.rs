//! A hostile vhost-user frontend played by the test itself, and how tests watch the switch's
//! vhost-user port "evil" while it attacks.
//!
//! - [`evil_lab`]: hosts h1, h2 (af_packet ports "h1", "h2") and a vhost-user port "evil" whose
//!   socket the switch listens on.
//! - [`Evil`]: one connection of the frontend: a QEMU-like handshake (as [`Setup`] says) over a
//!   memfd guest with `vhost::testutil` (vring 0 = guest RX at offset 0, vring 1 = guest TX), and
//!   the guest's TX side. Tests add their own attacks in `impl Evil` blocks.
//! - Port "evil" as `ctl stats` shows it: [`evil_port`], [`counter`], [`wait_counter`],
//!   [`wait_link`]; its log lines: [`log_count`], [`wait_log`]; the process: [`assert_alive`],
//!   [`fd_count`], [`assert_fds_back`].
use super::*;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vhost::protocol::{Pod, ProtocolFeatures, Request, VirtioFeatures};
use vhost::testutil::{eventfd, Frontend, MockGuest, MockVring};

/// Bound for something that must happen (the machine is small and loaded).
pub const WAIT: Duration = Duration::from_secs(15);
/// Size of the guest TX queue (and of the guest RX queue unless [`Setup::rx_qsz`] says otherwise).
pub const QSZ: u16 = 64;
/// The virtio-net header in front of every frame (VERSION_1).
pub const VNET_HDR: usize = 12;
/// Size of one guest TX frame slot.
pub const TX_SLOT_SIZE: u64 = 0x800;
/// Offset of the guest's RX buffers in guest RAM ([`QSZ`] of [`RX_BUF_SIZE`], clear of
/// [`Setup::BASE`]'s rings and TX slots).
pub const RX_BUFS: u64 = 0x80000;
/// Size of one guest RX buffer.
pub const RX_BUF_SIZE: u64 = 0x800;

/// The guest's layout and what the frontend negotiates.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    /// Guest RAM size.
    pub guest_size: u64,
    /// Entries of the guest RX queue (vring 0, at the start of guest RAM).
    pub rx_qsz: u16,
    /// Offset of the guest TX queue (vring 1, [`QSZ`] entries) in guest RAM.
    pub tx_ring: u64,
    /// Offset of the guest's TX frame slots and how many there are.
    pub tx_slots: u64,
    pub tx_slot_count: u64,
    /// Source MAC of the guest's frames.
    pub mac: [u8; 6],
    /// Protocol features the frontend sets.
    pub protocol: ProtocolFeatures,
    /// Virtio features the frontend acks (the switch must offer them all).
    pub virtio: VirtioFeatures,
    /// Also the rest of what QEMU does: check the offered protocol features and the queue count,
    /// NET_SET_MTU 1500, FEATURES_OK before the memory table.
    pub qemu_extras: bool,
}

impl Setup {
    /// 1 MiB of guest RAM with both rings of [`QSZ`] entries and 64 TX slots; MQ, REPLY_ACK,
    /// NET_MTU and STATUS; VERSION_1, MRG_RXBUF and EVENT_IDX (no indirect descriptors).
    pub const BASE: Setup = Setup {
        guest_size: 1 << 20,
        rx_qsz: QSZ,
        tx_ring: 0x4000,
        tx_slots: 0x10000,
        tx_slot_count: 64,
        mac: [0x02, 0, 0, 0, 0xee, 0x02],
        protocol: ProtocolFeatures::MQ
            .union(ProtocolFeatures::REPLY_ACK)
            .union(ProtocolFeatures::NET_MTU)
            .union(ProtocolFeatures::STATUS),
        virtio: VirtioFeatures::VERSION_1
            .union(VirtioFeatures::NET_MRG_RXBUF)
            .union(VirtioFeatures::RING_EVENT_IDX)
            .union(VirtioFeatures::PROTOCOL_FEATURES),
        qemu_extras: false,
    };
}

/// `r` answered; returns the reply value.
pub fn ack(r: Result<u64, vhost::ProtocolError>, what: &str) -> u64 {
    r.unwrap_or_else(|e| panic!("{what}: no reply from the switch: {e}"))
}

/// `r` answered 0 (ACK).
pub fn ack_ok(r: Result<u64, vhost::ProtocolError>, what: &str) {
    assert_eq!(ack(r, what), 0, "{what}: the switch NACKed a valid request");
}

/// One connection of the frontend with its guest RAM, rings and eventfds.
pub struct Evil {
    pub fe: Frontend,
    pub g: MockGuest,
    pub rx: MockVring,
    pub tx: MockVring,
    pub calls: [OwnedFd; 2],
    pub kicks: [OwnedFd; 2],
    pub errs: [OwnedFd; 2],
    pub next_slot: u64,
    pub setup: Setup,
}

impl Evil {
    /// Connects to the switch's socket (retrying within [`WAIT`]) and does what QEMU does for a
    /// one-queue-pair vhost-user-net device, up to DRIVER_OK and ring enable.
    pub fn connect(sock: &Path, setup: &Setup) -> Evil {
        let deadline = Instant::now() + WAIT;
        let stream = loop {
            match UnixStream::connect(sock) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("connect {}: {e}", sock.display()),
            }
        };
        let io_timeout = Some(Duration::from_secs(20));
        stream.set_read_timeout(io_timeout).unwrap();
        stream.set_write_timeout(io_timeout).unwrap();
        let g = MockGuest::new(setup.guest_size);
        let rx = MockVring::new(&g, g.gpa_base, setup.rx_qsz);
        assert!(rx.footprint() <= setup.tx_ring, "guest RX ring overlaps TX");
        let tx = MockVring::new(&g, g.gpa_base + setup.tx_ring, QSZ);
        let mut ev = Evil {
            fe: Frontend::new(stream),
            g,
            rx,
            tx,
            calls: [eventfd(), eventfd()],
            kicks: [eventfd(), eventfd()],
            errs: [eventfd(), eventfd()],
            next_slot: 0,
            setup: *setup,
        };
        ev.handshake();
        ev
    }

    fn handshake(&mut self) {
        let s = self.setup;
        let fe = &mut self.fe;
        let feats = fe.get_u64(Request::GetFeatures).expect("GET_FEATURES");
        let pf = fe
            .get_u64(Request::GetProtocolFeatures)
            .expect("GET_PROTOCOL_FEATURES");
        if s.qemu_extras {
            let want = s.protocol.bits();
            assert_eq!(pf & want, want, "protocol features {pf:#x}");
        }
        ack_ok(
            fe.set_u64(Request::SetProtocolFeatures, s.protocol.bits()),
            "SET_PROTOCOL_FEATURES",
        );
        fe.reply_ack = true;
        if s.qemu_extras {
            assert_eq!(fe.get_u64(Request::GetQueueNum).expect("GET_QUEUE_NUM"), 1);
        }
        ack_ok(fe.send(Request::SetOwner, &[], &[]), "SET_OWNER");
        if s.qemu_extras {
            ack_ok(fe.set_u64(Request::NetSetMtu, 1500), "NET_SET_MTU");
        }
        let acked = s.virtio.bits();
        assert_eq!(feats & acked, acked, "features {feats:#x}");
        ack_ok(fe.set_u64(Request::SetFeatures, acked), "SET_FEATURES");
        if s.qemu_extras {
            let st = fe.get_u64(Request::GetStatus).expect("GET_STATUS");
            ack_ok(
                fe.set_u64(Request::SetStatus, st | 8),
                "SET_STATUS FEATURES_OK",
            );
        }
        ack_ok(
            fe.set_mem_table(&[self.g.region()], &[self.g.fd()]),
            "SET_MEM_TABLE",
        );
        for i in 0..2u32 {
            self.setup_ring(i, 0);
        }
        ack_ok(
            self.fe.set_u64(Request::SetStatus, 1 | 2 | 4 | 8),
            "SET_STATUS DRIVER_OK",
        );
        for i in 0..2 {
            ack_ok(
                self.fe.set_state(Request::SetVringEnable, i, 1),
                "SET_VRING_ENABLE",
            );
        }
    }

    /// SET_VRING_NUM/BASE/ADDR/ERR/KICK/CALL for vring `i` (the KICK starts the ring).
    pub fn setup_ring(&self, i: u32, base: u32) {
        let fe = &self.fe;
        let vr = if i == 0 { &self.rx } else { &self.tx };
        let k = i as usize;
        ack_ok(
            fe.set_state(Request::SetVringNum, i, u32::from(vr.size)),
            "SET_VRING_NUM",
        );
        ack_ok(
            fe.set_state(Request::SetVringBase, i, base),
            "SET_VRING_BASE",
        );
        ack_ok(
            fe.send(Request::SetVringAddr, vr.addr(&self.g, i).as_bytes(), &[]),
            "SET_VRING_ADDR",
        );
        ack_ok(
            fe.set_vring_fd(Request::SetVringErr, i, Some(self.errs[k].as_fd())),
            "SET_VRING_ERR",
        );
        ack_ok(
            fe.set_vring_fd(Request::SetVringKick, i, Some(self.kicks[k].as_fd())),
            "SET_VRING_KICK",
        );
        ack_ok(
            fe.set_vring_fd(Request::SetVringCall, i, Some(self.calls[k].as_fd())),
            "SET_VRING_CALL",
        );
    }

    /// Guest-physical address of offset `off` into guest RAM.
    pub fn gpa(&self, off: u64) -> u64 {
        self.g.gpa_base + off
    }

    pub fn tx_avail_idx(&self) -> u16 {
        self.g.read_u16(self.tx.avail + 2)
    }

    pub fn tx_used_idx(&self) -> u16 {
        self.tx.used_idx(&self.g)
    }

    /// Chains made available on the TX ring and not consumed yet.
    pub fn tx_pending(&self) -> u16 {
        self.tx_avail_idx().wrapping_sub(self.tx_used_idx())
    }

    /// Puts `frame` (behind a zeroed virtio-net header) in the next TX slot and makes it
    /// available, unless the ring is full of unconsumed chains (then returns false).
    pub fn send_frame(&mut self, frame: &[u8]) -> bool {
        if self.tx_pending() >= QSZ - 1 {
            return false;
        }
        let mut b = vec![0u8; VNET_HDR];
        b.extend_from_slice(frame);
        assert!(b.len() as u64 <= TX_SLOT_SIZE);
        let slot = self.next_slot % self.setup.tx_slot_count;
        let a = self.gpa(self.setup.tx_slots + TX_SLOT_SIZE * slot);
        self.next_slot += 1;
        self.g.write(a, &b);
        let g = &self.g;
        self.tx.add_chain(g, &[(a, b.len() as u32, false)]);
        true
    }

    /// Guest-physical address of RX buffer `k` (at [`RX_BUFS`]).
    pub fn rx_buf(&self, k: u16) -> u64 {
        self.gpa(RX_BUFS + RX_BUF_SIZE * u64::from(k))
    }

    /// Makes RX buffer `k` available on the guest's RX ring, one descriptor; returns its head.
    pub fn post_rx_buffer(&mut self, k: u16) -> u16 {
        let a = self.rx_buf(k);
        let g = &self.g;
        self.rx.add_chain(g, &[(a, RX_BUF_SIZE as u32, true)])
    }

    /// Posts RX buffers `0..n`.
    pub fn post_rx_buffers(&mut self, n: u16) {
        for k in 0..n {
            self.post_rx_buffer(k);
        }
    }

    /// The guest transmits a marked broadcast until h1 receives it, intact (within [`WAIT`]).
    pub fn frame_reaches_h1(&mut self, sw: &Switch, h1raw: &RawSocket, what: &str) {
        let m = marker(what);
        let f = frame(BROADCAST, self.setup.mac, None, ETH_TEST, &m);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            self.send_frame(&f);
            if let Some(r) = h1raw.wait_for(&m, Duration::from_millis(300)) {
                assert_eq!(
                    r.data, f,
                    "{what}: the guest's frame changed on its way to h1"
                );
                return;
            }
        }
        panic!(
            "{what}: a well-formed frame from the guest never reached h1; evil: {}",
            evil_port(sw)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The lab
// ---------------------------------------------------------------------------------------------

/// Hosts h1 and h2 and the switch with af_packet ports "h1", "h2" and vhost-user port "evil";
/// returns the lab and the socket the switch listens on.
pub fn evil_lab(test: &str) -> (Lab, PathBuf) {
    let mut lab = Lab::new(test);
    lab.add_host("h1", 1);
    lab.add_host("h2", 2);
    let sock = lab.dir.join("evil.sock");
    let mut args = lab.port_args(&[("h1", ""), ("h2", "")]);
    args.push("--port".into());
    args.push(format!("evil=vhost-user:{}", sock.display()));
    lab.start_switch_args(args);
    (lab, sock)
}

/// h1 pings h2 through the switch (within 30 s).
pub fn assert_h1_pings_h2(lab: &Lab, what: &str) {
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    let (ok, out) = h1.ping_until_ok(h2.ip, Duration::from_secs(30));
    assert!(ok, "ping h1 -> h2 {what}:\n{out}");
}

// ---------------------------------------------------------------------------------------------
// Observing the switch
// ---------------------------------------------------------------------------------------------

/// Port "evil" in `ctl stats`.
pub fn evil_port(sw: &Switch) -> serde_json::Value {
    sw.port_json("evil")
}

/// Port "evil"'s vhost-user backend counters.
pub fn evil_backend(sw: &Switch) -> serde_json::Value {
    evil_port(sw)["backend"].clone()
}

/// Whether the switch reports a frontend connected to port "evil".
pub fn evil_connected(sw: &Switch) -> bool {
    evil_backend(sw)["connected"].as_bool() == Some(true)
}

/// Backend counter `key` of port "evil".
pub fn counter(sw: &Switch, key: &str) -> u64 {
    sw.backend_u64("evil", key)
}

/// Polls counter `key` until it reaches `want` (within [`WAIT`]), calling `tick` in between;
/// returns the last value.
pub fn wait_counter(sw: &Switch, key: &str, want: u64, mut tick: impl FnMut()) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = counter(sw, key);
        if v >= want || Instant::now() >= deadline {
            return v;
        }
        tick();
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Log lines about port evil containing every one of `needles`.
pub fn log_count(sw: &Switch, needles: &[&str]) -> usize {
    sw.log_text()
        .lines()
        .filter(|l| l.contains("evil") && needles.iter().all(|n| l.contains(n)))
        .count()
}

/// Polls [`log_count`] until it reaches `want` (within [`WAIT`]); returns the last count.
pub fn wait_log(sw: &Switch, needles: &[&str], want: usize) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        let n = log_count(sw, needles);
        if n >= want || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the switch's housekeeping reports port evil's link as `up`.
pub fn wait_link(sw: &Switch, up: bool, what: &str) {
    wait_link_ticking(sw, up, what, || {});
}

/// [`wait_link`], calling `tick` between looks.
pub fn wait_link_ticking(sw: &Switch, up: bool, what: &str, mut tick: impl FnMut()) {
    let deadline = Instant::now() + WAIT;
    loop {
        let p = evil_port(sw);
        if p["link_up"].as_bool() == Some(up) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: port evil link never went {} within {WAIT:?}: {p}",
            if up { "up" } else { "down" }
        );
        tick();
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The switch process exists, is no zombie and answers `ctl stats`.
pub fn assert_alive(sw: &Switch, what: &str) {
    let pid = sw.pid().expect("switch running") as libc::pid_t;
    // SAFETY: signal 0 only checks that our child exists.
    let rc = unsafe { libc::kill(pid, 0) };
    assert_eq!(rc, 0, "{what}: switch process {pid} is gone");
    let st = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        !st.is_empty() && st.split_whitespace().nth(2) != Some("Z"),
        "{what}: switch process {pid} exited"
    );
    sw.ctl_json("stats")
        .unwrap_or_else(|e| panic!("{what}: ctl stats no longer answers: {e}"));
}

/// File descriptors the switch holds.
pub fn fd_count(sw: &Switch) -> usize {
    let pid = sw.pid().expect("switch running");
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

/// Waits (within [`WAIT`]) until the switch holds no more fds than `baseline`, calling `tick`
/// between looks. Closing takes a housekeeping pass, and the guest-RX handle lets go of an old
/// connection's call eventfd only at its next burst: `tick` sends frames toward the port.
pub fn assert_fds_back(sw: &Switch, baseline: usize, what: &str, mut tick: impl FnMut()) {
    let deadline = Instant::now() + WAIT;
    let mut n = fd_count(sw);
    while n > baseline && Instant::now() < deadline {
        tick();
        std::thread::sleep(Duration::from_millis(200));
        n = fd_count(sw);
    }
    assert!(
        n <= baseline,
        "{what}: the switch holds {n} fds, {baseline} before"
    );
}
