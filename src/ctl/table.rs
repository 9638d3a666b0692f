//! Aligned text tables for `ctl show` (people; scripts use `ctl --json`).
use super::protocol::{ClockShow, FdbRow, GclListShow, GclShow, PmdRow, PortRow};

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    /// Numbers: right-aligned so the digits line up.
    Right,
}

/// A table: a header row, then rows; columns are as wide as their widest cell, two spaces apart.
pub(crate) struct Table {
    head: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(head: &[(&str, Align)]) -> Table {
        Table {
            head: head.iter().map(|(h, a)| (h.to_string(), *a)).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are empty, extra cells are dropped.
    pub(crate) fn row(&mut self, cells: Vec<String>) -> &mut Self {
        let mut cells = cells;
        cells.resize(self.head.len(), String::new());
        self.rows.push(cells);
        self
    }

    /// The table, one line per row, no trailing spaces.
    pub(crate) fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let widths: Vec<usize> = (0..self.head.len())
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| width(&r[c]))
                    .chain([width(&self.head[c].0)])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        let heads: Vec<String> = self.head.iter().map(|(h, _)| h.clone()).collect();
        for cells in std::iter::once(&heads).chain(&self.rows) {
            let mut line = String::new();
            for (c, cell) in cells.iter().enumerate() {
                if c > 0 {
                    line.push_str("  ");
                }
                let pad = " ".repeat(widths[c] - width(cell));
                match self.head[c].1 {
                    Align::Left => {
                        line.push_str(cell);
                        line.push_str(&pad);
                    }
                    Align::Right => {
                        line.push_str(&pad);
                        line.push_str(cell);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

use Align::{Left, Right};

pub(crate) fn ports(rows: &[PortRow]) -> String {
    let mut t = Table::new(&[
        ("ID", Right),
        ("PORT", Left),
        ("KIND", Left),
        ("TARGET", Left),
        ("LINK", Left),
        ("SPEED", Right),
        ("VLAN", Left),
        ("RXQ", Right),
        ("RX PACKETS", Right),
        ("TX PACKETS", Right),
        ("DROPS", Right),
        ("GATE", Left),
    ]);
    for p in rows {
        t.row(vec![
            p.id.to_string(),
            p.name.clone(),
            p.kind.clone(),
            p.target.clone(),
            if p.link_up { "up" } else { "down" }.into(),
            if p.speed_mbps > 0 {
                format!("{}M", p.speed_mbps)
            } else {
                "-".into()
            },
            p.vlan.map_or("trunk".into(), |v| v.to_string()),
            p.rxq.to_string(),
            p.rx_packets.to_string(),
            p.tx_packets.to_string(),
            p.drops.to_string(),
            if p.gated { "gcl" } else { "-" }.into(),
        ]);
    }
    t.render()
}

pub(crate) fn pmd(rows: &[PmdRow]) -> String {
    let mut t = Table::new(&[
        ("CORE", Right),
        ("CPU", Right),
        ("RX QUEUES", Left),
        ("GATES", Left),
        ("BUSY %", Right),
        ("ON CPU %", Right),
        ("PACKETS", Right),
        ("CYCLES/PKT", Right),
    ]);
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "-".into()
        } else {
            v.join(" ")
        }
    };
    for c in rows {
        let q: Vec<String> = c
            .rxqs
            .iter()
            .map(|q| format!("{}:{}", q.port, q.queue))
            .collect();
        t.row(vec![
            c.core.to_string(),
            c.cpu.to_string(),
            list(q),
            list(c.gates.clone()),
            format!("{:.1}", c.busy_pct),
            format!("{:.1}", c.on_cpu_pct),
            c.packets.to_string(),
            c.cycles_per_packet.to_string(),
        ]);
    }
    t.render()
}

pub(crate) fn fdb(rows: &[FdbRow]) -> String {
    let mut t = Table::new(&[
        ("MAC", Left),
        ("VLAN", Right),
        ("PORT", Left),
        ("AGE (s)", Right),
    ]);
    for e in rows {
        t.row(vec![
            e.mac.clone(),
            e.vlan.to_string(),
            e.port.clone(),
            e.age_s.to_string(),
        ]);
    }
    let mut out = t.render();
    out.push_str(&format!("{} entries\n", rows.len()));
    out
}

fn gcl_list(title: &str, since: &str, l: &GclListShow) -> String {
    let mut out = format!(
        "{title}: {since} {} ns  base-time {}  cycle-time {}  cycle-time-extension {}  num_tc {}\n",
        l.start_ns, l.base_time, l.cycle_time, l.cycle_time_extension, l.num_tc
    );
    let join = |v: &mut dyn Iterator<Item = String>| v.collect::<Vec<_>>().join(" ");
    if !l.map.is_empty() {
        out += &format!("  map {}\n", join(&mut l.map.iter().map(u8::to_string)));
    }
    if !l.queues.is_empty() {
        let q = join(&mut l.queues.iter().map(|(c, o)| format!("{c}@{o}")));
        out += &format!("  queues {q}\n");
    }
    if !l.max_sdu.is_empty() {
        let m = join(&mut l.max_sdu.iter().map(u32::to_string));
        out += &format!("  max-sdu {m} (0: no limit)\n");
    }
    if let Some(c) = &l.clockid {
        out += &format!("  clockid {c}\n");
    }
    let mut t = Table::new(&[
        ("#", Right),
        ("CMD", Left),
        ("GATES", Left),
        ("OFFSET (ns)", Right),
        ("INTERVAL (ns)", Right),
    ]);
    for (i, e) in l.entries.iter().enumerate() {
        t.row(vec![
            i.to_string(),
            e.command.to_string(),
            format!("0x{:02x}", e.gates),
            e.offset_ns.to_string(),
            e.interval_ns.to_string(),
        ]);
    }
    for line in t.render().lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

pub(crate) fn gcl(g: &GclShow) -> String {
    let mut out = format!(
        "port {}  link {} Mb/s  ConfigChangeErrors {}\n",
        g.port, g.link_mbps, g.config_change_errors
    );
    match &g.oper {
        Some(l) => out.push_str(&gcl_list("oper", "since", l)),
        None => out.push_str("oper: none (all gates open)\n"),
    }
    match &g.admin {
        // Its start is the ConfigChangeTime.
        Some(l) => out.push_str(&gcl_list("admin (pending)", "from", l)),
        None => out.push_str("admin (pending): none\n"),
    }
    out
}

pub(crate) fn clock(c: &ClockShow) -> String {
    let mut t = Table::new(&[("", Left), ("", Right)]);
    for (k, v) in [
        ("reference", c.reference.clone()),
        ("now (ns)", c.now_ns.to_string()),
        ("tsc (Hz)", c.tsc_hz.to_string()),
        ("calibrations", c.calibrations.to_string()),
        ("steps", c.steps.to_string()),
        ("failures", c.failures.to_string()),
        ("offset (ns)", c.offset_ns.to_string()),
        ("drift (ppm)", format!("{:.3}", c.drift_ppm)),
        ("last calibration (ns)", c.last_calibration_ns.to_string()),
        ("sample width (ns)", c.sample_width_ns.to_string()),
    ] {
        t.row(vec![k.to_string(), v]);
    }
    // No header line for a key/value table.
    t.render()
        .lines()
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::protocol::{GclEntryShow, RxqRow};
    use super::*;

    #[test]
    fn columns_align_left_and_right() {
        let mut t = Table::new(&[("NAME", Left), ("N", Right)]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["longer".into(), "12345".into()]);
        assert_eq!(
            t.render(),
            "NAME        N\n\
             a           1\n\
             longer  12345\n"
        );
    }

    #[test]
    fn short_rows_are_padded_and_wide_ones_cut() {
        let mut t = Table::new(&[("A", Left), ("B", Left)]);
        t.row(vec!["x".into()]);
        t.row(vec!["y".into(), "z".into(), "dropped".into()]);
        assert_eq!(t.render(), "A  B\nx\ny  z\n");
    }

    #[test]
    fn width_counts_characters_not_bytes() {
        let mut t = Table::new(&[("µs", Right), ("X", Left)]);
        t.row(vec!["10".into(), "x".into()]);
        assert_eq!(t.render(), "µs  X\n10  x\n");
    }

    #[test]
    fn pmd_table_lists_queues_and_load() {
        let s = pmd(&[PmdRow {
            core: 1,
            cpu: 1,
            rxqs: vec![
                RxqRow {
                    port: "h1".into(),
                    queue: 0,
                },
                RxqRow {
                    port: "h2".into(),
                    queue: 1,
                },
            ],
            gates: vec!["h2".into()],
            busy_pct: 12.345,
            on_cpu_pct: 49.96,
            packets: 1000,
            cycles_per_packet: 250,
            busy_cycles: 250_000,
            idle_cycles: 1_775_000,
            stalled_cycles: 2_000_000,
            iterations: 10,
        }]);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 2, "{s}");
        assert!(lines[0].starts_with("CORE  CPU  RX QUEUES  GATES"), "{s}");
        assert!(lines[1].contains("h1:0 h2:1  h2"), "{s}");
        assert!(
            lines[1].contains("12.3") && lines[1].contains("50.0"),
            "{s}"
        );
        assert!(lines[1].ends_with("1000         250"), "{s}");
    }

    #[test]
    fn gcl_shows_oper_and_pending() {
        let list = GclListShow {
            start_ns: 5,
            base_time: 0,
            cycle_time: 1000,
            cycle_time_extension: 0,
            num_tc: 2,
            map: vec![0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
            clockid: Some("CLOCK_TAI".into()),
            max_sdu: vec![0, 300],
            queues: vec![(1, 0), (1, 1)],
            entries: vec![
                GclEntryShow {
                    command: 'S',
                    gates: 1,
                    offset_ns: 0,
                    interval_ns: 600,
                },
                GclEntryShow {
                    command: 'S',
                    gates: 2,
                    offset_ns: 600,
                    interval_ns: 400,
                },
            ],
        };
        let s = gcl(&GclShow {
            port: "nic".into(),
            link_mbps: 1000,
            config_change_time: None,
            oper: Some(list.clone()),
            admin: None,
            config_change_errors: 0,
        });
        assert!(s.contains("\n  map 0 1 1 1"), "{s}");
        assert!(s.contains("\n  queues 1@0 1@1\n"), "{s}");
        assert!(s.contains("\n  max-sdu 0 300 (0: no limit)\n"), "{s}");
        assert!(s.contains("\n  clockid CLOCK_TAI\n"), "{s}");
        assert!(s.contains("oper: since 5 ns"), "{s}");
        assert!(
            s.contains("\n  1  S    0x02           600            400\n"),
            "{s}"
        );
        assert!(s.contains("admin (pending): none"), "{s}");
        let s = gcl(&GclShow {
            port: "nic".into(),
            link_mbps: 1000,
            config_change_time: Some(5),
            oper: None,
            admin: Some(list),
            config_change_errors: 1,
        });
        assert!(s.contains("oper: none"), "{s}");
        assert!(s.contains("admin (pending): from 5 ns"), "{s}");
    }

    #[test]
    fn clock_is_key_value() {
        let s = clock(&ClockShow {
            reference: "tai".into(),
            now_ns: 1,
            tsc_hz: 2_000_000_000,
            calibrations: 3,
            steps: 1,
            failures: 0,
            offset_ns: -12,
            drift_ppm: 0.5,
            last_calibration_ns: 1,
            sample_width_ns: 40,
        });
        assert!(s.starts_with("reference"), "{s}");
        assert!(s
            .lines()
            .any(|l| l.starts_with("offset (ns)") && l.ends_with("-12")));
        assert_eq!(s.lines().count(), 10);
    }
}
