//! Ring logic against an in-memory mock guest: no protocol, configs published directly.

use std::os::fd::AsFd;
use std::sync::Arc;

use crate::error::VirtqError;
use crate::guestfd::GuestEventfd;
use crate::memory::GuestMemory;
use crate::protocol::Request::SetVringCall;
use crate::queue::{QueueConfig, QueueShared, RxQueue, TxQueue};
use crate::testutil::{eventfd, eventfd_take, MockGuest, MockVring};
use crate::virtqueue::{Desc, Ring, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};

const QSZ: u16 = 16;
const HDR: usize = 12;

struct H {
    g: MockGuest,
    qsz: u16,
    vr: MockVring,
    mem: Arc<GuestMemory>,
    shared: Arc<QueueShared>,
    call: Arc<GuestEventfd>,
    retired: Vec<Arc<QueueConfig>>,
    /// Next free data address.
    data: u64,
}

impl H {
    fn new(mrg: bool, event_idx: bool) -> H {
        H::sized(QSZ, 1 << 20, mrg, event_idx)
    }

    /// A queue of `qsz` entries in `ram` bytes of guest memory, data after the ring.
    fn sized(qsz: u16, ram: u64, mrg: bool, event_idx: bool) -> H {
        let g = MockGuest::new(ram);
        let vr = MockVring::new(&g, g.gpa_base, qsz);
        let mem = Arc::new(g.memory());
        let shared = Arc::new(QueueShared::new(0));
        let data = g.gpa_base + vr.footprint().next_multiple_of(0x10000);
        let mut h = H {
            g,
            qsz,
            vr,
            mem,
            shared,
            call: Arc::new(GuestEventfd::new(eventfd(), SetVringCall, 0, 0)),
            retired: Vec::new(),
            data,
        };
        h.publish(1, mrg, event_idx);
        h
    }

    fn publish(&mut self, start_id: u64, mrg: bool, event_idx: bool) {
        let ring = Ring::new(
            &self.mem,
            self.qsz,
            self.g.uva(self.vr.desc),
            self.g.uva(self.vr.avail),
            self.g.uva(self.vr.used),
        )
        .unwrap();
        let cfg = QueueConfig {
            mem: Some(self.mem.clone()),
            ring: Some(ring),
            start_id,
            base: 0,
            call: Some(self.call.clone()),
            hdr_len: HDR,
            mrg,
            event_idx,
        };
        if let Some(old) = self.shared.publish(cfg) {
            self.retired.push(old);
        }
    }

    fn rx(&self) -> RxQueue {
        RxQueue::new(self.shared.clone())
    }

    fn tx(&self) -> TxQueue {
        TxQueue::new(self.shared.clone())
    }

    fn buf(&mut self, bytes: &[u8]) -> u64 {
        let a = self.data;
        self.g.write(a, bytes);
        self.data += (bytes.len() as u64 + 15) & !15;
        a
    }

    fn space(&mut self, len: u32) -> u64 {
        self.buf(&vec![0xee; len as usize])
    }

    fn notified(&self) -> u64 {
        eventfd_take(self.call.as_fd())
    }
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

fn dequeue(rx: &mut RxQueue, n: usize) -> Vec<Vec<u8>> {
    let mut store = vec![vec![0u8; 2048]; n];
    let mut bufs: Vec<&mut [u8]> = store.iter_mut().map(|b| b.as_mut_slice()).collect();
    let mut lens = vec![0; n];
    let got = rx.dequeue_burst(&mut bufs, &mut lens);
    (0..got).map(|i| store[i][..lens[i]].to_vec()).collect()
}

#[test]
fn tx_strips_header_in_any_layout() {
    let mut h = H::new(true, false);
    let f1 = frame(60, 1);
    let f2 = frame(100, 2);
    let f3 = frame(64, 3);
    // Header and frame in separate descriptors.
    let (a, b) = (h.buf(&[0xaa; HDR]), h.buf(&f1));
    h.vr.add_chain(&h.g, &[(a, HDR as u32, false), (b, 60, false)]);
    // Header and frame in one descriptor.
    let mut one = vec![0xbb; HDR];
    one.extend_from_slice(&f2);
    let a = h.buf(&one);
    h.vr.add_chain(&h.g, &[(a, one.len() as u32, false)]);
    // Header split across descriptors, frame split too.
    let mut all = vec![0xcc; HDR];
    all.extend_from_slice(&f3);
    let (a, b, c) = (h.buf(&all[..5]), h.buf(&all[5..20]), h.buf(&all[20..]));
    h.vr.add_chain(
        &h.g,
        &[
            (a, 5, false),
            (b, 15, false),
            (c, (all.len() - 20) as u32, false),
        ],
    );

    let mut rx = h.rx();
    let got = dequeue(&mut rx, 8);
    assert_eq!(got, vec![f1.clone(), f2.clone(), f3.clone()]);
    assert_eq!(h.vr.used_idx(&h.g), 3);
    assert_eq!(h.vr.used_elem(&h.g, 0), (0, 0));
    assert_eq!(h.vr.used_elem(&h.g, 1), (2, 0));
    assert_eq!(h.vr.used_elem(&h.g, 2), (3, 0));
    assert_eq!(rx.metrics().packets.get(), 3);
    assert_eq!(rx.metrics().bytes.get(), (60 + 100 + 64) as u64);
    // Poll mode: the guest is told not to kick.
    assert_eq!(h.vr.used_flags(&h.g), 1);
    assert!(dequeue(&mut rx, 8).is_empty());
}

#[test]
fn tx_drops_short_and_oversize_but_consumes_them() {
    let mut h = H::new(true, false);
    let a = h.buf(&[0; 8]);
    h.vr.add_chain(&h.g, &[(a, 8, false)]); // shorter than the header
    let big = h.space(HDR as u32 + 4000);
    h.vr.add_chain(&h.g, &[(big, HDR as u32 + 4000, false)]); // longer than 2048
    let mut rx = h.rx();
    assert!(dequeue(&mut rx, 4).is_empty());
    assert_eq!(h.vr.used_idx(&h.g), 2);
    assert_eq!(rx.metrics().drop_short.get(), 1);
    assert_eq!(rx.metrics().drop_oversize.get(), 1);
}

/// One-buffer frames are copied out only after the whole burst is walked: frames dropped,
/// frames copied at once (several buffers) and a violation between them must not shift or
/// lose any of them.
#[test]
fn tx_burst_mixing_held_and_copied_frames_keeps_each_intact() {
    let mut h = H::new(true, false);
    let with_hdr = |f: &[u8]| {
        let mut v = vec![0x11; HDR];
        v.extend_from_slice(f);
        v
    };
    let (f1, f2, f3, f4) = (frame(60, 1), frame(1500, 2), frame(64, 3), frame(200, 4));
    let a = h.buf(&with_hdr(&f1));
    h.vr.add_chain(&h.g, &[(a, (HDR + 60) as u32, false)]);
    let big = h.space(HDR as u32 + 4000);
    h.vr.add_chain(&h.g, &[(big, HDR as u32 + 4000, false)]); // oversize: dropped
    let all = with_hdr(&f2);
    let (a, b) = (h.buf(&all[..700]), h.buf(&all[700..]));
    h.vr.add_chain(
        &h.g,
        &[(a, 700, false), (b, (all.len() - 700) as u32, false)],
    );
    let a = h.buf(&with_hdr(&f3));
    h.vr.add_chain(&h.g, &[(a, (HDR + 64) as u32, false)]);
    let a = h.buf(&with_hdr(&f4));
    h.vr.add_chain(&h.g, &[(a, (HDR + 200) as u32, false)]);
    let w = h.space(100);
    h.vr.add_chain(&h.g, &[(w, 100, true)]); // writable in a TX chain: a violation
    let mut rx = h.rx();
    assert_eq!(dequeue(&mut rx, 8), vec![f1, f2, f3, f4]);
    assert_eq!(rx.error(), Some(VirtqError::WritableInTxChain));
    assert_eq!(
        h.vr.used_idx(&h.g),
        5,
        "the chains before the violation are consumed"
    );
    assert_eq!(rx.metrics().drop_oversize.get(), 1);
}

#[test]
fn tx_burst_is_bounded_by_buffers_and_32() {
    let mut h = H::new(true, false);
    let f = frame(60, 9);
    let mut one = vec![0; HDR];
    one.extend_from_slice(&f);
    let a = h.buf(&one);
    for _ in 0..QSZ {
        h.vr.add_chain(&h.g, &[(a, one.len() as u32, false)]);
    }
    let mut rx = h.rx();
    assert_eq!(dequeue(&mut rx, 5).len(), 5);
    assert_eq!(h.vr.used_idx(&h.g), 5);
    assert_eq!(dequeue(&mut rx, 64).len(), 11);
    assert_eq!(h.vr.used_idx(&h.g), 16);
}

#[test]
fn rx_mergeable_spans_chains_and_sets_num_buffers() {
    let mut h = H::new(true, false);
    let bufs: Vec<u64> = (0..3).map(|_| h.space(1000)).collect();
    for &b in &bufs {
        h.vr.add_chain(&h.g, &[(b, 1000, true)]);
    }
    let f = frame(2500, 7);
    let mut tx = h.tx();
    assert_eq!(tx.enqueue_burst(&[&f]), 1);
    assert_eq!(h.vr.used_idx(&h.g), 3);
    assert_eq!(h.vr.used_elem(&h.g, 0), (0, 1000));
    assert_eq!(h.vr.used_elem(&h.g, 1), (1, 1000));
    assert_eq!(h.vr.used_elem(&h.g, 2), (2, 512));
    let hdr = h.g.read(bufs[0], HDR);
    assert_eq!(&hdr[..10], &[0; 10], "no offloads: zero header");
    assert_eq!(u16::from_le_bytes([hdr[10], hdr[11]]), 3);
    let mut got = h.g.read(bufs[0] + HDR as u64, 1000 - HDR);
    got.extend(h.g.read(bufs[1], 1000));
    got.extend(h.g.read(bufs[2], 512));
    assert_eq!(got, f);
    assert_eq!(tx.metrics().bytes.get(), 2500);
    // One used-idx update, one interrupt for the burst.
    assert_eq!(h.notified(), 1);
}

#[test]
fn rx_burst_mixing_single_and_multi_buffer_frames_keeps_each_intact() {
    // Small frames take the deferred one-buffer path, the big one is written chain by chain in
    // between: every frame must land whole, in order, with its own num_buffers.
    let mut h = H::new(true, false);
    let bufs: Vec<u64> = (0..5).map(|_| h.space(200)).collect();
    for &b in &bufs {
        h.vr.add_chain(&h.g, &[(b, 200, true)]);
    }
    let (a, big, c) = (frame(60, 1), frame(500, 2), frame(64, 3));
    let mut tx = h.tx();
    assert_eq!(tx.enqueue_burst(&[&a, &big, &c]), 3);
    assert_eq!(h.vr.used_idx(&h.g), 5);
    let nb = |b: u64| u16::from_le_bytes(h.g.read(b + 10, 2).try_into().unwrap());
    assert_eq!((nb(bufs[0]), nb(bufs[1]), nb(bufs[4])), (1, 3, 1));
    assert_eq!(h.g.read(bufs[0], 10), vec![0; 10]);
    assert_eq!(h.g.read(bufs[0] + HDR as u64, 60), a);
    let mut got = h.g.read(bufs[1] + HDR as u64, 200 - HDR);
    got.extend(h.g.read(bufs[2], 200));
    got.extend(h.g.read(bufs[3], 112));
    assert_eq!(got, big);
    assert_eq!(h.g.read(bufs[4] + HDR as u64, 64), c);
    assert_eq!(h.vr.used_elem(&h.g, 0), (0, 72));
    assert_eq!(h.vr.used_elem(&h.g, 4), (4, 76));
}

#[test]
fn rx_violation_mid_burst_still_delivers_the_frames_before_it() {
    let mut h = H::new(true, false);
    let good = h.space(200);
    h.vr.add_chain(&h.g, &[(good, 200, true)]);
    h.vr.add_chain(&h.g, &[(0x10, 200, true)]);
    let f = frame(60, 9);
    let mut tx = h.tx();
    assert_eq!(tx.enqueue_burst(&[&f, &f]), 1);
    assert!(matches!(
        tx.error(),
        Some(VirtqError::BufferOutOfMemory { addr: 0x10, .. })
    ));
    assert_eq!(h.vr.used_idx(&h.g), 1, "the good frame is published");
    assert_eq!(h.g.read(good + HDR as u64, 60), f);
    assert_eq!(h.g.read(good + 10, 2), vec![1, 0]);
}

#[test]
fn rx_header_split_across_descriptors() {
    let mut h = H::new(true, false);
    let (a, b, c) = (h.space(4), h.space(8), h.space(200));
    h.vr.add_chain(&h.g, &[(a, 4, true), (b, 8, true), (c, 200, true)]);
    let f = frame(150, 1);
    let mut tx = h.tx();
    assert_eq!(tx.enqueue_burst(&[&f]), 1);
    assert_eq!(h.vr.used_elem(&h.g, 0), (0, 162));
    assert_eq!(
        h.g.read(b + 6, 2),
        vec![1, 0],
        "num_buffers at header offset 10"
    );
    assert_eq!(h.g.read(c, 150), f);
}

#[test]
fn rx_without_mrg_uses_one_chain_and_num_buffers_one() {
    let mut h = H::new(false, false);
    let small = h.space(100);
    h.vr.add_chain(&h.g, &[(small, 100, true)]);
    let mut tx = h.tx();
    let f = frame(200, 3);
    assert_eq!(tx.enqueue_burst(&[&f]), 0, "does not fit one chain");
    assert_eq!(h.vr.used_idx(&h.g), 0);
    let f2 = frame(60, 4);
    assert_eq!(tx.enqueue_burst(&[&f2]), 1, "the chain was not consumed");
    assert_eq!(h.g.read(small + 10, 2), vec![1, 0]);
    assert_eq!(h.vr.used_elem(&h.g, 0), (0, 72));
}

#[test]
fn rx_out_of_buffers_gives_back_partial_frames() {
    let mut h = H::new(true, false);
    let a = h.space(100);
    h.vr.add_chain(&h.g, &[(a, 100, true)]);
    let mut tx = h.tx();
    let small = frame(50, 1);
    let big = frame(500, 2);
    assert_eq!(tx.enqueue_burst(&[&small, &big, &small]), 1);
    assert_eq!(tx.metrics().drop_no_buffer.get(), 2);
    let b = h.space(300);
    let c = h.space(300);
    h.vr.add_chain(&h.g, &[(b, 300, true)]);
    h.vr.add_chain(&h.g, &[(c, 300, true)]);
    assert_eq!(tx.enqueue_burst(&[&big]), 1);
    assert_eq!(h.vr.used_idx(&h.g), 3);
    assert_eq!(h.vr.used_elem(&h.g, 1), (1, 300));
    assert_eq!(h.vr.used_elem(&h.g, 2), (2, 212));
}

#[test]
fn indirect_descriptors_both_directions() {
    let mut h = H::new(true, false);
    let f = frame(80, 5);
    let (a, b) = (h.buf(&[0; HDR]), h.buf(&f));
    let table = h.space(64);
    h.vr.add_indirect(&h.g, table, &[(a, HDR as u32, false), (b, 80, false)]);
    let mut rx = h.rx();
    assert_eq!(dequeue(&mut rx, 2), vec![f.clone()]);

    let mut h = H::new(true, false);
    let (a, b) = (h.space(HDR as u32), h.space(100));
    let table = h.space(64);
    h.vr.add_indirect(&h.g, table, &[(a, HDR as u32, true), (b, 100, true)]);
    let mut tx = h.tx();
    assert_eq!(tx.enqueue_burst(&[&f]), 1);
    assert_eq!(h.g.read(b, 80), f);
    assert_eq!(h.vr.used_elem(&h.g, 0), (0, 92));
}

#[test]
fn event_idx_notifies_only_when_asked() {
    let mut h = H::new(true, true);
    let mut tx = h.tx();
    let f = frame(60, 1);
    let post = |h: &mut H, n: usize| {
        for _ in 0..n {
            let a = h.space(200);
            h.vr.add_chain(&h.g, &[(a, 200, true)]);
        }
    };
    post(&mut h, 8);
    // The first decision after a start always notifies.
    h.vr.set_used_event(&h.g, 100);
    assert_eq!(tx.enqueue_burst(&[&f]), 1);
    assert_eq!(h.notified(), 1);
    // Poll mode: avail_event parked a full wrap away.
    assert_eq!(h.vr.avail_event(&h.g), 0xffff);
    // used 1 -> 2, the guest wants an event after idx 100: no.
    assert_eq!(tx.enqueue_burst(&[&f]), 1);
    assert_eq!(h.notified(), 0);
    // used 2 -> 4 crossing used_event = 2: yes, once for the burst.
    h.vr.set_used_event(&h.g, 2);
    assert_eq!(tx.enqueue_burst(&[&f, &f]), 2);
    assert_eq!(h.notified(), 1);
    assert_eq!(tx.metrics().notifications.get(), 2);
}

#[test]
fn no_interrupt_flag_is_honoured_without_event_idx() {
    let mut h = H::new(true, false);
    let mut tx = h.tx();
    for _ in 0..4 {
        let a = h.space(200);
        h.vr.add_chain(&h.g, &[(a, 200, true)]);
    }
    let f = frame(60, 1);
    h.vr.set_avail_flags(&h.g, 1);
    assert_eq!(tx.enqueue_burst(&[&f]), 1);
    assert_eq!(h.notified(), 0);
    h.vr.set_avail_flags(&h.g, 0);
    assert_eq!(tx.enqueue_burst(&[&f]), 1);
    assert_eq!(h.notified(), 1);
}

/// Runs one dequeue on a fresh harness after `setup` corrupted its ring; returns the error.
fn broken_by(setup: impl FnOnce(&mut H)) -> (VirtqError, H, RxQueue) {
    let mut h = H::new(true, false);
    setup(&mut h);
    let mut rx = h.rx();
    assert!(dequeue(&mut rx, 4).is_empty());
    let e = rx.take_error().expect("queue broken");
    assert_eq!(rx.take_error(), None, "reported once");
    assert_eq!(rx.error(), Some(e));
    assert_eq!(rx.metrics().errors.get(), 1);
    assert!(h.shared.is_broken());
    (e, h, rx)
}

#[test]
fn descriptor_loop_is_bounded() {
    let (e, ..) = broken_by(|h| {
        let a = h.space(64);
        let d = |next| Desc {
            addr: a,
            len: 64,
            flags: VIRTQ_DESC_F_NEXT,
            next,
        };
        h.vr.set_desc(&h.g, 0, d(1));
        h.vr.set_desc(&h.g, 1, d(0));
        h.vr.push_avail(&h.g, 0);
    });
    assert_eq!(e, VirtqError::ChainTooLong(QSZ));
}

#[test]
fn out_of_range_indices_break_the_queue() {
    let (e, ..) = broken_by(|h| h.vr.push_avail(&h.g, QSZ));
    assert!(matches!(
        e,
        VirtqError::DescIndexOutOfRange { index: 16, .. }
    ));
    let (e, ..) = broken_by(|h| {
        let a = h.space(64);
        h.vr.set_desc(
            &h.g,
            0,
            Desc {
                addr: a,
                len: 64,
                flags: VIRTQ_DESC_F_NEXT,
                next: 999,
            },
        );
        h.vr.push_avail(&h.g, 0);
    });
    assert!(matches!(
        e,
        VirtqError::DescIndexOutOfRange { index: 999, .. }
    ));
}

#[test]
fn avail_idx_jump_is_rejected() {
    let (e, h, mut rx) = broken_by(|h| h.vr.set_avail_idx(&h.g, QSZ + 1));
    assert_eq!(
        e,
        VirtqError::AvailIdxJump {
            last: 0,
            idx: 17,
            size: QSZ
        }
    );
    assert_eq!(h.vr.used_idx(&h.g), 0, "nothing replayed");
    assert!(!rx.sync(), "stays broken");
}

#[test]
fn bad_buffers_and_lengths() {
    let (e, ..) = broken_by(|h| {
        h.vr.add_chain(&h.g, &[(0x10, 64, false)]);
    });
    assert!(matches!(
        e,
        VirtqError::BufferOutOfMemory { addr: 0x10, .. }
    ));
    let (e, ..) = broken_by(|h| {
        h.vr.add_chain(&h.g, &[(u64::MAX - 4, 64, false)]);
    });
    assert!(matches!(e, VirtqError::BufferOutOfMemory { .. }));
    let (e, ..) = broken_by(|h| {
        let a = h.space(64);
        h.vr.add_chain(&h.g, &[(a, 64, true)]);
    });
    assert_eq!(e, VirtqError::WritableInTxChain);
    // An over-long chain: QSZ + 1 descriptors via an indirect table of 17 entries.
    let (e, ..) = broken_by(|h| {
        let a = h.space(64);
        let table = h.space(16 * 17);
        let bufs: Vec<(u64, u32, bool)> = (0..17).map(|_| (a, 4, false)).collect();
        h.vr.add_indirect(&h.g, table, &bufs);
    });
    assert_eq!(e, VirtqError::ChainTooLong(QSZ));
}

#[test]
fn bad_indirect_tables() {
    let ind = |len: u32, flags: u16| {
        move |h: &mut H| {
            let table = h.space(64);
            h.vr.set_desc(
                &h.g,
                0,
                Desc {
                    addr: table,
                    len,
                    flags: VIRTQ_DESC_F_INDIRECT | flags,
                    next: 1,
                },
            );
            h.vr.push_avail(&h.g, 0);
        }
    };
    assert_eq!(broken_by(ind(20, 0)).0, VirtqError::BadIndirectLen(20));
    assert_eq!(broken_by(ind(0, 0)).0, VirtqError::BadIndirectLen(0));
    assert_eq!(
        broken_by(ind(32, VIRTQ_DESC_F_NEXT)).0,
        VirtqError::IndirectWithNext
    );
    let (e, ..) = broken_by(|h| {
        let a = h.space(64);
        let table = h.space(32);
        h.vr.add_indirect(&h.g, table, &[(a, 16, false)]);
        // Make the table's only entry itself indirect.
        MockVring::write_desc_at(
            &h.g,
            table,
            Desc {
                addr: a,
                len: 16,
                flags: VIRTQ_DESC_F_INDIRECT,
                next: 0,
            },
        );
    });
    assert_eq!(e, VirtqError::NestedIndirect);
    let (e, ..) = broken_by(|h| {
        h.vr.set_desc(
            &h.g,
            0,
            Desc {
                addr: 0x100,
                len: 32,
                flags: VIRTQ_DESC_F_INDIRECT,
                next: 0,
            },
        );
        h.vr.push_avail(&h.g, 0);
    });
    assert!(matches!(e, VirtqError::IndirectOutOfMemory { .. }));
}

#[test]
fn read_only_descriptor_in_rx_chain_breaks_guest_rx() {
    let mut h = H::new(true, false);
    let a = h.space(200);
    h.vr.add_chain(&h.g, &[(a, 200, false)]);
    let mut tx = h.tx();
    assert_eq!(tx.enqueue_burst(&[&frame(60, 1)]), 0);
    assert_eq!(tx.take_error(), Some(VirtqError::ReadOnlyInRxChain));
    assert_eq!(h.g.read(a, 4), vec![0xee; 4], "nothing written");
    let _ = VIRTQ_DESC_F_WRITE;
}

#[test]
fn restart_clears_broken_state() {
    let (_, mut h, mut rx) = broken_by(|h| h.vr.set_avail_idx(&h.g, 100));
    // The frontend restarts the ring from base 0 with a sane avail idx.
    h.vr = MockVring::new(&h.g, h.g.gpa_base, QSZ);
    h.publish(2, true, false);
    assert!(rx.sync());
    assert_eq!(rx.error(), None);
}

#[test]
fn old_memory_stays_mapped_until_the_handle_lets_go() {
    let mut h = H::new(true, false);
    let mut rx = h.rx();
    assert!(dequeue(&mut rx, 1).is_empty()); // the handle now runs on table A
    let old = Arc::downgrade(&h.mem);
    // The control side installs table B (same file, new mapping) and drops its own reference.
    h.mem = Arc::new(h.g.memory());
    h.publish(1, true, false);
    let reclaim = |h: &mut H| h.retired.retain(|c| Arc::strong_count(c) > 1);
    reclaim(&mut h);
    assert_eq!(h.retired.len(), 1, "handle still holds A");
    assert!(old.upgrade().is_some(), "A still mapped");
    // Next burst: quiescent point, handle switches to B.
    let f = frame(60, 1);
    let mut one = vec![0; HDR];
    one.extend_from_slice(&f);
    let a = h.buf(&one);
    h.vr.add_chain(&h.g, &[(a, one.len() as u32, false)]);
    assert_eq!(dequeue(&mut rx, 1), vec![f]);
    reclaim(&mut h);
    assert!(h.retired.is_empty());
    assert!(old.upgrade().is_none(), "A unmapped once released");
}

#[test]
fn not_ready_queue_moves_nothing() {
    let h = H::new(true, false);
    h.shared.publish(QueueConfig::default());
    let mut tx = h.tx();
    assert_eq!(tx.enqueue_burst(&[&frame(60, 1)]), 0);
    assert_eq!(tx.metrics().drop_not_ready.get(), 1);
}

// ---------------------------------------------------------------------------------------------
// Zero-length buffers and the per-burst descriptor budget
// ---------------------------------------------------------------------------------------------

#[test]
fn zero_length_buffers_break_the_queue() {
    // Guest TX: a zero-length buffer after the header.
    let (e, ..) = broken_by(|h| {
        let a = h.buf(&[0; HDR]);
        let b = h.space(60);
        h.vr.add_chain(
            &h.g,
            &[(a, HDR as u32, false), (a, 0, false), (b, 60, false)],
        );
    });
    assert_eq!(e, VirtqError::ZeroLengthBuffer);
    // Guest TX: inside an indirect table.
    let (e, ..) = broken_by(|h| {
        let a = h.buf(&[0; HDR + 60]);
        let table = h.space(32);
        h.vr.add_indirect(&h.g, table, &[(a, 0, false), (a, HDR as u32 + 60, false)]);
    });
    assert_eq!(e, VirtqError::ZeroLengthBuffer);
    // Guest RX, mergeable: the attack of issue 10 in small. Every head is the same chain of
    // QSZ zero-length buffers; the first buffer breaks the queue, nothing is written or used.
    let mut h = H::new(true, false);
    for i in 0..QSZ {
        let last = i + 1 == QSZ;
        h.vr.set_desc(
            &h.g,
            i,
            Desc {
                addr: h.data,
                len: 0,
                flags: VIRTQ_DESC_F_WRITE | if last { 0 } else { VIRTQ_DESC_F_NEXT },
                next: i + 1,
            },
        );
    }
    for _ in 0..QSZ {
        h.vr.push_avail(&h.g, 0);
    }
    let mut tx = h.tx();
    assert_eq!(tx.enqueue_burst(&[&frame(60, 1)]), 0);
    assert_eq!(tx.take_error(), Some(VirtqError::ZeroLengthBuffer));
    assert_eq!(tx.metrics().errors.get(), 1);
    assert_eq!(h.vr.used_idx(&h.g), 0);
    assert!(h.shared.is_broken());
}

/// A TX chain of `bufs` one-byte descriptors carrying a header and a frame of `bufs - HDR` bytes.
fn one_byte_tx_chain(h: &mut H, seed: u8, bufs: usize) -> Vec<u8> {
    let f = frame(bufs - HDR, seed);
    let mut all = vec![0u8; HDR];
    all.extend_from_slice(&f);
    let chain: Vec<(u64, u32, bool)> = all.iter().map(|&b| (h.buf(&[b]), 1, false)).collect();
    h.vr.add_chain(&h.g, &chain);
    f
}

#[test]
fn tx_bursts_stop_at_the_descriptor_budget_and_resume() {
    use crate::virtqueue::BURST_DESC_BUDGET;
    let mut h = H::sized(4096, 4 << 20, true, false);
    // 200-descriptor chains: a burst starts chains until it has walked 1024 descriptors, so it
    // takes six (1200) and leaves the rest for the next bursts.
    let sent: Vec<Vec<u8>> = (0..16).map(|k| one_byte_tx_chain(&mut h, k, 200)).collect();
    let mut rx = h.rx();
    let per_burst = BURST_DESC_BUDGET.div_ceil(200) as usize;
    assert_eq!(per_burst, 6);
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    while got.len() < sent.len() {
        let b = dequeue(&mut rx, 32);
        assert!(!b.is_empty(), "every burst makes progress");
        sizes.push(b.len());
        got.extend(b);
    }
    assert_eq!(got, sent, "every frame intact, in order");
    assert_eq!(sizes, vec![6, 6, 4]);
    assert_eq!(rx.metrics().budget_stops.get(), 2);
    assert_eq!(rx.error(), None, "the budget is no violation");
    assert_eq!(h.vr.used_idx(&h.g), 16);
}

#[test]
fn tx_indirect_entries_count_against_the_budget() {
    let mut h = H::sized(4096, 4 << 20, true, false);
    // Each chain is an indirect head and a 200-entry table, 201 descriptors: after five (1005)
    // the budget is not spent, the sixth starts (1206), the seventh waits.
    let mut sent = Vec::new();
    for k in 0..8u8 {
        let f = frame(200 - HDR, k);
        let mut all = vec![0u8; HDR];
        all.extend_from_slice(&f);
        let bufs: Vec<(u64, u32, bool)> = all.iter().map(|&b| (h.buf(&[b]), 1, false)).collect();
        let table = h.space(16 * 200);
        h.vr.add_indirect(&h.g, table, &bufs);
        sent.push(f);
    }
    let mut rx = h.rx();
    let first = dequeue(&mut rx, 32);
    assert_eq!(first.len(), 6);
    assert_eq!(rx.metrics().budget_stops.get(), 1);
    let second = dequeue(&mut rx, 32);
    assert_eq!([first, second].concat(), sent);
}

#[test]
fn chains_longer_than_256_descriptors_are_violations() {
    // Exactly the limit is fine, also as the last chain a burst starts (1000 walked before it).
    let mut h = H::sized(4096, 8 << 20, true, false);
    let mut sent: Vec<Vec<u8>> = (0..5).map(|k| one_byte_tx_chain(&mut h, k, 200)).collect();
    sent.push(one_byte_tx_chain(&mut h, 9, 256));
    let mut rx = h.rx();
    assert_eq!(dequeue(&mut rx, 32), sent, "one burst, 1256 descriptors");
    assert_eq!(rx.error(), None);
    // One more is a violation: the queue is larger, but no guest needs such chains.
    one_byte_tx_chain(&mut h, 3, 257);
    assert!(dequeue(&mut rx, 32).is_empty());
    assert_eq!(rx.take_error(), Some(VirtqError::ChainTooLong(256)));
    // (A smaller queue's size stays the limit: `descriptor_loop_is_bounded`,
    // `bad_buffers_and_lengths`.)
}

/// Posts `n` guest RX chains of one `len`-byte buffer each.
#[test]
fn deferred_bursts_notify_at_settle_once_for_their_whole_range() {
    let mut h = H::new(true, true);
    let mut tx = h.tx();
    let f = frame(60, 1);
    for _ in 0..8 {
        let a = h.space(200);
        h.vr.add_chain(&h.g, &[(a, 200, true)]);
    }
    // The first decision after a start notifies, but only when it is taken.
    h.vr.set_used_event(&h.g, 100);
    assert_eq!(tx.enqueue_burst_deferred(&[&f]), 1);
    assert_eq!(h.vr.used_idx(&h.g), 1, "published at once");
    assert_eq!(h.notified(), 0);
    tx.settle();
    assert_eq!(h.notified(), 1);
    tx.settle();
    assert_eq!(h.notified(), 0, "nothing owed twice");
    // used 1 -> 2 -> 3 in two bursts, the guest asking for an event past entry 1: the first
    // burst crossed it, so the decision over both notifies (the second alone would not).
    h.vr.set_used_event(&h.g, 1);
    assert_eq!(tx.enqueue_burst_deferred(&[&f]), 1);
    assert_eq!(tx.enqueue_burst_deferred(&[&f]), 1);
    assert_eq!(h.notified(), 0);
    tx.settle();
    assert_eq!(h.notified(), 1);
    // A burst that decides at once covers what the deferred one before it published: used
    // 3 -> 4 deferred, 4 -> 5 at once, the event wanted past entry 3 (the deferred burst's).
    h.vr.set_used_event(&h.g, 3);
    assert_eq!(tx.enqueue_burst_deferred(&[&f]), 1);
    assert_eq!(tx.enqueue_burst(&[&f]), 1);
    assert_eq!(h.notified(), 1);
    tx.settle();
    assert_eq!(h.notified(), 0);
    assert_eq!(tx.metrics().notifications.get(), 3);
}

#[test]
fn deferred_guest_tx_bursts_notify_at_settle_or_when_the_handle_goes() {
    let mut h = H::new(true, false);
    let mut one = vec![0; HDR];
    one.extend_from_slice(&frame(60, 7));
    let a = h.buf(&one);
    for _ in 0..4 {
        h.vr.add_chain(&h.g, &[(a, one.len() as u32, false)]);
    }
    let mut rx = h.rx();
    let mut store = vec![vec![0u8; 2048]; 2];
    let mut bufs: Vec<&mut [u8]> = store.iter_mut().map(|b| b.as_mut_slice()).collect();
    let mut lens = vec![0; 2];
    // Interrupts wanted (no NO_INTERRUPT flag).
    assert_eq!(rx.dequeue_burst_deferred(&mut bufs, &mut lens), 2);
    assert_eq!(h.notified(), 0);
    rx.settle();
    assert_eq!(h.notified(), 1);
    assert_eq!(rx.dequeue_burst_deferred(&mut bufs, &mut lens), 2);
    drop(rx);
    assert_eq!(h.notified(), 1, "a handle let go of settles what it owes");
}

fn post_rx_buffers(h: &mut H, n: usize, len: u32) -> Vec<u64> {
    (0..n)
        .map(|_| {
            let a = h.space(len);
            h.vr.add_chain(&h.g, &[(a, len, true)]);
            a
        })
        .collect()
}

#[test]
fn rx_frames_that_would_exceed_the_budget_are_not_delivered() {
    let mut h = H::sized(8192, 8 << 20, true, false);
    // One-byte mergeable buffers: a 1500-byte frame needs 1512 of them, more than a burst may
    // walk. It is given back (no buffer consumed), counted, and the queue is not broken.
    post_rx_buffers(&mut h, 8000, 1);
    let mut tx = h.tx();
    assert_eq!(tx.enqueue_burst(&[&frame(1500, 1), &frame(20, 2)]), 0);
    assert_eq!(h.vr.used_idx(&h.g), 0, "nothing consumed");
    assert_eq!(tx.metrics().budget_stops.get(), 1);
    assert_eq!(tx.metrics().drop_no_buffer.get(), 2);
    assert_eq!(tx.error(), None);
    // 52-byte frames take 64 buffers each: 16 of a burst fit the budget, the rest do not.
    let f = frame(52, 3);
    let frames: Vec<&[u8]> = (0..32).map(|_| &f[..]).collect();
    assert_eq!(tx.enqueue_burst(&frames), 16);
    assert_eq!(h.vr.used_idx(&h.g), 16 * 64);
    assert_eq!(tx.metrics().budget_stops.get(), 2);
    // The next burst goes on from there.
    assert_eq!(tx.enqueue_burst(&frames[..4]), 4);
    assert_eq!(h.vr.used_idx(&h.g), 20 * 64);
}

#[test]
fn legitimate_full_bursts_stay_within_the_budget() {
    // Guest RX: a Linux guest's smallest mergeable buffers (~128 bytes, after a run of small
    // frames) and a burst of 32 frames of 2 KiB, the largest this switch forwards.
    let mut h = H::sized(1024, 8 << 20, true, false);
    post_rx_buffers(&mut h, 1024, 128);
    let big = frame(2048, 5);
    let frames: Vec<&[u8]> = (0..32).map(|_| &big[..]).collect();
    let mut tx = h.tx();
    assert_eq!(tx.enqueue_burst(&frames), 32);
    assert_eq!(tx.metrics().budget_stops.get(), 0);

    // Guest TX: 32 chains of a Linux guest's longest shape, an indirect head and a table of
    // MAX_SKB_FRAGS + 2 = 19 buffers.
    let mut h = H::sized(1024, 8 << 20, true, false);
    let mut sent = Vec::new();
    for k in 0..32u8 {
        let f = frame(18 * 80, k);
        let mut bufs = vec![(h.buf(&[0; HDR]), HDR as u32, false)];
        for c in f.chunks(80) {
            bufs.push((h.buf(c), c.len() as u32, false));
        }
        assert_eq!(bufs.len(), 19);
        let table = h.space(16 * 19);
        h.vr.add_indirect(&h.g, table, &bufs);
        sent.push(f);
    }
    let mut rx = h.rx();
    assert_eq!(dequeue(&mut rx, 32), sent);
    assert_eq!(rx.metrics().budget_stops.get(), 0);
}

#[test]
fn faulted_memory_stops_the_queue_without_blaming_the_guest() {
    use std::os::fd::AsRawFd;
    let mut h = H::new(true, false);
    let mut rx = h.rx();
    let f = frame(60, 1);
    let mut one = vec![0; HDR];
    one.extend_from_slice(&f);
    let a = h.buf(&one);
    h.vr.add_chain(&h.g, &[(a, one.len() as u32, false)]);
    assert_eq!(dequeue(&mut rx, 4), vec![f]);
    // One more chain, then the frontend truncates its memory file: the backend's next access
    // faults, the guard swaps zero pages in, and the ring reads as garbage (avail idx 0, behind
    // our position). The mock guest's own mapping of the file is not touched after this.
    h.vr.add_chain(&h.g, &[(a, one.len() as u32, false)]);
    // SAFETY: ftruncate on the mock guest's memfd.
    assert_eq!(unsafe { libc::ftruncate(h.g.fd().as_raw_fd(), 0) }, 0);
    assert!(dequeue(&mut rx, 4).is_empty());
    assert!(h.mem.faulted());
    assert!(!rx.sync(), "the queue stops");
    assert_eq!(
        rx.metrics().errors.get(),
        0,
        "not counted as a guest violation"
    );
    assert!(!h.shared.is_broken());
    assert_eq!(rx.take_error(), None, "nothing for the ring's error log");
}

/// Catches stores to pages of the backend's view of guest memory that a test made read-only
/// (the mock guest's own mapping stays writable): the SIGSEGV handler counts the store, makes
/// its page writable again and returns, so the store completes. It shows which lines the
/// datapath writes, which no timing can. A fault anywhere else gets the default action back and
/// kills the process as it would have. One trap at a time: the handler is process-wide.
struct WriteTrap {
    _one: std::sync::MutexGuard<'static, ()>,
    old: libc::sigaction,
}

mod trap {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    pub(super) static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    pub(super) static PAGES: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
    pub(super) static PAGE_SIZE: AtomicUsize = AtomicUsize::new(4096);
    pub(super) static HITS: AtomicUsize = AtomicUsize::new(0);

    /// Async-signal-safe: atomics, mprotect and sigaction only.
    pub(super) extern "C" fn on_segv(
        _sig: libc::c_int,
        info: *mut libc::siginfo_t,
        _ctx: *mut libc::c_void,
    ) {
        // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
        let addr = unsafe { (*info).si_addr() } as usize;
        let ps = PAGE_SIZE.load(SeqCst);
        for p in &PAGES {
            let page = p.load(SeqCst);
            if page != 0 && addr & !(ps - 1) == page {
                HITS.fetch_add(1, SeqCst);
                // SAFETY: the page belongs to a live mapping the test protected itself.
                unsafe {
                    libc::mprotect(
                        page as *mut libc::c_void,
                        ps,
                        libc::PROT_READ | libc::PROT_WRITE,
                    )
                };
                return;
            }
        }
        // Not ours: the default action, taken when the access is retried on return.
        // SAFETY: a zeroed sigaction is SIG_DFL with no flags.
        unsafe {
            let dfl: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGSEGV, &dfl, std::ptr::null_mut());
        }
    }
}

impl WriteTrap {
    fn new() -> WriteTrap {
        let one = trap::ONE.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: sysconf has no preconditions; the sigaction structs are plain data.
        unsafe {
            let ps = libc::sysconf(libc::_SC_PAGESIZE) as usize;
            trap::PAGE_SIZE.store(ps, std::sync::atomic::Ordering::SeqCst);
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = trap::on_segv as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            let mut old: libc::sigaction = std::mem::zeroed();
            assert_eq!(libc::sigaction(libc::SIGSEGV, &sa, &mut old), 0);
            WriteTrap { _one: one, old }
        }
    }

    fn page_size() -> u64 {
        trap::PAGE_SIZE.load(std::sync::atomic::Ordering::SeqCst) as u64
    }

    /// Makes the page holding `p` (in trap slot `slot`) read-only again.
    fn arm(&self, slot: usize, p: *mut u8) {
        let ps = Self::page_size() as usize;
        let page = p as usize & !(ps - 1);
        trap::PAGES[slot].store(page, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: `p` points into a live guest mapping of the test's own.
        let rc = unsafe { libc::mprotect(page as *mut libc::c_void, ps, libc::PROT_READ) };
        assert_eq!(rc, 0);
    }

    /// Stores caught since the last call.
    fn take_hits(&self) -> usize {
        trap::HITS.swap(0, std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for WriteTrap {
    fn drop(&mut self) {
        let ps = Self::page_size() as usize;
        for p in &trap::PAGES {
            let page = p.swap(0, std::sync::atomic::Ordering::SeqCst);
            if page != 0 {
                // SAFETY: as in `arm`; the mapping outlives the trap in the test.
                unsafe {
                    libc::mprotect(
                        page as *mut libc::c_void,
                        ps,
                        libc::PROT_READ | libc::PROT_WRITE,
                    )
                };
            }
        }
        trap::HITS.store(0, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: restores the action saved in `new`.
        unsafe { libc::sigaction(libc::SIGSEGV, &self.old, std::ptr::null_mut()) };
    }
}

/// A driver that recycles its buffers in order (DPDK's virtio PMD: the header in an mbuf's
/// headroom, on a line of its own) reads the header and the used elements it left there: the
/// backend must not store into them when nothing changes, or the driver misses on those lines
/// for every frame; and it must when something did.
#[test]
fn rx_leaves_unchanged_headers_and_used_elements_unwritten() {
    let mut h = H::new(true, false);
    let trap = WriteTrap::new();
    let ps = WriteTrap::page_size();
    // The used ring straddles a page boundary: flags and idx on one page, the elements on the
    // next; and one guest buffer whose 12-byte header ends a page, its frame on the next.
    let base = h.data.next_multiple_of(ps);
    h.vr.used = base + ps - 4;
    h.g.write(h.vr.used, &vec![0; 6 + 8 * usize::from(QSZ)]);
    let buf = base + 3 * ps - HDR as u64;
    h.g.write(buf, &[0xee; 2048]);
    h.data = base + 4 * ps;
    h.publish(2, true, false);
    let elems = h.mem.gpa_to_host(base + ps, 8, &mut 0).unwrap();
    let hdr = h.mem.gpa_to_host(buf, HDR as u64, &mut 0).unwrap();
    let mut tx = h.tx();
    let mut lap = |h: &mut H, seed: u8| {
        for _ in 0..QSZ {
            h.vr.add_chain(&h.g, &[(buf, 2048, true)]);
        }
        let f = frame(64, seed);
        let frames: Vec<&[u8]> = (0..QSZ).map(|_| &f[..]).collect();
        assert_eq!(tx.enqueue_burst(&frames), usize::from(QSZ));
        assert_eq!(h.g.read(buf + HDR as u64, 64), f);
    };
    let mut want_hdr = vec![0u8; HDR];
    want_hdr[10] = 1;
    // The first lap finds junk and writes everything.
    lap(&mut h, 1);
    assert_eq!(h.g.read(buf, HDR), want_hdr);
    assert_eq!(h.vr.used_elem(&h.g, 3), (3, 76));
    // The second finds what it would write: no store reaches those pages.
    trap.arm(0, elems);
    trap.arm(1, hdr);
    lap(&mut h, 2);
    assert_eq!(
        trap.take_hits(),
        0,
        "unchanged header or used element rewritten"
    );
    assert_eq!(h.vr.used_idx(&h.g), 2 * QSZ);
    // Changed behind our back (through the guest's mapping), each is written again: the last
    // bytes of the header and the length of one element.
    trap.arm(0, elems);
    trap.arm(1, hdr);
    h.g.write(buf + 11, &[0x55]);
    h.g.write(h.vr.used + 4 + 8 * 5 + 4, &[0x99]);
    lap(&mut h, 3);
    assert_eq!(
        trap.take_hits(),
        2,
        "changed header or used element not rewritten"
    );
    assert_eq!(h.g.read(buf, HDR), want_hdr);
    assert_eq!(h.vr.used_elem(&h.g, 5), (5, 76));
    assert_eq!(h.vr.used_idx(&h.g), 3 * QSZ);
    drop(trap);
}

/// The one-buffer fast paths (`one_tx_buffer`, `one_rx_buffer`) take only the chains the
/// general walk would accept as one whole buffer; every edge next to them still gets the
/// general path's verdict.
#[test]
fn one_buffer_chains_at_the_edges_get_the_general_verdicts() {
    let end = 0x4000_0000 + (1u64 << 20);
    // Guest TX: a header and no frame is short, 2048 bytes fit, one more is oversize.
    let mut h = H::new(true, false);
    let a = h.buf(&[0; HDR]);
    h.vr.add_chain(&h.g, &[(a, HDR as u32, false)]);
    let f = frame(2048, 1);
    let mut one = vec![0; HDR];
    one.extend_from_slice(&f);
    let a = h.buf(&one);
    h.vr.add_chain(&h.g, &[(a, one.len() as u32, false)]);
    let big = h.space(HDR as u32 + 2049);
    h.vr.add_chain(&h.g, &[(big, HDR as u32 + 2049, false)]);
    let mut rx = h.rx();
    assert_eq!(dequeue(&mut rx, 8), vec![f]);
    assert_eq!(h.vr.used_idx(&h.g), 3, "all three consumed");
    assert_eq!(rx.metrics().drop_short.get(), 1);
    assert_eq!(rx.metrics().drop_oversize.get(), 1);
    assert_eq!(rx.error(), None);
    // A lone zero-length buffer, and one running past the end of guest memory, break it.
    let (e, ..) = broken_by(|h| {
        let a = h.space(64);
        h.vr.add_chain(&h.g, &[(a, 0, false)]);
    });
    assert_eq!(e, VirtqError::ZeroLengthBuffer);
    let (e, ..) = broken_by(|h| {
        h.vr.add_chain(&h.g, &[(end - 32, 64, false)]);
    });
    assert!(matches!(e, VirtqError::BufferOutOfMemory { .. }));

    // Guest RX: a buffer of exactly header + frame takes it whole; one byte less spills into
    // the next chain (num_buffers 2).
    let mut h = H::new(true, false);
    let f = frame(100, 2);
    let exact = h.space((HDR + 100) as u32);
    h.vr.add_chain(&h.g, &[(exact, (HDR + 100) as u32, true)]);
    let short = h.space((HDR + 99) as u32);
    h.vr.add_chain(&h.g, &[(short, (HDR + 99) as u32, true)]);
    let spill = h.space(64);
    h.vr.add_chain(&h.g, &[(spill, 64, true)]);
    let mut tx = h.tx();
    assert_eq!(tx.enqueue_burst(&[&f, &f]), 2);
    assert_eq!(h.vr.used_idx(&h.g), 3);
    assert_eq!(h.vr.used_elem(&h.g, 0), (0, (HDR + 100) as u32));
    assert_eq!(h.vr.used_elem(&h.g, 1), (1, (HDR + 99) as u32));
    assert_eq!(h.vr.used_elem(&h.g, 2), (2, 1));
    let nb = |b: u64| u16::from_le_bytes(h.g.read(b + 10, 2).try_into().unwrap());
    assert_eq!((nb(exact), nb(short)), (1, 2));
    assert_eq!(h.g.read(exact + HDR as u64, 100), f);
    let mut got = h.g.read(short + HDR as u64, 99);
    got.extend(h.g.read(spill, 1));
    assert_eq!(got, f);
    // Without MRG_RXBUF a buffer one byte short is not used at all.
    let mut h = H::new(false, false);
    let short = h.space((HDR + 99) as u32);
    h.vr.add_chain(&h.g, &[(short, (HDR + 99) as u32, true)]);
    let mut tx = h.tx();
    assert_eq!(tx.enqueue_burst(&[&f]), 0);
    assert_eq!(h.vr.used_idx(&h.g), 0);
    // A read-only buffer, or a writable one past the end of memory, break guest RX.
    for past_end in [false, true] {
        let mut h = H::new(true, false);
        let addr = if past_end { end - 32 } else { h.space(200) };
        h.vr.add_chain(&h.g, &[(addr, 200, past_end)]);
        let mut tx = h.tx();
        assert_eq!(tx.enqueue_burst(&[&f]), 0);
        let e = tx.take_error().expect("queue broken");
        if past_end {
            assert!(matches!(e, VirtqError::BufferOutOfMemory { .. }), "{e:?}");
        } else {
            assert_eq!(e, VirtqError::ReadOnlyInRxChain);
        }
        assert_eq!(h.vr.used_idx(&h.g), 0);
    }
}
