//! Reads the taprio-style text format, one keyword per line.
//!
//! ```text
//! # comment (also after a value)
//! num_tc 3
//! map 2 2 1 0 2 2 2 2 2 2 2 2 2 2 2 2
//! queues 1@0 1@1 2@2            # optional: shape-checked, then ignored
//! base-time 1000000000
//! cycle-time 1000000            # optional: defaults to the sum of the intervals
//! cycle-time-extension 10000    # optional: defaults to 0
//! sched-entry S 01 300000       # command S|H|R, hex mask (0x optional), interval ns
//! sched-entry S 0x06 700000
//! clockid CLOCK_TAI             # optional: recorded, not used
//! max-sdu 0 0 200               # optional: queueMaxSDU per class from class 0 (0: no limit)
//! ```
//!
//! `base-time` is required: taprio silently defaults it to 0 (which then means "the next cycle
//! boundary counted from the epoch"), but in a file its absence is more likely a mistake;
//! `base-time 0` gives taprio's behaviour. `map` must have exactly 16 entries (taprio fills
//! missing ones with 0, which hides typos).

use crate::error::{ErrorKind, ParseError, Warning};
use crate::model::{ClockId, GateCommand, GateControlList, MAP_LEN, MAX_TC};
use crate::validate::{self, Raw, RawEntry};

/// A successfully parsed list and the warnings it raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub list: GateControlList,
    pub warnings: Vec<Warning>,
}

/// Parses and validates a gate control list file.
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    let mut raw = Raw::default();
    let mut last_line = 0;
    for (index, full) in text.lines().enumerate() {
        let line = index.saturating_add(1);
        last_line = line;
        let content = full.split_once('#').map_or(full, |(before, _)| before);
        let mut tokens = content.split_whitespace();
        let Some(keyword) = tokens.next() else {
            continue;
        };
        parse_line(&mut raw, keyword, tokens, line).map_err(|kind| ParseError::new(line, kind))?;
    }
    raw.last_line = last_line.max(1);
    let (list, warnings) = validate::validate(raw)?;
    Ok(Parsed { list, warnings })
}

const NS: &str = "nanoseconds as a decimal integer";

fn parse_line<'a>(
    raw: &mut Raw,
    keyword: &str,
    mut tokens: impl Iterator<Item = &'a str>,
    line: usize,
) -> Result<(), ErrorKind> {
    match keyword {
        "num_tc" => {
            once(raw.num_tc.map(|v| v.1), "num_tc")?;
            let v = value(&mut tokens, "num_tc", "a number of traffic classes (1..=8)")?;
            let n = decimal(v, "num_tc", "a number of traffic classes (1..=8)")?;
            let n = u8::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_TC).contains(n))
                .ok_or(ErrorKind::NumTcOutOfRange(n))?;
            raw.num_tc = Some((n, line));
        }
        "map" => {
            once(raw.map.map(|v| v.1), "map")?;
            let mut map = [0u64; MAP_LEN];
            let mut count = 0usize;
            for t in tokens.by_ref() {
                let class = decimal(t, "map", "a traffic class number")?;
                if let Some(slot) = map.get_mut(count) {
                    *slot = class;
                }
                count = count.saturating_add(1);
            }
            if count != MAP_LEN {
                return Err(ErrorKind::MapHasWrongLength(count));
            }
            raw.map = Some((map, line));
        }
        "queues" => {
            once(raw.queues.as_ref().map(|v| v.1), "queues")?;
            let mut pairs = Vec::new();
            for t in tokens.by_ref() {
                let bad = || ErrorKind::BadValue {
                    keyword: "queues",
                    value: t.to_owned(),
                    expected: "COUNT@OFFSET",
                };
                let (count, offset) = t.split_once('@').ok_or_else(bad)?;
                let count = decimal(count, "queues", "COUNT@OFFSET").map_err(|_| bad())?;
                let offset = decimal(offset, "queues", "COUNT@OFFSET").map_err(|_| bad())?;
                if count == 0 {
                    return Err(ErrorKind::QueuesZeroCount(t.to_owned()));
                }
                pairs.push((count, offset));
            }
            if pairs.is_empty() {
                return Err(ErrorKind::MissingValue {
                    keyword: "queues",
                    expected: "COUNT@OFFSET pairs, one per traffic class",
                });
            }
            raw.queues = Some((pairs, line));
        }
        "base-time" => {
            once(raw.base_time.map(|v| v.1), "base-time")?;
            raw.base_time = Some((ns(&mut tokens, "base-time")?, line));
        }
        "cycle-time" => {
            once(raw.cycle_time.map(|v| v.1), "cycle-time")?;
            raw.cycle_time = Some((ns(&mut tokens, "cycle-time")?, line));
        }
        "cycle-time-extension" => {
            once(
                raw.cycle_time_extension.map(|v| v.1),
                "cycle-time-extension",
            )?;
            raw.cycle_time_extension = Some((ns(&mut tokens, "cycle-time-extension")?, line));
        }
        "sched-entry" => {
            const WHAT: &str = "a command (S, H or R), a hex gate mask and an interval in ns";
            let cmd = value(&mut tokens, "sched-entry", WHAT)?;
            let command = match cmd {
                "S" => GateCommand::SetGates,
                "H" => GateCommand::SetAndHold,
                "R" => GateCommand::SetAndRelease,
                other => return Err(ErrorKind::UnknownCommand(other.to_owned())),
            };
            let mask = hex(value(&mut tokens, "sched-entry", WHAT)?)?;
            let interval = decimal(value(&mut tokens, "sched-entry", WHAT)?, "sched-entry", NS)?;
            raw.entries.push(RawEntry {
                command,
                mask,
                interval,
                line,
            });
        }
        "max-sdu" => {
            once(raw.max_sdu.as_ref().map(|v| v.1), "max-sdu")?;
            const WHAT: &str = "a maximum SDU in bytes (0: no limit)";
            let values = tokens
                .by_ref()
                .map(|t| decimal(t, "max-sdu", WHAT))
                .collect::<Result<Vec<_>, _>>()?;
            if values.is_empty() {
                return Err(ErrorKind::MissingValue {
                    keyword: "max-sdu",
                    expected: "one maximum SDU in bytes per traffic class (0: no limit)",
                });
            }
            raw.max_sdu = Some((values, line));
        }
        "clockid" => {
            once(raw.clockid.map(|v| v.1), "clockid")?;
            let v = value(&mut tokens, "clockid", "a clock name such as CLOCK_TAI")?;
            let name = v.to_ascii_uppercase();
            let bare = name.strip_prefix("CLOCK_").unwrap_or(&name);
            let id = match bare {
                "TAI" => ClockId::Tai,
                "REALTIME" => ClockId::Realtime,
                "MONOTONIC" => ClockId::Monotonic,
                "BOOTTIME" => ClockId::Boottime,
                _ => return Err(ErrorKind::UnknownClockid(v.to_owned())),
            };
            raw.clockid = Some((id, line));
        }
        other => return Err(ErrorKind::UnknownKeyword(other.to_owned())),
    }
    // `map`, `queues` and `max-sdu` consumed everything; others take a fixed number of values.
    if let Some(token) = tokens.next() {
        return Err(ErrorKind::ExtraToken {
            keyword: static_keyword(keyword),
            token: token.to_owned(),
        });
    }
    Ok(())
}

/// Rejects a second occurrence of a keyword.
fn once(first: Option<usize>, keyword: &'static str) -> Result<(), ErrorKind> {
    match first {
        Some(first) => Err(ErrorKind::DuplicateKeyword { keyword, first }),
        None => Ok(()),
    }
}

fn static_keyword(k: &str) -> &'static str {
    match k {
        "num_tc" => "num_tc",
        "map" => "map",
        "queues" => "queues",
        "base-time" => "base-time",
        "cycle-time" => "cycle-time",
        "cycle-time-extension" => "cycle-time-extension",
        "sched-entry" => "sched-entry",
        "max-sdu" => "max-sdu",
        _ => "clockid",
    }
}

fn value<'a>(
    tokens: &mut impl Iterator<Item = &'a str>,
    keyword: &'static str,
    expected: &'static str,
) -> Result<&'a str, ErrorKind> {
    tokens
        .next()
        .ok_or(ErrorKind::MissingValue { keyword, expected })
}

fn ns<'a>(
    tokens: &mut impl Iterator<Item = &'a str>,
    keyword: &'static str,
) -> Result<u64, ErrorKind> {
    decimal(value(tokens, keyword, NS)?, keyword, NS)
}

/// Unsigned decimal; unlike `str::parse` rejects a leading `+`.
fn decimal(s: &str, keyword: &'static str, expected: &'static str) -> Result<u64, ErrorKind> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ErrorKind::BadValue {
            keyword,
            value: s.to_owned(),
            expected,
        });
    }
    s.bytes()
        .try_fold(0u64, |acc, b| {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        })
        .ok_or_else(|| ErrorKind::NumberOverflows {
            keyword,
            value: s.to_owned(),
        })
}

/// Hex gate mask, `0x` optional (taprio reads it with strtoul base 16).
fn hex(s: &str) -> Result<u64, ErrorKind> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let bad = || ErrorKind::BadValue {
        keyword: "sched-entry",
        value: s.to_owned(),
        expected: "a hex gate mask",
    };
    if digits.is_empty() {
        return Err(bad());
    }
    digits
        .chars()
        .try_fold(0u64, |acc, c| {
            let d = c.to_digit(16)?;
            acc.checked_mul(16)?.checked_add(u64::from(d))
        })
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "num_tc 3\nmap 2 2 1 0 2 2 2 2 2 2 2 2 2 2 2 2\nbase-time 1000000000\ncycle-time 1000000\nsched-entry S 01 300000\nsched-entry S 06 700000\n";

    fn err(text: &str) -> ParseError {
        parse(text).expect_err("should fail")
    }

    fn with(extra: &str) -> String {
        format!("{EXAMPLE}{extra}")
    }

    #[test]
    fn example_parses() {
        let p = parse(EXAMPLE).unwrap();
        let l = &p.list;
        assert!(p.warnings.is_empty());
        assert_eq!(l.num_tc(), 3);
        assert_eq!(l.map()[..4], [2, 2, 1, 0]);
        assert_eq!(l.base_time(), 1_000_000_000);
        assert_eq!(l.cycle_time(), 1_000_000);
        assert_eq!(l.entries().len(), 2);
        assert_eq!(l.entries()[1].gates, 6);
        assert_eq!(l.entries()[1].line, 6);
        assert_eq!(l.class_of(3), 0);
        assert_eq!(l.class_of(19), 0);
    }

    #[test]
    fn comments_blank_lines_optional_keywords() {
        let text = "# header\n\n  num_tc 2 # two\nmap 0 0 0 0 0 0 0 0 1 1 1 1 1 1 1 1\nqueues 1@0 1@1\nclockid CLOCK_TAI\nbase-time 0\ncycle-time-extension 5\nsched-entry H 0x1 10\nsched-entry R 0X3 20\n";
        let p = parse(text).unwrap();
        assert_eq!(p.list.cycle_time(), 30);
        assert!(!p.list.cycle_time_is_explicit());
        assert_eq!(p.list.cycle_time_extension(), 5);
        assert_eq!(p.list.clockid(), Some(ClockId::Tai));
        assert_eq!(p.list.entries()[0].command, GateCommand::SetAndHold);
        assert_eq!(p.list.entries()[1].command, GateCommand::SetAndRelease);
    }

    #[test]
    fn max_sdu_is_per_class_from_class_0() {
        let p = parse(&with("max-sdu 0 200\n")).unwrap();
        assert_eq!(p.list.max_sdu(), &[0, 200, 0, 0, 0, 0, 0, 0]);
        assert!(p.list.has_max_sdu());
        assert!(!parse(EXAMPLE).unwrap().list.has_max_sdu());
        assert!(!parse(&with("max-sdu 0 0 0\n")).unwrap().list.has_max_sdu());
        let cases: &[(&str, &str)] = &[
            ("max-sdu\n", "`max-sdu` needs one maximum SDU"),
            ("max-sdu 0 x\n", "`x` is not a maximum SDU in bytes"),
            ("max-sdu 1 2 3 4\n", "max-sdu has 4 values, but num_tc is 3"),
            ("max-sdu 65522\n", "max-sdu 65522 for class 0 is larger"),
            ("max-sdu 1\nmax-sdu 2\n", "`max-sdu` is given twice"),
        ];
        for (extra, msg) in cases {
            let e = err(&with(extra));
            assert!(e.line >= 7, "{extra:?}: {e}");
            assert!(e.to_string().contains(msg), "{extra:?}: {e}");
        }
        let l = parse(EXAMPLE).unwrap().list;
        assert_eq!(l.clone().with_max_sdu(&[9]).unwrap().max_sdu()[0], 9);
        assert!(l.with_max_sdu(&[1, 2, 3, 4]).is_err());
    }

    #[test]
    fn short_and_long_lists_warn() {
        let short = EXAMPLE.replace("cycle-time 1000000", "cycle-time 1500000");
        let p = parse(&short).unwrap();
        assert_eq!(p.warnings.len(), 1);
        assert_eq!(p.warnings[0].line, 4);
        assert_eq!(p.list.windows()[1].end, 1_500_000);

        let long = EXAMPLE.replace("cycle-time 1000000", "cycle-time 200000");
        let p = parse(&long).unwrap();
        assert_eq!(
            p.warnings.iter().map(|w| w.line).collect::<Vec<_>>(),
            [5, 6]
        );
        assert_eq!(p.list.windows().len(), 1);
        assert_eq!(p.list.windows()[0].end, 200_000);
        assert_eq!(
            p.warnings[1].to_string(),
            "6: entry 1 starts at or after the end of the cycle and never runs"
        );
    }

    #[test]
    fn errors_carry_line_and_reason() {
        let cases: &[(&str, usize, &str)] = &[
            ("bogus 1\n", 1, "unknown keyword `bogus`"),
            (
                "num_tc 3\nnum_tc 3\n",
                2,
                "`num_tc` is given twice (first on line 1)",
            ),
            ("num_tc 9\n", 1, "num_tc 9 is outside 1..=8"),
            ("num_tc 0\n", 1, "num_tc 0 is outside 1..=8"),
            ("num_tc\n", 1, "`num_tc` needs"),
            (
                "num_tc 3 4\n",
                1,
                "unexpected `4` after the value of `num_tc`",
            ),
            ("num_tc +3\n", 1, "`+3` is not"),
            ("map 1 2 3\n", 1, "map has 3 entries"),
            (
                "base-time 99999999999999999999\n",
                1,
                "does not fit in 64 bits",
            ),
            ("base-time -1\n", 1, "`-1` is not nanoseconds"),
            ("sched-entry X 01 5\n", 1, "unknown sched-entry command `X`"),
            ("sched-entry S zz 5\n", 1, "`zz` is not a hex gate mask"),
            ("sched-entry S 0x 5\n", 1, "`0x` is not a hex gate mask"),
            ("sched-entry S 1\n", 1, "`sched-entry` needs"),
            ("queues 1@0 x\n", 1, "`x` is not COUNT@OFFSET"),
            ("queues 0@0\n", 1, "zero count"),
            ("clockid CLOCK_FOO\n", 1, "unknown clockid"),
        ];
        for (text, line, msg) in cases {
            let e = err(text);
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.to_string().contains(msg), "{text:?}: {e}");
        }
    }

    #[test]
    fn validation_errors() {
        let e = err(&EXAMPLE.replace("S 06", "S 0e"));
        assert_eq!(e.line, 6);
        assert_eq!(
            e.to_string(),
            "6: gate mask 0xe opens class 3, but num_tc is 3"
        );
        let e = err(&EXAMPLE.replace("S 06", "S 1ff"));
        assert!(matches!(
            e.kind,
            ErrorKind::MaskClassBeyondNumTc { class: 8, .. }
        ));
        let e = err(&EXAMPLE.replace("map 2 2 1 0", "map 2 2 1 3"));
        assert_eq!(
            e.to_string(),
            "2: map sends priority 3 to class 3, but num_tc is 3"
        );
        let e = err(&EXAMPLE.replace("700000", "0"));
        assert_eq!((e.line, e.kind), (6, ErrorKind::IntervalIsZero));
        let e = err(&EXAMPLE.replace("cycle-time 1000000", "cycle-time 0"));
        assert_eq!((e.line, e.kind), (4, ErrorKind::CycleTimeIsZero));
        let e = err(&EXAMPLE
            .replace("300000", "18446744073709551615")
            .replace("cycle-time 1000000\n", ""));
        assert_eq!((e.line, e.kind), (5, ErrorKind::IntervalsOverflow));
        let e = err(&EXAMPLE.replace("1000000000", "18446744073709000000"));
        assert_eq!((e.line, e.kind), (4, ErrorKind::FirstCycleOverflows));
        let e = err(&EXAMPLE.replace("base-time 1000000000\n", ""));
        assert_eq!(
            (e.line, e.kind),
            (5, ErrorKind::MissingKeyword("base-time"))
        );
        let e = err("num_tc 3\nmap 2 2 1 0 2 2 2 2 2 2 2 2 2 2 2 2\nbase-time 0\n");
        assert_eq!((e.line, e.kind), (3, ErrorKind::NoSchedEntry));
        let e = err("");
        assert_eq!((e.line, e.kind), (1, ErrorKind::MissingKeyword("num_tc")));
        let e = err(&with("queues 1@0 1@1\n"));
        assert_eq!(
            e.to_string(),
            "7: queues has 2 COUNT@OFFSET pairs, but num_tc is 3"
        );
        let e = err(&with("cycle-time 5\n"));
        assert_eq!(
            e.to_string(),
            "7: `cycle-time` is given twice (first on line 4)"
        );
    }
}
