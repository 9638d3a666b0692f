//! A malicious vhost-user frontend against the running switch.
//!
//! Topology: namespace hosts h1, h2 -- af_packet ports "h1", "h2" -- [switch] -- vhost-user port
//! "evil" (the switch listens) -- this test, speaking vhost-user itself with
//! `vhost::testutil::{Frontend, MockGuest, MockVring}`: a QEMU-like handshake over a memfd guest
//! (vring 0 = guest RX, vring 1 = guest TX), then hostile input.
//!
//! Scenarios, in order, each checked for: the switch process alive and answering `ctl stats`,
//! the right counter moved (`backend.message_errors` for rejected requests, `backend.queue_errors`
//! for ring violations), the right log line ("vhost-user request failed" per NACKed request,
//! "guest violated the virtio ring protocol" once per broken episode), and h1 <-> h2 still
//! exchanging UDP:
//! 1. a well-formed frame from the guest's TX ring reaches h1 (the port works at all);
//! 2. bad memory tables (region beyond its file, mmap offset past the file end, overflowing
//!    offset, wrapping region, 9 regions, truncated payloads, fd count mismatches, overlap, a
//!    non-file fd, zero regions): NACKed, the old table stays in force, the rejected fds are
//!    neither kept open nor mapped; then valid table swaps (one region / two regions over the same
//!    RAM, fresh fds each time) while the PMD core dequeues the guest's frames: every frame arrives
//!    intact, nothing is counted as an error;
//! 3. out-of-range descriptors: head or NEXT index >= queue size, buffers outside guest memory, a
//!    buffer whose address + length wraps, an indirect table outside memory, guest RX buffers
//!    outside memory (the switch would write there);
//! 4. looping descriptors: a NEXT to itself, a cycle of two, a loop inside an indirect table, a
//!    self-looping RX chain;
//! 5. oversized chains: an indirect table longer than the queue, a nested indirect table, an avail
//!    idx jump of more than the queue size;
//! 6. broken framing (truncated message then hang-up, bad version, oversized payload): the switch
//!    drops the connection and accepts the next one.
//!
//! A broken queue stays stopped until the frontend restarts it: the first violation is cleared by a
//! QEMU-style ring restart (GET_VRING_BASE, SET_VRING_*, KICK) on the same connection, the others
//! by reconnecting.
mod common;

use common::evil::*;
use common::*;
use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use vhost::protocol::{
    MemoryRegion, MemoryTableHeader, Pod, Request, VirtioFeatures, VringState, FLAG_NEED_REPLY,
};
use vhost::testutil::{eventfd, eventfd_take, memfd_named, MockVring};
use vhost::virtqueue::{Desc, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};

const GUEST_SIZE: u64 = 1 << 20;
/// Offsets into guest RAM (from its first guest-physical address).
const TX_RING: u64 = 0x4000;
/// Indirect tables and small valid buffers for malformed chains.
const SCRATCH: u64 = 0x8000;
/// Guest TX frame buffers: slots of 0x800 bytes starting at an odd 0x400 offset, so that the slot
/// at 0x7fc00 straddles the boundary of the two-region layout (0x80000).
const TX_SLOTS: u64 = 0x10400;
const TX_SLOT_COUNT: u64 = 256;
/// Guest RX buffers.
const RX_BUFS: u64 = 0xc0000;
/// Where the two-region layout splits guest RAM.
const SPLIT: u64 = 0x80000;
const EVIL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xee, 0x01];
/// Name of the memfds sent with tables that must be rejected (looked for in /proc/PID/{fd,maps}).
const REJECT_NAME: &std::ffi::CStr = c"tsnt-evil-reject";

const LOG_NACK: &str = "vhost-user request failed";
const LOG_VIOLATION: &str = "guest violated the virtio ring protocol";
const LOG_DISCONNECT: &str = "vhost-user frontend disconnected";

/// The whole QEMU handshake.
const SETUP: Setup = Setup {
    guest_size: GUEST_SIZE,
    tx_ring: TX_RING,
    tx_slots: TX_SLOTS,
    tx_slot_count: TX_SLOT_COUNT,
    mac: EVIL_MAC,
    virtio: Setup::BASE
        .virtio
        .union(VirtioFeatures::RING_INDIRECT_DESC)
        .union(VirtioFeatures::NET_MTU)
        .union(VirtioFeatures::NET_STATUS),
    qemu_extras: true,
    ..Setup::BASE
};

// ---------------------------------------------------------------------------------------------
// The evil frontend and its guest
// ---------------------------------------------------------------------------------------------

impl Evil {
    /// What a guest driver reset looks like to the backend: GET_VRING_BASE stops the TX ring, the
    /// guest lays it out anew, and the frontend starts it again from 0.
    fn restart_tx_ring(&mut self) -> u32 {
        let r = self
            .fe
            .get(
                Request::GetVringBase,
                VringState { index: 1, num: 0 }.as_bytes(),
            )
            .expect("GET_VRING_BASE");
        let base = VringState::from_bytes(&r).expect("VringState reply").num;
        self.tx = MockVring::new(&self.g, self.g.gpa_base + TX_RING, QSZ);
        self.setup_ring(1, 0);
        base
    }

    /// Waits until the switch consumed every available TX chain.
    fn wait_tx_drained(&self, sw: &Switch, what: &str) {
        let deadline = Instant::now() + WAIT;
        while self.tx_pending() != 0 {
            assert!(
                Instant::now() < deadline,
                "{what}: the switch left {} TX chains unconsumed for {WAIT:?} (avail {}, used {}); evil: {}",
                self.tx_pending(),
                self.tx_avail_idx(),
                self.tx_used_idx(),
                evil_backend(sw)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Writes descriptor `i` of the TX ring.
    fn tx_desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        self.tx.set_desc(
            &self.g,
            i,
            Desc {
                addr,
                len,
                flags,
                next,
            },
        );
    }

    fn rx_desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        self.rx.set_desc(
            &self.g,
            i,
            Desc {
                addr,
                len,
                flags,
                next,
            },
        );
    }

    /// Writes an indirect table entry.
    fn table_desc(&self, table: u64, k: u16, addr: u64, len: u32, flags: u16, next: u16) {
        MockVring::write_desc_at(
            &self.g,
            table + 16 * u64::from(k),
            Desc {
                addr,
                len,
                flags,
                next,
            },
        );
    }

    /// A valid 64-byte buffer holding a header and a tiny frame, for malformed chains.
    fn scratch_buf(&self) -> u64 {
        let a = self.gpa(SCRATCH + 0x7000);
        self.g.write(a, &[0u8; 64]);
        a
    }

    fn regions_two(&self) -> [MemoryRegion; 2] {
        let r = self.g.region();
        [
            MemoryRegion {
                memory_size: SPLIT,
                ..r
            },
            MemoryRegion {
                guest_phys_addr: r.guest_phys_addr + SPLIT,
                memory_size: r.memory_size - SPLIT,
                userspace_addr: r.userspace_addr + SPLIT,
                mmap_offset: SPLIT,
            },
        ]
    }

    /// A new file descriptor (new open file description) for the guest's RAM.
    fn reopen_ram(&self) -> OwnedFd {
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/self/fd/{}", self.g.fd().as_raw_fd()))
            .expect("reopen the guest memfd");
        f.into()
    }
}

/// SET_MEM_TABLE payload with a header claiming `nregions` and the given region structs.
fn mem_table_payload(nregions: u32, regions: &[MemoryRegion]) -> Vec<u8> {
    let mut p = MemoryTableHeader {
        nregions,
        padding: 0,
    }
    .as_bytes()
    .to_vec();
    for r in regions {
        p.extend_from_slice(r.as_bytes());
    }
    p
}

// ---------------------------------------------------------------------------------------------
// Observing the switch
// ---------------------------------------------------------------------------------------------

fn assert_forwarding(lab: &Lab, what: &str) {
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    udp_exchange(h1, h2, WAIT)
        .unwrap_or_else(|e| panic!("{what}: h1 <-> h2 stopped forwarding: {e}"));
}

/// Entries of /proc/PID/fd and lines of /proc/PID/maps of the switch that mention `name`.
fn switch_refs(sw: &Switch, name: &str) -> (usize, usize) {
    let pid = sw.pid().expect("switch running");
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains(name))
                })
                .count()
        })
        .unwrap_or(0);
    let maps = fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(name))
        .count();
    (fds, maps)
}

// ---------------------------------------------------------------------------------------------
// The test context
// ---------------------------------------------------------------------------------------------

struct Ctx<'a> {
    lab: &'a Lab,
    sock: PathBuf,
    h1raw: RawSocket,
    ev: Option<Evil>,
    /// A guest-RX (vring 0) violation happened on an earlier connection.
    rx_broken_before: bool,
}

impl<'a> Ctx<'a> {
    fn sw(&self) -> &'a Switch {
        self.lab.switch()
    }

    fn ev(&mut self) -> &mut Evil {
        self.ev.as_mut().expect("connected")
    }

    /// Drops the current connection (if any; the switch notices and its link goes down), then
    /// connects anew and waits until the switch reports the port up. Between the two, the switch's
    /// once-a-second housekeeping runs at least twice, so it has seen the previous episode's broken
    /// queue reset and will log the next episode again.
    fn reconnect(&mut self, what: &str) {
        if let Some(old) = self.ev.take() {
            drop(old);
            wait_link(self.sw(), false, what);
        }
        self.ev = Some(Evil::connect(&self.sock, &SETUP));
        wait_link(self.sw(), true, what);
    }

    /// The guest transmits a marked broadcast until h1 receives it, intact.
    fn guest_frame_reaches_h1(&mut self, what: &str) {
        let ev = self.ev.as_mut().expect("connected");
        ev.frame_reaches_h1(self.lab.switch(), &self.h1raw, what);
    }

    /// Makes the switch send to the guest (its RX ring has no buffers yet, so the frame is counted
    /// as `guest_drops.no_buffer`), which makes the guest-RX handle pick up the current connection,
    /// then lets one housekeeping pass (once a second) see that.
    ///
    /// Needed because of a bug (see `guest_rx_reset_clears_the_broken_state`): the guest-RX
    /// handle clears a previous connection's "broken" state only when it next has a frame for the
    /// guest, so without this the control side would still see the old episode and not log the
    /// new one.
    fn prime_guest_rx(&self, what: &str) {
        let sw = self.lab.switch();
        let no_buffer = || {
            evil_backend(sw)["guest_drops"]["no_buffer"]
                .as_u64()
                .unwrap_or(0)
        };
        let nb0 = no_buffer();
        let m = marker("prime");
        let f = frame(BROADCAST, self.lab.host("h1").mac, None, ETH_TEST, &m);
        let deadline = Instant::now() + WAIT;
        while no_buffer() == nb0 {
            assert!(
                Instant::now() < deadline,
                "{what}: the switch never tried to deliver to the guest: {}",
                evil_backend(sw)
            );
            self.h1raw.send(&f);
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(2500));
    }

    /// One broken episode on vring `vring`: `bad` writes the malformed ring state and publishes
    /// it; then the queue error must be counted exactly once, signalled on the vring's error
    /// eventfd, logged once, and the switch must keep running and forwarding between h1 and h2.
    /// For guest RX (vring 0) h1 floods broadcasts so that the switch walks the guest's buffers.
    fn violation(&mut self, what: &str, vring: u32, bad: impl FnOnce(&mut Evil)) {
        let sw = self.lab.switch();
        if vring == 0 {
            self.prime_guest_rx(what);
        }
        let vring_field = format!("vring={vring}");
        let needles = [LOG_VIOLATION, vring_field.as_str()];
        let errors0 = counter(sw, "queue_errors");
        let logs0 = log_count(sw, &needles);
        let msg_errors0 = counter(sw, "message_errors");
        {
            let ev = self.ev.as_mut().expect("connected");
            eventfd_take(ev.errs[vring as usize].as_fd());
            bad(ev);
        }
        let m = marker("flood");
        let flood = frame(BROADCAST, self.lab.host("h1").mac, None, ETH_TEST, &m);
        let h1raw = &self.h1raw;
        let errors = wait_counter(sw, "queue_errors", errors0 + 1, || {
            if vring == 0 {
                h1raw.send(&flood);
            }
        });
        assert_eq!(
            errors,
            errors0 + 1,
            "{what}: queue_errors must count the violation once; evil: {}",
            evil_backend(sw)
        );
        let logs = wait_log(sw, &needles, logs0 + 1);
        assert_eq!(
            logs,
            logs0 + 1,
            "{what}: the switch must log '{LOG_VIOLATION}' ({vring_field}) once for the episode"
        );
        // The control side signals the vring's error eventfd (housekeeping, once a second).
        // Not checked for a second guest-RX episode: a known bug (see
        // `guest_rx_reset_clears_the_broken_state`) has the switch signal the new connection's
        // eventfd for the previous connection's violation, and then not for the new one.
        if vring == 1 || !self.rx_broken_before {
            let ev = self.ev.as_ref().expect("connected");
            let deadline = Instant::now() + WAIT;
            let mut signalled = 0;
            while signalled == 0 && Instant::now() < deadline {
                signalled = eventfd_take(ev.errs[vring as usize].as_fd());
                std::thread::sleep(Duration::from_millis(50));
            }
            assert!(
                signalled > 0,
                "{what}: the error eventfd of vring {vring} was never signalled"
            );
        }
        if vring == 0 {
            self.rx_broken_before = true;
        }
        assert_alive(sw, what);
        assert_eq!(
            counter(sw, "queue_errors"),
            errors0 + 1,
            "{what}: a broken queue must stay stopped (one error per episode)"
        );
        assert_eq!(
            counter(sw, "message_errors"),
            msg_errors0,
            "{what}: a ring violation is not a message error"
        );
        assert_forwarding(self.lab, what);
    }

    /// A request that must be NACKed: ack 1, `message_errors` + 1, a log line, the connection
    /// still usable.
    fn nack(&mut self, what: &str, send: impl FnOnce(&Evil) -> Result<u64, vhost::ProtocolError>) {
        let sw = self.lab.switch();
        let e0 = counter(sw, "message_errors");
        let l0 = log_count(sw, &[LOG_NACK]);
        let ev = self.ev.as_ref().expect("connected");
        let a = ack(send(ev), what);
        assert_eq!(a, 1, "{what}: the switch must NACK this request");
        assert_eq!(
            wait_counter(sw, "message_errors", e0 + 1, || {}),
            e0 + 1,
            "{what}: message_errors must count the rejection once"
        );
        assert_eq!(
            wait_log(sw, &[LOG_NACK], l0 + 1),
            l0 + 1,
            "{what}: the switch must log '{LOG_NACK}' once"
        );
        assert_eq!(
            ev.fe.get_u64(Request::GetQueueNum).ok(),
            Some(1),
            "{what}: the connection must stay usable after a NACK"
        );
        assert_eq!(
            evil_backend(sw)["connected"].as_bool(),
            Some(true),
            "{what}: the switch must not drop the frontend for a NACKed request"
        );
        assert_alive(sw, what);
    }

    /// Sends raw bytes that break the framing (then optionally hangs up): the switch must drop
    /// the connection, log it, and survive.
    fn framing_breaks(&mut self, what: &str, bytes: &[u8], hang_up: bool) {
        let sw = self.lab.switch();
        let l0 = log_count(sw, &[LOG_DISCONNECT]);
        let ev = self.ev.take().expect("connected");
        ev.fe
            .stream()
            .write_all(bytes)
            .expect("write to the switch");
        if !hang_up {
            // The switch must close its end: our read sees EOF (or a reset).
            let mut s = ev.fe.stream();
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut b = [0u8; 64];
            let deadline = Instant::now() + WAIT;
            loop {
                match s.read(&mut b) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break, // reset: closed as well
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: the switch kept the connection"
                );
            }
        }
        drop(ev);
        assert_eq!(
            wait_log(sw, &[LOG_DISCONNECT], l0 + 1),
            l0 + 1,
            "{what}: the switch must log the dropped frontend once"
        );
        wait_link(sw, false, what);
        assert_alive(sw, what);
        assert_forwarding(self.lab, what);
    }
}

fn raw_header(request: u32, flags: u32, size: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&request.to_ne_bytes());
    h.extend_from_slice(&flags.to_ne_bytes());
    h.extend_from_slice(&size.to_ne_bytes());
    h
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[test]
fn malicious_frontend_cannot_hurt_the_switch() {
    let (mut lab, sock) = evil_lab("evil");
    {
        assert_h1_pings_h2(&lab, "before the guest connects");
        assert_forwarding(&lab, "before the guest connects");
    }
    let mut cx = Ctx {
        lab: &lab,
        sock,
        h1raw: lab.host("h1").raw(),
        ev: None,
        rx_broken_before: false,
    };

    // ---- 5 (first): a well-behaved guest's frame reaches h1. ----
    cx.reconnect("good guest");
    cx.guest_frame_reaches_h1("good-guest");
    let b = evil_backend(cx.sw());
    assert!(b["from_guest_packets"].as_u64() >= Some(1), "{b}");
    assert_eq!(b["queue_errors"].as_u64(), Some(0), "{b}");
    assert_eq!(b["message_errors"].as_u64(), Some(0), "{b}");

    // ---- 1: bad memory tables, NACKed; the old table stays in force. ----
    mem_table_scenarios(&mut cx);
    mem_table_swap_under_traffic(&mut cx);

    // ---- 2: out-of-range descriptors (guest TX = vring 1). ----
    cx.violation("head index >= queue size", 1, |ev| {
        let g = &ev.g;
        ev.tx.push_avail(g, QSZ + 7);
    });
    // The queue stays stopped until the guest resets it: a driver reset (GET_VRING_BASE and a
    // fresh ring) on the same connection brings it back.
    {
        let ev = cx.ev();
        let before_bad = ev.tx_avail_idx().wrapping_sub(1);
        let base = ev.restart_tx_ring();
        assert_eq!(
            base,
            u32::from(before_bad),
            "GET_VRING_BASE returns the position of the rejected entry"
        );
    }
    cx.guest_frame_reaches_h1("after-ring-restart");

    cx.reconnect("next index >= queue size");
    cx.violation("next index >= queue size", 1, |ev| {
        let a = ev.scratch_buf();
        ev.tx_desc(3, a, 64, VIRTQ_DESC_F_NEXT, 0xffff);
        let g = &ev.g;
        ev.tx.push_avail(g, 3);
    });

    cx.reconnect("buffer beyond guest memory");
    cx.violation("buffer beyond guest memory", 1, |ev| {
        let a = ev.gpa(GUEST_SIZE + 0x1000);
        ev.tx_desc(0, a, 200, 0, 0);
        let g = &ev.g;
        ev.tx.push_avail(g, 0);
    });

    cx.reconnect("buffer below guest memory");
    cx.violation("buffer below guest memory", 1, |ev| {
        // The header is in RAM, the frame part at guest-physical 0x1000 is not.
        let a = ev.scratch_buf();
        ev.tx_desc(0, a, VNET_HDR as u32, VIRTQ_DESC_F_NEXT, 1);
        ev.tx_desc(1, 0x1000, 200, 0, 0);
        let g = &ev.g;
        ev.tx.push_avail(g, 0);
    });

    cx.reconnect("buffer running past the end of memory");
    cx.violation("buffer running past the end of memory", 1, |ev| {
        let a = ev.gpa(GUEST_SIZE - 100);
        ev.tx_desc(0, a, 1000, 0, 0);
        let g = &ev.g;
        ev.tx.push_avail(g, 0);
    });

    cx.reconnect("address + length wraps");
    cx.violation("address + length wraps", 1, |ev| {
        let a = ev.scratch_buf();
        ev.tx_desc(0, a, VNET_HDR as u32, VIRTQ_DESC_F_NEXT, 1);
        ev.tx_desc(1, u64::MAX - 0x3f, 0x400, 0, 0);
        let g = &ev.g;
        ev.tx.push_avail(g, 0);
    });

    cx.reconnect("indirect table outside memory");
    cx.violation("indirect table outside memory", 1, |ev| {
        ev.tx_desc(0, u64::MAX - 0x1f, 64, VIRTQ_DESC_F_INDIRECT, 0);
        let g = &ev.g;
        ev.tx.push_avail(g, 0);
    });

    cx.reconnect("guest RX buffer outside memory");
    cx.violation("guest RX buffer outside memory", 0, |ev| {
        ev.rx_desc(0, ev.gpa(GUEST_SIZE + 0x10000), 2048, VIRTQ_DESC_F_WRITE, 0);
        let g = &ev.g;
        ev.rx.push_avail(g, 0);
    });

    // ---- 3: looping descriptors. ----
    cx.reconnect("descriptor NEXT to itself");
    cx.violation("descriptor NEXT to itself", 1, |ev| {
        let a = ev.scratch_buf();
        ev.tx_desc(5, a, 20, VIRTQ_DESC_F_NEXT, 5);
        let g = &ev.g;
        ev.tx.push_avail(g, 5);
    });

    cx.reconnect("cycle of two descriptors");
    cx.violation("cycle of two descriptors", 1, |ev| {
        let a = ev.scratch_buf();
        ev.tx_desc(6, a, 20, VIRTQ_DESC_F_NEXT, 7);
        ev.tx_desc(7, a, 20, VIRTQ_DESC_F_NEXT, 6);
        let g = &ev.g;
        ev.tx.push_avail(g, 6);
    });

    cx.reconnect("loop inside an indirect table");
    cx.violation("loop inside an indirect table", 1, |ev| {
        let a = ev.scratch_buf();
        let table = ev.gpa(SCRATCH);
        for k in 0..4u16 {
            ev.table_desc(table, k, a, 20, VIRTQ_DESC_F_NEXT, (k + 1) % 4);
        }
        ev.tx_desc(0, table, 4 * 16, VIRTQ_DESC_F_INDIRECT, 0);
        let g = &ev.g;
        ev.tx.push_avail(g, 0);
    });

    cx.reconnect("guest RX chain looping on itself");
    cx.violation("guest RX chain looping on itself", 0, |ev| {
        let a = ev.gpa(RX_BUFS);
        ev.rx_desc(0, a, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
        let g = &ev.g;
        ev.rx.push_avail(g, 0);
    });

    // ---- 4: oversized chains. ----
    cx.reconnect("indirect chain longer than the queue");
    cx.violation("indirect chain longer than the queue", 1, |ev| {
        let a = ev.scratch_buf();
        let table = ev.gpa(SCRATCH);
        let n = QSZ + 1;
        for k in 0..n {
            let last = k + 1 == n;
            let flags = if last { 0 } else { VIRTQ_DESC_F_NEXT };
            ev.table_desc(table, k, a, 16, flags, k + 1);
        }
        ev.tx_desc(0, table, 16 * u32::from(n), VIRTQ_DESC_F_INDIRECT, 0);
        let g = &ev.g;
        ev.tx.push_avail(g, 0);
    });

    cx.reconnect("nested indirect table");
    cx.violation("nested indirect table", 1, |ev| {
        let table = ev.gpa(SCRATCH);
        ev.table_desc(table, 0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
        ev.tx_desc(0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
        let g = &ev.g;
        ev.tx.push_avail(g, 0);
    });

    cx.reconnect("avail idx jump");
    cx.violation("avail idx jump beyond the queue size", 1, |ev| {
        let cur = ev.tx_avail_idx();
        let g = &ev.g;
        ev.tx.set_avail_idx(g, cur.wrapping_add(QSZ + 1));
    });

    // ---- 6: broken framing ends the connection, the next one is accepted. ----
    cx.reconnect("truncated message");
    let mut trunc = raw_header(Request::SetMemTable as u32, 1, 264);
    trunc.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
    cx.framing_breaks("truncated SET_MEM_TABLE, then hang-up", &trunc, true);

    cx.reconnect("bad version");
    cx.framing_breaks(
        "header version 2",
        &raw_header(Request::GetFeatures as u32, 2, 0),
        false,
    );

    cx.reconnect("payload too large");
    let mut big = raw_header(Request::SetMemTable as u32, 1, 1 << 20);
    big.extend_from_slice(&[0; 64]);
    cx.framing_breaks("payload size 1 MiB", &big, false);

    // After all of that, a well-behaved guest still works.
    cx.reconnect("good guest at the end");
    cx.guest_frame_reaches_h1("good-guest-end");
    let b = evil_backend(cx.sw());
    eprintln!("evil port after all scenarios: {b}");
    drop(cx);

    {
        let (h1, h2) = (lab.host("h1"), lab.host("h2"));
        let (ok, out) = h2.ping_until_ok(h1.ip, Duration::from_secs(30));
        assert!(ok, "ping h2 -> h1 at the end:\n{out}");
        assert_forwarding(&lab, "at the end");
        let log = lab.switch().log_text();
        assert!(
            !log.contains("panicked"),
            "the switch log reports a panic:\n{log}"
        );
    }
    let status = lab.stop_switch();
    assert!(status.success(), "switch exits 0 on SIGTERM: {status:?}");
}

/// Scenario 1a: tables that must be rejected while a good one is in force.
fn mem_table_scenarios(cx: &mut Ctx<'_>) {
    let reject = || memfd_named(REJECT_NAME, 0x1000);
    // Far away from the guest's RAM, in both address spaces.
    let elsewhere = |size: u64, off: u64| MemoryRegion {
        guest_phys_addr: 0x1_0000_0000,
        memory_size: size,
        userspace_addr: 0x7e00_0000_0000,
        mmap_offset: off,
    };
    let send_table = |ev: &Evil, regions: &[MemoryRegion], fds: &[BorrowedFd<'_>]| {
        ev.fe.set_mem_table(regions, fds)
    };

    cx.nack("region larger than its memfd", |ev| {
        let f = reject();
        send_table(
            ev,
            &[ev.g.region(), elsewhere(0x10_0000, 0)],
            &[ev.g.fd(), f.as_fd()],
        )
    });
    cx.nack("only region larger than its memfd", |ev| {
        let f = reject();
        send_table(ev, &[elsewhere(0x10_0000, 0)], &[f.as_fd()])
    });
    cx.nack("mmap offset past the file end", |ev| {
        let f = reject();
        send_table(
            ev,
            &[ev.g.region(), elsewhere(0x1000, 0x2000)],
            &[ev.g.fd(), f.as_fd()],
        )
    });
    cx.nack("mmap offset + size overflows", |ev| {
        let f = reject();
        send_table(ev, &[elsewhere(0x1000, u64::MAX - 0x800)], &[f.as_fd()])
    });
    cx.nack("region wraps the address space", |ev| {
        let f = reject();
        let r = MemoryRegion {
            guest_phys_addr: u64::MAX - 0xfff,
            ..elsewhere(0x2000, 0)
        };
        send_table(ev, &[r], &[f.as_fd()])
    });
    cx.nack("9 regions", |ev| {
        let f = reject();
        let regions: Vec<MemoryRegion> = (0..9u64)
            .map(|i| MemoryRegion {
                guest_phys_addr: 0x1_0000_0000 + i * 0x1_0000,
                userspace_addr: 0x7e00_0000_0000 + i * 0x1_0000,
                ..elsewhere(0x1000, 0)
            })
            .collect();
        let fds: Vec<BorrowedFd<'_>> = (0..8).map(|_| f.as_fd()).collect();
        ev.fe
            .send(Request::SetMemTable, &mem_table_payload(9, &regions), &fds)
    });
    cx.nack("header promises 2 regions, payload has 1", |ev| {
        let f = reject();
        ev.fe.send(
            Request::SetMemTable,
            &mem_table_payload(2, &[ev.g.region()]),
            &[ev.g.fd(), f.as_fd()],
        )
    });
    cx.nack("region cut short", |ev| {
        let p = mem_table_payload(1, &[ev.g.region()]);
        ev.fe
            .send(Request::SetMemTable, &p[..p.len() - 8], &[ev.g.fd()])
    });
    cx.nack("payload shorter than the table header", |ev| {
        let f = reject();
        ev.fe
            .send(Request::SetMemTable, &[1, 0, 0, 0], &[f.as_fd()])
    });
    cx.nack("2 regions, 1 fd", |ev| {
        send_table(ev, &[ev.g.region(), elsewhere(0x1000, 0)], &[ev.g.fd()])
    });
    cx.nack("1 region, 2 fds", |ev| {
        let f = reject();
        send_table(ev, &[ev.g.region()], &[ev.g.fd(), f.as_fd()])
    });
    cx.nack("1 region, no fd", |ev| {
        send_table(ev, &[ev.g.region()], &[])
    });
    cx.nack("overlapping regions", |ev| {
        let f = reject();
        let r = MemoryRegion {
            userspace_addr: 0x7e00_0000_0000,
            memory_size: 0x1000,
            ..ev.g.region()
        };
        send_table(ev, &[ev.g.region(), r], &[ev.g.fd(), f.as_fd()])
    });
    cx.nack("region backed by an eventfd", |ev| {
        let e = eventfd();
        send_table(ev, &[elsewhere(0x1000, 0)], &[e.as_fd()])
    });
    // The same fd numbers again, with need-reply set by hand on a request that has no
    // REPLY_ACK meaning (GET_* always reply): not an error.
    {
        let ev = cx.ev();
        ev.fe
            .send_raw(Request::GetQueueNum as u32, FLAG_NEED_REPLY, &[], &[])
            .unwrap();
        let r = ev.fe.recv_reply(Request::GetQueueNum as u32).unwrap();
        assert_eq!(r, 1u64.to_ne_bytes());
    }

    // Every rejected table's fds were closed, none of them mapped.
    let sw = cx.sw();
    let deadline = Instant::now() + WAIT;
    let mut refs = switch_refs(sw, REJECT_NAME.to_str().unwrap());
    while refs != (0, 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        refs = switch_refs(sw, REJECT_NAME.to_str().unwrap());
    }
    assert_eq!(
        refs,
        (0, 0),
        "(open fds, mappings) of rejected memory tables left in the switch"
    );
    // The old table is still in force: frames flow.
    cx.guest_frame_reaches_h1("after-rejected-tables");

    // Zero regions: nothing to map, nothing unsafe. The switch may NACK it, or accept it, in
    // which case no ring translates any more and the port goes down until a usable table comes.
    let sw = cx.sw();
    let e0 = counter(sw, "message_errors");
    let a = {
        let ev = cx.ev();
        ack(
            ev.fe.set_mem_table(&[], &[]),
            "SET_MEM_TABLE with zero regions",
        )
    };
    eprintln!("SET_MEM_TABLE with zero regions: ack {a}");
    if a == 0 {
        wait_link(sw, false, "zero-region table accepted");
        assert_eq!(counter(sw, "message_errors"), e0);
    } else {
        assert_eq!(wait_counter(sw, "message_errors", e0 + 1, || {}), e0 + 1);
    }
    assert_alive(sw, "zero-region table");
    assert_forwarding(cx.lab, "zero-region table");
    {
        let ev = cx.ev();
        ack_ok(
            ev.fe.set_mem_table(&[ev.g.region()], &[ev.g.fd()]),
            "SET_MEM_TABLE restoring the guest's RAM",
        );
    }
    wait_link(cx.sw(), true, "after restoring the memory table");
    cx.guest_frame_reaches_h1("after-zero-region-table");
}

/// Scenario 1b: valid memory-table changes (same RAM, new fds, one or two regions) while the PMD
/// core dequeues the guest's frames and h1 <-> h2 exchange UDP.
fn mem_table_swap_under_traffic(cx: &mut Ctx<'_>) {
    const ROUNDS: u32 = 40;
    const PER_ROUND: u32 = 24;
    let lab = cx.lab;
    let sw = lab.switch();
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    let msg_errors0 = counter(sw, "message_errors");
    let q_errors0 = counter(sw, "queue_errors");
    let from_guest0 = counter(sw, "from_guest_packets");
    let tag = marker("swap");
    let mut expected: HashSet<Vec<u8>> = HashSet::new();
    let stop = AtomicBool::new(false);
    let udp_ok = AtomicU64::new(0);
    let udp_failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                match udp_exchange(h1, h2, WAIT) {
                    Ok(()) => {
                        udp_ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => udp_failures.lock().unwrap().push(e),
                }
            }
        });
        let ev = cx.ev.as_mut().expect("connected");
        for round in 0..ROUNDS {
            for k in 0..PER_ROUND {
                let mut payload = tag.clone();
                payload.extend_from_slice(format!("/{round}/{k}/").as_bytes());
                // Lengths from 60 to ~1500 bytes: long ones straddle the region split.
                let extra = ((round * PER_ROUND + k) * 97 % 1400) as usize;
                payload.extend((0..extra).map(|i| (i as u8).wrapping_mul(31) ^ k as u8));
                let f = frame(h1.mac, EVIL_MAC, None, ETH_TEST, &payload);
                assert!(ev.send_frame(&f), "TX ring full during the swap phase");
                expected.insert(f);
            }
            // Swap the table while the PMD core is on these frames.
            let a = if round % 2 == 0 {
                let (fa, fb) = (ev.reopen_ram(), ev.reopen_ram());
                ev.fe
                    .set_mem_table(&ev.regions_two(), &[fa.as_fd(), fb.as_fd()])
            } else {
                let f = ev.reopen_ram();
                ev.fe.set_mem_table(&[ev.g.region()], &[f.as_fd()])
            };
            ack_ok(a, "SET_MEM_TABLE swap under traffic");
            ev.wait_tx_drained(sw, "memory table swap");
        }
        stop.store(true, Ordering::Relaxed);
    });
    let failures = udp_failures.into_inner().unwrap();
    assert!(
        failures.is_empty() && udp_ok.load(Ordering::Relaxed) > 0,
        "h1 <-> h2 UDP during the memory-table swaps: {} ok, failures {failures:?}",
        udp_ok.load(Ordering::Relaxed)
    );
    let total = u64::from(ROUNDS * PER_ROUND);
    assert_eq!(
        wait_counter(sw, "from_guest_packets", from_guest0 + total, || {}),
        from_guest0 + total,
        "every frame of the swap phase is counted as received from the guest"
    );
    assert_eq!(counter(sw, "queue_errors"), q_errors0, "no queue error");
    assert_eq!(counter(sw, "message_errors"), msg_errors0, "no NACK");
    // What reached h1 is exactly what the guest sent: no stale or unmapped memory was read.
    let got = cx.h1raw.capture(&tag, Duration::from_secs(2));
    let mut seen = HashSet::new();
    for f in &got {
        assert!(
            expected.contains(&f.data),
            "h1 received a corrupted guest frame: {}",
            f.describe()
        );
        seen.insert(f.data.clone());
    }
    eprintln!(
        "memory-table swaps: {} of {total} guest frames reached h1 intact",
        seen.len()
    );
    assert!(
        seen.len() as u64 * 2 >= total,
        "only {} of {total} guest frames reached h1",
        seen.len()
    );
    // Old tables are unmapped once the PMD core let go of them: the guest RAM is mapped a
    // bounded number of times (current table, plus at most one table held by the guest-RX
    // handle, which picks up changes only when it has frames for the guest).
    let (_, maps) = switch_refs(sw, "memfd:vhost-test");
    eprintln!("guest RAM mappings in the switch after the swaps: {maps}");
    assert!(
        maps <= 4,
        "old memory tables are not unmapped: {maps} mappings of guest RAM"
    );
    assert_alive(sw, "memory-table swaps");
}

// ---------------------------------------------------------------------------------------------
// Known bug: a frontend that stops in the middle of a message freezes the control thread.
// ---------------------------------------------------------------------------------------------

/// A frontend sends a message header that promises a payload and then sends nothing more,
/// keeping the connection open. The switch must not wait for it forever: its control socket
/// must keep answering and SIGTERM must still stop it.
#[test]
fn stalled_frontend_does_not_freeze_the_control_thread() {
    let (mut lab, sock) = evil_lab("evil-stall");
    let ev = Evil::connect(&sock, &SETUP);
    wait_link(lab.switch(), true, "stall: connected");
    let mut s = ev.fe.stream();
    s.write_all(&raw_header(Request::SetMemTable as u32, 1, 264))
        .unwrap();
    s.write_all(&[1, 0, 0, 0]).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let r = lab.switch().ctl_json("stats");
    assert!(
        r.is_ok(),
        "ctl stats stopped answering while a frontend stalls mid-message: {}",
        r.unwrap_err()
    );
    assert_forwarding(&lab, "stalled frontend");
    let t0 = Instant::now();
    let status = lab.stop_switch();
    assert!(
        status.success() && t0.elapsed() < Duration::from_secs(9),
        "switch must exit 0 promptly on SIGTERM with a stalled frontend: {status:?} after {:?}",
        t0.elapsed()
    );
    drop(ev);
}

// ---------------------------------------------------------------------------------------------
// Known bug: a guest-RX queue's "broken" state outlives the frontend that caused it.
// ---------------------------------------------------------------------------------------------

/// A guest breaks its RX ring (vring 0), the frontend goes away and a new one connects. The new
/// connection starts clean: its error eventfd must not be signalled and a new violation must be
/// logged as a new episode. Today the guest-RX PMD handle clears the old "broken" flag only when
/// it next has a frame for the guest, so until then the control side still sees vring 0 broken:
/// it signals the new frontend's error eventfd right after SET_VRING_ERR/KICK, and the switch's
/// once-per-episode log line is not repeated for the next violation.
#[test]
fn guest_rx_reset_clears_the_broken_state() {
    let (lab, sock) = evil_lab("evil-stale");
    let sw = lab.switch();
    let h1raw = lab.host("h1").raw();
    let flood = frame(
        BROADCAST,
        lab.host("h1").mac,
        None,
        ETH_TEST,
        &marker("flood"),
    );
    let ev = Evil::connect(&sock, &SETUP);
    wait_link(sw, true, "first connection");
    ev.rx_desc(0, ev.gpa(GUEST_SIZE + 0x10000), 2048, VIRTQ_DESC_F_WRITE, 0);
    let mut rx = ev.rx.clone();
    rx.push_avail(&ev.g, 0);
    let e = wait_counter(sw, "queue_errors", 1, || h1raw.send(&flood));
    assert_eq!(e, 1, "the RX violation is counted");
    assert_eq!(wait_log(sw, &[LOG_VIOLATION, "vring=0"], 1), 1);
    drop(ev);
    wait_link(sw, false, "first connection gone");

    // No frame for the guest from here on: h1 and h2 stay quiet.
    let ev = Evil::connect(&sock, &SETUP);
    wait_link(sw, true, "second connection");
    std::thread::sleep(Duration::from_millis(2500));
    let spurious = eventfd_take(ev.errs[0].as_fd());
    assert_eq!(
        spurious, 0,
        "the new frontend's vring 0 error eventfd was signalled although its guest did nothing wrong"
    );
    ev.rx_desc(
        0,
        ev.gpa(RX_BUFS),
        1,
        VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
        0,
    );
    let mut rx = ev.rx.clone();
    rx.push_avail(&ev.g, 0);
    let e = wait_counter(sw, "queue_errors", 2, || h1raw.send(&flood));
    assert_eq!(e, 2, "the second RX violation is counted");
    let deadline = Instant::now() + WAIT;
    let mut signalled = 0;
    while signalled == 0 && Instant::now() < deadline {
        signalled = eventfd_take(ev.errs[0].as_fd());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        signalled > 0,
        "the second connection's violation is signalled on its error eventfd"
    );
    assert_eq!(
        wait_log(sw, &[LOG_VIOLATION, "vring=0"], 2),
        2,
        "the second connection's violation is logged as a new episode"
    );
}
