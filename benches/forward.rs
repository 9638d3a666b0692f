//! Per-packet cost of the forwarding stage: parse (Ethernet + 802.1Q), learn the source, look
//! up the destination, decide the output; bursts of 32 frames from one ingress port, as the PMD
//! loop sees them. Report: time per iteration / 32 = ns per packet (criterion prints it as
//! throughput).
//!
//! The grid: `forward_{untagged,tagged}/portsPP/fdbN` for 2, 4, 16 and 64 trunk ports and 1 k,
//! 16 k, 256 k and 1 M learned hosts with random addresses, in a table sized for twice as many
//! (16 B a slot: 32 MiB for 1 M hosts, as large as the development machine's last-level cache,
//! which its host shares, and every line of it holds live entries; at that load about 1 % of
//! the hosts find their bucket full, are not learned and their frames flood). Every frame goes
//! between two random known hosts, its source on the burst's ingress port and its destination
//! on another, so learning and lookups touch random buckets all over the table. The frames are
//! 32 buffers that stay in cache; each burst first copies the next 32 address pairs into them
//! from a sequence drawn before the measurement (its drawing, two hashes and three range
//! reductions a frame, cost 13 ns a frame: as much as the stage itself in cache). The sequence
//! is long enough that its bursts touch nearly every bucket before it repeats (4 pairs a host,
//! at most 2^19 pairs: 6 MiB, read in order; at 1 M hosts that is 2^20 random bucket visits for
//! 2^18 buckets, though not every host); `harness/rewrite_burst32` measures the copy alone, with
//! the longest sequence (the small tables' shorter ones stay in cache: a little cheaper).
//! `benches/compare/forward_grid.sh` runs the grid for one or more builds and prints the table.
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{
    black_box, criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use std::time::Duration;
use tsn_vswitch::fdb::{Fdb, Learned};
use tsn_vswitch::forward::{retag, VecFrame, Verdict, VlanMode, L2};
use tsn_vswitch::wire::{EtherType, MacAddr, VlanTag};

const BURST: usize = 32;

/// Time as the bench thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not the wall clock: on the
/// shared 2-vCPU development machine other processes take the CPU from the bench for whole
/// milliseconds, which would count as the stage's time (what they do to the shared caches
/// still counts).
struct CpuTime;

impl CpuTime {
    fn now() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec to write; the clock id is a constant Linux knows.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
}

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        CpuTime::now()
    }
    fn end(&self, start: Duration) -> Duration {
        CpuTime::now() - start
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}
const PORTS: [u16; 4] = [2, 4, 16, 64];
const HOSTS: [(u64, &str); 4] = [
    (1 << 10, "1k"),
    (1 << 14, "16k"),
    (1 << 18, "256k"),
    (1 << 20, "1M"),
];
/// The VLAN of the tagged frames (untagged ones are in VLAN 0).
const VID: u16 = 100;

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

/// Host i's address: locally administered, the low 40 bits pseudo-random (splitmix64's
/// finaliser), so that hosts fill buckets as random addresses do: at half load about one in
/// 25 sits outside its home line, and a few hosts find their bucket full.
fn host(i: u64) -> MacAddr {
    let mut z = i;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    MacAddr::from_u64(0x0200_0000_0000 | ((z ^ (z >> 31)) & 0xff_ffff_ffff))
}

/// xorshift64: cheap enough to run per frame inside the measurement.
struct Rng(u64);
impl Rng {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `hosts` hosts on `ports` trunk ports (host i on port i % ports), learned in `vlan`, and
/// 32 frame buffers that bursts rewrite with pairs of them drawn at random beforehand.
struct Setup {
    l2: L2,
    fdb: Fdb,
    bufs: Vec<Vec<u8>>,
    /// Bursts of (destination, source) pairs, each burst's sources on one ingress port, its
    /// destinations on others; with the burst's ingress port.
    bursts: Vec<(u16, [[u8; 12]; BURST])>,
    /// The next burst of `bursts`.
    next: usize,
}

impl Setup {
    fn new(ports: u16, hosts: u64, tagged: bool) -> Setup {
        let vlan = if tagged { VID } else { 0 };
        let fdb = Fdb::new(2 * hosts as usize, 300);
        let full = (0..hosts)
            .filter(|&i| {
                fdb.learn(host(i), vlan, (i % u64::from(ports)) as u16, 1) == Learned::Full
            })
            .count();
        // A host that did not fit is looked up in vain and flooded: keep them negligible.
        assert!(
            full as u64 <= hosts / 32,
            "{full} of {hosts} hosts not learned"
        );
        let tag = tagged.then(|| VlanTag::tci_of(5, VID));
        let (np, per_port) = (u64::from(ports), hosts / u64::from(ports));
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let n = (4 * hosts).clamp(1 << 13, 1 << 19) as usize / BURST;
        let bursts = (0..n as u64)
            .map(|i| {
                let p = i % np;
                let pairs = std::array::from_fn(|_| {
                    let r = rng.next();
                    // Multiply-shift range reductions: the two 32-bit halves pick the hosts,
                    // the middle 16 bits the destination's port (any port but p).
                    let s = ((r & 0xffff_ffff) * per_port) >> 32;
                    let d = ((r >> 32) * per_port) >> 32;
                    let q = (p + 1 + ((((r >> 16) & 0xffff) * (np - 1)) >> 16)) % np;
                    let mut a = [0u8; 12];
                    a[..6].copy_from_slice(&host(d * np + q).0);
                    a[6..].copy_from_slice(&host(s * np + p).0);
                    a
                });
                (p as u16, pairs)
            })
            .collect();
        Setup {
            l2: L2::new(vec![VlanMode::Trunk; usize::from(ports)]),
            fdb,
            bufs: (0..BURST).map(|_| frame(host(0), host(1), tag)).collect(),
            bursts,
            next: 0,
        }
    }

    /// Writes the next burst's addresses into the frames; returns its ingress port.
    #[inline]
    fn rewrite(&mut self) -> u16 {
        let (p, pairs) = &self.bursts[self.next];
        self.next = (self.next + 1) % self.bursts.len();
        for (b, a) in self.bufs.iter_mut().zip(pairs) {
            b[..12].copy_from_slice(a);
        }
        *p
    }
}

/// One measured burst: the next addresses into the frames, then the stage. Never inlined, so
/// that callgrind can count its instructions alone (`benches/compare/instructions.sh`).
#[inline(never)]
fn burst(s: &mut Setup) -> u32 {
    let p = s.rewrite();
    let frames = black_box(&s.bufs).iter().map(|f| &f[..]);
    let mut n = 0u32;
    for (v, _) in &s.l2.decide_burst(&s.fdb, p, frames, 1) {
        if let Verdict::Unicast(o) = *v {
            n += u32::from(o);
        }
    }
    n
}

fn grid(c: &mut Criterion<CpuTime>) {
    for tagged in [false, true] {
        let name = if tagged {
            "forward_tagged"
        } else {
            "forward_untagged"
        };
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(BURST as u64));
        // Samples of equal length, so that their quantiles compare (forward_grid.sh).
        g.sampling_mode(SamplingMode::Flat);
        for ports in PORTS {
            for (hosts, label) in HOSTS {
                // Built on first use: a filter that leaves the cell out skips its setup.
                let mut setup = None;
                let id = BenchmarkId::new(format!("ports{ports:02}"), format!("fdb{label}"));
                g.bench_function(id, |b| {
                    let s = setup.get_or_insert_with(|| Setup::new(ports, hosts, tagged));
                    b.iter(|| burst(s))
                });
            }
        }
        g.finish();
    }
}

fn harness(c: &mut Criterion<CpuTime>) {
    let mut g = c.benchmark_group("harness");
    g.throughput(Throughput::Elements(BURST as u64));
    g.sampling_mode(SamplingMode::Flat);
    // What each burst of the grid costs before the stage: its addresses copied into 32 frames,
    // from the longest sequence (1 M hosts: 6 MiB).
    let mut setup = None;
    g.bench_function("rewrite_burst32", |b| {
        let s = setup.get_or_insert_with(|| Setup::new(4, 1 << 20, false));
        b.iter(|| {
            let p = s.rewrite();
            black_box(&s.bufs);
            p
        })
    });
    g.finish();
}

fn edit(c: &mut Criterion<CpuTime>) {
    let mut g = c.benchmark_group("forward");
    g.throughput(Throughput::Elements(BURST as u64));
    // Access-port edit: push a tag and pop it again (what access<->trunk forwarding costs).
    let mut bufs: Vec<VecFrame> = (0..BURST as u64)
        .map(|i| VecFrame::new(&frame(host(i + 1), host(i), None)))
        .collect();
    // One flow: 32 frames with the same addresses, as a single stream sends them (and every
    // row of benches/compare/run.sh): the first is decided, the other 31 copy its verdict.
    // Built on first use, as the grid's cells are.
    let mut one = None;
    g.bench_function("one_flow_burst32", |b| {
        let s = one.get_or_insert_with(|| {
            let mut s = Setup::new(2, 1 << 10, false);
            s.bursts.truncate(1);
            s.bursts[0].1 = [s.bursts[0].1[0]; BURST];
            s
        });
        b.iter(|| burst(s))
    });
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

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(CpuTime);
    targets = grid, harness, edit
}
criterion_main!(benches);
