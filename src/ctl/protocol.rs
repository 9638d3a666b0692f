//! The control protocol: one [`Request`] as one JSON line from `tsn-vswitch ctl`, one [`Reply`]
//! as one JSON document back, then the switch closes the connection. The same types are used by
//! the client, the server and the command line (`ShowWhat` is also the `ctl show` subcommand), so
//! the three cannot drift apart.
use serde::{Deserialize, Serialize};

/// Largest GCL text `ctl gcl` sends (the client checks it before connecting).
pub const MAX_GCL_TEXT: usize = crate::config::MAX_GCL_FILE as usize;

/// Largest request line the switch reads: a [`MAX_GCL_TEXT`] text JSON-escaped (a newline is two
/// bytes, and a GCL file is mostly digits, letters and spaces) plus the rest of the request.
pub const MAX_REQUEST: usize = 2 * MAX_GCL_TEXT + 64 * 1024;

/// What a client asks of the switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Ports, counters, drops by reason, PMD load, clock (JSON).
    Stats,
    /// Restart the port and PMD counters from zero (the control side keeps a baseline: PMD
    /// cores own their counters and only they write them).
    StatsClear,
    /// Learned MAC+VLAN → port (JSON).
    Fdb,
    /// Forget what was learned, on one port or everywhere.
    FdbFlush { port: Option<String> },
    /// The DPDK extended statistics of a port.
    Xstats { port: String },
    /// A new gate control list for a gated port: the text of the file, which the client read
    /// with its own rights (the switch opens no path for it).
    Gcl { port: String, text: String },
    /// Open a port at runtime: `NAME[,OPT=VAL...]=KIND:TARGET`, as `--port` takes.
    PortAdd { spec: String },
    /// Close a port at runtime.
    PortDel { name: String },
    /// A table for people (or its rows as JSON with `ctl --json`).
    Show(ShowWhat),
}

/// What `ctl show` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Subcommand)]
#[serde(rename_all = "snake_case")]
pub enum ShowWhat {
    /// Ports: kind, target, link, VLAN, queues, packets, drops.
    Ports,
    /// PMD cores: their rx queues, busy %, packets, cycles per packet (as OVS's
    /// `dpif-netdev/pmd-rxq-show` and `pmd-stats-show`).
    Pmd,
    /// The forwarding database: MAC, VLAN, port, age.
    Fdb,
    /// A gated port's gate control lists: the running (oper) one and the pending (admin) one.
    Gcl {
        /// The port.
        port: String,
    },
    /// The gates' clock: reference, calibration, offset and drift.
    Clock,
}

/// The switch's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Done; the data depends on the request (the `Show*` types below for `show`).
    Ok(serde_json::Value),
    /// Refused, nothing changed: one sentence.
    Error(String),
    /// The GCL text sent with `gcl` does not parse at `line`; the client names its own file
    /// (`FILE:LINE: reason`, as `gcl check` prints). Never carries the text's tokens.
    GclSyntax { line: usize, reason: String },
    /// The GCL text parsed but the port refuses the list (`FILE: reason`).
    GclRefused(String),
}

impl Reply {
    pub fn error(msg: impl Into<String>) -> Reply {
        Reply::Error(msg.into())
    }
}

/// One row of `show ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRow {
    pub id: u16,
    pub name: String,
    /// `dpdk`, `vhost-user` or `vhost-user-client`.
    pub kind: String,
    /// DPDK devargs or the vhost-user socket path.
    pub target: String,
    pub link_up: bool,
    pub speed_mbps: u32,
    /// Access VLAN; none for a trunk.
    pub vlan: Option<u16>,
    pub rxq: u16,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub drops: u64,
    /// Whether the port has a gate stage (`--gcl`).
    pub gated: bool,
}

/// An rx queue polled by a PMD core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RxqRow {
    pub port: String,
    pub queue: u16,
}

/// One PMD core in `show pmd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PmdRow {
    /// The lcore id.
    pub core: u32,
    /// The CPU it runs on (several lcores may share one: `--pmd-cores 1@1,2@1`).
    pub cpu: u32,
    pub rxqs: Vec<RxqRow>,
    /// The gated ports whose gate stage this core runs.
    pub gates: Vec<String>,
    /// Busy cycles / cycles spent in the loop, in percent (0 when the core has not run yet).
    pub busy_pct: f64,
    /// Cycles spent in the loop / wall-clock cycles, in percent: below 100 when the thread was
    /// off its CPU (another lcore on the same CPU, the host's steal).
    pub on_cpu_pct: f64,
    /// Frames received by the core.
    pub packets: u64,
    /// Busy cycles per received frame (0 without frames).
    pub cycles_per_packet: u64,
    pub busy_cycles: u64,
    pub idle_cycles: u64,
    /// Cycles of iterations too long to have been spent in the loop (the thread was off its CPU).
    pub stalled_cycles: u64,
    pub iterations: u64,
}

/// One entry of `show fdb`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbRow {
    pub mac: String,
    pub vlan: u16,
    pub port: String,
    pub age_s: u32,
}

/// `show gcl PORT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GclShow {
    pub port: String,
    pub link_mbps: u64,
    /// When the pending list takes over (its `start_ns`); none: nothing pending.
    #[serde(default)]
    pub config_change_time: Option<u64>,
    /// The running list and when it took over; none: all gates open.
    pub oper: Option<GclListShow>,
    /// The pending list and its ConfigChangeTime.
    pub admin: Option<GclListShow>,
    pub config_change_errors: u64,
}

/// A gate control list as `show gcl` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GclListShow {
    /// When it took (or takes) over, ns on the gates' clock.
    pub start_ns: u64,
    pub base_time: u64,
    pub cycle_time: u64,
    pub cycle_time_extension: u64,
    pub num_tc: u8,
    /// Priority → traffic class (16 entries).
    #[serde(default)]
    pub map: Vec<u8>,
    /// The list's `clockid`, if it named one.
    #[serde(default)]
    pub clockid: Option<String>,
    /// queueMaxSDU per class from class 0 (0: no limit); empty: no limit anywhere.
    #[serde(default)]
    pub max_sdu: Vec<u32>,
    /// `queues` as (count, offset) per class; empty if not given.
    #[serde(default)]
    pub queues: Vec<(u16, u16)>,
    pub entries: Vec<GclEntryShow>,
}

/// One `sched-entry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GclEntryShow {
    /// `S`, `H` or `R`.
    pub command: char,
    /// Bit i = gate of class i open.
    pub gates: u8,
    /// Offset in the cycle, ns.
    pub offset_ns: u64,
    pub interval_ns: u64,
}

/// `show clock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockShow {
    pub reference: String,
    /// The gates' time now, ns.
    pub now_ns: u64,
    pub tsc_hz: u64,
    pub calibrations: u64,
    pub steps: u64,
    pub failures: u64,
    pub offset_ns: i64,
    pub drift_ppm: f64,
    pub last_calibration_ns: u64,
    pub sample_width_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_request() -> Vec<Request> {
        let text = "num_tc 2\nsched-entry S 01 \"1000\"\t\\\n".to_string();
        // A match without a wildcard: a new variant must be added to the list below.
        let covered = |r: &Request| match r {
            Request::Stats
            | Request::StatsClear
            | Request::Fdb
            | Request::FdbFlush { .. }
            | Request::Xstats { .. }
            | Request::Gcl { .. }
            | Request::PortAdd { .. }
            | Request::PortDel { .. }
            | Request::Show(_) => true,
        };
        let all = vec![
            Request::Stats,
            Request::StatsClear,
            Request::Fdb,
            Request::FdbFlush { port: None },
            Request::FdbFlush {
                port: Some("h1".into()),
            },
            Request::Xstats { port: "nic".into() },
            Request::Gcl {
                port: "nic".into(),
                text,
            },
            Request::PortAdd {
                spec: "vm3,queues=2=vhost-user:/run/tsn-vswitch/vm3.sock".into(),
            },
            Request::PortDel { name: "vm3".into() },
            Request::Show(ShowWhat::Ports),
            Request::Show(ShowWhat::Pmd),
            Request::Show(ShowWhat::Fdb),
            Request::Show(ShowWhat::Gcl { port: "nic".into() }),
            Request::Show(ShowWhat::Clock),
        ];
        assert!(all.iter().all(covered));
        all
    }

    #[test]
    fn every_request_round_trips_through_one_json_line() {
        for r in every_request() {
            let line = serde_json::to_string(&r).unwrap();
            assert!(!line.contains('\n'), "{line}");
            let back: Request = serde_json::from_str(&line).unwrap();
            assert_eq!(back, r, "{line}");
        }
    }

    #[test]
    fn every_reply_round_trips() {
        for r in [
            Reply::Ok(serde_json::json!({"entries": [1, 2]})),
            Reply::error("no port named 'x'"),
            Reply::GclSyntax {
                line: 3,
                reason: "unknown keyword".into(),
            },
            Reply::GclRefused("line 5: too short".into()),
        ] {
            let s = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Reply>(&s).unwrap(), r, "{s}");
        }
        // The shapes scripts see.
        assert_eq!(
            serde_json::to_string(&Reply::error("x")).unwrap(),
            r#"{"error":"x"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::Show(ShowWhat::Pmd)).unwrap(),
            r#"{"show":"pmd"}"#
        );
    }

    #[test]
    fn a_full_size_gcl_text_fits_the_request_cap() {
        // A worst-case GCL-like text of MAX_GCL_TEXT bytes, one entry a line.
        let line = "sched-entry S 01 1000\n";
        let text: String = line.repeat(MAX_GCL_TEXT / line.len());
        let r = Request::Gcl {
            port: "p".repeat(32),
            text,
        };
        assert!(serde_json::to_string(&r).unwrap().len() < MAX_REQUEST);
    }
}
