//! Per-packet cost of the forwarding stage: parse (Ethernet + 802.1Q), learn the source, look
//! up the destination, decide the output; bursts of 32 frames as the PMD loop sees them.
//! Report: time per iteration / 32 = ns per packet (criterion prints it as throughput).
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tsn_vswitch::fdb::Fdb;
use tsn_vswitch::forward::{retag, VecFrame, Verdict, VlanMode, L2};
use tsn_vswitch::wire::{EtherType, MacAddr, VlanTag};

const BURST: usize = 32;

fn frame(dst: MacAddr, src: MacAddr, tag: Option<u16>) -> Vec<u8> {
    let mut f = dst.0.to_vec();
    f.extend(src.0);
    if let Some(tci) = tag {
        f.extend(EtherType::VLAN.to_be_bytes());
        f.extend(tci.to_be_bytes());
    }
    f.extend(EtherType::IPV4.to_be_bytes());
    f.extend([0u8; 46]);
    f
}

fn host(i: u64) -> MacAddr {
    MacAddr::from_u64(0x0200_0000_0000 | i)
}

fn bench(c: &mut Criterion) {
    // Four trunk ports, 1024 hosts learned, 32 frames between random known hosts.
    let l2 = L2::new(vec![VlanMode::Trunk; 4]);
    let fdb = Fdb::new(8192, 300);
    for i in 0..1024u64 {
        fdb.learn(host(i), 0, (i % 4) as u16, 0);
        fdb.learn(host(i), 100, (i % 4) as u16, 0);
    }
    let mut seed = 0x1234_5678u64;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut frames = Vec::new();
    while frames.len() < BURST {
        let (s, d) = (rnd() % 1024, rnd() % 1024);
        if s % 4 != d % 4 {
            frames.push(((s % 4) as u16, frame(host(d), host(s), None)));
        }
    }
    let tagged: Vec<_> = frames
        .iter()
        .map(|(p, f)| {
            let mut t = f[..12].to_vec();
            t.extend(EtherType::VLAN.to_be_bytes());
            t.extend(VlanTag::tci_of(5, 100).to_be_bytes());
            t.extend(&f[12..]);
            (*p, t)
        })
        .collect();

    let mut g = c.benchmark_group("forward");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("decide_untagged_burst32", |b| {
        b.iter(|| {
            let mut n = 0u32;
            for (p, f) in &frames {
                if let (Verdict::Unicast(o), _) = l2.decide(&fdb, *p, black_box(f), 1) {
                    n += u32::from(o);
                }
            }
            n
        })
    });
    g.bench_function("decide_tagged_burst32", |b| {
        b.iter(|| {
            let mut n = 0u32;
            for (p, f) in &tagged {
                if let (Verdict::Unicast(o), _) = l2.decide(&fdb, *p, black_box(f), 1) {
                    n += u32::from(o);
                }
            }
            n
        })
    });
    // Access-port edit: push a tag and pop it again (what access<->trunk forwarding costs).
    let mut bufs: Vec<VecFrame> = frames.iter().map(|(_, f)| VecFrame::new(f)).collect();
    g.bench_function("retag_push_pop_burst32", |b| {
        b.iter(|| {
            for f in bufs.iter_mut() {
                retag(f, false, Some(VlanTag::tci_of(0, 10)));
                retag(f, true, None);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
