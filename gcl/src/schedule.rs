//! Gate state of one list at an instant, where it next changes, and when a class's gate closes.
//!
//! A list on its own starts at its `base-time`; before that every gate is open (taprio forces all
//! gates open until the schedule starts, following 802.1Qbv's initial state) and the next change
//! is `base-time`. From then on cycle k covers `[base + k·cycle, base + (k+1)·cycle)`.
//!
//! Times are u64 ns. Instants past 2^64-1 ns cannot be represented, so a change or close that would
//! fall there is reported as `None` ("not within representable time"); nothing overflows.

use crate::model::{CloseRef, GateControlList, GateState, Window, ALL_GATES_OPEN, MAX_TC};

/// Where in the list an instant falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pos {
    /// Before `base-time`: all gates open.
    Before,
    /// In window `window` of the cycle starting at `cycle_start`.
    In { window: usize, cycle_start: u64 },
}

impl GateControlList {
    /// Gate state at `t` (O(log n): binary search in the cycle).
    pub fn state_at(&self, t: u64) -> GateState {
        self.state_of(self.locate(t))
    }

    /// When the gate of `class`, looked at from `t`, closes: the end of the open window containing
    /// `t`, merging consecutive entries that keep the class open (across cycle boundaries too).
    /// `None` if it never closes (open in every entry). `Some(t)` if it is closed at `t`, so no
    /// frame of positive duration fits. Classes ≥ 8 have no gate and are always closed.
    pub fn gate_close_time(&self, class: u8, t: u64) -> Option<u64> {
        self.close_of(self.locate(t), class, t)
    }

    /// True if every gate of the `num_tc` classes is open at all times (before the start too),
    /// so the switch can skip time-aware queuing altogether.
    pub fn all_gates_always_open(&self) -> bool {
        let full = self.all_classes_mask();
        self.windows.iter().all(|w| w.gates & full == full)
    }

    /// Start of the cycle containing `t` (`t ≥ base_time`).
    fn cycle_start_of(&self, t: u64) -> u64 {
        let since = t.saturating_sub(self.base_time);
        // cycle_time > 0 by validation; checked_rem keeps this panic-free regardless.
        t - since.checked_rem(self.cycle_time).unwrap_or(0)
    }

    /// Last cycle boundary at or before `t` (`t ≥ base_time`).
    pub(crate) fn boundary_at_or_before(&self, t: u64) -> u64 {
        self.cycle_start_of(t)
    }

    /// First cycle boundary strictly after `now` (taprio's start time rule): `base_time` if it is in
    /// the future, else `base + (⌊(now − base)/cycle⌋ + 1)·cycle`. `None` past 2^64-1 ns.
    pub fn first_start_after(&self, now: u64) -> Option<u64> {
        if self.base_time > now {
            Some(self.base_time)
        } else {
            self.cycle_start_of(now).checked_add(self.cycle_time)
        }
    }

    pub(crate) fn locate(&self, t: u64) -> Pos {
        if t < self.base_time {
            return Pos::Before;
        }
        let cycle_start = self.cycle_start_of(t);
        let offset = t - cycle_start;
        let window = self
            .windows
            .partition_point(|w| w.start <= offset)
            .saturating_sub(1);
        Pos::In {
            window,
            cycle_start,
        }
    }

    fn window(&self, i: usize) -> Option<&Window> {
        self.windows.get(i)
    }

    /// Absolute `[start, end)` of a position; `end` is `None` past 2^64-1 ns.
    pub(crate) fn span_of(&self, pos: Pos) -> (u64, Option<u64>) {
        match pos {
            Pos::Before => (0, Some(self.base_time)),
            Pos::In {
                window,
                cycle_start,
            } => match self.window(window) {
                Some(w) => (
                    cycle_start.saturating_add(w.start),
                    cycle_start.checked_add(w.end),
                ),
                None => (0, None),
            },
        }
    }

    pub(crate) fn state_of(&self, pos: Pos) -> GateState {
        match pos {
            Pos::Before => GateState {
                gates: ALL_GATES_OPEN,
                next: Some(self.base_time),
            },
            Pos::In {
                window,
                cycle_start,
            } => match self.window(window) {
                Some(w) => GateState {
                    gates: w.gates,
                    next: cycle_start.checked_add(w.end),
                },
                None => GateState {
                    gates: ALL_GATES_OPEN,
                    next: None,
                },
            },
        }
    }

    /// The position after `pos`, `None` past 2^64-1 ns.
    pub(crate) fn next_pos(&self, pos: Pos) -> Option<Pos> {
        match pos {
            Pos::Before => Some(Pos::In {
                window: 0,
                cycle_start: self.base_time,
            }),
            Pos::In {
                window,
                cycle_start,
            } => {
                let next = window.saturating_add(1);
                if next < self.windows.len() {
                    Some(Pos::In {
                        window: next,
                        cycle_start,
                    })
                } else {
                    Some(Pos::In {
                        window: 0,
                        cycle_start: cycle_start.checked_add(self.cycle_time)?,
                    })
                }
            }
        }
    }

    pub(crate) fn close_of(&self, pos: Pos, class: u8, t: u64) -> Option<u64> {
        if class >= MAX_TC {
            return Some(t);
        }
        let bit = 1u8 << class;
        match pos {
            Pos::Before => {
                // Open now (all gates are); the window runs into the list if the class is open in
                // its first entry.
                let first = self.window(0)?;
                if first.gates & bit == 0 {
                    Some(self.base_time)
                } else {
                    self.close_of(
                        Pos::In {
                            window: 0,
                            cycle_start: self.base_time,
                        },
                        class,
                        self.base_time,
                    )
                }
            }
            Pos::In {
                window,
                cycle_start,
            } => {
                let w = self.window(window)?;
                if w.gates & bit == 0 {
                    return Some(t);
                }
                match self.close.get(window)?[usize::from(class)] {
                    CloseRef::Never => None,
                    CloseRef::At { window, wrap } => {
                        let base = if wrap {
                            cycle_start.checked_add(self.cycle_time)?
                        } else {
                            cycle_start
                        };
                        base.checked_add(self.window(window)?.start)
                    }
                }
            }
        }
    }
}

/// Remembers where the last query fell so that queries at non-decreasing times cost O(1)
/// amortised: it steps forward entry by entry, and only seeks (O(log n)) after a jump of more than
/// a cycle or a step back in time.
///
/// It holds no reference to the list, so it can live next to one in the switch's state; use one
/// cursor per list (call [`Cursor::reset`] when the list is replaced). A cursor used with another
/// list still answers correctly if that list has a window index it knows, but loses its speed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    cached: Option<(Pos, u64, Option<u64>)>,
}

impl Cursor {
    /// A cursor that seeks on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the position (next query seeks).
    pub fn reset(&mut self) {
        self.cached = None;
    }

    /// Same as [`GateControlList::state_at`].
    pub fn state(&mut self, list: &GateControlList, t: u64) -> GateState {
        let pos = self.seek(list, t);
        list.state_of(pos)
    }

    /// Same as [`GateControlList::gate_close_time`].
    pub fn gate_close_time(&mut self, list: &GateControlList, class: u8, t: u64) -> Option<u64> {
        let pos = self.seek(list, t);
        list.close_of(pos, class, t)
    }

    fn seek(&mut self, list: &GateControlList, t: u64) -> Pos {
        if let Some((mut pos, start, end)) = self.cached {
            let valid = match pos {
                Pos::Before => true,
                Pos::In { window, .. } => window < list.windows.len(),
            };
            // Only trust the cache if it still describes this list at this position.
            if valid && list.span_of(pos) == (start, end) && t >= start {
                let mut end = end;
                // At most one cycle of steps, then fall back to a seek.
                for _ in 0..=list.windows.len() {
                    match end {
                        None => return self.store(list, pos),
                        Some(e) if t < e => return self.store(list, pos),
                        Some(_) => match list.next_pos(pos) {
                            Some(p) => {
                                pos = p;
                                end = list.span_of(p).1;
                            }
                            None => break,
                        },
                    }
                }
            }
        }
        let pos = list.locate(t);
        self.store(list, pos)
    }

    fn store(&mut self, list: &GateControlList, pos: Pos) -> Pos {
        let (start, end) = list.span_of(pos);
        self.cached = Some((pos, start, end));
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn list(text: &str) -> GateControlList {
        parse(text).unwrap().list
    }

    const EXAMPLE: &str = "num_tc 3\nmap 2 2 1 0 2 2 2 2 2 2 2 2 2 2 2 2\nbase-time 1000\ncycle-time 100\nsched-entry S 01 30\nsched-entry S 03 20\nsched-entry S 06 50\n";

    #[test]
    fn state_and_next() {
        let l = list(EXAMPLE);
        let s = |t| {
            let st = l.state_at(t);
            (st.gates, st.next)
        };
        assert_eq!(s(0), (0xff, Some(1000)));
        assert_eq!(s(999), (0xff, Some(1000)));
        assert_eq!(s(1000), (0x01, Some(1030)));
        assert_eq!(s(1029), (0x01, Some(1030)));
        assert_eq!(s(1030), (0x03, Some(1050)));
        assert_eq!(s(1099), (0x06, Some(1100)));
        assert_eq!(s(1100), (0x01, Some(1130)));
        assert_eq!(s(1_000_000_055), (0x06, Some(1_000_000_100)));
    }

    #[test]
    fn close_times_merge_windows() {
        let l = list(EXAMPLE);
        // Class 0 open in entries 0 and 1: one window [1000, 1050).
        assert_eq!(l.gate_close_time(0, 1000), Some(1050));
        assert_eq!(l.gate_close_time(0, 1040), Some(1050));
        assert_eq!(l.gate_close_time(0, 1060), Some(1060));
        // Class 1 open in entries 1 and 2, closes at the next cycle's first entry.
        assert_eq!(l.gate_close_time(1, 1030), Some(1100));
        assert_eq!(l.gate_close_time(1, 1099), Some(1100));
        // Before the start everything is open; class 0 stays open into the list.
        assert_eq!(l.gate_close_time(0, 5), Some(1050));
        assert_eq!(l.gate_close_time(2, 5), Some(1000));
        assert_eq!(l.gate_close_time(8, 5), Some(5));
        // Class 2 wraps: open in entry 2 [1050,1100), closed in entry 0.
        assert_eq!(l.gate_close_time(2, 1050), Some(1100));
    }

    #[test]
    fn longest_open_stretch_per_class() {
        let l = list(EXAMPLE);
        // Class 0: [0, 50) of each cycle; class 1: [30, 100); class 2: [50, 100) then closed.
        assert_eq!(l.longest_open(0), 50);
        assert_eq!(l.longest_open(1), 70);
        assert_eq!(l.longest_open(2), 50);
        // Not a class of the list: never open.
        assert_eq!(l.longest_open(3), 0);
        // A class open across the cycle boundary: [70, 100) + [0, 20) merge into 50.
        let wrap = list(
            "num_tc 2\nmap 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\nbase-time 0\n\
             sched-entry S 02 20\nsched-entry S 01 50\nsched-entry S 02 30\n",
        );
        assert_eq!(wrap.longest_open(1), 50);
        assert_eq!(wrap.longest_open(0), 50);
        // Open in every entry: never closes.
        let open =
            list("num_tc 2\nmap 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\nbase-time 0\nsched-entry S 3 7\n");
        assert_eq!(open.longest_open(1), u64::MAX);
    }

    #[test]
    fn always_open_class_and_single_entry() {
        let l = list(
            "num_tc 2\nmap 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1\nbase-time 10\nsched-entry S 3 7\n",
        );
        assert!(l.all_gates_always_open());
        assert_eq!(l.gate_close_time(1, 100), None);
        // A single entry: the next operation is the next cycle boundary.
        assert_eq!(l.state_at(12).next, Some(17));
        assert!(!list(EXAMPLE).all_gates_always_open());
    }

    #[test]
    fn start_rule() {
        let l = list(EXAMPLE);
        assert_eq!(l.first_start_after(10), Some(1000));
        assert_eq!(l.first_start_after(1000), Some(1100));
        assert_eq!(l.first_start_after(1150), Some(1200));
    }

    #[test]
    fn near_the_end_of_time() {
        let l = list("num_tc 1\nmap 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\nbase-time 0\ncycle-time 18446744073709551615\nsched-entry S 1 5\nsched-entry S 0 5\n");
        let st = l.state_at(u64::MAX);
        assert_eq!(st.gates, 1);
        assert_eq!(st.next, None);
        assert_eq!(l.gate_close_time(0, u64::MAX - 1), Some(u64::MAX - 1));
        assert_eq!(l.gate_close_time(0, u64::MAX), None);
        assert_eq!(l.first_start_after(u64::MAX), None);
        let mut c = Cursor::new();
        assert_eq!(c.state(&l, 3).next, Some(5));
        assert_eq!(c.state(&l, u64::MAX).next, None);
    }

    #[test]
    fn cursor_matches_seek() {
        let l = list(EXAMPLE);
        let mut c = Cursor::new();
        let mut t = 0u64;
        while t < 5000 {
            assert_eq!(c.state(&l, t), l.state_at(t), "t={t}");
            assert_eq!(c.gate_close_time(&l, 1, t), l.gate_close_time(1, t));
            t += 7;
        }
        assert_eq!(c.state(&l, 1010), l.state_at(1010));
        assert_eq!(c.state(&l, 900_000), l.state_at(900_000));
    }
}
