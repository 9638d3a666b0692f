//! Reads a list in any of its three formats ([`parse`] tells them apart by content), and the
//! project's own text format: taprio's words, one keyword per line.
//!
//! ```text
//! # comment (also after a value)
//! num_tc 3
//! map 2 2 1 0 2 2 2 2 2 2 2 2 2 2 2 2
//! queues 1@0 1@1 2@2            # optional: tx queues per class, kept for the switch
//! base-time 1000000000
//! cycle-time 1000000            # optional: defaults to the sum of the intervals
//! cycle-time-extension 10000    # optional: defaults to 0
//! sched-entry S 01 300000       # command S|H|R, hex mask (0x optional), interval ns
//! sched-entry S 0x06 700000
//! clockid CLOCK_TAI             # optional: the switch checks it against its --clock
//! max-sdu 0 0 200               # optional: queueMaxSDU per class from class 0 (0: no limit)
//! flags 0x2                     # optional: taprio's flags, recorded (see below)
//! ```
//!
//! `base-time` is required: taprio silently defaults it to 0 (which then means "the next cycle
//! boundary counted from the epoch"), but in a file its absence is more likely a mistake;
//! `base-time 0` gives taprio's behaviour. `map` must have exactly 16 entries (taprio fills
//! missing ones with 0, which hides typos).
//!
//! `flags` and `txtime-delay` are accepted as taprio accepts them (flags 0x1 txtime-assist, with
//! an optional txtime-delay, or 0x2 full offload; both at once, other bits, or a txtime-delay
//! without 0x1 are refused as taprio refuses them) and recorded, with a warning: they choose how
//! Linux enforces the schedule, and this switch enforces it in its own gate stage whatever they
//! say, with the same gate states.
//!
//! The keyword handling here is shared with the `tc ... taprio` command-line reader
//! ([`crate::taprio`]), which differs only where tc does: several keywords per line, lists that
//! end at the first word that is not one of their values, and C's base-0 numbers where tc reads
//! them so.

use crate::error::{ErrorKind, ParseError, Warning, WarningKind};
use crate::model::{ClockId, GateCommand, GateControlList, TxQueues, MAP_LEN};
use crate::validate::{self, Raw, RawEntry};

/// A successfully parsed list, the warnings it raised, and which format it was written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub list: GateControlList,
    pub warnings: Vec<Warning>,
    pub format: Format,
}

/// The ways a gate control list can be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// The project's own: taprio's words, one keyword per line.
    Text,
    /// A `tc qdisc ... taprio ...` command line, as typed for Linux.
    Taprio,
    /// An IEEE 802.1Qcw `gate-parameter-table` in JSON (RFC 7951).
    Qcw,
}

impl Format {
    /// Tells the formats apart by content: JSON if the first non-blank character is `{`; a
    /// taprio command line if its first word is `tc` or a word (outside `#` comments) is
    /// `taprio`, a word no list in the text format can hold; otherwise the text format.
    pub fn detect(text: &str) -> Format {
        let body = text.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        if body.starts_with('{') {
            return Format::Qcw;
        }
        let mut words = text
            .lines()
            .flat_map(|l| {
                l.split_once('#')
                    .map_or(l, |(before, _)| before)
                    .split_whitespace()
            })
            .map(|w| w.trim_end_matches('\\'));
        let first = words.next();
        if first == Some("tc") || first == Some("taprio") || words.any(|w| w == "taprio") {
            Format::Taprio
        } else {
            Format::Text
        }
    }

    /// How `gcl check` names it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Taprio => "tc taprio command line",
            Format::Qcw => "IEEE 802.1Qcw JSON",
        }
    }
}

/// Parses and validates a gate control list written in any of the [`Format`]s, told apart by
/// content ([`Format::detect`]). Errors carry the line they were found on.
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    parse_for(text, None)
}

/// [`parse`], for a port whose interface is named `interface`: an 802.1Qcw document with
/// several interfaces' tables is read for the one of that name. The other formats ignore it.
pub fn parse_for(text: &str, interface: Option<&str>) -> Result<Parsed, ParseError> {
    match Format::detect(text) {
        Format::Text => parse_text(text),
        Format::Taprio => crate::taprio::parse(text),
        Format::Qcw => crate::qcw::parse(text, interface),
    }
}

/// Parses and validates the text format alone (no detection).
pub fn parse_text(text: &str) -> Result<Parsed, ParseError> {
    let mut raw = Raw::default();
    let mut last_line = 0;
    let mut words = Vec::new();
    for (index, full) in text.lines().enumerate() {
        let line = index.saturating_add(1);
        last_line = line;
        let content = full.split_once('#').map_or(full, |(before, _)| before);
        words.clear();
        words.extend(content.split_whitespace().map(|text| Word { text, line }));
        let mut ws = Words::new(&words);
        let Some(kw) = ws.next() else {
            continue;
        };
        let keyword = keyword(&mut raw, kw, &mut ws, Dialect::Lines)?;
        // `map`, `queues` and `max-sdu` consumed everything; others take a fixed number of values.
        if let Some(token) = ws.next() {
            return Err(ParseError::new(
                line,
                ErrorKind::ExtraToken {
                    keyword: keyword.name(),
                    token: token.text.to_owned(),
                },
            ));
        }
    }
    raw.last_line = last_line.max(1);
    let (list, warnings) = validate::validate(raw)?;
    Ok(Parsed {
        list,
        warnings,
        format: Format::Text,
    })
}

/// A whitespace-separated word and the line it is on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Word<'a> {
    pub text: &'a str,
    pub line: usize,
}

/// The words after a keyword: one line's in the text format, the rest of the command on a
/// command line.
pub(crate) struct Words<'w, 'a> {
    words: &'w [Word<'a>],
    pos: usize,
}

impl<'w, 'a> Words<'w, 'a> {
    pub fn new(words: &'w [Word<'a>]) -> Self {
        Words { words, pos: 0 }
    }

    pub fn peek(&self) -> Option<Word<'a>> {
        self.words.get(self.pos).copied()
    }

    /// The value of `kw`: the next word, whatever it is (as tc's `NEXT_ARG`).
    fn value(
        &mut self,
        kw: Word<'_>,
        keyword: &'static str,
        expected: &'static str,
    ) -> Result<Word<'a>, ParseError> {
        self.next().ok_or(ParseError::new(
            kw.line,
            ErrorKind::MissingValue { keyword, expected },
        ))
    }

    /// The values of a list keyword: in the text format the rest of the line (a bad one is an
    /// error); on a command line the words up to the first one `is_value` rejects, as tc stops.
    fn list(&mut self, dialect: Dialect, is_value: impl Fn(&str) -> bool) -> &'w [Word<'a>] {
        let rest = self.words.get(self.pos..).unwrap_or_default();
        let n = match dialect {
            Dialect::Lines => rest.len(),
            Dialect::Command => rest.iter().take_while(|w| is_value(w.text)).count(),
        };
        self.pos = self.pos.saturating_add(n);
        rest.get(..n).unwrap_or_default()
    }
}

impl<'a> Iterator for Words<'_, 'a> {
    type Item = Word<'a>;
    fn next(&mut self) -> Option<Word<'a>> {
        let w = self.peek()?;
        self.pos = self.pos.saturating_add(1);
        Some(w)
    }
}

/// Where the keywords come from, which decides how lists end and how some numbers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// The text format: one keyword per line; every number decimal, masks hex.
    Lines,
    /// A tc command line: as tc reads it (`sched-entry` intervals, `flags` and `txtime-delay`
    /// in C's base 0: `0x` hex or decimal; a `map` may name fewer than 16 classes).
    Command,
}

/// The keywords of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyword {
    NumTc,
    Map,
    Queues,
    BaseTime,
    CycleTime,
    CycleTimeExtension,
    SchedEntry,
    MaxSdu,
    Clockid,
    Flags,
    TxtimeDelay,
}

impl Keyword {
    const ALL: [Keyword; 11] = [
        Keyword::NumTc,
        Keyword::Map,
        Keyword::Queues,
        Keyword::BaseTime,
        Keyword::CycleTime,
        Keyword::CycleTimeExtension,
        Keyword::SchedEntry,
        Keyword::MaxSdu,
        Keyword::Clockid,
        Keyword::Flags,
        Keyword::TxtimeDelay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Keyword::NumTc => "num_tc",
            Keyword::Map => "map",
            Keyword::Queues => "queues",
            Keyword::BaseTime => "base-time",
            Keyword::CycleTime => "cycle-time",
            Keyword::CycleTimeExtension => "cycle-time-extension",
            Keyword::SchedEntry => "sched-entry",
            Keyword::MaxSdu => "max-sdu",
            Keyword::Clockid => "clockid",
            Keyword::Flags => "flags",
            Keyword::TxtimeDelay => "txtime-delay",
        }
    }

    fn named(word: &str) -> Option<Keyword> {
        Keyword::ALL.into_iter().find(|k| k.name() == word)
    }
}

const NS: &str = "nanoseconds as a decimal integer";

/// Reads keyword `kw` and its values from `ws` into `raw`.
pub(crate) fn keyword(
    raw: &mut Raw,
    kw: Word<'_>,
    ws: &mut Words<'_, '_>,
    dialect: Dialect,
) -> Result<Keyword, ParseError> {
    let line = kw.line;
    let at = |kind| ParseError::new(line, kind);
    let Some(keyword) = Keyword::named(kw.text) else {
        return Err(at(ErrorKind::UnknownKeyword(kw.text.to_owned())));
    };
    let name = keyword.name();
    match keyword {
        Keyword::NumTc => {
            once(raw.num_tc.map(|v| v.1), name, line)?;
            const WHAT: &str = "a number of traffic classes (1..=8)";
            let v = ws.value(kw, name, WHAT)?;
            let n = decimal(v, name, WHAT)?;
            let n = u8::try_from(n)
                .ok()
                .filter(|n| (1..=crate::MAX_TC).contains(n))
                .ok_or(ParseError::new(v.line, ErrorKind::NumTcOutOfRange(n)))?;
            raw.num_tc = Some((n, line));
        }
        Keyword::Map => {
            once(raw.map.map(|v| v.1), name, line)?;
            let words = ws.list(dialect, is_decimal);
            let mut map = [0u64; MAP_LEN];
            for (i, w) in words.iter().enumerate() {
                let class = decimal(*w, name, "a traffic class number")?;
                if let Some(slot) = map.get_mut(i) {
                    *slot = class;
                }
            }
            match (dialect, words.len()) {
                (Dialect::Command, 0) => {
                    return Err(at(ErrorKind::MissingValue {
                        keyword: name,
                        expected: "a traffic class for each priority from 0",
                    }))
                }
                (Dialect::Command, given) if given < MAP_LEN => raw.warnings.push(Warning {
                    line,
                    kind: WarningKind::MapFilled { given },
                }),
                (_, n) if n != MAP_LEN => return Err(at(ErrorKind::MapHasWrongLength(n))),
                _ => {}
            }
            raw.map = Some((map, line));
        }
        Keyword::Queues => {
            once(raw.queues.as_ref().map(|v| v.1), name, line)?;
            let mut pairs = Vec::new();
            for w in ws.list(dialect, |t| queue_pair(t).is_some()) {
                let t = w.text;
                let err = |kind| ParseError::new(w.line, kind);
                let (count, offset) = queue_pair(t).ok_or_else(|| {
                    err(ErrorKind::BadValue {
                        keyword: name,
                        value: t.to_owned(),
                        expected: "COUNT@OFFSET",
                    })
                })?;
                let fit = |v: &str| {
                    decimal(Word { text: v, line }, name, "COUNT@OFFSET")
                        .ok()
                        .and_then(|v| u16::try_from(v).ok())
                };
                let (Some(count), Some(offset)) = (fit(count), fit(offset)) else {
                    return Err(err(ErrorKind::QueuesValueTooLarge(t.to_owned())));
                };
                if count == 0 {
                    return Err(err(ErrorKind::QueuesZeroCount(t.to_owned())));
                }
                pairs.push(TxQueues { count, offset });
            }
            if pairs.is_empty() {
                return Err(at(ErrorKind::MissingValue {
                    keyword: name,
                    expected: "COUNT@OFFSET pairs, one per traffic class",
                }));
            }
            raw.queues = Some((pairs, line));
        }
        Keyword::BaseTime => {
            once(raw.base_time.map(|v| v.1), name, line)?;
            raw.base_time = Some((decimal(ws.value(kw, name, NS)?, name, NS)?, line));
        }
        Keyword::CycleTime => {
            once(raw.cycle_time.map(|v| v.1), name, line)?;
            raw.cycle_time = Some((decimal(ws.value(kw, name, NS)?, name, NS)?, line));
        }
        Keyword::CycleTimeExtension => {
            once(raw.cycle_time_extension.map(|v| v.1), name, line)?;
            raw.cycle_time_extension = Some((decimal(ws.value(kw, name, NS)?, name, NS)?, line));
        }
        Keyword::SchedEntry => {
            const WHAT: &str = "a command (S, H or R), a hex gate mask and an interval in ns";
            let cmd = ws.value(kw, name, WHAT)?;
            let command = match cmd.text {
                "S" => GateCommand::SetGates,
                "H" => GateCommand::SetAndHold,
                "R" => GateCommand::SetAndRelease,
                other => {
                    return Err(ParseError::new(
                        cmd.line,
                        ErrorKind::UnknownCommand(other.to_owned()),
                    ))
                }
            };
            let mask = hex(ws.value(kw, name, WHAT)?)?;
            let iv = ws.value(kw, name, WHAT)?;
            let interval = match dialect {
                Dialect::Lines => decimal(iv, name, NS)?,
                Dialect::Command => c_number(iv, name, "nanoseconds, in decimal or 0x hex")?,
            };
            raw.entries.push(RawEntry {
                command,
                mask,
                interval,
                line,
            });
        }
        Keyword::MaxSdu => {
            once(raw.max_sdu.as_ref().map(|v| v.1), name, line)?;
            const WHAT: &str = "a maximum SDU in bytes (0: no limit)";
            let values = ws
                .list(dialect, is_decimal)
                .iter()
                .map(|w| decimal(*w, name, WHAT))
                .collect::<Result<Vec<_>, _>>()?;
            if values.is_empty() {
                return Err(at(ErrorKind::MissingValue {
                    keyword: name,
                    expected: "one maximum SDU in bytes per traffic class (0: no limit)",
                }));
            }
            raw.max_sdu = Some((values, line));
        }
        Keyword::Clockid => {
            once(raw.clockid.map(|v| v.1), name, line)?;
            let v = ws.value(kw, name, "a clock name such as CLOCK_TAI")?;
            // As tc: case-insensitive, `CLOCK_` optional.
            let upper = v.text.to_ascii_uppercase();
            let id = match upper.strip_prefix("CLOCK_").unwrap_or(&upper) {
                "TAI" => ClockId::Tai,
                "REALTIME" => ClockId::Realtime,
                "MONOTONIC" => ClockId::Monotonic,
                "BOOTTIME" => ClockId::Boottime,
                _ => {
                    return Err(ParseError::new(
                        v.line,
                        ErrorKind::UnknownClockid(v.text.to_owned()),
                    ))
                }
            };
            raw.clockid = Some((id, line));
        }
        Keyword::Flags => {
            once(raw.flags.map(|v| v.1), name, line)?;
            const WHAT: &str = "taprio flags, in hex with 0x or decimal";
            raw.flags = Some((c_number(ws.value(kw, name, WHAT)?, name, WHAT)?, line));
        }
        Keyword::TxtimeDelay => {
            once(raw.txtime_delay.map(|v| v.1), name, line)?;
            const WHAT: &str = "a delay in ns up to 4294967295, in decimal or 0x hex";
            let w = ws.value(kw, name, WHAT)?;
            let v = u32::try_from(c_number(w, name, WHAT)?).map_err(|_| {
                ParseError::new(
                    w.line,
                    ErrorKind::BadValue {
                        keyword: name,
                        value: w.text.to_owned(),
                        expected: WHAT,
                    },
                )
            })?;
            raw.txtime_delay = Some((v, line));
        }
    }
    Ok(keyword)
}

/// Rejects a second occurrence of a keyword.
fn once(first: Option<usize>, keyword: &'static str, line: usize) -> Result<(), ParseError> {
    match first {
        Some(first) => Err(ParseError::new(
            line,
            ErrorKind::DuplicateKeyword { keyword, first },
        )),
        None => Ok(()),
    }
}

fn is_decimal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `COUNT@OFFSET` split, both parts decimal digits.
fn queue_pair(s: &str) -> Option<(&str, &str)> {
    s.split_once('@')
        .filter(|(c, o)| is_decimal(c) && is_decimal(o))
}

/// Unsigned decimal; unlike `str::parse` rejects a leading `+`.
fn decimal(w: Word<'_>, keyword: &'static str, expected: &'static str) -> Result<u64, ParseError> {
    let s = w.text;
    let err = |kind| ParseError::new(w.line, kind);
    if !is_decimal(s) {
        return Err(err(ErrorKind::BadValue {
            keyword,
            value: s.to_owned(),
            expected,
        }));
    }
    digits(s, 10).ok_or_else(|| {
        err(ErrorKind::NumberOverflows {
            keyword,
            value: s.to_owned(),
        })
    })
}

/// A number as C's `strtoul(s, NULL, 0)` reads it where tc uses base 0: `0x` hex or decimal.
/// A leading 0 (octal to C) is refused rather than read either way.
fn c_number(w: Word<'_>, keyword: &'static str, expected: &'static str) -> Result<u64, ParseError> {
    let s = w.text;
    let err = |kind| ParseError::new(w.line, kind);
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(ErrorKind::BadValue {
                keyword,
                value: s.to_owned(),
                expected,
            }));
        }
        return digits(h, 16).ok_or_else(|| {
            err(ErrorKind::NumberOverflows {
                keyword,
                value: s.to_owned(),
            })
        });
    }
    if s.len() > 1 && s.starts_with('0') && is_decimal(s) {
        return Err(err(ErrorKind::LeadingZero {
            keyword,
            value: s.to_owned(),
        }));
    }
    decimal(w, keyword, expected)
}

/// Digits (already checked) in `radix`, `None` past 2^64-1.
fn digits(s: &str, radix: u32) -> Option<u64> {
    s.chars().try_fold(0u64, |acc, c| {
        acc.checked_mul(u64::from(radix))?
            .checked_add(u64::from(c.to_digit(radix)?))
    })
}

/// Hex gate mask, `0x` optional (taprio reads it with strtoul base 16).
fn hex(w: Word<'_>) -> Result<u64, ParseError> {
    let s = w.text;
    let digits_of = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let bad = || {
        ParseError::new(
            w.line,
            ErrorKind::BadValue {
                keyword: "sched-entry",
                value: s.to_owned(),
                expected: "a hex gate mask",
            },
        )
    };
    if digits_of.is_empty() {
        return Err(bad());
    }
    digits(digits_of, 16).ok_or_else(bad)
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
    fn queues_are_kept_and_flags_recorded() {
        let p = parse(&with("queues 2@0 1@2 1@3\nflags 0x2\n")).unwrap();
        let q: Vec<(u16, u16)> = p
            .list
            .queues()
            .unwrap()
            .iter()
            .map(|q| (q.count, q.offset))
            .collect();
        assert_eq!(q, [(2, 0), (1, 2), (1, 3)]);
        assert_eq!(p.list.flags(), 2);
        assert_eq!(p.warnings.len(), 1);
        assert_eq!(p.warnings[0].line, 8);
        assert_eq!(parse(EXAMPLE).unwrap().list.queues(), None);
        let p = parse(&with("flags 1\ntxtime-delay 300000\n")).unwrap();
        assert_eq!(p.list.txtime_delay(), Some(300_000));
        // The text format reads intervals in decimal, leading zeros and all, as it always did.
        let p = parse(&EXAMPLE.replace("S 06 700000", "S 06 0700000")).unwrap();
        assert_eq!(p.list.entries()[1].interval, 700_000);
        let cases: &[(&str, &str)] = &[
            ("queues 1@0 2@1 1@2\n", "the queues of class 1 (2@1) overlap those of class 2"),
            ("queues 1@0 1@1 1@65536\n", "`1@65536` has a number past 65535"),
            ("flags 0x10\n", "flags 0x10 has bits taprio does not define"),
            ("txtime-delay 5\n", "txtime-delay needs flags 0x1"),
            ("fp E E P\n", "unknown keyword `fp` (expected num_tc, map, queues, base-time, cycle-time, cycle-time-extension, sched-entry, max-sdu, clockid, flags or txtime-delay)"),
        ];
        for (extra, msg) in cases {
            let e = err(&with(extra));
            assert_eq!(e.line, 7, "{extra:?}: {e}");
            assert!(e.to_string().contains(msg), "{extra:?}: {e}");
        }
    }

    #[test]
    fn formats_are_told_apart_by_content() {
        assert_eq!(Format::detect(EXAMPLE), Format::Text);
        // `taprio` in a comment is not a command line.
        assert_eq!(
            Format::detect(&format!("# as for taprio\n{EXAMPLE}")),
            Format::Text
        );
        assert_eq!(Format::detect("tc qdisc add"), Format::Taprio);
        assert_eq!(
            Format::detect("sudo tc qdisc add dev x root taprio\\\n num_tc 1"),
            Format::Taprio
        );
        assert_eq!(Format::detect(" \n\u{feff} {\"a\": 1}"), Format::Qcw);
        assert_eq!(Format::detect(""), Format::Text);
        // A command line parsed as one reports in its terms.
        let e = err("sudo tc qdisc add dev x root taprio num_tc 1");
        assert_eq!(
            e.to_string(),
            "1: `sudo` where `tc qdisc` should be: a gate control list is a `tc qdisc add|replace|change ... taprio ...` command"
        );
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
