//! Cost of interrupting the guest: guest RX enqueue of one 64-byte frame per burst with the
//! guest asking for an interrupt every time (no EVENT_IDX, NO_INTERRUPT clear), so each burst
//! ends in one call-eventfd write, against the same burst without a call fd (polling guest).
//! The difference is what a notification costs the PMD core, guard included.
//!
//! Run: `cargo bench -p vhost --features test-util --bench notify`
use criterion::{criterion_group, criterion_main, Criterion};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use vhost::protocol::{Pod, Request, VirtioFeatures, VringState};
use vhost::testutil::{eventfd, eventfd_take, Frontend, MockGuest, MockVring};
use vhost::virtqueue::Desc;
use vhost::{NetConfig, TxQueue, VhostUserNet};

const QSZ: u16 = 256;
const HDR: usize = 12;
const VIRTQ_DESC_F_WRITE: u16 = 2;

fn serve(dev: &mut VhostUserNet) {
    dev.serve(std::time::Instant::now(), |e| panic!("{e:?}"));
}

fn send(fe: &Frontend, dev: &mut VhostUserNet, req: Request, payload: &[u8], fds: &[OwnedFd]) {
    let fds: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    fe.send_raw(req as u32, 1, payload, &fds).unwrap();
    serve(dev);
}

/// A device with its guest RX vring running; `call` is that vring's call fd, if any.
struct Setup {
    _dev: VhostUserNet,
    _fe: Frontend,
    g: MockGuest,
    rx: MockVring,
    txq: TxQueue,
}

fn setup(call: Option<&OwnedFd>) -> Setup {
    let mut dev = VhostUserNet::new(NetConfig::default());
    let (be, fe_sock) = UnixStream::pair().unwrap();
    dev.attach(be);
    let fe = Frontend::new(fe_sock);
    let g = MockGuest::new(16 << 20);
    let rx = MockVring::new(&g, g.gpa_base, QSZ);
    let tx = MockVring::new(&g, g.gpa_base + 0x10000, QSZ);
    let acked = VirtioFeatures::VERSION_1 | VirtioFeatures::NET_MRG_RXBUF;
    send(
        &fe,
        &mut dev,
        Request::SetFeatures,
        &acked.bits().to_ne_bytes(),
        &[],
    );
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
        let num = VringState {
            index: i,
            num: u32::from(QSZ),
        };
        send(&fe, &mut dev, Request::SetVringNum, num.as_bytes(), &[]);
        let base = VringState { index: i, num: 0 };
        send(&fe, &mut dev, Request::SetVringBase, base.as_bytes(), &[]);
        send(
            &fe,
            &mut dev,
            Request::SetVringAddr,
            vr.addr(&g, i).as_bytes(),
            &[],
        );
        let nofd = u64::from(i) | (1 << 8);
        match call.filter(|_| i == 0) {
            Some(fd) => {
                let fd = fd.try_clone().unwrap();
                send(
                    &fe,
                    &mut dev,
                    Request::SetVringCall,
                    &u64::from(i).to_ne_bytes(),
                    &[fd],
                );
            }
            None => send(
                &fe,
                &mut dev,
                Request::SetVringCall,
                &nofd.to_ne_bytes(),
                &[],
            ),
        }
        send(
            &fe,
            &mut dev,
            Request::SetVringKick,
            &nofd.to_ne_bytes(),
            &[],
        );
    }
    let (_rxq, mut txq) = dev.queue_pair(0).unwrap();
    assert!(txq.sync(), "guest RX vring ready");
    let data = g.gpa_base + 0x100000;
    for i in 0..QSZ {
        rx.set_desc(
            &g,
            i,
            Desc {
                addr: data + u64::from(i) * 2048,
                len: 2048,
                flags: VIRTQ_DESC_F_WRITE,
                next: 0,
            },
        );
    }
    Setup {
        _dev: dev,
        _fe: fe,
        g,
        rx,
        txq,
    }
}

fn bench(c: &mut Criterion) {
    let frame = [0xabu8; 64 - HDR];
    let frames: [&[u8]; 1] = [&frame];
    let mut group = c.benchmark_group("vhost_notify");
    let call = eventfd();
    for (name, fd) in [
        ("enqueue1_no_call_fd", None),
        ("enqueue1_interrupt", Some(&call)),
    ] {
        let mut s = setup(fd);
        let mut head = 0u16;
        group.bench_function(name, |b| {
            b.iter(|| {
                s.rx.push_avail(&s.g, head);
                head = (head + 1) % QSZ;
                assert_eq!(s.txq.enqueue_burst(&frames), 1);
            })
        });
        if fd.is_some() {
            assert!(eventfd_take(call.as_fd()) > 0, "the guest was interrupted");
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
