//! The gate stage driven by a simulated clock.

use super::*;
use crate::clock::{Clock, SimClock};

#[derive(Debug)]
struct TestFrame {
    len: usize,
    class: u8,
    id: u64,
}

impl TestFrame {
    fn new(len: usize, class: u8, id: u64) -> Self {
        Self { len, class, id }
    }
}

impl Frame for TestFrame {
    fn len(&self) -> usize {
        self.len
    }
}

const GBPS: u64 = 1_000_000_000;

fn list(text: &str) -> GateControlList {
    gcl::parse(text).unwrap().list
}

/// Three classes, cycle 200 µs: class 0 alone, class 1 alone, class 2 alone, then 1+2 (so class
/// 1's and class 2's windows each merge two entries).
const THREE: &str = "num_tc 3\nmap 0 1 2 2 2 2 2 2 2 2 2 2 2 2 2 2\nbase-time 0\n\
    sched-entry S 01 100000\nsched-entry S 02 50000\nsched-entry S 04 30000\nsched-entry S 06 20000\n";

fn stage_with(text: &str, cfg: StageConfig, now: u64) -> (GateStage<TestFrame>, GateControl) {
    let (mut s, mut ctl) = GateStage::new(cfg);
    ctl.install(list(text), now).unwrap();
    s.release(now, 0, |_| {});
    (s, ctl)
}

/// Whether `class` is open over all of `[s, e)`, walking gate states (independent of the stage's
/// close-time logic).
fn open_over(sched: &Schedule, class: u8, s: u64, e: u64) -> bool {
    let mut t = s;
    loop {
        let st = sched.state_at(t);
        if st.gates & (1 << class) == 0 {
            return false;
        }
        match st.next {
            Some(n) if n < e => t = n,
            _ => return true,
        }
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Runs a PMD-like loop for `cycles` cycles of THREE, returning (frames sent per class).
fn run_mixed(ahead: Option<u64>, seed: u64, cycles: u64) -> [u64; 3] {
    let mut cfg = StageConfig::new(GBPS);
    cfg.ahead_ns = ahead;
    cfg.queue_len = 64;
    let clock = SimClock::new(1_000_000);
    // Base 0 is in the past: the list starts at the next cycle boundary (1.0 ms).
    let (mut stage, _ctl) = stage_with(THREE, cfg, clock.now_ns());
    let sched = stage.schedule().clone();
    let mut rng = Rng(seed);
    let mut id = 0u64;
    let mut nic_free = 0u64;
    let mut sent = [0u64; 3];
    let end = 1_000_000 + cycles * 200_000;
    while clock.now_ns() < end {
        let now = clock.advance(rng.below(3_000));
        for _ in 0..rng.below(3) {
            let prio = rng.below(3) as u8;
            let len = 60 + rng.below(1455) as usize;
            id += 1;
            let f = TestFrame::new(len, prio, id);
            let _ = stage.enqueue(f, Tc::priority(prio), now);
        }
        let mut out = Vec::new();
        stage.release(now, 32, |f| out.push(f));
        for f in out {
            let wt = wire_time_ns(f.len, GBPS);
            // The NIC sends in order, each frame once the previous one is done.
            let start = now.max(nic_free);
            if ahead == Some(0) {
                assert_eq!(start, now, "handed over while the wire was busy");
            }
            nic_free = start + wt;
            assert!(
                open_over(&sched, f.class, start, start + wt),
                "frame {} of class {} on the wire [{start}, {}) outside its window",
                f.id,
                f.class,
                start + wt
            );
            sent[usize::from(f.class)] += 1;
        }
    }
    sent
}

#[test]
fn no_frame_leaves_outside_its_window() {
    for (ahead, seed) in [(Some(0), 1), (None, 2), (Some(3_000), 3), (None, 4)] {
        let sent = run_mixed(ahead, seed, 200);
        // Every class got plenty through (and so was tested).
        assert!(sent.iter().all(|&n| n > 500), "{sent:?} ahead={ahead:?}");
    }
}

#[test]
fn guard_band_holds_a_frame_that_would_overrun() {
    let (mut s, ctl) = stage_with(THREE, StageConfig::new(GBPS), 0);
    // Class 0 open [0, 100 µs) of each cycle; 5 µs before it closes a 1500-byte frame (12.2 µs)
    // does not fit; a 300-byte one (2.6 µs) does.
    let now = 1_000_000 + 95_000;
    s.enqueue_class(TestFrame::new(1500, 0, 1), 0, now).unwrap();
    let mut got = Vec::new();
    assert_eq!(s.release(now, 32, |f| got.push(f.id)), 0);
    s.enqueue_class(TestFrame::new(300, 0, 2), 0, now).unwrap();
    // FIFO within a class: the small one waits behind the big one.
    assert_eq!(s.release(now + 1, 32, |f| got.push(f.id)), 0);
    // Class 1 opens at 100 µs and 1500 bytes fit its 70 µs window.
    s.enqueue_class(TestFrame::new(1500, 1, 3), 1, now).unwrap();
    assert_eq!(s.release(now + 2, 32, |f| got.push(f.id)), 0);
    assert_eq!(s.release(1_100_000, 32, |f| got.push(f.id)), 1);
    assert_eq!(got, [3]);
    // Next cycle: both class 0 frames go at once.
    assert_eq!(s.release(1_200_000, 32, |f| got.push(f.id)), 2);
    assert_eq!(got, [3, 1, 2]);
    let st = ctl.stats();
    assert_eq!(st.classes[0].guard_deferrals, 1);
    assert_eq!(st.classes[0].held, 2);
    assert_eq!(st.classes[1].held, 1);
    assert_eq!(st.classes[0].sent, 2);
    assert_eq!(st.classes[0].queued, 0);
}

#[test]
fn strict_priority_among_open_classes() {
    // Classes 0..=2 all open for 1 ms, then all closed 10 µs.
    let text = "num_tc 3\nmap 0 1 2 2 2 2 2 2 2 2 2 2 2 2 2 2\nbase-time 0\n\
                sched-entry S 07 1000000\nsched-entry S 00 10000\n";
    let mut cfg = StageConfig::new(GBPS);
    cfg.ahead_ns = Some(0);
    let (mut s, _ctl) = stage_with(text, cfg, 0);
    for (i, class) in [0u8, 1, 2, 0, 1, 2].into_iter().enumerate() {
        let id = i as u64 + 1;
        s.enqueue(TestFrame::new(100, class, id), Tc::priority(class), 10)
            .unwrap();
    }
    let mut order = Vec::new();
    // One frame per call: the wire is busy after each (ahead 0).
    let mut now = 10;
    while s.queued() > 0 {
        s.release(now, 32, |f| order.push((f.class, f.id)));
        now += 1_000;
    }
    assert_eq!(order, [(2, 3), (2, 6), (1, 2), (1, 5), (0, 1), (0, 4)]);
    // A lower class goes when the higher one's head does not fit but its own does.
    // The list runs from 1.01 ms; its all-open window ends at 2.01 ms.
    let now = 2_010_000 - 2_000;
    s.enqueue_class(TestFrame::new(1500, 2, 10), 2, now)
        .unwrap();
    s.enqueue_class(TestFrame::new(100, 0, 11), 0, now).unwrap();
    let mut got = Vec::new();
    s.release(now, 32, |f| got.push(f.id));
    assert_eq!(got, [11]);
}

#[test]
fn bypass_without_a_list_or_with_gates_always_open() {
    let (mut s, mut ctl) = GateStage::<TestFrame>::new(StageConfig::new(GBPS));
    assert!(s.bypass());
    assert_eq!(s.release(0, 32, |_| {}), 0);
    // Always-open list: still bypass.
    let open = "num_tc 2\nmap 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1\nbase-time 0\nsched-entry S 3 1000\n";
    ctl.install(list(open), 5).unwrap();
    s.release(5, 32, |_| {});
    assert!(s.bypass());
    // A list that closes gates: no bypass, even before it starts (the guard band must see it).
    ctl.install(list(THREE), 10).unwrap();
    assert!(s.bypass(), "not picked up before the next release");
    s.release(10, 32, |_| {});
    assert!(!s.bypass());
    // Back to no list: queued frames drain first, then bypass.
    s.enqueue_class(TestFrame::new(60, 1, 1), 1, 20).unwrap();
    ctl.clear();
    s.release(20, 0, |_| {});
    assert!(!s.bypass());
    let mut n = 0;
    s.release(30, 32, |_| n += 1);
    assert_eq!(n, 1);
    assert!(s.bypass());
    // Bypassed traffic books the wire.
    let before = s.wire_free_at();
    s.bypassed(100, 2, 1000);
    assert_eq!(s.wire_free_at(), before.max(100) + (1000 + 48) * 8);
    // Far more than the link carries (a vhost port modelled at 1 Gb/s): the booking stays
    // within BYPASS_BACKLOG_NS of now instead of running away.
    for k in 0..1000u64 {
        s.bypassed(1_000 + k, 32, 32 * 1500);
    }
    assert_eq!(s.wire_free_at(), 1_999 + BYPASS_BACKLOG_NS);
}

#[test]
fn full_queues_drop_and_count() {
    let mut cfg = StageConfig::new(GBPS);
    cfg.queue_len = 4;
    let (mut s, ctl) = stage_with(THREE, cfg, 0);
    let mut refused = 0;
    for id in 0..10 {
        if s.enqueue(TestFrame::new(64, 2, id), Tc::class(2), 0)
            .is_err()
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 6);
    let st = ctl.stats();
    assert_eq!(
        (
            st.classes[2].enqueued,
            st.classes[2].dropped_full,
            st.classes[2].queued
        ),
        (4, 6, 4)
    );
    assert_eq!(st.classes.len(), 3);
}

#[test]
fn frames_that_fit_no_window_are_refused() {
    // Class 1 open 5 µs per cycle: at 1 Gb/s at most 625 bytes on the wire, 601 of frame.
    let text = "num_tc 2\nmap 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1\nbase-time 0\n\
                sched-entry S 01 95000\nsched-entry S 02 5000\n";
    let (mut s, ctl) = stage_with(text, StageConfig::new(GBPS), 0);
    assert!(s.enqueue_class(TestFrame::new(601, 1, 1), 1, 0).is_ok());
    assert!(s.enqueue_class(TestFrame::new(602, 1, 2), 1, 0).is_err());
    // At 100 Mb/s nothing but 1 minimum... not even that: 84 B take 6.72 µs.
    ctl.set_link_speed(100_000_000);
    s.release(1, 0, |_| {});
    assert!(s.enqueue_class(TestFrame::new(60, 1, 3), 1, 1).is_err());
    // The queued 601-byte frame is discarded at its turn rather than blocking the queue.
    let mut got = 0;
    s.release(95_000, 32, |_| got += 1);
    assert_eq!(got, 0);
    let st = ctl.stats();
    assert_eq!(
        (
            st.classes[1].dropped_oversize,
            st.classes[1].discarded,
            st.classes[1].queued
        ),
        (2, 1, 0)
    );
    assert_eq!(st.link_bps, 100_000_000);
}

/// A frame that may carry an 802.1Q tag (4 bytes that queueMaxSDU does not count).
struct MaybeTagged {
    len: usize,
    tagged: bool,
}

impl Frame for MaybeTagged {
    fn len(&self) -> usize {
        self.len
    }
    fn sdu_len(&self) -> usize {
        self.len - 14 - if self.tagged { 4 } else { 0 }
    }
}

#[test]
fn queue_max_sdu_refuses_longer_sdus_but_not_their_tags() {
    let text = "num_tc 2\nmap 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1\nbase-time 0\nmax-sdu 0 200\n\
                sched-entry S 01 500000\nsched-entry S 02 500000\n";
    let (mut s, mut ctl) = GateStage::<MaybeTagged>::new(StageConfig::new(GBPS));
    ctl.install(list(text), 0).unwrap();
    s.release(0, 0, |_| {});
    let try_class = |s: &mut GateStage<MaybeTagged>, class, len, tagged| {
        s.enqueue_class(MaybeTagged { len, tagged }, class, 0)
            .is_ok()
    };
    // SDU 200 fits, 201 does not, with or without a tag; class 0 has no limit.
    assert!(try_class(&mut s, 1, 214, false));
    assert!(!try_class(&mut s, 1, 215, false));
    assert!(try_class(&mut s, 1, 218, true));
    assert!(!try_class(&mut s, 1, 219, true));
    assert!(try_class(&mut s, 0, 1514, false));
    let st = ctl.stats();
    assert_eq!(
        (
            st.classes[1].dropped_max_sdu,
            st.classes[1].dropped_oversize,
            st.classes[1].enqueued,
            st.classes[0].dropped_max_sdu
        ),
        (2, 0, 2, 0)
    );
    // All gates always open but a max-sdu table: frames must still be looked at (no bypass).
    let open = "num_tc 2\nmap 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1\nbase-time 0\nmax-sdu 0 200\n\
                sched-entry S 03 1000\n";
    let (mut s, mut ctl) = GateStage::<MaybeTagged>::new(StageConfig::new(GBPS));
    ctl.install(list(open), 0).unwrap();
    s.release(0, 0, |_| {});
    assert!(!s.bypass());
    assert!(!try_class(&mut s, 1, 300, false));
    // A new list without the table, installed once the first runs, lifts the limit when it
    // takes over (and brings bypass back).
    s.release(5_000, 32, |_| {});
    let r = ctl
        .install(list(&open.replace("max-sdu 0 200\n", "")), 5_000)
        .unwrap();
    let t = r.config_change_time;
    assert!(ctl.schedule().oper().is_some_and(|l| l.has_max_sdu()));
    s.release(t - 1, 32, |_| {});
    assert!(!try_class(&mut s, 1, 300, false));
    assert!(!s.bypass());
    s.release(t, 32, |_| {});
    assert!(try_class(&mut s, 1, 300, false));
    s.release(t + 1, 32, |_| {});
    assert!(s.bypass());
}

#[test]
fn admin_to_oper_through_the_mailbox() {
    let clock = SimClock::new(0);
    let (mut s, mut ctl) = stage_with(THREE, StageConfig::new(GBPS), clock.now_ns());
    // New list from 2 ms: class 0 closed for good, class 2 open.
    let b = "num_tc 3\nmap 0 1 2 2 2 2 2 2 2 2 2 2 2 2 2 2\nbase-time 2000000\n\
             sched-entry S 04 100000\nsched-entry S 06 100000\n";
    clock.set(1_500_000);
    let r = ctl.install(list(b), clock.now_ns()).unwrap();
    assert_eq!(
        (r.config_change_time, r.config_change_error),
        (2_000_000, false)
    );
    assert_eq!(ctl.stats().config_change_time, Some(2_000_000));
    // Until the PMD core polls, it runs the old schedule (THREE pending, as first installed).
    assert!(s.schedule().oper().is_none());
    s.release(clock.now_ns(), 32, |_| {});
    assert!(s.schedule().oper().is_some());
    assert_eq!(s.schedule().config_change_time(), Some(2_000_000));
    assert_eq!(ctl.stats().schedule_swaps, 2);
    // Old list before 2 ms: class 0 open at 1.8 ms (window [1.8, 1.9) ms).
    clock.set(1_800_000);
    s.enqueue_class(TestFrame::new(100, 0, 1), 0, clock.now_ns())
        .unwrap();
    let mut got = Vec::new();
    s.release(clock.now_ns(), 32, |f| got.push(f.id));
    assert_eq!(got, [1]);
    // After the switch class 0 never opens: a class 0 frame fits no window of any list that may
    // still run, so it is refused at enqueue instead of blocking its queue.
    clock.set(2_050_000);
    s.release(clock.now_ns(), 32, |_| {});
    s.enqueue_class(TestFrame::new(100, 0, 2), 0, clock.now_ns())
        .unwrap_err();
    s.enqueue_class(TestFrame::new(100, 2, 3), 2, clock.now_ns())
        .unwrap();
    s.release(clock.now_ns(), 32, |f| got.push(f.id));
    assert_eq!(got, [1, 3]);
    // The replaced schedule came back for the control side to free.
    ctl.collect();
    // A second install before the PMD polls replaces the first: only the latest arrives.
    ctl.install(list(THREE), 2_100_000).unwrap();
    ctl.install(list(b), 2_100_000).unwrap();
    s.release(2_100_001, 32, |_| {});
    assert_eq!(s.schedule(), ctl.schedule());
    ctl.advance(5_000_000);
    assert!(ctl.stats().oper);
}

#[test]
fn fewer_classes_in_a_new_list_discards_their_frames() {
    let (mut s, mut ctl) = stage_with(THREE, StageConfig::new(GBPS), 0);
    // THREE runs from 200 µs; [200, 300) µs is class 0's: a class 2 frame waits.
    s.enqueue_class(TestFrame::new(100, 2, 1), 2, 200_010)
        .unwrap();
    let two = "num_tc 2\nmap 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1\nbase-time 400000\n\
               sched-entry S 01 5000\nsched-entry S 02 5000\n";
    ctl.install(list(two), 200_020).unwrap();
    s.release(200_020, 32, |_| {});
    assert_eq!(s.queued(), 1);
    // At 400 µs the two-class list takes over: class 2 is gone, and so is its frame.
    s.release(400_000, 32, |_| {});
    assert_eq!(s.queued(), 0);
    assert_eq!(
        ctl.stats().classes.len(),
        3,
        "oper is still THREE on the control side"
    );
    assert_eq!(ctl.stats().classes[2].discarded, 1);
    ctl.advance(400_000);
    assert_eq!(ctl.stats().classes.len(), 2);
    assert_eq!(s.class_of(Tc::class(7)), 1);
}

#[test]
fn release_error_histogram_is_sane() {
    // Frames queued while class 1 is closed go out within one PMD step (≤ 1 µs here) of the
    // opening at 100 µs; frames queued while open go within a step of their enqueue.
    let mut cfg = StageConfig::new(GBPS);
    cfg.ahead_ns = Some(0);
    let (mut s, ctl) = stage_with(THREE, cfg, 0);
    let clock = SimClock::new(1_000_000);
    for id in 0..3 {
        s.enqueue_class(TestFrame::new(60, 1, id), 1, clock.now_ns())
            .unwrap();
    }
    let mut sent = 0;
    while clock.now_ns() < 1_160_000 {
        let now = clock.advance(997);
        if (1_110_000..1_120_000).contains(&now) {
            s.enqueue_class(TestFrame::new(60, 1, now), 1, now).unwrap();
        }
        s.release(now, 32, |_| sent += 1);
    }
    let st = ctl.stats();
    let c = &st.classes[1];
    assert_eq!((c.sent, sent), (13, 13));
    assert_eq!(c.held, 3);
    let h = &c.release_error;
    assert_eq!(h.count, 13);
    // The first held frame leaves ≤ 997 ns after the opening; the two behind it wait for the
    // wire (84 B = 672 ns each) in steps of 997 ns: ≤ 3 µs.
    assert!(h.p50_ns.unwrap() <= 1023, "{h:?}");
    assert!(h.max_ns.unwrap() <= 4095, "{h:?}");
    assert_eq!(c.guard_deferrals, 0);
}

#[test]
fn entries_shorter_than_a_minimum_frame_are_refused_at_the_link_speed() {
    // 60 bytes take 480 ns at 1 Gb/s and 4800 ns at 100 Mb/s (taprio's minimum interval).
    assert_eq!(min_interval_ns(GBPS), 480);
    assert_eq!(min_interval_ns(100_000_000), 4800);
    assert_eq!(min_interval_ns(10_000_000_000), 48);
    let text = |short: u64| {
        format!(
            "num_tc 2\nmap 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1\nbase-time 0\n\
             sched-entry S 01 10000\nsched-entry S 02 {short}\n"
        )
    };
    let (_s, mut ctl) = GateStage::<TestFrame>::new(StageConfig::new(GBPS));
    let e = ctl.install(list(&text(479)), 0).unwrap_err();
    assert_eq!(
        e,
        GateInstallError::IntervalTooShort {
            line: 5,
            interval_ns: 479,
            min_ns: 480,
            mbps: 1000
        }
    );
    assert!(
        e.to_string()
            .starts_with("line 5: sched-entry interval 479 ns"),
        "{e}"
    );
    // Nothing was installed; a list at the limit is.
    assert!(ctl.schedule().admin().is_none() && ctl.schedule().oper().is_none());
    ctl.install(list(&text(480)), 0).unwrap();
    // The check follows the port's speed.
    ctl.set_link_speed(100_000_000);
    assert!(ctl.install(list(&text(4799)), 0).is_err());
    ctl.install(list(&text(4800)), 0).unwrap();
}

#[test]
fn release_errors_are_counted_per_frame_in_runs_of_several_enqueue_times() {
    // Class 1 opens at 1.1 ms. The stage counts a run's frames per group of equal enqueue
    // time; the histogram must hold what counting each frame would: hand-over − max(opened,
    // enqueue), and held for frames queued before the opening.
    let mut cfg = StageConfig::new(GBPS);
    cfg.ahead_ns = Some(100_000);
    let (mut s, ctl) = stage_with(THREE, cfg, 0);
    let frame = |id| TestFrame::new(60, 1, id);
    let mut expect = [0u64; stats::BUCKETS];
    let mut push = |s: &mut GateStage<TestFrame>, enq: u64, err: u64| {
        s.enqueue_class(frame(enq), 1, enq).unwrap();
        expect[bucket_of(err)] += 1;
        // The PMD's next iteration, while the gate is closed: the stage sees the gate states.
        if enq < 1_100_000 {
            assert_eq!(s.release(enq, 32, |_| panic!("sent while closed")), 0);
        }
    };
    // First run, at 1 100 500: three held frames (two groups), one queued after the opening.
    push(&mut s, 1_010_000, 500);
    push(&mut s, 1_010_000, 500);
    push(&mut s, 1_050_000, 500);
    push(&mut s, 1_100_400, 100);
    let mut sent = Vec::new();
    assert_eq!(s.release(1_100_500, 32, |f| sent.push(f.id)), 4);
    // Second run, at 1 102 000: three groups in three buckets, none held.
    push(&mut s, 1_100_600, 1_400);
    push(&mut s, 1_100_600, 1_400);
    push(&mut s, 1_101_000, 1_000);
    push(&mut s, 1_101_990, 10);
    assert_eq!(s.release(1_102_000, 32, |f| sent.push(f.id)), 4);
    let enq = [
        1_010_000, 1_010_000, 1_050_000, 1_100_400, 1_100_600, 1_100_600, 1_101_000,
    ];
    assert_eq!(sent[..7], enq);
    let c = &ctl.stats().classes[1];
    assert_eq!((c.sent, c.held), (8, 3));
    assert_eq!(c.release_error.buckets, expect.to_vec());
}

#[test]
fn launch_times_fit_windows_and_granularity() {
    let mut sch = Schedule::new();
    sch.install(list(THREE), 0).unwrap();
    sch.advance(200_000);
    let g = I210_LAUNCH_GRANULARITY_NS;
    let wt = wire_time_ns(1500, GBPS); // 12 192 ns
                                       // Class 0 open [200 µs, 300 µs): from 210 µs + 5 ns it goes at the next 32 ns multiple.
    let t = launch_time(&sch, 0, wt, 210_005, g, LAUNCH_HORIZON_NS).unwrap();
    assert_eq!(t, 210_016);
    // 95 µs into the window: too late, next window (400 µs, plus one granule of slack).
    let t = launch_time(&sch, 0, wt, 295_000, g, LAUNCH_HORIZON_NS).unwrap();
    assert_eq!(t, 400_032);
    // Class 1 open [300, 370) µs: from 250 µs, at its opening (+ slack).
    let t = launch_time(&sch, 1, wt, 250_000, g, LAUNCH_HORIZON_NS).unwrap();
    assert_eq!(t, 300_032);
    assert!(open_over(&sch, 1, t - 31, t + wt + 31));
    // Nothing fits within a short horizon; a frame longer than any window never fits.
    assert_eq!(launch_time(&sch, 1, wt, 250_000, g, 10_000), None);
    assert_eq!(launch_time(&sch, 2, 60_000, 0, g, LAUNCH_HORIZON_NS), None);
    // Granularity 1: exact.
    assert_eq!(
        launch_time(&sch, 0, wt, 210_005, 1, LAUNCH_HORIZON_NS),
        Some(210_005)
    );
    // The stage books the wire: a second frame goes after the first.
    let (mut s, _ctl) = stage_with(THREE, StageConfig::new(GBPS), 200_000);
    let a = s.launch_time(0, 1500, 210_000, g).unwrap();
    let b = s.launch_time(0, 1500, 210_000, g).unwrap();
    assert_eq!(a, 210_016);
    assert!(b >= a + wt && b % g == 0);
}

#[test]
fn wire_time_math() {
    assert_eq!(wire_bytes(1500), 1524);
    assert_eq!(wire_bytes(10), 84);
    assert_eq!(wire_time_ns(1500, GBPS), 12_192);
    assert_eq!(wire_time_ns(1500, 10 * GBPS), 1_220); // 1219.2 rounded up
    assert_eq!(wire_time_ns(60, 100_000_000), 6_720);
    let w = Wire::new(GBPS);
    assert_eq!(w.max_len(12_192), 1500);
    assert_eq!(w.max_len(12_191), 1499);
    assert_eq!(w.max_len(671), 0);
    assert_eq!(w.max_len(672), 60);
    assert_eq!(w.max_len(u64::MAX), usize::MAX);
    assert_eq!(w.max_len(10_000_000), usize::MAX);
    assert_eq!(w.ns(1_000_000), w.ns(65_535));
    // Below 1 Mb/s the model clamps (and does not overflow).
    assert_eq!(wire_time_ns(1500, 1), wire_time_ns(1500, 1_000_000));
    let w = Wire::new(10 * GBPS);
    for ns in [0, 67, 68, 1_219, 1_220, 5_000] {
        let l = w.max_len(ns);
        assert!(l == 0 || w.ns(l) <= ns);
        assert!(
            w.ns(l + 1) > ns || l == 0 && w.ns(MIN_FRAME) > ns,
            "{ns} {l}"
        );
    }
}

#[test]
fn a_gate_opening_inside_the_look_ahead_preempts_a_lower_class_run() {
    // Class 0 alone for 10 µs, then classes 0 and 1 for 10 µs. With 20 µs of look-ahead a
    // release before class 1's gate opens hands over class 0 only up to the opening (the gate
    // operation not reached yet); from that instant class 1 goes first (strict priority), then
    // class 0 resumes.
    let text = "num_tc 2\nmap 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1\nbase-time 0\n\
                sched-entry S 01 10000\nsched-entry S 03 10000\n";
    let mut cfg = StageConfig::new(GBPS);
    cfg.ahead_ns = Some(20_000);
    let (mut s, _ctl) = stage_with(text, cfg, 0);
    let t0 = 100 * 20_000; // a cycle start, long after the list took effect
    let open1 = t0 + 10_000;
    let enq = |s: &mut GateStage<TestFrame>, class: u8, id: u64| {
        let f = TestFrame::new(100, class, id);
        s.enqueue_class(f, class, t0).unwrap();
    };
    for id in 0..30 {
        enq(&mut s, 0, id);
    }
    for id in 100..105 {
        enq(&mut s, 1, id);
    }
    let mut order = Vec::new();
    let mut wire = t0 + 5_000;
    for now in [t0 + 5_000, open1 - 1, open1] {
        s.release(now, 64, |f| {
            // Each frame starts when the previous one left the wire (nothing else is sending).
            let start = wire.max(now);
            wire = start + wire_time_ns(f.len, GBPS);
            order.push((f.class, f.id, start, now));
        });
    }
    let first1 = order
        .iter()
        .position(|&(c, ..)| c == 1)
        .expect("class 1 sent");
    assert!(
        first1 > 0,
        "class 0 goes while class 1 is closed: {order:?}"
    );
    assert!(
        order[..first1]
            .iter()
            .all(|&(c, _, start, _)| c == 0 && start < open1),
        "only class 0, and only before class 1 opens: {order:?}"
    );
    assert!(
        order[first1].2 >= open1 - wire_time_ns(100, GBPS) && order[first1].3 >= open1,
        "class 1 handed over once its gate is open: {order:?}"
    );
    assert!(
        order[first1..first1 + 5].iter().all(|&(c, ..)| c == 1),
        "all of class 1 as soon as its gate opens, before more of class 0: {order:?}"
    );
    assert!(order[first1 + 5..].iter().all(|&(c, ..)| c == 0));
}

#[test]
fn a_queue_map_sends_each_class_to_its_first_queue_and_keeps_the_stage_from_bypass() {
    // Every gate always open: without `queues` the stage would be bypassed.
    let text = "num_tc 3\nmap 0 1 2 2 2 2 2 2 2 2 2 2 2 2 2 2\nqueues 1@0 1@1 2@2\nbase-time 0\n\
                sched-entry S 07 1000000\n";
    assert_eq!(tx_queues_needed(&list(text)), 4);
    let (mut s, _ctl) = stage_with(text, StageConfig::new(GBPS), 0);
    assert!(!s.bypass(), "frames must be classified to pick their queue");
    for (i, class) in [0u8, 1, 2, 2, 0].into_iter().enumerate() {
        s.enqueue(
            TestFrame::new(100, class, i as u64),
            Tc::priority(class),
            10,
        )
        .unwrap();
    }
    let mut got = Vec::new();
    s.release_to_queues(10, 32, |f, q| got.push((f.class, q)));
    // Strict priority: class 2 (queues 2..=3, the first taken) before 1 and 0.
    assert_eq!(got, [(2, 2), (2, 2), (1, 1), (0, 0), (0, 0)]);

    // Without a map every frame goes to the core's own queue.
    let plain = "num_tc 2\nmap 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1\nbase-time 0\n\
                 sched-entry S 01 500000\nsched-entry S 02 500000\n";
    assert_eq!(tx_queues_needed(&list(plain)), 0);
    let (mut s, _ctl) = stage_with(plain, StageConfig::new(GBPS), 0);
    s.enqueue(TestFrame::new(100, 0, 1), Tc::priority(0), 10)
        .unwrap();
    let mut got = Vec::new();
    s.release_to_queues(10, 32, |f, q| got.push((f.id, q)));
    assert_eq!(got, [(1, DEFAULT_TXQ)]);
}

#[test]
fn a_gated_port_needs_speed_where_no_wire_paces_the_reported_one() {
    // Given: always that.
    assert_eq!(
        gate_link_mbps(Some("net_af_packet"), 10_000, Some(1000)),
        Ok(1000)
    );
    assert_eq!(gate_link_mbps(None, 0, Some(100)), Ok(100));
    // A NIC's own report; none yet (link down): 1000 until the link comes up.
    assert_eq!(gate_link_mbps(Some("net_e1000_igb"), 1000, None), Ok(1000));
    assert_eq!(gate_link_mbps(Some("net_ixgbe"), 0, None), Ok(1000));
    assert_eq!(gate_link_mbps(Some("net_ixgbe"), u32::MAX, None), Ok(1000));
    // Virtual devices and vhost-user: refused, naming the option, the driver and its claim.
    let e = gate_link_mbps(Some("net_af_packet"), 10_000, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "a GCL needs speed=MBPS on net_af_packet ports: the driver reports 10000 Mb/s but \
         nothing paces the wire at that rate"
    );
    for d in [
        "net_tap",
        "net_ring",
        "net_null",
        "net_vhost",
        "net_virtio_user",
    ] {
        let e = gate_link_mbps(Some(d), 10_000, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("speed=MBPS") && e.contains(d), "{e}");
    }
    let e = gate_link_mbps(Some("net_virtio"), u32::MAX, None).unwrap_err();
    assert!(e.to_string().contains("reports no speed"), "{e}");
    let e = gate_link_mbps(None, 0, None).unwrap_err().to_string();
    assert!(e.contains("speed=MBPS on vhost-user ports"), "{e}");
}

/// The wire modelled busy up to the very instant a gate opens: the frame waiting for that gate
/// is still not handed over before it opens (an af_packet port would send it at once, early).
#[test]
fn a_frame_is_never_handed_over_while_its_gate_is_closed() {
    // Class 1 open [0, 200 µs), class 0 [200 µs, 1 ms); the list starts at 1 ms.
    let text = "num_tc 2\nmap 0 0 0 0 0 1 0 0 0 0 0 0 0 0 0 0\nbase-time 0\n\
                cycle-time 1000000\nsched-entry S 02 200000\nsched-entry S 01 800000\n";
    let (mut s, ctl) = stage_with(text, StageConfig::new(GBPS), 0);
    let open = 3_000_000;
    // A 1400-byte best-effort frame takes 11 392 ns at 1 Gb/s: handed over at `now` it ends on
    // the wire exactly when class 1 opens, within the look-ahead (one 1522-byte frame) of now.
    let now = open - wire_time_ns(1400, GBPS);
    s.enqueue_class(TestFrame::new(1400, 0, 1), 0, now).unwrap();
    s.enqueue_class(TestFrame::new(64, 1, 2), 1, now).unwrap();
    let mut got = Vec::new();
    assert_eq!(s.release(now, 32, |f| got.push(f.id)), 1);
    assert_eq!((got.as_slice(), s.wire_free_at()), ([1].as_slice(), open));
    // The critical frame's modelled start is the opening, but its gate is closed now.
    for t in [now + 1, open - 1_000, open - 1] {
        assert_eq!(
            s.release(t, 32, |f| got.push(f.id)),
            0,
            "handed over at {t}"
        );
    }
    assert_eq!(s.release(open, 32, |f| got.push(f.id)), 1);
    assert_eq!(got, [1, 2]);
    assert_eq!(ctl.stats().classes[1].sent, 1);
}
