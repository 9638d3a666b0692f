//! Per-packet cost of the vhost-user fast path on bursts of 32 64-byte frames:
//! guest TX dequeue (header stripped, copied into caller buffers) and guest RX enqueue
//! (mergeable buffers, one used-idx update per burst). A device is set up through the real
//! protocol (the mock frontend of `testutil`), so the handles run exactly as in the switch.
//! Each iteration also includes the mock driver re-posting the 32 buffers (32 ring writes),
//! which makes the figures a slight over-estimate of the backend's own cost.
//!
//! Run: `cargo bench -p vhost --features test-util --bench ring`
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use vhost::protocol::{Pod, Request, VirtioFeatures, VringState};
use vhost::testutil::{Frontend, MockGuest, MockVring};
use vhost::virtqueue::Desc;
use vhost::{NetConfig, VhostUserNet};

const QSZ: u16 = 256;
const BURST: usize = 32;
const HDR: usize = 12;
const VIRTQ_DESC_F_WRITE: u16 = 2;

/// Sends one request and lets the device handle it (single-threaded: no reply-ack).
fn send(fe: &Frontend, dev: &mut VhostUserNet, req: Request, payload: &[u8]) {
    fe.send_raw(req as u32, 1, payload, &[]).unwrap();
    dev.handle_message().unwrap();
}

fn bench(c: &mut Criterion) {
    let mut dev = VhostUserNet::new(NetConfig::default());
    let (be, fe_sock) = UnixStream::pair().unwrap();
    dev.attach(be);
    let fe = Frontend::new(fe_sock);
    let g = MockGuest::new(16 << 20);
    let mut rx = MockVring::new(&g, g.gpa_base, QSZ);
    let mut tx = MockVring::new(&g, g.gpa_base + 0x10000, QSZ);

    fe.send_raw(Request::GetFeatures as u32, 1, &[], &[])
        .unwrap();
    dev.handle_message().unwrap();
    fe.recv_reply(Request::GetFeatures as u32).unwrap();
    let acked = VirtioFeatures::VERSION_1
        | VirtioFeatures::NET_MRG_RXBUF
        | VirtioFeatures::RING_EVENT_IDX
        | VirtioFeatures::RING_INDIRECT_DESC;
    send(
        &fe,
        &mut dev,
        Request::SetFeatures,
        &acked.bits().to_ne_bytes(),
    );
    send(&fe, &mut dev, Request::SetOwner, &[]);
    let mut mt = vhost::protocol::MemoryTableHeader {
        nregions: 1,
        padding: 0,
    }
    .as_bytes()
    .to_vec();
    mt.extend_from_slice(g.region().as_bytes());
    fe.send_raw(Request::SetMemTable as u32, 1, &mt, &[g.fd()])
        .unwrap();
    dev.handle_message().unwrap();
    for (i, vr) in [&rx, &tx].into_iter().enumerate() {
        let i = i as u32;
        send(
            &fe,
            &mut dev,
            Request::SetVringNum,
            VringState {
                index: i,
                num: u32::from(QSZ),
            }
            .as_bytes(),
        );
        send(
            &fe,
            &mut dev,
            Request::SetVringBase,
            VringState { index: i, num: 0 }.as_bytes(),
        );
        send(
            &fe,
            &mut dev,
            Request::SetVringAddr,
            vr.addr(&g, i).as_bytes(),
        );
        // Polling mode: no kick and no call eventfd.
        let nofd = u64::from(i) | (1 << 8);
        send(&fe, &mut dev, Request::SetVringCall, &nofd.to_ne_bytes());
        send(&fe, &mut dev, Request::SetVringKick, &nofd.to_ne_bytes());
    }
    let _ = fe.stream().as_fd();
    let (mut rxq, mut txq) = dev.queue_pair(0).unwrap();
    assert!(rxq.sync() && txq.sync(), "queues ready");

    // Fixed descriptors: guest TX buffers hold a zeroed header and a 64-byte frame; guest RX
    // buffers are 2 KiB and writable. Each iteration re-posts the same heads.
    let data = g.gpa_base + 0x100000;
    for i in 0..BURST as u16 {
        let a = data + u64::from(i) * 2048;
        let mut buf = vec![0u8; HDR];
        buf.extend((0..64).map(|b| b as u8));
        g.write(a, &buf);
        tx.set_desc(
            &g,
            i,
            Desc {
                addr: a,
                len: (HDR + 64) as u32,
                flags: 0,
                next: 0,
            },
        );
        let r = data + 0x100000 + u64::from(i) * 2048;
        rx.set_desc(
            &g,
            i,
            Desc {
                addr: r,
                len: 2048,
                flags: VIRTQ_DESC_F_WRITE,
                next: 0,
            },
        );
    }

    let mut group = c.benchmark_group("vhost");
    group.throughput(Throughput::Elements(BURST as u64));
    let mut store = vec![[0u8; 2048]; BURST];
    let mut lens = [0usize; BURST];
    group.bench_function("dequeue_guest_tx_burst32_64B", |b| {
        b.iter(|| {
            for i in 0..BURST as u16 {
                tx.push_avail(&g, i);
            }
            let mut bufs: Vec<&mut [u8]> = store.iter_mut().map(|s| &mut s[..]).collect();
            let n = rxq.dequeue_burst(&mut bufs, &mut lens);
            assert_eq!(n, BURST);
            black_box(lens[0])
        })
    });
    let frame = [0xabu8; 64];
    let frames: Vec<&[u8]> = (0..BURST).map(|_| &frame[..]).collect();
    group.bench_function("enqueue_guest_rx_burst32_64B", |b| {
        b.iter(|| {
            for i in 0..BURST as u16 {
                rx.push_avail(&g, i);
            }
            let n = txq.enqueue_burst(&frames);
            assert_eq!(n, BURST);
            n
        })
    });
    group.finish();
    // Totals, for instruction counts per packet under callgrind (the difference of two
    // --profile-time runs divided by the difference of these).
    println!(
        "ring totals: dequeued {}, enqueued {}",
        rxq.metrics().packets.get(),
        txq.metrics().packets.get()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
