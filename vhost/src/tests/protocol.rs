//! The full vhost-user handshake as QEMU performs it, over a socketpair, then frames both ways;
//! malformed and hostile messages; memory table replacement; reconnection.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::device::{NetConfig, VhostUserNet, STATUS_DRIVER_OK};
use crate::protocol::{
    MemoryRegion, Pod, ProtocolFeatures, Request, VirtioFeatures, VringState, FLAG_NEED_REPLY,
};
use crate::queue::{RxQueue, TxQueue};
use crate::testutil::{eventfd, eventfd_take, memfd, Frontend, MockGuest, MockVring};

const QSZ: u16 = 64;

/// A device served on a control thread that handles one message at a time, so the test can
/// inspect it between messages.
struct Backend {
    dev: Arc<Mutex<VhostUserNet>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Backend {
    fn start(dev: VhostUserNet) -> (Backend, UnixStream) {
        let dev = Arc::new(Mutex::new(dev));
        let stop = Arc::new(AtomicBool::new(false));
        let (be, fe) = UnixStream::pair().unwrap();
        dev.lock().unwrap().attach(be);
        let (d, s) = (dev.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let mut dev = d.lock().unwrap();
                if !dev.is_connected() {
                    drop(dev);
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
                dev.wait_and_serve(Duration::from_millis(1), |_| {});
                drop(dev);
                thread::yield_now();
            }
        });
        (
            Backend {
                dev,
                stop,
                thread: Some(thread),
            },
            fe,
        )
    }

    fn reconnect(&self) -> UnixStream {
        let (be, fe) = UnixStream::pair().unwrap();
        self.dev.lock().unwrap().attach(be);
        fe
    }

    fn with<R>(&self, f: impl FnOnce(&mut VhostUserNet) -> R) -> R {
        f(&mut self.dev.lock().unwrap())
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

struct Guest {
    g: MockGuest,
    rx: MockVring, // guest RX, vring 0
    tx: MockVring, // guest TX, vring 1
    calls: [OwnedFd; 2],
    kicks: [OwnedFd; 2],
    data: u64,
}

impl Guest {
    fn new() -> Guest {
        let g = MockGuest::new(1 << 20);
        let rx = MockVring::new(&g, g.gpa_base, QSZ);
        let tx = MockVring::new(&g, g.gpa_base + 0x4000, QSZ);
        let data = g.gpa_base + 0x10000;
        Guest {
            g,
            rx,
            tx,
            calls: [eventfd(), eventfd()],
            kicks: [eventfd(), eventfd()],
            data,
        }
    }

    fn alloc(&mut self, bytes: &[u8]) -> u64 {
        let a = self.data;
        self.g.write(a, bytes);
        self.data += (bytes.len() as u64 + 63) & !63;
        a
    }
}

/// What QEMU 7.2 sends for a vhost-user-net device with one queue pair, up to the guest's
/// DRIVER_OK and ring enable.
fn qemu_handshake(fe: &mut Frontend, guest: &Guest) {
    let feats = fe.get_u64(Request::GetFeatures).unwrap();
    assert_eq!(feats, VirtioFeatures::offered().bits());
    assert_eq!(feats & VirtioFeatures::LOG_ALL.bits(), 0);
    let pf = fe.get_u64(Request::GetProtocolFeatures).unwrap();
    assert_eq!(pf & ProtocolFeatures::LOG_SHMFD.bits(), 0);
    let want = ProtocolFeatures::MQ
        | ProtocolFeatures::REPLY_ACK
        | ProtocolFeatures::NET_MTU
        | ProtocolFeatures::STATUS;
    assert_eq!(pf & want.bits(), want.bits());
    assert_eq!(
        fe.set_u64(Request::SetProtocolFeatures, want.bits())
            .unwrap(),
        0
    );
    fe.reply_ack = true;
    assert_eq!(fe.get_u64(Request::GetQueueNum).unwrap(), 1);
    assert_eq!(fe.send(Request::SetOwner, &[], &[]).unwrap(), 0);
    assert_eq!(fe.set_u64(Request::NetSetMtu, 1500).unwrap(), 0);
    for (i, c) in guest.calls.iter().enumerate() {
        fe.set_vring_fd(Request::SetVringCall, i as u32, Some(c.as_fd()))
            .unwrap();
    }
    let acked = VirtioFeatures::VERSION_1
        | VirtioFeatures::NET_MRG_RXBUF
        | VirtioFeatures::RING_EVENT_IDX
        | VirtioFeatures::RING_INDIRECT_DESC
        | VirtioFeatures::NET_MTU
        | VirtioFeatures::NET_STATUS
        | VirtioFeatures::PROTOCOL_FEATURES;
    assert_eq!(fe.set_u64(Request::SetFeatures, acked.bits()).unwrap(), 0);
    let st = fe.get_u64(Request::GetStatus).unwrap();
    assert_eq!(fe.set_u64(Request::SetStatus, st | 8).unwrap(), 0); // FEATURES_OK
    assert_eq!(
        fe.set_mem_table(&[guest.g.region()], &[guest.g.fd()])
            .unwrap(),
        0
    );
    for (i, vr) in [&guest.rx, &guest.tx].into_iter().enumerate() {
        let i = i as u32;
        assert_eq!(
            fe.set_state(Request::SetVringNum, i, u32::from(QSZ))
                .unwrap(),
            0
        );
        assert_eq!(fe.set_state(Request::SetVringBase, i, 0).unwrap(), 0);
        assert_eq!(
            fe.send(Request::SetVringAddr, vr.addr(&guest.g, i).as_bytes(), &[])
                .unwrap(),
            0
        );
        let k = guest.kicks[i as usize].as_fd();
        assert_eq!(
            fe.set_vring_fd(Request::SetVringKick, i, Some(k)).unwrap(),
            0
        );
        let c = guest.calls[i as usize].as_fd();
        assert_eq!(
            fe.set_vring_fd(Request::SetVringCall, i, Some(c)).unwrap(),
            0
        );
    }
    assert_eq!(fe.set_u64(Request::SetStatus, 1 | 2 | 4 | 8).unwrap(), 0);
    for i in 0..2 {
        assert_eq!(fe.set_state(Request::SetVringEnable, i, 1).unwrap(), 0);
    }
}

fn wait_ready(rx: &mut RxQueue, tx: &mut TxQueue) {
    for _ in 0..1000 {
        if rx.sync() && tx.sync() {
            return;
        }
        thread::sleep(Duration::from_millis(1));
    }
    panic!("queues never became ready");
}

/// Polls the handles on a helper thread while `f` runs (so GET_VRING_BASE finds them quiescent).
fn while_polling<R>(rx: &mut RxQueue, tx: &mut TxQueue, f: impl FnOnce() -> R) -> R {
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                rx.sync();
                tx.sync();
                thread::yield_now();
            }
        });
        let r = f();
        done.store(true, Ordering::Relaxed);
        r
    })
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

#[test]
fn qemu_handshake_then_frames_both_ways() {
    let dev = VhostUserNet::new(NetConfig::default());
    let (mut rxq, mut txq) = dev.queue_pair(0).unwrap();
    assert!(dev.queue_pair(0).is_none(), "one owner per vring");
    let (be, stream) = Backend::start(dev);
    let mut fe = Frontend::new(stream);
    let mut guest = Guest::new();
    assert!(!rxq.sync() && !txq.sync());
    qemu_handshake(&mut fe, &guest);
    wait_ready(&mut rxq, &mut txq);
    be.with(|d| {
        assert!(d.link_up());
        assert_eq!(d.ready_queue_pairs(), 1);
        assert_eq!(d.mtu(), Some(1500));
        assert!(d.acked_features().contains(VirtioFeatures::NET_MRG_RXBUF));
    });

    // Guest transmits two frames.
    let f1 = frame(60, 1);
    let f2 = frame(1000, 2);
    for f in [&f1, &f2] {
        let mut b = vec![0u8; 12];
        b.extend_from_slice(f);
        let a = guest.alloc(&b);
        let g = &guest.g;
        guest.tx.add_chain(g, &[(a, b.len() as u32, false)]);
    }
    let mut store = [[0u8; 2048]; 4];
    let mut bufs: Vec<&mut [u8]> = store.iter_mut().map(|b| &mut b[..]).collect();
    let mut lens = [0usize; 4];
    assert_eq!(rxq.dequeue_burst(&mut bufs, &mut lens), 2);
    assert_eq!(&store[0][..lens[0]], &f1[..]);
    assert_eq!(&store[1][..lens[1]], &f2[..]);
    assert_eq!(guest.tx.used_idx(&guest.g), 2);
    assert_eq!(
        eventfd_take(guest.calls[1].as_fd()),
        1,
        "first used update interrupts"
    );

    // Guest posts receive buffers; the switch sends a frame that needs two of them.
    for _ in 0..4 {
        let a = guest.alloc(&[0; 1024]);
        let g = &guest.g;
        guest.rx.add_chain(g, &[(a, 1024, true)]);
    }
    let big = frame(1500, 3);
    assert_eq!(txq.enqueue_burst(&[&big, &f1]), 2);
    assert_eq!(guest.rx.used_idx(&guest.g), 3);
    let (id0, len0) = guest.rx.used_elem(&guest.g, 0);
    assert_eq!((id0, len0), (0, 1024));
    assert_eq!(guest.rx.used_elem(&guest.g, 1).1, 1512 - 1024);
    assert_eq!(eventfd_take(guest.calls[0].as_fd()), 1);

    let m = be.with(|d| d.metrics());
    assert_eq!(m.from_guest_packets, 2);
    assert_eq!(m.from_guest_bytes, 1060);
    assert_eq!(m.to_guest_packets, 2);
    assert_eq!(m.to_guest_bytes, 1560);

    // QEMU stops the device: status 0, then GET_VRING_BASE per ring.
    assert_eq!(fe.set_u64(Request::SetStatus, 0).unwrap(), 0);
    let bases = while_polling(&mut rxq, &mut txq, || {
        [0u32, 1].map(|i| {
            let r = fe
                .get(
                    Request::GetVringBase,
                    VringState { index: i, num: 0 }.as_bytes(),
                )
                .unwrap();
            VringState::from_bytes(&r).unwrap().num
        })
    });
    assert_eq!(bases, [3, 2]);
    assert!(!rxq.sync() && !txq.sync());
    assert_eq!(be.with(|d| d.control_stats().stop_timeouts), 0);

    // The frontend goes away: queues stay not ready, the backend is ready for the next one.
    drop(fe);
    for _ in 0..1000 {
        if !be.with(|d| d.is_connected()) {
            break;
        }
        thread::sleep(Duration::from_millis(1));
    }
    assert!(!be.with(|d| d.is_connected()));
    assert!(!be.with(|d| d.link_up()));

    // A reconnecting frontend resumes where the rings stopped.
    let mut fe = Frontend::new(be.reconnect());
    qemu_handshake_resume(&mut fe, &guest, bases);
    wait_ready(&mut rxq, &mut txq);
    let a = guest.alloc(&[0; 1024]);
    let g = &guest.g;
    guest.rx.add_chain(g, &[(a, 1024, true)]);
    assert_eq!(txq.enqueue_burst(&[&f1]), 1);
    assert_eq!(guest.rx.used_idx(&guest.g), 4);
    assert_eq!(be.with(|d| d.control_stats().connections), 2);
}

/// The handshake again, with ring bases from a previous GET_VRING_BASE.
fn qemu_handshake_resume(fe: &mut Frontend, guest: &Guest, bases: [u32; 2]) {
    fe.set_u64(
        Request::SetProtocolFeatures,
        ProtocolFeatures::REPLY_ACK.bits(),
    )
    .unwrap();
    fe.reply_ack = true;
    let acked = VirtioFeatures::VERSION_1
        | VirtioFeatures::NET_MRG_RXBUF
        | VirtioFeatures::PROTOCOL_FEATURES;
    assert_eq!(fe.set_u64(Request::SetFeatures, acked.bits()).unwrap(), 0);
    assert_eq!(
        fe.set_mem_table(&[guest.g.region()], &[guest.g.fd()])
            .unwrap(),
        0
    );
    for (i, vr) in [&guest.rx, &guest.tx].into_iter().enumerate() {
        let i32_ = i as u32;
        fe.set_state(Request::SetVringNum, i32_, u32::from(QSZ))
            .unwrap();
        fe.set_state(Request::SetVringBase, i32_, bases[i]).unwrap();
        fe.send(
            Request::SetVringAddr,
            vr.addr(&guest.g, i32_).as_bytes(),
            &[],
        )
        .unwrap();
        fe.set_vring_fd(Request::SetVringKick, i32_, None).unwrap();
        fe.set_vring_fd(Request::SetVringCall, i32_, Some(guest.calls[i].as_fd()))
            .unwrap();
        fe.set_state(Request::SetVringEnable, i32_, 1).unwrap();
    }
}

#[test]
fn bad_messages_are_nacked_and_the_connection_survives() {
    let dev = VhostUserNet::new(NetConfig::default());
    let (mut rxq, mut txq) = dev.queue_pair(0).unwrap();
    let (be, stream) = Backend::start(dev);
    let mut fe = Frontend::new(stream);
    let guest = Guest::new();
    qemu_handshake(&mut fe, &guest);
    wait_ready(&mut rxq, &mut txq);

    // Wrong payload size.
    fe.send_raw(Request::SetVringNum as u32, FLAG_NEED_REPLY, &[0; 4], &[])
        .unwrap();
    assert_eq!(
        fe.recv_reply(Request::SetVringNum as u32).unwrap(),
        1u64.to_ne_bytes()
    );
    // Unknown request.
    fe.send_raw(99, FLAG_NEED_REPLY, &[], &[]).unwrap();
    assert_eq!(fe.recv_reply(99).unwrap(), 1u64.to_ne_bytes());
    // Unsupported: dirty logging.
    assert_eq!(fe.send(Request::SetLogBase, &[0; 16], &[]).unwrap(), 1);
    // Features that were not offered.
    assert_eq!(fe.set_u64(Request::SetFeatures, 1 << 0).unwrap(), 1);
    // Bad vring index, bad queue size, misaligned ring.
    assert_eq!(fe.set_state(Request::SetVringNum, 7, 64).unwrap(), 1);
    assert_eq!(fe.set_state(Request::SetVringNum, 0, 100).unwrap(), 1);
    let mut a = guest.rx.addr(&guest.g, 0);
    a.used_user_addr += 2;
    assert_eq!(
        fe.send(Request::SetVringAddr, a.as_bytes(), &[]).unwrap(),
        1
    );
    // KICK without its fd.
    assert_eq!(fe.set_u64(Request::SetVringKick, 0).unwrap(), 1);
    // MTU out of range.
    assert_eq!(fe.set_u64(Request::NetSetMtu, 65000).unwrap(), 1);

    // A region larger than its file: rejected, and the running table stays in force.
    let small = memfd(0x1000);
    let region = MemoryRegion {
        guest_phys_addr: 0,
        memory_size: 0x10_0000,
        userspace_addr: 0x7000_0000,
        mmap_offset: 0,
    };
    assert_eq!(fe.set_mem_table(&[region], &[small.as_fd()]).unwrap(), 1);
    // Region count and fd count disagree.
    assert_eq!(
        fe.set_mem_table(&[guest.g.region(), region], &[guest.g.fd()])
            .unwrap(),
        1
    );
    assert!(rxq.sync() && txq.sync(), "still running on the old table");
    let errors = be.with(|d| d.control_stats().errors);
    assert_eq!(errors, 11);
    assert!(be.with(|d| d.is_connected()));
    assert_eq!(fe.get_u64(Request::GetQueueNum).unwrap(), 1);
}

#[test]
fn truncated_or_garbled_messages_end_the_connection() {
    for case in 0..2 {
        let dev = VhostUserNet::new(NetConfig::default());
        let (be, stream) = Backend::start(dev);
        let fe = Frontend::new(stream);
        if case == 0 {
            // SET_MEM_TABLE whose header promises 264 bytes, then the peer hangs up.
            let mut hdr = Vec::new();
            hdr.extend_from_slice(&(Request::SetMemTable as u32).to_ne_bytes());
            hdr.extend_from_slice(&1u32.to_ne_bytes());
            hdr.extend_from_slice(&264u32.to_ne_bytes());
            hdr.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
            use std::io::Write;
            fe.stream().write_all(&hdr).unwrap();
        } else {
            // Version 2.
            fe.send_raw(Request::GetFeatures as u32, 0x2 ^ 0x1, &[], &[])
                .unwrap();
        }
        drop(fe);
        for _ in 0..1000 {
            if !be.with(|d| d.is_connected()) {
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        assert!(!be.with(|d| d.is_connected()), "case {case}");
    }
}

#[test]
fn mem_table_change_while_running() {
    let dev = VhostUserNet::new(NetConfig::default());
    let (mut rxq, mut txq) = dev.queue_pair(0).unwrap();
    let (be, stream) = Backend::start(dev);
    let mut fe = Frontend::new(stream);
    let mut guest = Guest::new();
    qemu_handshake(&mut fe, &guest);
    wait_ready(&mut rxq, &mut txq);
    // Memory hotplug: QEMU re-sends the table (same RAM, new mapping on our side).
    assert_eq!(
        fe.set_mem_table(&[guest.g.region()], &[guest.g.fd()])
            .unwrap(),
        0
    );
    assert!(
        be.with(|d| d.retired_count()) >= 2,
        "handles still hold the old table"
    );
    // The queues keep working and, at their next burst, let go of the old table.
    let a = guest.alloc(&[0; 512]);
    let g = &guest.g;
    guest.rx.add_chain(g, &[(a, 512, true)]);
    assert_eq!(txq.enqueue_burst(&[&frame(100, 1)]), 1);
    assert_eq!(rxq.dequeue_burst(&mut [], &mut []), 0);
    be.with(|d| {
        d.reclaim();
        assert_eq!(d.retired_count(), 0);
    });
}

#[test]
fn status_gates_readiness() {
    let dev = VhostUserNet::new(NetConfig::default());
    let (mut rxq, mut txq) = dev.queue_pair(0).unwrap();
    let (_be, stream) = Backend::start(dev);
    let mut fe = Frontend::new(stream);
    let guest = Guest::new();
    qemu_handshake(&mut fe, &guest);
    wait_ready(&mut rxq, &mut txq);
    assert_eq!(fe.set_u64(Request::SetStatus, 0).unwrap(), 0);
    assert!(!rxq.sync() && !txq.sync());
    assert_eq!(
        fe.set_u64(Request::SetStatus, u64::from(STATUS_DRIVER_OK))
            .unwrap(),
        0
    );
    assert!(rxq.sync() && txq.sync());
    assert_eq!(fe.set_state(Request::SetVringEnable, 1, 0).unwrap(), 0);
    assert!(!rxq.sync() && txq.sync());
    // Vring 1's handle runs on a stopped config, so GET_VRING_BASE need not wait for it even
    // though nobody polls it.
    let r = fe
        .get(
            Request::GetVringBase,
            VringState { index: 1, num: 0 }.as_bytes(),
        )
        .unwrap();
    assert_eq!(VringState::from_bytes(&r).unwrap().num, 0);
    assert_eq!(_be.with(|d| d.control_stats().stop_timeouts), 0);
}

#[test]
fn stop_of_a_running_unpolled_handle_times_out_boundedly() {
    let dev = VhostUserNet::new(NetConfig {
        stop_timeout: Duration::from_millis(20),
        ..NetConfig::default()
    });
    let (mut rxq, mut txq) = dev.queue_pair(0).unwrap();
    let (be, stream) = Backend::start(dev);
    let mut fe = Frontend::new(stream);
    let guest = Guest::new();
    qemu_handshake(&mut fe, &guest);
    wait_ready(&mut rxq, &mut txq);
    let r = fe
        .get(
            Request::GetVringBase,
            VringState { index: 0, num: 0 }.as_bytes(),
        )
        .unwrap();
    assert_eq!(VringState::from_bytes(&r).unwrap().num, 0);
    assert_eq!(be.with(|d| d.control_stats().stop_timeouts), 1);
    assert!(!txq.sync());
}

#[test]
fn multiqueue_pairs_are_independent() {
    let dev = VhostUserNet::new(NetConfig {
        queue_pairs: 4,
        ..NetConfig::default()
    });
    assert!(dev.queue_pair(4).is_none());
    let handles: Vec<_> = (0..4).map(|q| dev.queue_pair(q).unwrap()).collect();
    let (_be, stream) = Backend::start(dev);
    let fe = Frontend::new(stream);
    assert_eq!(fe.get_u64(Request::GetQueueNum).unwrap(), 4);
    assert_eq!(handles[3].0.vring_index(), 7);
    assert_eq!(handles[3].1.vring_index(), 6);
}
