//! 802.1Qbv's admin → oper switch: the running (oper) list and a pending (admin) one that takes
//! over at its ConfigChangeTime.
//!
//! - ConfigChangeTime is the admin list's `base-time` if that is after `now` (the install time),
//!   else the first of its cycle boundaries `base + N·cycle` after `now`. A `base-time` at or
//!   before `now` while a list is running counts a ConfigChangeError (802.1Qbv's counter; the
//!   change still happens, at that boundary).
//! - Until the first list takes effect every gate is open.
//! - §Q.5 cycle-time-extension (the *oper* list's): let E be the oper list's last cycle boundary
//!   at or before the change time S. If E = S nothing is cut. If the cycle ending at E ran in full
//!   and S − E < extension, that cycle is stretched to end at S (its last entry is held until S)
//!   instead of starting a runt cycle; otherwise the cycle starting at E is cut at S.
//! - Installing while another admin list is pending replaces it (as taprio does).

use crate::model::{GateControlList, GateState, ALL_GATES_OPEN, MAX_TC};
use crate::schedule::Cursor;

/// The running list and when it took over.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Oper {
    list: GateControlList,
    start: u64,
}

/// The pending list and when it will take over.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Admin {
    list: GateControlList,
    change_time: u64,
}

/// Outcome of [`Schedule::install`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    /// When the list takes effect.
    pub config_change_time: u64,
    /// Whether this install counted a ConfigChangeError (base-time in the past while a list ran).
    pub config_change_error: bool,
}

/// Why a list could not be installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    #[error("the list would start past 2^64-1 ns: it has no cycle boundary after now that fits")]
    StartOverflows,
}

/// How the oper list ends at the change time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndPlan {
    /// Runs normally and is cut at `at` (or ends exactly there).
    Cut { at: u64 },
    /// From `from` (start of the last entry of the cycle ending at `limit`) the gates `gates` are
    /// held until `at`.
    Stretch {
        from: u64,
        at: u64,
        gates: u8,
        limit: u64,
    },
}

/// Oper + pending admin list, and the ConfigChangeError counter.
///
/// Queries take `&self` and work for any `t`; call [`Schedule::advance`] as time passes so a due
/// admin list becomes oper (and the old one is dropped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    oper: Option<Oper>,
    admin: Option<Admin>,
    config_change_errors: u64,
    generation: u64,
}

impl Schedule {
    /// No list: all gates open, forever.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `list` the admin list, to take over at its ConfigChangeTime computed from `now`.
    pub fn install(&mut self, list: GateControlList, now: u64) -> Result<Installed, InstallError> {
        self.advance(now);
        let change_time = list
            .first_start_after(now)
            .ok_or(InstallError::StartOverflows)?;
        let config_change_error = self.oper.is_some() && list.base_time() <= now;
        if config_change_error {
            self.config_change_errors = self.config_change_errors.saturating_add(1);
        }
        self.admin = Some(Admin { list, change_time });
        self.generation = self.generation.wrapping_add(1);
        Ok(Installed {
            config_change_time: change_time,
            config_change_error,
        })
    }

    /// Promotes the admin list to oper if its change time is at or before `now`. Returns whether
    /// it did.
    pub fn advance(&mut self, now: u64) -> bool {
        match self.admin.take() {
            Some(a) if a.change_time <= now => {
                self.oper = Some(Oper {
                    list: a.list,
                    start: a.change_time,
                });
                self.generation = self.generation.wrapping_add(1);
                true
            }
            other => {
                self.admin = other;
                false
            }
        }
    }

    /// The running list.
    pub fn oper(&self) -> Option<&GateControlList> {
        self.oper.as_ref().map(|o| &o.list)
    }
    /// When the running list took over.
    pub fn oper_start(&self) -> Option<u64> {
        self.oper.as_ref().map(|o| o.start)
    }
    /// The pending list.
    pub fn admin(&self) -> Option<&GateControlList> {
        self.admin.as_ref().map(|a| &a.list)
    }
    /// When the pending list takes over.
    pub fn config_change_time(&self) -> Option<u64> {
        self.admin.as_ref().map(|a| a.change_time)
    }
    /// 802.1Qbv ConfigChangeError: installs whose base-time was in the past while a list ran.
    pub fn config_change_errors(&self) -> u64 {
        self.config_change_errors
    }

    /// True if neither the oper nor the admin list ever closes a gate of its classes.
    pub fn all_gates_always_open(&self) -> bool {
        self.oper.iter().all(|o| o.list.all_gates_always_open())
            && self.admin.iter().all(|a| a.list.all_gates_always_open())
    }

    /// Gate state at `t`; `next` is `None` when nothing is scheduled to change.
    pub fn state_at(&self, t: u64) -> GateState {
        self.eval_state(t, |l, t| l.state_at(t))
    }

    /// Like [`GateControlList::gate_close_time`], across the switch to the admin list: a class
    /// open at the end of the old list and at the start of the new one stays in one window.
    pub fn gate_close_time(&self, class: u8, t: u64) -> Option<u64> {
        self.eval_close(class, t, |l, c, t| l.gate_close_time(c, t))
    }

    /// Which list governs `t`: 0 none, 1 oper, 2 admin.
    fn segment(&self, t: u64) -> u8 {
        match (&self.oper, &self.admin) {
            (_, Some(a)) if t >= a.change_time => 2,
            (Some(_), _) => 1,
            _ => 0,
        }
    }

    fn eval_state(
        &self,
        t: u64,
        mut list_state: impl FnMut(&GateControlList, u64) -> GateState,
    ) -> GateState {
        match (&self.oper, &self.admin) {
            (_, Some(a)) if t >= a.change_time => list_state(&a.list, t),
            (None, admin) => GateState {
                gates: ALL_GATES_OPEN,
                next: admin.as_ref().map(|a| a.change_time),
            },
            (Some(o), None) => list_state(&o.list, t),
            (Some(o), Some(a)) => match end_plan(o, a.change_time) {
                EndPlan::Stretch {
                    from, at, gates, ..
                } if t >= from => GateState {
                    gates,
                    next: Some(at),
                },
                EndPlan::Stretch { at, .. } | EndPlan::Cut { at } => {
                    let s = list_state(&o.list, t);
                    GateState {
                        gates: s.gates,
                        next: Some(s.next.map_or(at, |n| n.min(at))),
                    }
                }
            },
        }
    }

    fn eval_close(
        &self,
        class: u8,
        t: u64,
        mut list_close: impl FnMut(&GateControlList, u8, u64) -> Option<u64>,
    ) -> Option<u64> {
        if class >= MAX_TC {
            return Some(t);
        }
        // The window reaches the change time: continue in the admin list from there.
        let carry_on = |a: &Admin| a.list.gate_close_time(class, a.change_time);
        match (&self.oper, &self.admin) {
            (_, Some(a)) if t >= a.change_time => list_close(&a.list, class, t),
            (None, None) => None,
            (None, Some(a)) => carry_on(a),
            (Some(o), None) => list_close(&o.list, class, t),
            (Some(o), Some(a)) => {
                let limit = match end_plan(o, a.change_time) {
                    EndPlan::Stretch {
                        from, gates, limit, ..
                    } => {
                        if t >= from {
                            return if gates & (1 << class) != 0 {
                                carry_on(a)
                            } else {
                                Some(t)
                            };
                        }
                        limit
                    }
                    EndPlan::Cut { at } => at,
                };
                // Before `limit` the old list runs unmodified, so its own answer holds if the
                // window closes before then; otherwise the window lasts to the change time.
                match list_close(&o.list, class, t) {
                    Some(c) if c < limit => Some(c),
                    _ => carry_on(a),
                }
            }
        }
    }
}

fn end_plan(o: &Oper, at: u64) -> EndPlan {
    let l = &o.list;
    let e = l.boundary_at_or_before(at);
    if e < at && e > o.start && at - e < l.cycle_time_extension() {
        if let Some(last) = l.windows().last() {
            return EndPlan::Stretch {
                from: e.saturating_sub(l.cycle_time().saturating_sub(last.start)),
                at,
                gates: last.gates,
                limit: e,
            };
        }
    }
    EndPlan::Cut { at }
}

/// O(1)-amortised queries on a [`Schedule`] at non-decreasing times: a [`Cursor`] on whichever
/// list governs `t`, reset when that list or the schedule changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScheduleCursor {
    key: Option<(u64, u8)>,
    inner: Cursor,
}

impl ScheduleCursor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Same as [`Schedule::state_at`].
    pub fn state(&mut self, schedule: &Schedule, t: u64) -> GateState {
        self.sync(schedule, t);
        let inner = &mut self.inner;
        schedule.eval_state(t, |l, t| inner.state(l, t))
    }

    /// Same as [`Schedule::gate_close_time`].
    pub fn gate_close_time(&mut self, schedule: &Schedule, class: u8, t: u64) -> Option<u64> {
        self.sync(schedule, t);
        let inner = &mut self.inner;
        schedule.eval_close(class, t, |l, c, t| inner.gate_close_time(l, c, t))
    }

    fn sync(&mut self, schedule: &Schedule, t: u64) {
        let key = Some((schedule.generation, schedule.segment(t)));
        if self.key != key {
            self.key = key;
            self.inner.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Entry, GateCommand};

    fn list(base: u64, ext: u64, entries: &[(u8, u64)]) -> GateControlList {
        let entries: Vec<Entry> = entries
            .iter()
            .map(|&(gates, interval)| Entry {
                command: GateCommand::SetGates,
                gates,
                interval,
                line: 0,
            })
            .collect();
        GateControlList::new(8, [0; 16], base, None, ext, &entries)
            .unwrap()
            .0
    }

    /// Old list: cycle 100 = [0x01 for 60, 0x02 for 40], running from 1000.
    fn running(ext: u64) -> Schedule {
        let mut s = Schedule::new();
        let r = s.install(list(1000, ext, &[(1, 60), (2, 40)]), 0).unwrap();
        assert_eq!(r.config_change_time, 1000);
        assert!(!r.config_change_error);
        assert!(s.advance(1000));
        s
    }

    #[test]
    fn idle_then_first_list() {
        let mut s = Schedule::new();
        assert_eq!(
            s.state_at(5),
            GateState {
                gates: 0xff,
                next: None
            }
        );
        assert_eq!(s.gate_close_time(3, 5), None);
        assert!(s.all_gates_always_open());
        s.install(list(1000, 0, &[(1, 60), (2, 40)]), 0).unwrap();
        assert!(!s.all_gates_always_open());
        assert_eq!(
            s.state_at(5),
            GateState {
                gates: 0xff,
                next: Some(1000)
            }
        );
        assert_eq!(s.gate_close_time(0, 5), Some(1060));
        assert_eq!(s.gate_close_time(1, 5), Some(1000));
        assert_eq!(s.state_at(1000).gates, 1);
    }

    #[test]
    fn past_base_time_moves_to_next_boundary_and_counts_error() {
        let mut s = running(0);
        // New list base 500, cycle 30; now 1234 → boundaries 500 + 30k: first after 1234 is 1250.
        let r = s.install(list(500, 0, &[(4, 30)]), 1234).unwrap();
        assert_eq!(r.config_change_time, 1250);
        assert!(r.config_change_error);
        assert_eq!(s.config_change_errors(), 1);
        // Future base: no error.
        let r = s.install(list(5000, 0, &[(4, 30)]), 1234).unwrap();
        assert_eq!((r.config_change_time, r.config_change_error), (5000, false));
        assert_eq!(s.config_change_errors(), 1);
    }

    #[test]
    fn cut_without_extension() {
        let mut s = running(0);
        // Change at 1230: old cycle [1200,1300) is cut at 1230.
        s.install(list(1230, 0, &[(4, 50)]), 1100).unwrap();
        assert_eq!(
            s.state_at(1199),
            GateState {
                gates: 2,
                next: Some(1200)
            }
        );
        assert_eq!(
            s.state_at(1200),
            GateState {
                gates: 1,
                next: Some(1230)
            }
        );
        assert_eq!(
            s.state_at(1230),
            GateState {
                gates: 4,
                next: Some(1280)
            }
        );
        assert_eq!(s.gate_close_time(0, 1210), Some(1230));
    }

    #[test]
    fn stretch_with_extension() {
        let mut s = running(50);
        // Change at 1230, 30 ns after the boundary 1200 < extension 50: cycle [1100,1200) is
        // stretched, its last entry (0x02 from 1160) held until 1230.
        s.install(list(1230, 0, &[(6, 50), (1, 50)]), 1100).unwrap();
        assert_eq!(
            s.state_at(1150),
            GateState {
                gates: 1,
                next: Some(1160)
            }
        );
        assert_eq!(
            s.state_at(1160),
            GateState {
                gates: 2,
                next: Some(1230)
            }
        );
        assert_eq!(
            s.state_at(1210),
            GateState {
                gates: 2,
                next: Some(1230)
            }
        );
        // Class 1 open from 1160 through the change into the new list (0x06) until 1280.
        assert_eq!(s.gate_close_time(1, 1170), Some(1280));
        assert_eq!(s.gate_close_time(0, 1170), Some(1170));
        assert_eq!(s.gate_close_time(0, 1150), Some(1160));
        let mut c = ScheduleCursor::new();
        for t in (1000..1400).step_by(3) {
            assert_eq!(c.state(&s, t), s.state_at(t), "t={t}");
        }
        assert!(s.advance(1230));
        assert_eq!(s.oper_start(), Some(1230));
        assert_eq!(s.state_at(1240).gates, 6);
    }

    #[test]
    fn extension_too_small_cuts() {
        let mut s = running(30);
        // 30 ns after the boundary is not less than extension 30: cut.
        s.install(list(1230, 0, &[(6, 50)]), 1100).unwrap();
        assert_eq!(
            s.state_at(1210),
            GateState {
                gates: 1,
                next: Some(1230)
            }
        );
    }

    #[test]
    fn no_stretch_of_the_first_cycle() {
        let mut s = running(50);
        // The first oper cycle [1000,1100) is not complete before 1030: cut.
        s.install(list(1030, 0, &[(6, 50)]), 1010).unwrap();
        assert_eq!(
            s.state_at(1020),
            GateState {
                gates: 1,
                next: Some(1030)
            }
        );
    }
}
