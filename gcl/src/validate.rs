//! Checks a parsed (or hand-built) list and derives the per-cycle windows and close table.

use crate::error::{ErrorKind, ParseError, Warning, WarningKind};
use crate::model::{
    ClockId, CloseRef, Entry, GateCommand, GateControlList, TxQueues, Window, MAP_LEN, MAX_SDU,
    MAX_TC,
};

/// An entry before its mask is checked against `num_tc` (which may come later in the file).
#[derive(Debug, Clone)]
pub(crate) struct RawEntry {
    pub command: GateCommand,
    pub mask: u64,
    pub interval: u64,
    pub line: usize,
}

/// What the parser collected: each value with the line it came from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Raw {
    pub num_tc: Option<(u8, usize)>,
    pub map: Option<([u64; MAP_LEN], usize)>,
    pub base_time: Option<(u64, usize)>,
    pub cycle_time: Option<(u64, usize)>,
    pub cycle_time_extension: Option<(u64, usize)>,
    pub entries: Vec<RawEntry>,
    /// `COUNT@OFFSET` pairs (count ≥ 1, both checked to fit in 16 bits by the reader).
    pub queues: Option<(Vec<TxQueues>, usize)>,
    pub clockid: Option<(ClockId, usize)>,
    /// `max-sdu`: one value per class from class 0, 0 = no limit.
    pub max_sdu: Option<(Vec<u64>, usize)>,
    pub flags: Option<(u64, usize)>,
    pub txtime_delay: Option<(u32, usize)>,
    /// Warnings the reader raised (they come first).
    pub warnings: Vec<Warning>,
    /// Line blamed for missing things.
    pub last_line: usize,
}

pub(crate) fn validate(raw: Raw) -> Result<(GateControlList, Vec<Warning>), ParseError> {
    let err = |line, kind| Err(ParseError::new(line, kind));
    let eof = raw.last_line;

    let Some((num_tc, _)) = raw.num_tc else {
        return err(eof, ErrorKind::MissingKeyword("num_tc"));
    };
    let Some((raw_map, map_line)) = raw.map else {
        return err(eof, ErrorKind::MissingKeyword("map"));
    };
    let mut map = [0u8; MAP_LEN];
    for (priority, (&class, slot)) in raw_map.iter().zip(map.iter_mut()).enumerate() {
        match u8::try_from(class) {
            Ok(c) if c < num_tc => *slot = c,
            _ => {
                return err(
                    map_line,
                    ErrorKind::MapClassBeyondNumTc {
                        priority,
                        class,
                        num_tc,
                    },
                )
            }
        }
    }
    let flags = raw.flags.map_or(0, |(f, _)| f);
    let mut warnings = raw.warnings;
    match raw.flags {
        Some((f, line)) if f & !0x3 != 0 => return err(line, ErrorKind::UnknownFlags(f)),
        Some((0x3, line)) => return err(line, ErrorKind::FlagsExclusive),
        Some((0x1, line)) => warnings.push(Warning {
            line,
            kind: WarningKind::TxtimeAssist {
                txtime_delay: raw.txtime_delay.map(|v| v.0),
            },
        }),
        Some((0x2, line)) => warnings.push(Warning {
            line,
            kind: WarningKind::FullOffload,
        }),
        _ => {}
    }
    if let Some((_, line)) = raw.txtime_delay {
        if flags != 0x1 {
            return err(line, ErrorKind::TxtimeDelayWithoutAssist);
        }
    }
    if let Some((pairs, line)) = &raw.queues {
        if pairs.len() != usize::from(num_tc) {
            return err(
                *line,
                ErrorKind::QueuesCountMismatch {
                    got: pairs.len(),
                    num_tc,
                },
            );
        }
        // taprio refuses overlapping ranges (except with txtime-assist, which shares queues).
        if flags != 0x1 {
            if let Some((class, other)) = overlap(pairs) {
                let q = pairs[class];
                return err(
                    *line,
                    ErrorKind::QueuesOverlap {
                        class,
                        count: q.count,
                        offset: q.offset,
                        other,
                    },
                );
            }
        }
    }
    let max_sdu = match &raw.max_sdu {
        Some((values, line)) => max_sdu_table(values, num_tc, *line)?,
        None => [0; MAX_TC as usize],
    };
    let Some((base_time, base_line)) = raw.base_time else {
        return err(eof, ErrorKind::MissingKeyword("base-time"));
    };
    if raw.entries.is_empty() {
        return err(eof, ErrorKind::NoSchedEntry);
    }

    let mut entries = Vec::with_capacity(raw.entries.len());
    let mut sum: u64 = 0;
    for e in &raw.entries {
        if e.mask >> num_tc != 0 {
            // Highest set bit names the offending class; mask is non-zero here.
            let class = 63 - e.mask.leading_zeros();
            return err(
                e.line,
                ErrorKind::MaskClassBeyondNumTc {
                    mask: e.mask,
                    class,
                    num_tc,
                },
            );
        }
        if e.interval == 0 {
            return err(e.line, ErrorKind::IntervalIsZero);
        }
        let Some(s) = sum.checked_add(e.interval) else {
            return err(e.line, ErrorKind::IntervalsOverflow);
        };
        sum = s;
        entries.push(Entry {
            command: e.command,
            // Fits: mask >> num_tc == 0 and num_tc <= 8.
            gates: (e.mask & 0xff) as u8,
            interval: e.interval,
            line: e.line,
        });
    }

    let (cycle_time, cycle_line, explicit) = match raw.cycle_time {
        Some((0, line)) => return err(line, ErrorKind::CycleTimeIsZero),
        Some((c, line)) => (c, line, true),
        None => (sum, eof, false),
    };
    if base_time.checked_add(cycle_time).is_none() {
        let line = if explicit { cycle_line } else { base_line };
        return err(line, ErrorKind::FirstCycleOverflows);
    }
    let cycle_time_extension = raw.cycle_time_extension.map_or(0, |(v, _)| v);

    let windows = windows(&entries, cycle_time, cycle_line, &mut warnings);
    let close = close_table(&windows);
    // The debug assertions document invariants the query code relies on.
    debug_assert!(!windows.is_empty() && num_tc <= MAX_TC);
    let mut list = GateControlList {
        num_tc,
        map,
        base_time,
        cycle_time,
        cycle_time_explicit: explicit,
        cycle_time_extension,
        entries,
        clockid: raw.clockid.map(|v| v.0),
        queues: raw.queues.map(|v| v.0),
        // Fits: checked above to be at most 0x3.
        flags: (flags & 0x3) as u32,
        txtime_delay: raw.txtime_delay.map(|v| v.0),
        max_sdu,
        windows,
        close,
        longest_open: [0; MAX_TC as usize],
    };
    list.longest_open = list.compute_longest_open();
    Ok((list, warnings))
}

/// The first two classes (in class order) whose queue ranges share a queue.
fn overlap(pairs: &[TxQueues]) -> Option<(usize, usize)> {
    let range = |q: &TxQueues| {
        (
            u32::from(q.offset),
            u32::from(q.offset) + u32::from(q.count),
        )
    };
    pairs.iter().enumerate().find_map(|(i, a)| {
        let (a0, a1) = range(a);
        pairs
            .iter()
            .enumerate()
            .skip(i + 1)
            .find(|(_, b)| {
                let (b0, b1) = range(b);
                a0 < b1 && b0 < a1
            })
            .map(|(j, _)| (i, j))
    })
}

/// A `max-sdu` table (class 0 first, 0 = no limit) checked against `num_tc` and [`MAX_SDU`];
/// errors blame `line`. Shared by the parser and [`GateControlList::with_max_sdu`].
pub(crate) fn max_sdu_table(
    values: &[u64],
    num_tc: u8,
    line: usize,
) -> Result<[u32; MAX_TC as usize], ParseError> {
    let err = |kind| Err(ParseError::new(line, kind));
    if values.len() > usize::from(num_tc) {
        return err(ErrorKind::MaxSduBeyondNumTc {
            got: values.len(),
            num_tc,
        });
    }
    let mut table = [0u32; MAX_TC as usize];
    for (class, (&v, slot)) in values.iter().zip(table.iter_mut()).enumerate() {
        match u32::try_from(v) {
            Ok(v) if v <= MAX_SDU => *slot = v,
            _ => return err(ErrorKind::MaxSduTooLarge { class, value: v }),
        }
    }
    Ok(table)
}

/// Lays the entries out in one cycle: cut at `cycle`, last one held to `cycle`.
fn windows(
    entries: &[Entry],
    cycle: u64,
    cycle_line: usize,
    warnings: &mut Vec<Warning>,
) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::with_capacity(entries.len());
    let mut start: u64 = 0;
    for (index, e) in entries.iter().enumerate() {
        if start >= cycle {
            warnings.push(Warning {
                line: e.line,
                kind: WarningKind::EntryNeverRuns { index },
            });
            continue;
        }
        // The sum was checked, so start + interval cannot overflow; saturate anyway.
        let natural_end = start.saturating_add(e.interval);
        let end = natural_end.min(cycle);
        if natural_end > cycle {
            warnings.push(Warning {
                line: e.line,
                kind: WarningKind::EntryCut {
                    index,
                    runs: end - start,
                },
            });
        }
        out.push(Window {
            start,
            end,
            gates: e.gates,
            entry: index,
        });
        start = natural_end;
    }
    if let Some(last) = out.last_mut() {
        if last.end < cycle {
            warnings.push(Warning {
                line: cycle_line,
                kind: WarningKind::ListShorterThanCycle {
                    sum: last.end,
                    cycle_time: cycle,
                    held: cycle - last.end,
                },
            });
            last.end = cycle;
        }
    }
    out
}

/// For each window and class open in it, where that class next closes: a backward pass over two
/// laps of the ring, so a window open across the cycle boundary finds its close in the next cycle.
fn close_table(windows: &[Window]) -> Vec<[CloseRef; MAX_TC as usize]> {
    let n = windows.len();
    let mut table = vec![[CloseRef::Never; MAX_TC as usize]; n];
    for class in 0..MAX_TC {
        let bit = 1u8 << class;
        let mut pending: Option<usize> = None;
        for v in (0..n.saturating_mul(2)).rev() {
            let i = v % n;
            if v < n {
                if let (Some(pv), Some(row)) = (pending, table.get_mut(i)) {
                    row[usize::from(class)] = CloseRef::At {
                        window: pv % n,
                        wrap: pv >= n,
                    };
                }
            }
            if windows.get(i).is_some_and(|w| w.gates & bit == 0) {
                pending = Some(v);
            }
        }
    }
    table
}
