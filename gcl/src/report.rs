//! The text `tsn-vswitch gcl check FILE [--at T]...` prints.

use std::fmt::Write;

use crate::error::ParseError;
use crate::parser::{parse, Parsed};

/// Parses `text` (any [`Format`](crate::Format)) and renders which format it was read as (the
/// first line, `format ...`), the validated schedule, its warnings, and one line per instant in
/// `at`, exactly `T gates=0xMM next=N`:
///
/// - `gates`: open gates, two lowercase hex digits, bit i = class i. Before the list's
///   `base-time` every gate is open, printed as `0xff` (all 8 gates, not just `num_tc`): that is
///   the state of the port, whose unused gates are open too.
/// - `next`: absolute time of the next gate operation, i.e. the end of the current entry, even if
///   the following entry sets the same gates (a single-entry list changes "nothing" at each new
///   cycle boundary, which is still printed). Before `base-time` it is `base-time`. `never` if it
///   would lie past 2^64-1 ns.
///
/// The list is evaluated standalone, starting at its `base-time` (no admin → oper switch).
pub fn check_report(text: &str, at: &[u64]) -> Result<String, ParseError> {
    Ok(report(&parse(text)?, at))
}

/// The report of [`check_report`] for a list already parsed.
pub fn report(parsed: &Parsed, at: &[u64]) -> String {
    let l = &parsed.list;
    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored rather than unwrapped.
    let _ = writeln!(out, "format {}", parsed.format.name());
    let _ = writeln!(out, "num_tc {}", l.num_tc());
    let map: Vec<String> = l.map().iter().map(u8::to_string).collect();
    let _ = writeln!(out, "map {}", map.join(" "));
    let _ = writeln!(out, "base-time {}", l.base_time());
    let _ = writeln!(
        out,
        "cycle-time {}{}",
        l.cycle_time(),
        if l.cycle_time_is_explicit() {
            ""
        } else {
            " (sum of the intervals)"
        }
    );
    let _ = writeln!(out, "cycle-time-extension {}", l.cycle_time_extension());
    if l.has_max_sdu() {
        let t: Vec<String> = l.max_sdu()[..usize::from(l.num_tc())]
            .iter()
            .map(u32::to_string)
            .collect();
        let _ = writeln!(out, "max-sdu {} (0: no limit)", t.join(" "));
    }
    if let Some(q) = l.queues() {
        let q: Vec<String> = q
            .iter()
            .map(|q| format!("{}@{}", q.count, q.offset))
            .collect();
        let _ = writeln!(out, "queues {}", q.join(" "));
    }
    if let Some(c) = l.clockid() {
        let _ = writeln!(out, "clockid {}", c.name());
    }
    if l.flags() != 0 {
        let _ = writeln!(
            out,
            "flags {:#x} (recorded: the gate runs in software)",
            l.flags()
        );
    }
    if let Some(d) = l.txtime_delay() {
        let _ = writeln!(out, "txtime-delay {d}");
    }
    let _ = writeln!(out, "entries {}", l.entries().len());
    let mut start: u64 = 0;
    for (i, e) in l.entries().iter().enumerate() {
        let _ = write!(
            out,
            "  {i}: line {} {} start={start} gates=0x{:02x} interval={}",
            e.line,
            e.command.letter(),
            e.gates,
            e.interval
        );
        match l.windows().iter().find(|w| w.entry == i) {
            None => out.push_str(" (never runs)"),
            Some(w) => {
                let runs = w.end - w.start;
                if runs < e.interval {
                    let _ = write!(out, " (cut to {runs})");
                } else if runs > e.interval {
                    let _ = write!(out, " (held to the cycle's end: {runs})");
                }
            }
        }
        out.push('\n');
        start = start.saturating_add(e.interval);
    }
    let _ = writeln!(
        out,
        "all gates always open: {}",
        if l.all_gates_always_open() {
            "yes"
        } else {
            "no"
        }
    );
    for w in &parsed.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let mut cursor = crate::schedule::Cursor::new();
    for &t in at {
        let s = cursor.state(l, t);
        let _ = match s.next {
            Some(n) => writeln!(out, "{t} gates=0x{:02x} next={n}", s.gates),
            None => writeln!(out, "{t} gates=0x{:02x} next=never", s.gates),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "num_tc 3\nmap 2 2 1 0 2 2 2 2 2 2 2 2 2 2 2 2\nbase-time 1000000000\ncycle-time 1000000\nsched-entry S 01 300000\nsched-entry S 06 700000\n";

    #[test]
    fn example_report() {
        let r = check_report(
            EXAMPLE,
            &[
                0,
                1_000_000_000,
                1_000_299_999,
                1_000_300_000,
                1_002_500_000,
            ],
        )
        .unwrap();
        let expected = "\
format text
num_tc 3
map 2 2 1 0 2 2 2 2 2 2 2 2 2 2 2 2
base-time 1000000000
cycle-time 1000000
cycle-time-extension 0
entries 2
  0: line 5 S start=0 gates=0x01 interval=300000
  1: line 6 S start=300000 gates=0x06 interval=700000
all gates always open: no
0 gates=0xff next=1000000000
1000000000 gates=0x01 next=1000300000
1000299999 gates=0x01 next=1000300000
1000300000 gates=0x06 next=1001000000
1002500000 gates=0x06 next=1003000000
";
        assert_eq!(r, expected);
    }

    #[test]
    fn report_shows_cuts_holds_and_warnings() {
        let text = EXAMPLE
            .replace("cycle-time 1000000", "cycle-time 200000")
            .replace("base-time 1000000000", "base-time 0");
        let r = check_report(&text, &[150_000]).unwrap();
        assert!(r.contains("  0: line 5 S start=0 gates=0x01 interval=300000 (cut to 200000)\n"));
        assert!(r.contains("interval=700000 (never runs)\n"));
        assert!(r.contains(
            "warning: 5: entry 0 crosses the end of the cycle and is cut to 200000 ns\n"
        ));
        assert!(r.ends_with("150000 gates=0x01 next=200000\n"));

        let text = "num_tc 1\nmap 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\nbase-time 10\ncycle-time 100\nsched-entry S 1 40\n";
        let r = check_report(text, &[10, 60]).unwrap();
        assert!(r.contains("interval=40 (held to the cycle's end: 100)\n"));
        assert!(r.contains("all gates always open: yes\n"));
        assert!(r.contains("warning: 4: the intervals sum to 40 ns"));
        assert!(r.ends_with("10 gates=0x01 next=110\n60 gates=0x01 next=110\n"));
    }

    #[test]
    fn report_error_is_line_and_reason() {
        let e = check_report("num_tc 3\nfoo\n", &[]).unwrap_err();
        assert!(e.to_string().starts_with("2: unknown keyword `foo`"));
    }
}
