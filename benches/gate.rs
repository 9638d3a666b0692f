//! Per-packet cost of the gate stage, bursts of 32 as the PMD loop sees them:
//! - `gated_burst32`: classify (PCP through the list's map), enqueue, gate check with guard band
//!   and wire model, dequeue — with an 8-class list whose gates are open at the bench's times
//!   (but not always open, so nothing is bypassed);
//! - `gated_udp_rules_burst32`: the same with two `--tc-rule`s to scan (frames parsed to UDP);
//! - `bypass_burst32`: no list: the per-frame bypass check, the per-burst wire accounting, the
//!   per-iteration poll, frames pushed straight to the tx burst;
//! - `no_stage_burst32`: the same frames pushed to the tx burst with no stage: the difference
//!   to `bypass_burst32` is what an all-open list costs per packet.
//!
//! Report: time per iteration / 32 = ns per packet (criterion prints it as throughput).
//! Time is simulated: each iteration advances it by the burst's wire time at 10 Gb/s, so every
//! frame is released in the iteration it arrives.
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::num::NonZeroU64;
use tsn_vswitch::classify::{Classifier, Tc};
use tsn_vswitch::tas::{wire_time_ns, Frame, GateStage, StageConfig};
use tsn_vswitch::wire::{EtherType, VlanTag, PROTO_UDP};

const BURST: usize = 32;
const LINK: u64 = 10_000_000_000;

/// Pointer-sized with a niche, like an `Mbuf`, so queue entries have the switch's size.
struct BenchFrame(NonZeroU64);

impl BenchFrame {
    fn new(len: usize, idx: usize) -> Self {
        let v = (len as u64) | ((idx as u64) << 16);
        BenchFrame(NonZeroU64::new(v).unwrap_or(NonZeroU64::MIN))
    }
}

impl Frame for BenchFrame {
    fn len(&self) -> usize {
        (self.0.get() & 0xffff) as usize
    }
}

/// A tagged IPv4/UDP frame of 64 bytes (without FCS) with PCP `pcp` and UDP destination `dst`.
fn frame(pcp: u8, dst: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    f.extend(EtherType::VLAN.to_be_bytes());
    f.extend(VlanTag::tci_of(pcp, 100).to_be_bytes());
    f.extend(EtherType::IPV4.to_be_bytes());
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[9] = PROTO_UDP;
    f.extend(ip);
    f.extend(4000u16.to_be_bytes());
    f.extend(dst.to_be_bytes());
    f.extend(26u16.to_be_bytes());
    f.resize(64, 0);
    f
}

/// 8 classes, priority p → class p; all open for 100 s, then class 7 closed for 1 µs.
const LIST: &str = "num_tc 8\nmap 0 1 2 3 4 5 6 7 0 0 0 0 0 0 0 0\nbase-time 0\n\
                    sched-entry S ff 100000000000\nsched-entry S 7f 1000\n";

fn gated(c: &mut Criterion, name: &str, classifier: &Classifier) {
    let frames: Vec<(Vec<u8>, u8)> = (0..BURST)
        .map(|i| (frame((i % 8) as u8, 5000 + i as u16), (i % 8) as u8))
        .collect();
    let burst_ns = BURST as u64 * wire_time_ns(64, LINK);
    let mut cfg = StageConfig::new(LINK);
    // One burst of look-ahead: the bench releases once per burst of 32.
    cfg.ahead_ns = Some(burst_ns);
    let (mut stage, mut ctl) = GateStage::<BenchFrame>::new(cfg);
    let mut now = 1_000u64;
    ctl.install(gcl::parse(LIST).unwrap().list, now).unwrap();
    stage.release(now, 0, |_| {});
    assert!(!stage.bypass());
    let mut out: Vec<BenchFrame> = Vec::with_capacity(BURST);
    let mut g = c.benchmark_group("gate");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function(name, |b| {
        b.iter(|| {
            now += burst_ns;
            for (idx, (bytes, pcp)) in frames.iter().enumerate() {
                let tc = classifier.classify(black_box(bytes), Some(*pcp), 0);
                let f = BenchFrame::new(bytes.len(), idx);
                let _ = stage.enqueue(f, tc, now);
            }
            out.clear();
            let n = stage.release(now, BURST, |f| out.push(f));
            black_box(&out);
            n
        })
    });
    g.finish();
    let st = ctl.stats();
    let sent: u64 = st.classes.iter().map(|c| c.sent).sum();
    let dropped: u64 = st.classes.iter().map(|c| c.dropped_full).sum();
    let p99 = st.classes[0].release_error.p99_ns;
    eprintln!("{name}: sent {sent}, dropped {dropped}, class 0 release error p99 ≤ {p99:?} ns");
}

fn bench(c: &mut Criterion) {
    gated(c, "gated_burst32", &Classifier::new());
    let mut rules = Classifier::new();
    rules
        .add_rule("p", &"p:udp-dst=319-320:class=7".parse().unwrap())
        .unwrap();
    rules
        .add_rule("p", &"p:udp-dst=7788:prio=5".parse().unwrap())
        .unwrap();
    gated(c, "gated_udp_rules_burst32", &rules);

    // No list: bypass, as the PMD loop runs it (pmd.rs): the bypass check per frame, the wire
    // accounting per burst, the poll for a new list per iteration. Against the same loop with
    // no stage at all, it gives what an all-open list adds to the switch.
    let (mut stage, _ctl) = GateStage::<BenchFrame>::new(StageConfig::new(LINK));
    let burst_ns = BURST as u64 * wire_time_ns(64, LINK);
    let mut now = 0u64;
    let mut out: Vec<BenchFrame> = Vec::with_capacity(BURST);
    let mut g = c.benchmark_group("gate");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("bypass_burst32", |b| {
        b.iter(|| {
            now += burst_ns;
            out.clear();
            for idx in 0..BURST {
                let f = BenchFrame::new(black_box(64), idx);
                if stage.bypass() {
                    out.push(f);
                } else {
                    let _ = stage.enqueue(f, Tc::priority(0), now);
                }
            }
            stage.bypassed(now, out.len(), out.len() * 64);
            stage.release(now, BURST - out.len(), |f| out.push(f));
            black_box(&out);
        })
    });
    g.bench_function("no_stage_burst32", |b| {
        b.iter(|| {
            out.clear();
            for idx in 0..BURST {
                out.push(BenchFrame::new(black_box(64), idx));
            }
            black_box(&out);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
