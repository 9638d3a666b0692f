//! Property tests against naive reference models that walk the schedule from its start.

use gcl::{
    parse, Cursor, Entry, Format, GateCommand, GateControlList, Schedule, ScheduleCursor, MAP_LEN,
};
use proptest::prelude::*;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
struct Spec {
    num_tc: u8,
    map: [u8; MAP_LEN],
    base: u64,
    cycle: Option<u64>,
    ext: u64,
    /// (command 0..3, mask, interval)
    entries: Vec<(u8, u8, u64)>,
}

impl Spec {
    fn cycle(&self) -> u64 {
        self.cycle
            .unwrap_or_else(|| self.entries.iter().map(|e| e.2).sum())
    }

    fn entries(&self) -> Vec<Entry> {
        self.entries
            .iter()
            .map(|&(c, gates, interval)| Entry {
                command: [
                    GateCommand::SetGates,
                    GateCommand::SetAndHold,
                    GateCommand::SetAndRelease,
                ][usize::from(c)],
                gates,
                interval,
                line: 0,
            })
            .collect()
    }

    fn build(&self) -> GateControlList {
        GateControlList::new(
            self.num_tc,
            self.map,
            self.base,
            self.cycle,
            self.ext,
            &self.entries(),
        )
        .expect("generated specs are valid")
        .0
    }

    /// The taprio-style text, with some cosmetic variation driven by `style`.
    fn text(&self, style: u8) -> String {
        let mut s = String::from("# generated\n\n");
        s += &format!("num_tc {}\n", self.num_tc);
        let map: Vec<String> = self.map.iter().map(|c| c.to_string()).collect();
        s += &format!("map {}\n", map.join(" "));
        if style & 1 != 0 {
            s += "clockid CLOCK_TAI # the usual\n";
        }
        for &(c, mask, iv) in &self.entries {
            let cmd = ['S', 'H', 'R'][usize::from(c)];
            if style & 2 != 0 {
                s += &format!("  sched-entry\t{cmd} 0x{mask:x} {iv}\n");
            } else {
                s += &format!("sched-entry {cmd} {mask:02x} {iv}\n");
            }
        }
        s += &format!("base-time {}\n", self.base);
        if let Some(c) = self.cycle {
            s += &format!("cycle-time {c}\n");
        }
        if style & 4 != 0 || self.ext != 0 {
            s += &format!("cycle-time-extension {}\n", self.ext);
        }
        s
    }

    /// Running entries as (start, end, gates): cut at the cycle, last one held to its end.
    fn layout(&self) -> Vec<(u64, u64, u8)> {
        let cycle = self.cycle();
        let mut out: Vec<(u64, u64, u8)> = Vec::new();
        let mut acc = 0;
        for &(_, mask, iv) in &self.entries {
            if acc >= cycle {
                break;
            }
            out.push((acc, (acc + iv).min(cycle), mask));
            acc += iv;
        }
        if let Some(last) = out.last_mut() {
            last.1 = cycle;
        }
        out
    }

    /// Naive gate state: walk cycle by cycle from base-time, then entry by entry.
    fn state(&self, t: u64) -> (u8, u64) {
        if t < self.base {
            return (0xff, self.base);
        }
        let cycle = self.cycle();
        let mut cs = self.base;
        while cs + cycle <= t {
            cs += cycle;
        }
        for (start, end, gates) in self.layout() {
            if t - cs >= start && t - cs < end {
                return (gates, cs + end);
            }
        }
        unreachable!("layout covers the cycle")
    }
}

/// Cosmetic choices drawn from random bytes, cycling.
struct Pick<'a>(&'a [u8], usize);

impl Pick<'_> {
    fn next(&mut self) -> usize {
        let v = self
            .0
            .get(self.1 % self.0.len().max(1))
            .copied()
            .unwrap_or(0);
        self.1 += 1;
        usize::from(v)
    }
    fn one<'s>(&mut self, of: &[&'s str]) -> &'s str {
        of[self.next() % of.len()]
    }
    fn flip(&mut self) -> bool {
        self.next() % 2 == 0
    }
}

impl Spec {
    /// The text format with a `max-sdu` line.
    fn text_with(&self, style: u8, max_sdu: &[u32]) -> String {
        let mut s = self.text(style);
        if !max_sdu.is_empty() {
            let v: Vec<String> = max_sdu.iter().map(u32::to_string).collect();
            s += &format!("max-sdu {}\n", v.join(" "));
        }
        s
    }

    /// A `tc qdisc ... taprio` command line for the same schedule: keywords in random order
    /// (entries in theirs), random line breaks with and without backslashes, comments, hex or
    /// decimal where tc reads either, short prefixes, a map cut where tc fills zeros.
    fn taprio(&self, max_sdu: &[u32], r: &[u8]) -> String {
        let mut p = Pick(r, 0);
        let mut words: Vec<String> = match p.next() % 3 {
            0 => "tc qdisc replace dev eth0 parent root handle 100: taprio",
            1 => "taprio",
            _ => "tc q r dev veth1 root taprio",
        }
        .split(' ')
        .map(str::to_owned)
        .collect();
        let mut groups: Vec<Vec<String>> = Vec::new();
        groups.push(vec!["num_tc".into(), self.num_tc.to_string()]);
        // tc fills a short map with class 0.
        let mut map_len = MAP_LEN;
        if p.flip() {
            while map_len > 1 && self.map[map_len - 1] == 0 {
                map_len -= 1;
            }
        }
        let mut g = vec!["map".to_string()];
        g.extend(self.map[..map_len].iter().map(u8::to_string));
        groups.push(g);
        if self.base != 0 || p.flip() {
            groups.push(vec!["base-time".into(), self.base.to_string()]);
        }
        if let Some(c) = self.cycle {
            groups.push(vec!["cycle-time".into(), c.to_string()]);
        }
        if self.ext != 0 || p.flip() {
            groups.push(vec!["cycle-time-extension".into(), self.ext.to_string()]);
        }
        let mut entries = Vec::new();
        for &(c, mask, iv) in &self.entries {
            entries.push("sched-entry".to_string());
            entries.push(["S", "H", "R"][usize::from(c)].to_string());
            entries.push(match p.next() % 3 {
                0 => format!("{mask:02x}"),
                1 => format!("0x{mask:x}"),
                _ => format!("{mask:X}"),
            });
            entries.push(if p.flip() {
                iv.to_string()
            } else {
                format!("{}{iv:x}", p.one(&["0x", "0X"]))
            });
        }
        groups.push(entries);
        if p.flip() {
            groups.push(vec![
                "clockid".into(),
                p.one(&["CLOCK_TAI", "tai", "clock_tai"]).into(),
            ]);
        }
        if !max_sdu.is_empty() {
            let mut g = vec!["max-sdu".to_string()];
            g.extend(max_sdu.iter().map(u32::to_string));
            groups.push(g);
        }
        if p.flip() {
            let mut g = vec!["queues".to_string()];
            g.extend((0..self.num_tc).map(|i| format!("1@{i}")));
            groups.push(g);
        }
        for i in (1..groups.len()).rev() {
            groups.swap(i, p.next() % (i + 1));
        }
        words.extend(groups.into_iter().flatten());
        let mut out = String::new();
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                out += p.one(&[
                    " ",
                    " ",
                    "  ",
                    "\t",
                    " \\\n",
                    " \\\n    ",
                    "\n",
                    " # note\n",
                    " \\  \n\t",
                ]);
            }
            out += w;
        }
        out
    }

    /// An IEEE 802.1Qcw gate-parameter-table for the same schedule, where a document may hold
    /// one, entries out of index order, integers as numbers or strings.
    fn qcw(&self, max_sdu: &[u32], r: &[u8]) -> String {
        let mut p = Pick(r, 0);
        let int = |v: u64, p: &mut Pick| {
            if p.flip() {
                json!(v)
            } else {
                json!(v.to_string())
            }
        };
        let mut entries: Vec<Value> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, &(c, mask, iv))| {
                let op =
                    ["set-gate-states", "set-and-hold-mac", "set-and-release-mac"][usize::from(c)];
                let op = match p.next() % 3 {
                    0 => op.to_string(),
                    1 => format!("ieee802-dot1q-sched:{op}"),
                    _ => format!("sched:{op}"),
                };
                json!({
                    "index": 10 * i + p.next() % 10,
                    "operation-name": op,
                    "gate-states-value": mask,
                    "time-interval-value": int(iv, &mut p),
                })
            })
            .collect();
        for i in (1..entries.len()).rev() {
            entries.swap(i, p.next() % (i + 1));
        }
        let mut table = json!({
            "admin-control-list": {"gate-control-entry": entries},
            "admin-base-time": {
                "seconds": int(self.base / 1_000_000_000, &mut p),
                "nanoseconds": self.base % 1_000_000_000,
            },
        });
        if let Some(c) = self.cycle {
            // c ns = c / 10^9 s, reduced or not.
            let (mut n, mut d) = (c, 1_000_000_000u64);
            if p.flip() {
                let (mut a, mut b) = (n, d);
                while b != 0 {
                    (a, b) = (b, a % b);
                }
                (n, d) = (n / a, d / a);
            }
            table["admin-cycle-time"] = json!({"numerator": n, "denominator": d});
        }
        if self.ext != 0 || p.flip() {
            table["admin-cycle-time-extension"] = int(self.ext, &mut p);
        }
        if p.flip() {
            table["gate-enabled"] = json!(true);
        }
        if p.flip() {
            table["admin-gate-states"] = json!(255);
            table["oper-gate-states"] = json!(p.next() % 256);
        }
        if !max_sdu.is_empty() {
            table["queue-max-sdu-table"] = Value::Array(
                max_sdu
                    .iter()
                    .enumerate()
                    .filter(|(_, &v)| v != 0 || p.flip())
                    .map(|(c, &v)| json!({"traffic-class": c, "queue-max-sdu": v}))
                    .collect(),
            );
        }
        let doc = match p.next() % 4 {
            0 => json!({"ieee802-dot1q-sched-bridge:gate-parameter-table": table}),
            1 => table,
            2 => json!({"ietf-interfaces:interfaces": {"interface": [
                {"name": "lo"},
                {"name": "eth0", "ieee802-dot1q-bridge:bridge-port": {
                    "ieee802-dot1q-sched-bridge:gate-parameter-table": table}},
            ]}}),
            _ => json!({"ietf-interfaces:interfaces": {"interface": [
                {"name": "eth0", "ieee802-dot1q-sched-bridge:gate-parameter-table": table},
            ]}}),
        };
        if p.flip() {
            serde_json::to_string_pretty(&doc).unwrap()
        } else {
            doc.to_string()
        }
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    (1u8..=8)
        .prop_flat_map(|n| {
            let max = ((1u16 << n) - 1) as u8;
            (
                Just(n),
                prop::array::uniform16(0..n),
                0u64..500,
                prop::option::of(1u64..200),
                0u64..100,
                prop::collection::vec((0u8..3, prop_oneof![Just(max), 0..=max], 1u64..40), 1..6),
            )
        })
        .prop_map(|(num_tc, map, base, cycle, ext, entries)| Spec {
            num_tc,
            map,
            base,
            cycle,
            ext,
            entries,
        })
}

/// Close time by stepping from change to change through `state`.
fn walk_close(
    class: u8,
    t: u64,
    steps: usize,
    state: impl Fn(u64) -> (u8, Option<u64>),
) -> Option<u64> {
    if class >= 8 {
        return Some(t);
    }
    let mut u = t;
    for _ in 0..steps {
        let (gates, next) = state(u);
        if gates & (1 << class) == 0 {
            return Some(u);
        }
        u = next?;
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(256)
    })]

    #[test]
    fn state_matches_reference(s in spec(), ts in prop::collection::vec(0u64..3000, 1..40)) {
        let l = s.build();
        let steps = 3 * (s.entries.len() + 2);
        let mut sorted = ts.clone();
        sorted.sort_unstable();
        let mut cursor = Cursor::new();
        for &t in &sorted {
            let st = l.state_at(t);
            prop_assert_eq!((st.gates, st.next), (s.state(t).0, Some(s.state(t).1)), "t={}", t);
            prop_assert_eq!(cursor.state(&l, t), st, "cursor t={}", t);
            for class in 0..10u8 {
                let expect = walk_close(class, t, steps, |u| {
                    let (g, n) = s.state(u);
                    (g, Some(n))
                });
                prop_assert_eq!(l.gate_close_time(class, t), expect, "class {} t={}", class, t);
                prop_assert_eq!(cursor.gate_close_time(&l, class, t), expect);
            }
        }
        // Unordered queries through a cursor (steps back, jumps) still agree.
        let mut cursor = Cursor::new();
        for &t in &ts {
            prop_assert_eq!(cursor.state(&l, t), l.state_at(t));
        }
        let full = ((1u16 << s.num_tc) - 1) as u8;
        let always = s.layout().iter().all(|w| w.2 == full);
        prop_assert_eq!(l.all_gates_always_open(), always);
    }

    #[test]
    fn many_cycles_far_away(s in spec(), k in 0u64..1_000_000_000, off in 0u64..400) {
        // Far from the base a brute walk is too slow; compare with the state one cycle later
        // shifted back (periodicity) and with the in-cycle reference.
        let l = s.build();
        let c = s.cycle();
        let t = s.base + k * c + off;
        let st = l.state_at(t);
        let near = s.state(s.base + off);
        prop_assert_eq!(st.gates, near.0);
        prop_assert_eq!(st.next, Some(near.1 + k * c));
        prop_assert_eq!(l.state_at(t + c).next, st.next.map(|n| n + c));
    }

    #[test]
    fn text_round_trips(s in spec(), style in 0u8..8) {
        let parsed = parse(&s.text(style)).expect("valid text");
        let l = parsed.list;
        let built = s.build();
        prop_assert_eq!(l.num_tc(), s.num_tc);
        prop_assert_eq!(l.map(), &s.map);
        prop_assert_eq!(l.base_time(), s.base);
        prop_assert_eq!(l.cycle_time(), s.cycle());
        prop_assert_eq!(l.cycle_time_extension(), s.ext);
        prop_assert_eq!(l.windows(), built.windows());
        let plain: Vec<_> = l.entries().iter().map(|e| (e.command, e.gates, e.interval)).collect();
        let want: Vec<_> = s.entries().iter().map(|e| (e.command, e.gates, e.interval)).collect();
        prop_assert_eq!(plain, want);
        // A warning exactly when the list is not the cycle's length.
        let sum: u64 = s.entries.iter().map(|e| e.2).sum();
        prop_assert_eq!(parsed.warnings.is_empty(), sum == s.cycle());
    }

    #[test]
    fn the_three_formats_give_the_same_gates_at_any_t(
        s in spec(),
        shift_s in prop_oneof![Just(0u64), 1u64..3, Just(1_700_000_000u64)],
        sdu in prop::collection::vec(0u32..3000, 0..8),
        style in 0u8..8,
        r in prop::collection::vec(any::<u8>(), 1..64),
        ts in prop::collection::vec(0u64..4000, 1..40),
    ) {
        let mut s = s;
        s.base += shift_s * 1_000_000_000;
        let sdu = &sdu[..sdu.len().min(usize::from(s.num_tc))];
        let texts = [s.text_with(style, sdu), s.taprio(sdu, &r), s.qcw(sdu, &r)];
        let lists: Vec<GateControlList> = texts
            .iter()
            .zip([Format::Text, Format::Taprio, Format::Qcw])
            .map(|(t, f)| {
                let p = parse(t).unwrap_or_else(|e| panic!("{f:?}: {e}\n{t}"));
                assert_eq!(p.format, f, "{t}");
                p.list
            })
            .collect();
        let plain = |l: &GateControlList| -> Vec<_> {
            l.entries().iter().map(|e| (e.command, e.gates, e.interval)).collect()
        };
        let want: Vec<_> = s.entries().iter().map(|e| (e.command, e.gates, e.interval)).collect();
        for (l, t) in lists.iter().zip(&texts) {
            prop_assert_eq!(plain(l), want.clone(), "{}", t);
            prop_assert_eq!(l.base_time(), s.base, "{}", t);
            prop_assert_eq!(l.cycle_time(), s.cycle(), "{}", t);
            prop_assert_eq!(l.cycle_time_extension(), s.ext, "{}", t);
            prop_assert_eq!(&l.max_sdu()[..sdu.len()], sdu, "{}", t);
            prop_assert!(l.max_sdu()[sdu.len()..].iter().all(|&v| v == 0), "{}", t);
        }
        // The command line keeps the text format's classes and map; JSON has its own.
        prop_assert_eq!((lists[1].num_tc(), lists[1].map()), (s.num_tc, &s.map));
        let mut cursors = [Cursor::new(), Cursor::new(), Cursor::new()];
        let mut sorted: Vec<u64> = ts.iter().map(|o| (s.base + o).saturating_sub(500)).collect();
        sorted.sort_unstable();
        for &t in &sorted {
            let (gates, next) = s.state(t);
            for (i, l) in lists.iter().enumerate() {
                let st = cursors[i].state(l, t);
                prop_assert_eq!((st.gates, st.next), (gates, Some(next)), "format {} t={}\n{}", i, t, texts[i]);
                for class in 0..8u8 {
                    prop_assert_eq!(
                        l.gate_close_time(class, t),
                        lists[0].gate_close_time(class, t),
                        "format {} class {} t={}", i, class, t
                    );
                }
            }
        }
    }

    #[test]
    fn command_lines_and_documents_never_panic(
        s in spec(),
        r in prop::collection::vec(any::<u8>(), 1..64),
        cut in any::<prop::sample::Index>(),
        junk in "[ -~\\n]{0,3}",
    ) {
        // Valid renderings with a piece replaced: every error still has its line.
        for text in [s.taprio(&[], &r), s.qcw(&[], &r)] {
            let at = cut.index(text.len() + 1);
            let (a, b) = text.split_at(at);
            let b = b.get(junk.len().min(b.len())..).unwrap_or("");
            let mangled = format!("{a}{junk}{b}");
            if let Err(e) = parse(&mangled) {
                let prefix = format!("{}: ", e.line);
                prop_assert!(e.to_string().starts_with(&prefix));
                prop_assert!(e.line >= 1 && e.line <= mangled.lines().count().max(1), "{}: {}", e, mangled);
            }
        }
    }

    #[test]
    fn parser_never_panics(text in "\\PC*") {
        if let Err(e) = parse(&text) {
            let prefix = format!("{}: ", e.line);
            prop_assert!(e.to_string().starts_with(&prefix));
        }
    }

    #[test]
    fn parser_never_panics_on_token_soup(
        lines in prop::collection::vec(
            prop::collection::vec(
                prop_oneof![
                    Just("num_tc".to_string()), Just("map".to_string()),
                    Just("base-time".to_string()), Just("cycle-time".to_string()),
                    Just("cycle-time-extension".to_string()), Just("sched-entry".to_string()),
                    Just("queues".to_string()), Just("clockid".to_string()),
                    Just("S".to_string()), Just("H".to_string()), Just("#".to_string()),
                    Just("18446744073709551615".to_string()), Just("18446744073709551616".to_string()),
                    Just("0xff".to_string()), Just("1@0".to_string()),
                    (0u64..20).prop_map(|v| v.to_string()),
                    any::<u64>().prop_map(|v| v.to_string()),
                ],
                0..20,
            ),
            0..12,
        )
    ) {
        let text: String = lines.iter().map(|l| l.join(" ") + "\n").collect();
        if let Ok(p) = parse(&text) {
            let l = p.list;
            for t in [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
                let _ = l.state_at(t);
                let _ = l.gate_close_time(0, t);
                let _ = l.first_start_after(t);
            }
            let _ = gcl::check_report(&text, &[0, u64::MAX]);
        }
    }

    #[test]
    fn admin_to_oper_matches_reference(
        a in spec(),
        b in spec(),
        ext in 0u64..400,
        now_off in 0u64..1000,
        base_b in 0u64..2000,
        ts in prop::collection::vec(0u64..4000, 1..60),
    ) {
        let mut a = a;
        a.ext = ext;
        let mut b = b;
        b.base = base_b;
        let mut sched = Schedule::new();
        let first = sched.install(a.build(), 0).unwrap();
        prop_assert!(!first.config_change_error);
        let o = first.config_change_time;
        prop_assert_eq!(o, if a.base > 0 { a.base } else { a.cycle() });
        prop_assert!(sched.advance(o));
        let now = o + now_off;
        let inst = sched.install(b.build(), now).unwrap();
        let s_time = inst.config_change_time;
        // Change time: base if in the future, else the first boundary after now.
        let cb = b.cycle();
        prop_assert!(s_time > now);
        prop_assert_eq!(inst.config_change_error, b.base <= now);
        prop_assert_eq!(sched.config_change_errors(), u64::from(b.base <= now));
        if b.base <= now {
            prop_assert_eq!((s_time - b.base) % cb, 0);
            prop_assert!(s_time - cb <= now);
        } else {
            prop_assert_eq!(s_time, b.base);
        }

        let reference = |t: u64| -> (u8, Option<u64>) {
            if t >= s_time {
                let (g, n) = b.state(t);
                return (g, Some(n));
            }
            let ca = a.cycle();
            let last_start = a.layout().last().unwrap().0;
            let mut c = o;
            loop {
                let end = c + ca;
                if end >= s_time {
                    let (g, n) = a.state(t);
                    return (g, Some(n.min(s_time)));
                }
                if end + ca > s_time && s_time - end < a.ext {
                    // Last complete cycle, stretched to the change time.
                    if t < c + last_start {
                        let (g, n) = a.state(t);
                        return (g, Some(n));
                    }
                    return (a.layout().last().unwrap().2, Some(s_time));
                }
                if t < end {
                    let (g, n) = a.state(t);
                    return (g, Some(n));
                }
                c = end;
            }
        };

        let steps = 6 * (a.entries.len() + b.entries.len() + 4);
        let mut sorted: Vec<u64> = ts.iter().map(|t| o + t).collect();
        sorted.sort_unstable();
        let mut cursor = ScheduleCursor::new();
        for &t in &sorted {
            let st = sched.state_at(t);
            prop_assert_eq!((st.gates, st.next), reference(t), "t={} S={}", t, s_time);
            prop_assert_eq!(cursor.state(&sched, t), st, "cursor t={}", t);
            for class in 0..9u8 {
                // Shortcuts keep the walk short: a class open in every entry of a list stays open
                // through all of that list.
                let open_in = |x: &Spec| class < 8 && x.layout().iter().all(|w| w.2 & (1 << class) != 0);
                let expect = match (open_in(&a), open_in(&b)) {
                    (true, true) => None,
                    (true, false) if t < s_time => walk_close(class, s_time, steps, reference),
                    _ => walk_close(class, t, steps, reference),
                };
                prop_assert_eq!(sched.gate_close_time(class, t), expect, "class {} t={} S={}", class, t, s_time);
                prop_assert_eq!(cursor.gate_close_time(&sched, class, t), expect);
            }
        }
        // After the switch the new list is oper, starting at the change time.
        prop_assert!(sched.advance(s_time));
        prop_assert_eq!(sched.oper_start(), Some(s_time));
        let t = s_time + 3 * cb + 1;
        prop_assert_eq!(sched.state_at(t).gates, b.state(t).0);
    }
}
