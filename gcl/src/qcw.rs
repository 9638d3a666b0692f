//! Reads an IEEE 802.1Qcw schedule: the `gate-parameter-table` of the YANG modules
//! `ieee802-dot1q-sched` / `ieee802-dot1q-sched-bridge` (802.1Qcw-2023), encoded in JSON as
//! RFC 7951 says.
//!
//! ```json
//! {"ieee802-dot1q-sched-bridge:gate-parameter-table": {
//!   "gate-enabled": true,
//!   "admin-gate-states": 255,
//!   "admin-control-list": {"gate-control-entry": [
//!     {"index": 0, "operation-name": "ieee802-dot1q-sched:set-gate-states",
//!      "gate-states-value": 1, "time-interval-value": 300000},
//!     {"index": 1, "operation-name": "ieee802-dot1q-sched:set-gate-states",
//!      "gate-states-value": 6, "time-interval-value": 700000}]},
//!   "admin-cycle-time": {"numerator": 1, "denominator": 1000},
//!   "admin-cycle-time-extension": 10000,
//!   "admin-base-time": {"seconds": "1", "nanoseconds": 0}}}
//! ```
//!
//! Where the table may sit: as that member of the top-level object (also qualified by
//! `ieee802-dot1q-sched`, as 802.1Qcw drafts had it); as the top-level object itself (its
//! members at the top, a fragment as people write them); or in `ietf-interfaces:interfaces` /
//! `interface[]`, directly or under `ieee802-dot1q-bridge:bridge-port` (where 802.1Qcw augments
//! it). A document with several tables is read for the interface named like the switch port
//! ([`crate::parse_for`]); otherwise it must hold one.
//!
//! What the members become:
//! - `admin-control-list/gate-control-entry[]`, ordered by `index` (unique), each with
//!   `operation-name` (`set-gate-states`, `set-and-hold-mac` or `set-and-release-mac`, bare or
//!   prefixed by `ieee802-dot1q-sched:` or the YANG prefix `sched:`; taprio's S, H and R),
//!   `gate-states-value` (bit i = class i) and `time-interval-value` (ns).
//! - `admin-cycle-time` {numerator, denominator}: seconds, which must be a whole number of ns;
//!   absent, the sum of the intervals (as taprio).
//! - `admin-cycle-time-extension` (ns), `admin-base-time` {seconds, nanoseconds} (required,
//!   like `base-time` in the text format; nanoseconds default to 0).
//! - `queue-max-sdu-table[]` {traffic-class, queue-max-sdu}: the `max-sdu` table.
//! - `gate-enabled`: absent or true; false is refused (the table would turn gating off).
//! - `admin-gate-states`: anything but 255 draws a warning: gates are open until a list starts.
//! - State (`oper-*`, `config-change-time`, `current-time`, `supported-*`, ...) and
//!   `config-change` are ignored, as are members of other modules (namespace-qualified);
//!   any other member is an error.
//!
//! The JSON has no priority → class map: the list has 8 classes (`num_tc 8`) and priority i
//! goes to class i for 0..=7 (802.1Q's priorities); Linux's priorities 8..=15 go to class 0.
//! Integers are read as JSON numbers or as strings of decimal digits (RFC 7951 encodes 64-bit
//! ones as strings), whichever the writer used. Errors give the line of the offending value and
//! its path in the table; they never quote a member name or string from the document except
//! in the variants that hold one, which the switch leaves out of its replies.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::{ErrorKind, ParseError, Warning, WarningKind};
use crate::model::{GateCommand, MAP_LEN, MAX_TC};
use crate::parser::{Format, Parsed};
use crate::validate::{self, Raw, RawEntry};

const TABLE: &str = "gate-parameter-table";
/// Modules whose name may qualify the table (the second is 802.1Qcw drafts').
const TABLE_MODULES: [&str; 2] = ["ieee802-dot1q-sched-bridge", "ieee802-dot1q-sched"];
/// The members read from the table.
const KNOWN: [&str; 7] = [
    "gate-enabled",
    "admin-gate-states",
    "admin-control-list",
    "admin-cycle-time",
    "admin-cycle-time-extension",
    "admin-base-time",
    "queue-max-sdu-table",
];
/// Members that make a top-level object the table's contents.
const TABLE_MEMBERS: [&str; 5] = [
    "admin-control-list",
    "admin-base-time",
    "admin-cycle-time",
    "gate-enabled",
    "admin-gate-states",
];
/// Members read elsewhere or describing state: not part of a schedule to install.
const IGNORED: [&str; 14] = [
    "oper-gate-states",
    "oper-control-list",
    "oper-cycle-time",
    "oper-cycle-time-extension",
    "oper-base-time",
    "config-change",
    "config-change-time",
    "tick-granularity",
    "current-time",
    "config-pending",
    "config-change-error",
    "supported-list-max",
    "supported-cycle-max",
    "supported-interval-max",
];
const NS_PER_S: u64 = 1_000_000_000;

/// Parses and validates an 802.1Qcw JSON document.
pub(crate) fn parse(text: &str, interface: Option<&str>) -> Result<Parsed, ParseError> {
    // A byte-order mark is not JSON, but editors write one; it sits on line 1 either way.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let doc = Doc::new(text);
    let root: &RawValue = serde_json::from_str(text).map_err(|e| doc.syntax(&e))?;
    let (table, at) = doc.find_table(root, interface)?;
    let (raw, warnings) = doc.table(table, &at)?;
    let (list, mut more) = validate::validate(raw)?;
    let mut all = warnings;
    all.append(&mut more);
    Ok(Parsed {
        list,
        warnings: all,
        format: Format::Qcw,
    })
}

/// The document's text, for line numbers of its values.
struct Doc<'a> {
    text: &'a str,
    /// Byte offset of each line's start.
    starts: Vec<usize>,
}

/// A value and its path in the document (`admin-control-list/gate-control-entry[2]`), built
/// from the names this reader knows and indices, never from the document's own strings.
#[derive(Clone, Copy)]
struct Node<'a, 'p> {
    raw: &'a RawValue,
    at: &'p str,
}

/// A JSON object's members in document order, values unparsed.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}

/// `at/name`, or `name` at the top.
fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_owned()
    } else {
        format!("{at}/{name}")
    }
}

/// A member name split into its module (if qualified) and local name.
fn split_name(name: &str) -> (Option<&str>, &str) {
    match name.split_once(':') {
        Some((module, local)) => (Some(module), local),
        None => (None, name),
    }
}

impl<'a> Doc<'a> {
    fn new(text: &'a str) -> Doc<'a> {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i.saturating_add(1)))
            .collect();
        Doc { text, starts }
    }

    fn last_line(&self) -> usize {
        self.text.lines().count().max(1)
    }

    /// 1-based line where `raw` starts (it is a slice of the text).
    fn line(&self, raw: &RawValue) -> usize {
        let offset = (raw.get().as_ptr() as usize).saturating_sub(self.text.as_ptr() as usize);
        self.starts.partition_point(|&s| s <= offset).max(1)
    }

    fn error(&self, raw: &RawValue, kind: ErrorKind) -> ParseError {
        ParseError::new(self.line(raw), kind)
    }

    fn syntax(&self, e: &serde_json::Error) -> ParseError {
        let full = e.to_string();
        let position = format!(" at line {} column {}", e.line(), e.column());
        let reason = full.strip_suffix(&position).unwrap_or(&full).to_owned();
        // A document cut short is a problem of its end: its last line, as the text format says.
        let (line, column) = if e.is_eof() {
            (self.last_line(), 0)
        } else {
            (e.line().max(1), e.column())
        };
        ParseError::new(line, ErrorKind::JsonSyntax { column, reason })
    }

    fn wrong(&self, n: Node<'_, '_>, expected: &'static str) -> ParseError {
        self.error(
            n.raw,
            ErrorKind::JsonValue {
                at: n.at.to_owned(),
                expected,
            },
        )
    }

    fn object(&self, n: Node<'a, '_>) -> Result<Vec<(String, &'a RawValue)>, ParseError> {
        if !n.raw.get().starts_with('{') {
            return Err(self.wrong(n, "an object"));
        }
        serde_json::from_str::<Members<'a>>(n.raw.get())
            .map(|m| m.0)
            .map_err(|_| self.wrong(n, "an object"))
    }

    fn array(&self, n: Node<'a, '_>) -> Result<Vec<&'a RawValue>, ParseError> {
        if !n.raw.get().starts_with('[') {
            return Err(self.wrong(n, "an array"));
        }
        serde_json::from_str(n.raw.get()).map_err(|_| self.wrong(n, "an array"))
    }

    fn string(&self, n: Node<'a, '_>) -> Result<String, ParseError> {
        if !n.raw.get().starts_with('"') {
            return Err(self.wrong(n, "a string"));
        }
        serde_json::from_str(n.raw.get()).map_err(|_| self.wrong(n, "a string"))
    }

    fn boolean(&self, n: Node<'_, '_>) -> Result<bool, ParseError> {
        match n.raw.get() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(self.wrong(n, "true or false")),
        }
    }

    /// An integer written as a JSON number or a string of digits, `-` allowed if `signed`.
    fn integer(
        &self,
        n: Node<'a, '_>,
        signed: bool,
        expected: &'static str,
    ) -> Result<i128, ParseError> {
        let text = if n.raw.get().starts_with('"') {
            self.string(n)?
        } else {
            n.raw.get().to_owned()
        };
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) if signed => (true, rest),
            _ => (false, text.as_str()),
        };
        if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.wrong(n, expected));
        }
        let v = digits.bytes().fold(0i128, |acc, b| {
            acc.saturating_mul(10).saturating_add(i128::from(b - b'0'))
        });
        Ok(if negative { -v } else { v })
    }

    fn uint(&self, n: Node<'a, '_>, max: u64, expected: &'static str) -> Result<u64, ParseError> {
        let v = self.integer(n, false, expected)?;
        u64::try_from(v)
            .ok()
            .filter(|&v| v <= max)
            .ok_or_else(|| self.wrong(n, expected))
    }

    /// Finds the table: at the top, as the top, or in an interface.
    fn find_table(
        &self,
        root: &'a RawValue,
        interface: Option<&str>,
    ) -> Result<(&'a RawValue, String), ParseError> {
        let top = self.object(Node {
            raw: root,
            at: "(document)",
        })?;
        // (interface name, table, path)
        let mut found: Vec<(Option<String>, &'a RawValue, String)> = Vec::new();
        let mut contents = false;
        for (name, v) in &top {
            match split_name(name) {
                (m, TABLE) if m.map_or(true, |m| TABLE_MODULES.contains(&m)) => {
                    found.push((None, v, TABLE.to_owned()));
                }
                (m, "interfaces") if m.map_or(true, |m| m == "ietf-interfaces") => {
                    self.interfaces(v, &mut found)?;
                }
                (None, local) if TABLE_MEMBERS.contains(&local) => contents = true,
                _ => {}
            }
        }
        match found.len() {
            0 if contents => Ok((root, String::new())),
            0 => Err(ParseError::new(self.last_line(), ErrorKind::JsonNoTable)),
            1 => Ok(found.remove(0)).map(|(_, t, at)| (t, at)),
            count => {
                let mut named = found
                    .into_iter()
                    .filter(|(n, _, _)| interface.is_some() && n.as_deref() == interface);
                match (named.next(), named.next()) {
                    (Some((_, t, at)), None) => Ok((t, at)),
                    _ => Err(ParseError::new(
                        self.line(root),
                        ErrorKind::JsonSeveralTables {
                            count,
                            interface: interface.map(str::to_owned),
                        },
                    )),
                }
            }
        }
    }

    /// The tables of `ietf-interfaces:interfaces/interface[]`.
    fn interfaces(
        &self,
        raw: &'a RawValue,
        found: &mut Vec<(Option<String>, &'a RawValue, String)>,
    ) -> Result<(), ParseError> {
        let at = "interfaces";
        for (name, v) in self.object(Node { raw, at })? {
            if name != "interface" {
                continue;
            }
            let list_at = join(at, "interface");
            for (i, item) in self
                .array(Node {
                    raw: v,
                    at: &list_at,
                })?
                .into_iter()
                .enumerate()
            {
                let item_at = format!("{list_at}[{i}]");
                let mut if_name = None;
                let mut tables = Vec::new();
                for (member, mv) in self.object(Node {
                    raw: item,
                    at: &item_at,
                })? {
                    match split_name(&member) {
                        (None, "name") => {
                            if_name = Some(self.string(Node {
                                raw: mv,
                                at: &join(&item_at, "name"),
                            })?)
                        }
                        (m, TABLE) if m.map_or(true, |m| TABLE_MODULES.contains(&m)) => {
                            tables.push((mv, join(&item_at, TABLE)));
                        }
                        (m, "bridge-port") if m.map_or(true, |m| m == "ieee802-dot1q-bridge") => {
                            let bp_at = join(&item_at, "bridge-port");
                            for (bm, bv) in self.object(Node {
                                raw: mv,
                                at: &bp_at,
                            })? {
                                if matches!(split_name(&bm), (m, TABLE) if m.map_or(true, |m| TABLE_MODULES.contains(&m)))
                                {
                                    tables.push((bv, join(&bp_at, TABLE)));
                                }
                            }
                        }
                        _ => {}
                    }
                }
                found.extend(tables.into_iter().map(|(t, p)| (if_name.clone(), t, p)));
            }
        }
        Ok(())
    }

    /// Reads the table's members into what the validation takes.
    fn table(&self, table: &'a RawValue, at: &str) -> Result<(Raw, Vec<Warning>), ParseError> {
        let line = self.line(table);
        let mut map = [0u64; MAP_LEN];
        for (p, slot) in map.iter_mut().enumerate().take(usize::from(MAX_TC)) {
            *slot = p as u64;
        }
        let mut raw = Raw {
            num_tc: Some((MAX_TC, line)),
            map: Some((map, line)),
            last_line: self.last_line(),
            ..Raw::default()
        };
        let mut warnings = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let mut entries = None;
        let mut base_time = None;
        for (name, v) in self.object(Node { raw: table, at })? {
            let local = match split_name(&name) {
                (Some(m), local) if TABLE_MODULES.contains(&m) => local,
                // Another module's augmentation: not ours to read.
                (Some(_), _) => continue,
                (None, local) => local,
            };
            if !KNOWN.contains(&local) && !IGNORED.contains(&local) {
                let at = if at.is_empty() { TABLE } else { at };
                return Err(self.error(
                    v,
                    ErrorKind::JsonUnknownMember {
                        at: at.to_owned(),
                        name,
                    },
                ));
            }
            // Only names this reader knows make paths: errors quote nothing of the document.
            let path = join(at, local);
            let n = Node { raw: v, at: &path };
            if seen.iter().any(|s| s == local) {
                return Err(self.error(v, ErrorKind::JsonTwice { at: path }));
            }
            seen.push(local.to_owned());
            let vline = self.line(v);
            match local {
                "gate-enabled" => {
                    let enabled = self.boolean(n)?;
                    if !enabled {
                        return Err(self.error(v, ErrorKind::JsonGateDisabled));
                    }
                }
                "admin-gate-states" => {
                    let states = self.uint(n, 255, "an integer 0..=255")?;
                    if states != 255 {
                        warnings.push(Warning {
                            line: vline,
                            kind: WarningKind::AdminGateStatesUnused {
                                states: (states & 0xff) as u8,
                            },
                        });
                    }
                }
                "admin-control-list" => entries = Some(self.control_list(n)?),
                "admin-cycle-time" => raw.cycle_time = Some((self.cycle_time(n)?, vline)),
                "admin-cycle-time-extension" => {
                    let ext = self.uint(n, u64::from(u32::MAX), "nanoseconds (a uint32)")?;
                    raw.cycle_time_extension = Some((ext, vline));
                }
                "admin-base-time" => base_time = Some((self.ptp_time(n)?, vline)),
                "queue-max-sdu-table" => raw.max_sdu = Some((self.max_sdu(n)?, vline)),
                // IGNORED.
                _ => {}
            }
        }
        let missing = |what: &str| ParseError::new(line, ErrorKind::JsonMissing(join(at, what)));
        raw.entries = entries.ok_or_else(|| missing("admin-control-list"))?;
        raw.base_time = Some(base_time.ok_or_else(|| missing("admin-base-time"))?);
        Ok((raw, warnings))
    }

    /// `admin-control-list`: its entries in `index` order.
    fn control_list(&self, n: Node<'a, '_>) -> Result<Vec<RawEntry>, ParseError> {
        let list_at = join(n.at, "gate-control-entry");
        let mut items = None;
        for (name, v) in self.object(n)? {
            match split_name(&name) {
                (None, "gate-control-entry") => {
                    if items.is_some() {
                        return Err(self.error(v, ErrorKind::JsonTwice { at: list_at }));
                    }
                    items = Some(self.array(Node {
                        raw: v,
                        at: &list_at,
                    })?);
                }
                (Some(_), _) => {}
                (None, _) => {
                    return Err(self.error(
                        v,
                        ErrorKind::JsonUnknownMember {
                            at: n.at.to_owned(),
                            name,
                        },
                    ))
                }
            }
        }
        let items = items
            .filter(|i| !i.is_empty())
            .ok_or_else(|| self.error(n.raw, ErrorKind::JsonMissing(list_at.clone())))?;
        let mut entries: Vec<(u64, RawEntry)> = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let at = format!("{list_at}[{i}]");
            entries.push(self.entry(Node { raw: item, at: &at })?);
        }
        // Stable: equal indices keep document order, so the second is the one reported.
        entries.sort_by_key(|(index, _)| *index);
        for pair in entries.windows(2) {
            if let [(a, first), (b, second)] = pair {
                if a == b {
                    return Err(ParseError::new(
                        second.line,
                        ErrorKind::JsonDuplicateIndex {
                            index: *a,
                            first: first.line,
                        },
                    ));
                }
            }
        }
        Ok(entries.into_iter().map(|(_, e)| e).collect())
    }

    /// One `gate-control-entry`: its index and the entry.
    fn entry(&self, n: Node<'a, '_>) -> Result<(u64, RawEntry), ParseError> {
        let line = self.line(n.raw);
        let (mut index, mut command, mut gates, mut interval) = (None, None, None, None);
        for (name, v) in self.object(n)? {
            let local = match split_name(&name) {
                (None, local) => local,
                (Some(_), _) => continue,
            };
            let at = join(n.at, local);
            let vn = Node { raw: v, at: &at };
            let slot_taken = match local {
                "index" => index
                    .replace(self.uint(vn, u64::from(u32::MAX), "an index (a uint32)")?)
                    .is_some(),
                "operation-name" => command.replace(self.operation(vn)?).is_some(),
                "gate-states-value" => gates
                    .replace(self.uint(vn, 255, "gate states 0..=255")?)
                    .is_some(),
                "time-interval-value" => interval
                    .replace(self.uint(vn, u64::from(u32::MAX), "nanoseconds (a uint32)")?)
                    .is_some(),
                _ => {
                    return Err(self.error(
                        v,
                        ErrorKind::JsonUnknownMember {
                            at: n.at.to_owned(),
                            name,
                        },
                    ))
                }
            };
            if slot_taken {
                return Err(self.error(v, ErrorKind::JsonTwice { at }));
            }
        }
        let missing = |what: &str| ParseError::new(line, ErrorKind::JsonMissing(join(n.at, what)));
        Ok((
            index.ok_or_else(|| missing("index"))?,
            RawEntry {
                command: command.ok_or_else(|| missing("operation-name"))?,
                mask: gates.ok_or_else(|| missing("gate-states-value"))?,
                interval: interval.ok_or_else(|| missing("time-interval-value"))?,
                line,
            },
        ))
    }

    /// `operation-name`: an identity of ieee802-dot1q-sched.
    fn operation(&self, n: Node<'a, '_>) -> Result<GateCommand, ParseError> {
        let name = self.string(n)?;
        let identity = match split_name(&name) {
            (None, id) => Some(id),
            (Some("ieee802-dot1q-sched" | "sched"), id) => Some(id),
            (Some(_), _) => None,
        };
        match identity {
            Some("set-gate-states") => Ok(GateCommand::SetGates),
            Some("set-and-hold-mac") => Ok(GateCommand::SetAndHold),
            Some("set-and-release-mac") => Ok(GateCommand::SetAndRelease),
            _ => Err(self.error(
                n.raw,
                ErrorKind::JsonOperation {
                    at: n.at.to_owned(),
                    name,
                },
            )),
        }
    }

    /// `admin-cycle-time`: a rational number of seconds, as whole nanoseconds.
    fn cycle_time(&self, n: Node<'a, '_>) -> Result<u64, ParseError> {
        let (mut num, mut den) = (None, None);
        for (name, v) in self.object(n)? {
            let at = join(n.at, &name);
            let slot = match name.as_str() {
                "numerator" => &mut num,
                "denominator" => &mut den,
                _ if name.contains(':') => continue,
                _ => {
                    return Err(self.error(
                        v,
                        ErrorKind::JsonUnknownMember {
                            at: n.at.to_owned(),
                            name,
                        },
                    ))
                }
            };
            let value = self.integer(Node { raw: v, at: &at }, true, "an integer (an int32)")?;
            if slot.replace(value).is_some() {
                return Err(self.error(v, ErrorKind::JsonTwice { at }));
            }
        }
        let missing = |what: &str| self.error(n.raw, ErrorKind::JsonMissing(join(n.at, what)));
        let num = num.ok_or_else(|| missing("numerator"))?;
        let den = den.ok_or_else(|| missing("denominator"))?;
        let bad = || {
            self.error(
                n.raw,
                ErrorKind::JsonCycleTime {
                    numerator: i64::try_from(num).unwrap_or(i64::MAX),
                    denominator: i64::try_from(den).unwrap_or(i64::MAX),
                },
            )
        };
        if num <= 0 || den <= 0 {
            return Err(bad());
        }
        let scaled = num.saturating_mul(i128::from(NS_PER_S));
        if scaled % den != 0 {
            return Err(bad());
        }
        u64::try_from(scaled / den).map_err(|_| bad())
    }

    /// `admin-base-time`: PTP seconds and nanoseconds, as ns.
    fn ptp_time(&self, n: Node<'a, '_>) -> Result<u64, ParseError> {
        let (mut secs, mut nanos) = (None, None);
        for (name, v) in self.object(n)? {
            let at = join(n.at, &name);
            let vn = Node { raw: v, at: &at };
            let taken = match name.as_str() {
                "seconds" => secs
                    .replace(self.uint(vn, u64::MAX, "seconds (a uint64)")?)
                    .is_some(),
                "nanoseconds" => nanos
                    .replace(self.uint(vn, NS_PER_S - 1, "nanoseconds 0..=999999999")?)
                    .is_some(),
                _ if name.contains(':') => continue,
                _ => {
                    return Err(self.error(
                        v,
                        ErrorKind::JsonUnknownMember {
                            at: n.at.to_owned(),
                            name,
                        },
                    ))
                }
            };
            if taken {
                return Err(self.error(v, ErrorKind::JsonTwice { at }));
            }
        }
        let secs =
            secs.ok_or_else(|| self.error(n.raw, ErrorKind::JsonMissing(join(n.at, "seconds"))))?;
        secs.checked_mul(NS_PER_S)
            .and_then(|s| s.checked_add(nanos.unwrap_or(0)))
            .ok_or_else(|| self.wrong(n, "a time within 2^64-1 ns"))
    }

    /// `queue-max-sdu-table`: the max-sdu table, class 0 first.
    fn max_sdu(&self, n: Node<'a, '_>) -> Result<Vec<u64>, ParseError> {
        let mut table: Vec<u64> = Vec::new();
        let mut given = [false; MAX_TC as usize];
        for (i, item) in self.array(n)?.into_iter().enumerate() {
            let at = format!("{}[{i}]", n.at);
            let (mut class, mut sdu) = (None, None);
            for (name, v) in self.object(Node { raw: item, at: &at })? {
                let vat = join(&at, &name);
                let vn = Node { raw: v, at: &vat };
                match name.as_str() {
                    "traffic-class" => class = Some(self.uint(vn, 7, "a traffic class 0..=7")?),
                    "queue-max-sdu" => {
                        sdu = Some(self.uint(vn, u64::from(u32::MAX), "bytes (a uint32)")?)
                    }
                    "transmission-overrun" => {}
                    _ if name.contains(':') => {}
                    _ => {
                        return Err(self.error(
                            v,
                            ErrorKind::JsonUnknownMember {
                                at: at.clone(),
                                name,
                            },
                        ))
                    }
                }
            }
            let class = class.ok_or_else(|| {
                self.error(item, ErrorKind::JsonMissing(join(&at, "traffic-class")))
            })?;
            // Fits: at most 7.
            let c = class as usize;
            if std::mem::replace(&mut given[c], true) {
                return Err(self.error(
                    item,
                    ErrorKind::JsonTwice {
                        at: format!("{} traffic-class {class}", n.at),
                    },
                ));
            }
            if table.len() <= c {
                table.resize(c + 1, 0);
            }
            table[c] = sdu.unwrap_or(0);
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    /// The text format's example schedule.
    const TEXT: &str = "num_tc 3\nmap 2 2 1 0 2 2 2 2 2 2 2 2 2 2 2 2\nbase-time 1000000000\n\
        cycle-time 1000000\ncycle-time-extension 10000\nsched-entry S 01 300000\n\
        sched-entry H 06 700000\nmax-sdu 0 200\n";

    const TABLE_JSON: &str = r#"{
  "gate-enabled": true,
  "admin-gate-states": 255,
  "admin-control-list": {
    "gate-control-entry": [
      {
        "index": 1,
        "operation-name": "ieee802-dot1q-sched:set-and-hold-mac",
        "gate-states-value": 6,
        "time-interval-value": 700000
      },
      {
        "index": 0,
        "operation-name": "set-gate-states",
        "gate-states-value": 1,
        "time-interval-value": "300000"
      }
    ]
  },
  "admin-cycle-time": {"numerator": 1, "denominator": 1000},
  "admin-cycle-time-extension": 10000,
  "admin-base-time": {"seconds": "1", "nanoseconds": 0},
  "queue-max-sdu-table": [{"traffic-class": 1, "queue-max-sdu": 200, "transmission-overrun": "0"}],
  "oper-gate-states": 3,
  "vendor-x:tuning": {"anything": [1, 2]}
}"#;

    fn bare() -> String {
        format!("{{\"ieee802-dot1q-sched-bridge:gate-parameter-table\": {TABLE_JSON}}}")
    }

    fn in_interfaces(names: &[&str]) -> String {
        let ifs: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if i % 2 == 0 {
                    format!(
                        "{{\"name\": \"{n}\", \"ieee802-dot1q-bridge:bridge-port\": \
                         {{\"ieee802-dot1q-sched-bridge:gate-parameter-table\": {TABLE_JSON}}}}}"
                    )
                } else {
                    format!(
                        "{{\"name\": \"{n}\", \"ieee802-dot1q-sched-bridge:gate-parameter-table\": {}}}",
                        TABLE_JSON.replace("\"seconds\": \"1\"", "\"seconds\": 2")
                    )
                }
            })
            .collect();
        format!(
            "{{\"ietf-interfaces:interfaces\": {{\"interface\": [{{\"name\": \"lo\"}}, {}]}}}}",
            ifs.join(", ")
        )
    }

    fn err(text: &str) -> ParseError {
        parse(text).expect_err(text)
    }

    #[test]
    fn a_table_reads_as_the_same_schedule_as_the_text_format() {
        let t = parse(TEXT).unwrap().list;
        for doc in [bare(), TABLE_JSON.to_owned(), in_interfaces(&["eth0"])] {
            let p = parse(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
            assert_eq!(p.format, Format::Qcw);
            assert!(p.warnings.is_empty(), "{:?}", p.warnings);
            let l = &p.list;
            assert_eq!(l.windows(), t.windows());
            assert_eq!(
                (l.base_time(), l.cycle_time(), l.cycle_time_extension()),
                (t.base_time(), t.cycle_time(), t.cycle_time_extension())
            );
            assert_eq!(l.max_sdu(), t.max_sdu());
            let cmds: Vec<_> = l.entries().iter().map(|e| e.command).collect();
            assert_eq!(cmds, [GateCommand::SetGates, GateCommand::SetAndHold]);
            // 8 classes, priority i to class i.
            assert_eq!(l.num_tc(), 8);
            assert_eq!(l.map(), &[0, 1, 2, 3, 4, 5, 6, 7, 0, 0, 0, 0, 0, 0, 0, 0]);
            for t_ns in [0, 999_999_999, 1_000_000_000, 1_000_300_000, 1_002_999_999] {
                assert_eq!(l.state_at(t_ns), t.state_at(t_ns), "t={t_ns}");
            }
        }
        // Entries carry the line of their object; the index orders them, not the array.
        let p = parse(TABLE_JSON).unwrap();
        let lines: Vec<usize> = p.list.entries().iter().map(|e| e.line).collect();
        assert_eq!(lines, [12, 6]);
    }

    #[test]
    fn several_interfaces_need_a_name() {
        let doc = in_interfaces(&["eth0", "eth1"]);
        let e = err(&doc);
        assert_eq!(
            e.to_string(),
            "1: 2 gate-parameter-tables in the document: give one, or name the interface"
        );
        let l = crate::parse_for(&doc, Some("eth1")).unwrap().list;
        assert_eq!(l.base_time(), 2_000_000_000);
        let l = crate::parse_for(&doc, Some("eth0")).unwrap().list;
        assert_eq!(l.base_time(), 1_000_000_000);
        let e = crate::parse_for(&doc, Some("eth9")).unwrap_err();
        assert!(
            e.to_string()
                .contains("none of them in an interface named `eth9`"),
            "{e}"
        );
        // One table: the name does not matter.
        crate::parse_for(&in_interfaces(&["x"]), Some("eth0")).unwrap();
    }

    #[test]
    fn warnings_for_what_is_not_used() {
        let p =
            parse(&TABLE_JSON.replace("\"admin-gate-states\": 255", "\"admin-gate-states\": 3"))
                .unwrap();
        assert_eq!(p.warnings.len(), 1);
        assert_eq!(p.warnings[0].line, 3);
        assert_eq!(
            p.warnings[0].kind,
            WarningKind::AdminGateStatesUnused { states: 3 }
        );
        // Absent gate-enabled and cycle time: enabled, the sum of the intervals.
        let p = parse(&TABLE_JSON.replace("\"gate-enabled\": true,", "").replace(
            "\"admin-cycle-time\": {\"numerator\": 1, \"denominator\": 1000},",
            "",
        ))
        .unwrap();
        assert_eq!(p.list.cycle_time(), 1_000_000);
        assert!(!p.list.cycle_time_is_explicit());
    }

    #[test]
    fn errors_give_the_line_and_the_path() {
        let cases: &[(&str, &str, usize, &str)] = &[
            ("\"gate-enabled\": true", "\"gate-enabled\": false", 2, "gate-enabled is false"),
            ("\"gate-enabled\": true", "\"gate-enabled\": 1", 2, "`gate-enabled` is not true or false"),
            ("\"admin-gate-states\": 255", "\"admin-gate-states\": 256", 3, "`admin-gate-states` is not an integer 0..=255"),
            ("\"gate-states-value\": 6", "\"gate-states-value\": -6", 9, "`admin-control-list/gate-control-entry[0]/gate-states-value` is not gate states"),
            ("\"gate-states-value\": 6", "\"gate-states-value\": 6.0", 9, "is not gate states 0..=255"),
            ("\"time-interval-value\": 700000", "\"time-interval-value\": 0", 6, "the interval is zero"),
            ("\"time-interval-value\": 700000", "\"time-interval-value\": 4294967296", 10, "is not nanoseconds (a uint32)"),
            ("\"index\": 1", "\"index\": 0", 12, "gate-control-entry index 0 is given twice (first on line 6)"),
            ("\"index\": 1,", "", 6, "`admin-control-list/gate-control-entry[0]/index` is missing"),
            ("ieee802-dot1q-sched:set-and-hold-mac", "ieee802-dot1q-stream-filters-gates:set-gate-and-ipv", 8, "operation-name `ieee802-dot1q-stream-filters-gates:set-gate-and-ipv` in `admin-control-list/gate-control-entry[0]/operation-name` is not an operation"),
            ("\"operation-name\": \"set-gate-states\"", "\"operation-name\": \"close-all\"", 14, "is not an operation of ieee802-dot1q-sched"),
            ("\"denominator\": 1000", "\"denominator\": 3", 20, "admin-cycle-time 1/3 s is not a positive whole number of nanoseconds"),
            ("\"numerator\": 1", "\"numerator\": -1", 20, "admin-cycle-time -1/1000 s"),
            ("\"denominator\": 1000", "\"denominator\": 0", 20, "admin-cycle-time 1/0 s"),
            ("\"nanoseconds\": 0", "\"nanoseconds\": 1000000000", 22, "`admin-base-time/nanoseconds` is not nanoseconds 0..=999999999"),
            ("\"seconds\": \"1\"", "\"seconds\": \"18446744073709551615\"", 22, "`admin-base-time` is not a time within 2^64-1 ns"),
            ("\"seconds\": \"1\", ", "", 22, "`admin-base-time/seconds` is missing"),
            ("\"traffic-class\": 1", "\"traffic-class\": 8", 23, "is not a traffic class 0..=7"),
            ("\"queue-max-sdu\": 200", "\"queue-max-sdu\": 70000", 23, "max-sdu 70000 for class 1 is larger than 65521"),
            ("\"oper-gate-states\": 3", "\"admin-gate-state\": 3", 24, "unknown member `admin-gate-state` in `gate-parameter-table`"),
            ("\"oper-gate-states\": 3", "\"gate-enabled\": true", 24, "`gate-enabled` is given twice"),
            ("\"gate-states-value\": 6,", "", 6, "`admin-control-list/gate-control-entry[0]/gate-states-value` is missing"),
            ("[\n      {", "[{\"index\": 7, \"operation-name\": \"set-gate-states\", \"gate-states-value\": 1, \"time-interval-value\": 5, \"extra\": 1},\n      {", 5, "unknown member `extra` in `admin-control-list/gate-control-entry[0]`"),
            ("\"admin-base-time\": {\"seconds\": \"1\", \"nanoseconds\": 0},", "", 1, "`admin-base-time` is missing"),
            ("\"admin-control-list\": {", "\"admin-control-list\": {\"gate-control-entry\": [], \"x\": {},", 4, "unknown member `x`"),
            ("}\n}", "}}}", 25, "invalid JSON at column 43: trailing characters"),
            (",\n  \"oper", "\n  \"oper", 24, "invalid JSON at column 3: expected `,` or `}`"),
        ];
        let mut wrong = Vec::new();
        for (from, to, line, msg) in cases {
            assert!(TABLE_JSON.contains(from), "{from}");
            let doc = TABLE_JSON.replacen(from, to, 1);
            let e = err(&doc);
            if !e.to_string().contains(msg) || e.line != *line {
                wrong.push(format!("{from} -> {to}: want {line}: {msg}\n   got {e}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        let e = err("{\"ietf-interfaces:interfaces\": {\"interface\": [{\"name\": \"eth0\"}]}}");
        assert_eq!(e.kind, ErrorKind::JsonNoTable);
        let e = err("{\"admin-control-list\": {\"gate-control-entry\": []}, \"admin-base-time\": {\"seconds\": 0}}");
        assert_eq!(
            e.to_string(),
            "1: `admin-control-list/gate-control-entry` is missing"
        );
        let e = err("{\"ieee802-dot1q-sched-bridge:gate-parameter-table\": [1]}");
        assert_eq!(e.to_string(), "1: `gate-parameter-table` is not an object");
        let e = err("{\n\"admin-control-list\": {\"gate-control-entry\": [{\"index\": 0, \"operation-name\": \"set-gate-states\", \"gate-states-value\": 1, \"time-interval-value\": 5}]},\n\"admin-base-time\": {\"seconds\": 0}\n");
        assert_eq!(
            e.to_string(),
            "3: invalid JSON: EOF while parsing an object"
        );
        let e = err("{\"a\": tru}");
        assert_eq!(
            e.to_string(),
            "1: invalid JSON at column 10: expected ident"
        );
    }
}
