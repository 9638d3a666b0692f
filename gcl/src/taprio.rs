//! Reads a `tc qdisc ... taprio ...` command line as users write it for Linux:
//!
//! ```text
//! tc qdisc replace dev eth0 parent root handle 100 taprio \
//!     num_tc 3 map 2 2 1 0 2 2 2 2 2 2 2 2 2 2 2 2 queues 1@0 1@1 2@2 \
//!     base-time 1528743495910289987 \
//!     sched-entry S 01 300000 sched-entry S 02 300000 sched-entry S 04 400000 \
//!     clockid CLOCK_TAI
//! ```
//!
//! Newlines, backslash continuations and any whitespace separate words alike; `#` starts a
//! comment at the start of a word, as in a shell script. Before `taprio`: `tc` (optional),
//! `qdisc` and `add`, `replace` or `change` (abbreviated as tc allows: `tc q r`), then `dev`,
//! `parent`, `handle` with their values and `root`, which are skipped: the port the list is for
//! is named to the switch. After `taprio` the keywords are the text format's (read by the same
//! code, [`crate::parser`]), several on a line, each list ending at the first word that is not
//! one of its values, numbers in the base tc reads them in: `sched-entry` intervals, `flags` and
//! `txtime-delay` in decimal or `0x` hex (a leading 0, octal to tc, is refused rather than read
//! either way), masks in hex, the rest in decimal.
//!
//! Where tc's defaults differ from the text format's, tc's hold: `base-time` defaults to 0 (the
//! next cycle boundary counted from the epoch) and a `map` of fewer than 16 classes is filled
//! with class 0 (with a warning). `clockid` is optional (taprio needs it in software mode; the
//! switch checks it against its `--clock` when given).

use crate::error::{ErrorKind, ParseError};
use crate::parser::{self, Dialect, Format, Parsed, Word, Words};
use crate::validate::{self, Raw};

/// Parses and validates a taprio command line.
pub(crate) fn parse(text: &str) -> Result<Parsed, ParseError> {
    let (words, last_line) = split(text);
    let mut ws = Words::new(&words);
    prefix(&mut ws, last_line)?;
    let mut raw = Raw::default();
    while let Some(w) = ws.next() {
        if w.text == "tc" {
            return Err(ParseError::new(w.line, ErrorKind::SecondCommand));
        }
        parser::keyword(&mut raw, w, &mut ws, Dialect::Command)?;
    }
    raw.last_line = last_line;
    if raw.base_time.is_none() {
        raw.base_time = Some((0, last_line));
    }
    let (list, warnings) = validate::validate(raw)?;
    Ok(Parsed {
        list,
        warnings,
        format: Format::Taprio,
    })
}

/// The words of the command with their lines, and the last line (at least 1).
fn split(text: &str) -> (Vec<Word<'_>>, usize) {
    let mut words = Vec::new();
    let mut last_line = 1;
    for (index, physical) in text.lines().enumerate() {
        let line = index.saturating_add(1);
        last_line = line;
        // A continuation: the backslash before the newline (spaces after it tolerated).
        let content = physical.trim_end();
        let content = content.strip_suffix('\\').unwrap_or(content);
        for text in content.split_whitespace() {
            if text.starts_with('#') {
                break;
            }
            // A lone backslash (a continuation with a space after it, pasted mid-line) is
            // only a separator.
            if text != "\\" {
                words.push(Word { text, line });
            }
        }
    }
    (words, last_line)
}

/// Whether `word` is a non-empty abbreviation of `full`, as tc's `matches()` accepts.
fn abbreviates(word: &str, full: &str) -> bool {
    !word.is_empty() && full.starts_with(word)
}

/// Consumes `[tc] qdisc add|replace|change [dev D] [parent P|root] [handle H] taprio`, or a
/// bare `taprio`.
fn prefix(ws: &mut Words<'_, '_>, last_line: usize) -> Result<(), ParseError> {
    let missing = || ParseError::new(last_line, ErrorKind::MissingTaprio);
    let mut first = ws.next().ok_or_else(missing)?;
    if first.text == "taprio" {
        return Ok(());
    }
    if first.text == "tc" {
        first = ws.next().ok_or_else(missing)?;
        if !abbreviates(first.text, "qdisc") {
            return Err(ParseError::new(
                first.line,
                ErrorKind::NotAQdiscCommand(first.text.to_owned()),
            ));
        }
    } else if !abbreviates(first.text, "qdisc") {
        return Err(ParseError::new(
            first.line,
            ErrorKind::NotAQdiscCommand(first.text.to_owned()),
        ));
    }
    let verb = ws.next().ok_or_else(missing)?;
    // tc tries these in this order, so `c` is change and `r` replace.
    if !["add", "change", "replace"]
        .iter()
        .any(|v| abbreviates(verb.text, v))
    {
        return Err(ParseError::new(
            verb.line,
            ErrorKind::QdiscVerb(verb.text.to_owned()),
        ));
    }
    loop {
        let w = ws.next().ok_or_else(missing)?;
        let expected = match w.text {
            "taprio" => return Ok(()),
            "root" => continue,
            "dev" => "a device name",
            "parent" => "a parent such as root or 100:1",
            "handle" => "a qdisc handle such as 100:",
            other if other.starts_with('-') || KNOWN_TC_OPTIONS.contains(&other) => {
                return Err(ParseError::new(
                    w.line,
                    ErrorKind::QdiscOption(other.to_owned()),
                ))
            }
            // The first other word names the qdisc.
            other => {
                return Err(ParseError::new(
                    w.line,
                    ErrorKind::NotTaprio(other.to_owned()),
                ))
            }
        };
        let keyword = match w.text {
            "dev" => "dev",
            "parent" => "parent",
            _ => "handle",
        };
        if ws.next().is_none() {
            return Err(ParseError::new(
                w.line,
                ErrorKind::MissingValue { keyword, expected },
            ));
        }
    }
}

/// Options `tc qdisc` takes before the qdisc's kind that this reader does not.
const KNOWN_TC_OPTIONS: [&str; 5] = ["estimator", "stab", "ingress", "clsact", "ingress_block"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClockId, GateCommand, TxQueues};
    use crate::{parse, WarningKind};

    /// The example of tc-taprio(8), as users paste it.
    const MAN: &str = "tc qdisc replace dev eth0 parent root handle 100 taprio \\\n\
        \x20             num_tc 3 \\\n\
        \x20             map 2 2 1 0 2 2 2 2 2 2 2 2 2 2 2 2 \\\n\
        \x20             queues 1@0 1@1 2@2 \\\n\
        \x20             base-time 1528743495910289987 \\\n\
        \x20             sched-entry S 01 300000 \\\n\
        \x20             sched-entry S 02 300000 \\\n\
        \x20             sched-entry S 04 400000 \\\n\
        \x20             clockid CLOCK_TAI\n";

    /// The same schedule in the text format.
    const TEXT: &str = "num_tc 3\nmap 2 2 1 0 2 2 2 2 2 2 2 2 2 2 2 2\nqueues 1@0 1@1 2@2\n\
        base-time 1528743495910289987\nsched-entry S 01 300000\nsched-entry S 02 300000\n\
        sched-entry S 04 400000\nclockid CLOCK_TAI\n";

    fn err(text: &str) -> ParseError {
        parse(text).expect_err(text)
    }

    #[test]
    fn the_man_page_example_reads_as_the_text_format() {
        let p = parse(MAN).unwrap();
        assert_eq!(p.format, Format::Taprio);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let t = parse(TEXT).unwrap();
        assert_eq!(t.format, Format::Text);
        let (a, b) = (&p.list, &t.list);
        assert_eq!(a.windows(), b.windows());
        assert_eq!(
            (a.num_tc(), a.map(), a.base_time(), a.cycle_time()),
            (b.num_tc(), b.map(), b.base_time(), b.cycle_time())
        );
        assert_eq!(a.clockid(), Some(ClockId::Tai));
        assert_eq!(
            a.queues(),
            Some(
                &[
                    TxQueues {
                        count: 1,
                        offset: 0
                    },
                    TxQueues {
                        count: 1,
                        offset: 1
                    },
                    TxQueues {
                        count: 2,
                        offset: 2
                    }
                ][..]
            )
        );
        assert_eq!(a.queues(), b.queues());
        // Entries keep their physical lines.
        let lines: Vec<usize> = a.entries().iter().map(|e| e.line).collect();
        assert_eq!(lines, [6, 7, 8]);
    }

    #[test]
    fn any_layout_hex_or_decimal_and_short_prefixes() {
        let one_line = "tc q r dev eth0 root taprio num_tc 2 map 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 \
             sched-entry S 0x1 0x186a0 sched-entry H 2 100000 base-time 5 cycle-time 200000 \
             cycle-time-extension 7 max-sdu 0 300 clockid tai";
        let spread =
            "  tc qdisc add dev eth0 root \\   \n taprio num_tc\n2 map 1 1 0 0 0 0 0 0 0 0 0 \
             0 0 0 0 0 # a comment\nsched-entry S 01 100000 \\\n\tsched-entry H 02 \\\n 100000 \
             \\ base-time 5 cycle-time 200000 cycle-time-extension 7 max-sdu 0 300 \
             clockid CLOCK_TAI\n";
        let bare = "taprio num_tc 2 map 1 1 max-sdu 0 300 sched-entry S 1 100000 sched-entry H \
             2 100000 base-time 5 cycle-time-extension 7 cycle-time 200000";
        let lists: Vec<_> = [one_line, spread, bare]
            .iter()
            .map(|t| parse(t).unwrap_or_else(|e| panic!("{t:?}: {e}")))
            .collect();
        for p in &lists {
            let l = &p.list;
            assert_eq!(p.format, Format::Taprio);
            assert_eq!(l.num_tc(), 2);
            assert_eq!(l.map()[..3], [1, 1, 0]);
            assert_eq!((l.base_time(), l.cycle_time()), (5, 200_000));
            assert_eq!(l.cycle_time_extension(), 7);
            assert_eq!(l.max_sdu()[..2], [0, 300]);
            let e: Vec<_> = l
                .entries()
                .iter()
                .map(|e| (e.command, e.gates, e.interval))
                .collect();
            assert_eq!(
                e,
                [
                    (GateCommand::SetGates, 1, 100_000),
                    (GateCommand::SetAndHold, 2, 100_000)
                ]
            );
        }
        assert_eq!(lists[1].list.entries()[1].line, 5);
        // A short map is filled with class 0, as tc does, and said so.
        assert!(lists[0].warnings.is_empty());
        assert_eq!(
            lists[2].warnings[0].kind,
            WarningKind::MapFilled { given: 2 }
        );
        assert_eq!(lists[2].list.clockid(), None);
    }

    #[test]
    fn base_time_defaults_to_zero_as_in_tc() {
        let p = parse("taprio num_tc 1 map 0 sched-entry S 1 1000").unwrap();
        assert_eq!(p.list.base_time(), 0);
    }

    #[test]
    fn flags_and_txtime_delay_are_kept_with_a_warning_or_refused_as_taprio_does() {
        let base = "taprio num_tc 1 map 0 sched-entry S 1 1000 ";
        let p = parse(&format!("{base}flags 0x1 txtime-delay 0x30d40")).unwrap();
        assert_eq!(p.list.flags(), 1);
        assert_eq!(p.list.txtime_delay(), Some(200_000));
        assert!(p.warnings.iter().any(|w| w.kind
            == WarningKind::TxtimeAssist {
                txtime_delay: Some(200_000)
            }));
        let p = parse(&format!("{base}flags 2")).unwrap();
        assert_eq!(p.list.flags(), 2);
        assert!(p.warnings[1].to_string().contains("full offload"));
        // Same schedule as without the flags.
        assert_eq!(
            p.list.windows(),
            parse(base).unwrap().list.windows(),
            "flags change no gate"
        );
        let cases: &[(&str, &str)] = &[
            (
                "flags 0x3",
                "txtime-assist (0x1) and full offload (0x2) exclude each other",
            ),
            ("flags 0x4", "flags 0x4 has bits taprio does not define"),
            ("txtime-delay 100", "txtime-delay needs flags 0x1"),
            ("flags 2 txtime-delay 100", "txtime-delay needs flags 0x1"),
            ("flags 1 flags 1", "`flags` is given twice"),
            ("flags 0x", "`0x` is not taprio flags"),
            (
                "txtime-delay 0x100000000",
                "is not a delay in ns up to 4294967295",
            ),
        ];
        for (extra, msg) in cases {
            let e = err(&format!("{base}{extra}"));
            assert!(e.to_string().contains(msg), "{extra}: {e}");
        }
    }

    #[test]
    fn errors_name_the_word_and_its_line() {
        let head = "tc qdisc replace dev eth0 root taprio num_tc 2 \\\n map 0 1 \\\n";
        let cases: &[(&str, usize, &str)] = &[
            (
                "tc filter add dev eth0",
                1,
                "`filter` where `tc qdisc` should be: a gate control list is a `tc qdisc",
            ),
            (
                "tc qdisc del dev eth0 root taprio",
                1,
                "`qdisc del` sets no schedule",
            ),
            (
                "tc qdisc add dev eth0 root mqprio num_tc 2 taprio",
                1,
                "the qdisc is `mqprio`, not taprio",
            ),
            (
                "tc qdisc add dev eth0 ingress taprio",
                1,
                "`ingress` before `taprio`",
            ),
            (
                "tc -n ns qdisc add dev eth0 root taprio",
                1,
                "`-n` where `tc qdisc` should be",
            ),
            ("tc qdisc add dev", 1, "`dev` needs a device name"),
            (
                "tc qdisc add dev eth0 root",
                1,
                "the command names no `taprio`",
            ),
            (
                &format!("{head} sched-entry S 01 0300000"),
                3,
                "`0300000` starts with 0, which tc reads as octal",
            ),
            (
                &format!("{head} sched-entry S 01 0x"),
                3,
                "`0x` is not nanoseconds",
            ),
            (
                &format!("{head} sched-entry S 01 1000 fp E P"),
                3,
                "unknown keyword `fp`",
            ),
            (
                &format!("{head}\n sched-entry S 01 1000\ntc qdisc add dev eth0 parent 100:1 etf"),
                5,
                "a second `tc` command",
            ),
            (
                &format!("{head} sched-entry S 01 1000 queues 1@0 1@0"),
                3,
                "the queues of class 0 (1@0) overlap those of class 1",
            ),
            (
                &format!("{head} sched-entry S 01 1000 queues 1@0 1@70000"),
                3,
                "`1@70000` has a number past 65535",
            ),
            (
                &format!("{head} sched-entry S 01 1000 queues 1@0"),
                3,
                "queues has 1 COUNT@OFFSET pairs, but num_tc is 2",
            ),
            (
                &format!("{head} sched-entry S 04 1000"),
                3,
                "gate mask 0x4 opens class 2",
            ),
            (
                "taprio num_tc 1 map 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 sched-entry S 1 1",
                1,
                "map has 17 entries",
            ),
            (
                "taprio num_tc 1 map sched-entry S 1 1",
                1,
                "`map` needs a traffic class",
            ),
            ("taprio num_tc 1 map 0", 1, "there is no sched-entry"),
            ("taprio map 0 sched-entry S 1 1", 1, "`num_tc` is missing"),
        ];
        for (text, line, msg) in cases {
            let e = err(text);
            assert!(e.to_string().contains(msg), "{text:?}: {e}");
            assert_eq!(e.line, *line, "{text:?}: {e}");
        }
        // Queues may share with txtime-assist, as in taprio.
        parse(&format!(
            "{head} sched-entry S 01 1000 queues 1@0 1@0 flags 1"
        ))
        .unwrap();
    }
}
