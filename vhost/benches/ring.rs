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
use vhost::{NetConfig, RxQueue, TxQueue, VhostUserNet};

const QSZ: u16 = 256;
const BURST: usize = 32;
const HDR: usize = 12;
const VIRTQ_DESC_F_WRITE: u16 = 2;
const VIRTQ_DESC_F_NEXT: u16 = 1;

/// Lets the device handle what the frontend sent; any failure is a bug of this set-up.
fn serve(dev: &mut VhostUserNet) {
    dev.serve(std::time::Instant::now(), |e| panic!("{e:?}"));
}

/// Sends one request and lets the device handle it (single-threaded: no reply-ack).
fn send(fe: &Frontend, dev: &mut VhostUserNet, req: Request, payload: &[u8]) {
    fe.send_raw(req as u32, 1, payload, &[]).unwrap();
    serve(dev);
}

/// A device run through the real protocol, its guest and its two PMD handles.
struct Setup {
    _dev: VhostUserNet,
    _fe: Frontend,
    g: MockGuest,
    rx: MockVring,
    tx: MockVring,
    rxq: RxQueue,
    txq: TxQueue,
}

/// Guest RX ring at the start of guest RAM, guest TX ring after it (64 KiB in for small
/// queues), both `qsz` entries.
fn setup(qsz: u16) -> Setup {
    let mut dev = VhostUserNet::new(NetConfig::default());
    let (be, fe_sock) = UnixStream::pair().unwrap();
    dev.attach(be);
    let fe = Frontend::new(fe_sock);
    let g = MockGuest::new(16 << 20);
    let rx = MockVring::new(&g, g.gpa_base, qsz);
    let tx_off = rx.footprint().next_multiple_of(0x10000);
    let tx = MockVring::new(&g, g.gpa_base + tx_off, qsz);

    fe.send_raw(Request::GetFeatures as u32, 1, &[], &[])
        .unwrap();
    serve(&mut dev);
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
    serve(&mut dev);
    for (i, vr) in [&rx, &tx].into_iter().enumerate() {
        let i = i as u32;
        send(
            &fe,
            &mut dev,
            Request::SetVringNum,
            VringState {
                index: i,
                num: u32::from(qsz),
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
    Setup {
        _dev: dev,
        _fe: fe,
        g,
        rx,
        tx,
        rxq,
        txq,
    }
}

fn bench(c: &mut Criterion) {
    let Setup {
        g,
        mut rx,
        mut tx,
        mut rxq,
        mut txq,
        ..
    } = setup(QSZ);

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
    attacks(c);
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

/// What a hostile guest can make one burst cost at most: the descriptor budget walked.
/// - guest RX: 4096 one-byte mergeable buffers and 32 frames of 1500 bytes, which would need
///   1512 buffers each: every burst walks up to the budget, gives the frame back and delivers
///   nothing;
/// - guest TX: chains of 255 one-byte buffers (the longest allowed is 256), re-posted each
///   iteration: a burst starts a fifth one after 1020 descriptors, and walks 1275 byte by byte.
fn attacks(c: &mut Criterion) {
    const ATTACK_QSZ: u16 = 4096;
    let Setup {
        g,
        rx,
        mut tx,
        mut rxq,
        mut txq,
        ..
    } = setup(ATTACK_QSZ);
    let bytes = g.gpa_base + 0x200000;
    let mut table = Vec::with_capacity(16 * usize::from(ATTACK_QSZ));
    for i in 0..ATTACK_QSZ {
        table.extend_from_slice(&(bytes + u64::from(i)).to_le_bytes());
        table.extend_from_slice(&1u32.to_le_bytes());
        table.extend_from_slice(&VIRTQ_DESC_F_WRITE.to_le_bytes());
        table.extend_from_slice(&0u16.to_le_bytes());
    }
    g.write(rx.desc, &table);
    let ring: Vec<u8> = (0..ATTACK_QSZ).flat_map(|k| k.to_le_bytes()).collect();
    g.write(rx.avail + 4, &ring);
    g.write_u16(rx.avail + 2, ATTACK_QSZ);

    const CHAIN: u16 = 255;
    const CHAINS: u16 = 5;
    let mut table = Vec::new();
    for i in 0..CHAIN * CHAINS {
        let last = i % CHAIN == CHAIN - 1;
        table.extend_from_slice(&(bytes + u64::from(i)).to_le_bytes());
        table.extend_from_slice(&1u32.to_le_bytes());
        table.extend_from_slice(&(if last { 0u16 } else { VIRTQ_DESC_F_NEXT }).to_le_bytes());
        table.extend_from_slice(&(if last { 0 } else { i + 1 }).to_le_bytes());
    }
    g.write(tx.desc, &table);

    let mut group = c.benchmark_group("vhost_attack");
    let big = [0x5au8; 1500];
    let frames: Vec<&[u8]> = (0..BURST).map(|_| &big[..]).collect();
    group.bench_function("enqueue_guest_rx_one_byte_buffers_1500B", |b| {
        b.iter(|| {
            let n = txq.enqueue_burst(&frames);
            assert_eq!(n, 0);
            n
        })
    });
    let mut store = vec![[0u8; 2048]; BURST];
    let mut lens = [0usize; BURST];
    group.bench_function("dequeue_guest_tx_255_one_byte_chains", |b| {
        b.iter(|| {
            for k in 0..CHAINS {
                tx.push_avail(&g, k * CHAIN);
            }
            let mut bufs: Vec<&mut [u8]> = store.iter_mut().map(|s| &mut s[..]).collect();
            let n = rxq.dequeue_burst(&mut bufs, &mut lens);
            assert_eq!(n, usize::from(CHAINS));
            black_box(lens[0])
        })
    });
    group.finish();
}
