//! The command line: every value is parsed into its type here, once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};

use crate::units::{Mac, Nanos, Window};

/// Default UDP port of the probe flow.
pub(crate) const DEFAULT_PORT: u16 = 7788;

/// End-to-end latency and jitter of a periodic UDP flow, scheduled on CLOCK_TAI.
///
/// A publisher sends a frame every cycle at base-time + shift-time + k·cycle-time (isochron's
/// and taprio's vocabulary); a subscriber stamps each arrival with the kernel's software receive
/// timestamp and reports latency = arrival − scheduled time, the datapath alone = arrival −
/// actual send time, jitter(i) = t_i − (t_(i−1) + T), losses, duplicates, reordering, deadline
/// misses and the arrival phase in the cycle. Both ends must share CLOCK_TAI (one host, or hosts
/// synchronised by PTP); otherwise `pub --reflect` against `reflect` measures RTT/2.
///
/// Timestamps are software (kernel receive time, CLOCK_TAI read before send), not hardware:
/// they include the receiving kernel's interrupt and softirq delay, not the NIC's.
#[derive(Debug, Parser)]
#[command(name = "tsn-latency", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
    /// Send a probe every cycle at scheduled CLOCK_TAI times (UDP, or raw 802.1Q frames).
    Pub(PubArgs),
    /// Receive probes, timestamp them in the kernel, report latency and jitter.
    Sub(SubArgs),
    /// Echo every probe back to its sender (for `pub --reflect` without a shared clock).
    Reflect(ReflectArgs),
    /// Recompute the summary of CSV files written by `sub --csv`.
    Report(ReportArgs),
    /// Draw PNG plots from CSV files: latency and jitter per run, 10 s averages, arrival phase.
    Plot(PlotArgs),
}

/// When frames are scheduled: base-time + shift-time + k·cycle-time on CLOCK_TAI.
#[derive(Debug, Args, Clone, Copy)]
pub(crate) struct Schedule {
    /// Period T between frames (ns, or with a unit: 1ms, 250us).
    #[arg(long, default_value = "1ms")]
    pub(crate) cycle_time: Nanos,
    /// Start of the schedule on CLOCK_TAI, ns since the epoch (as taprio's base-time). One in the
    /// past (0, the default) starts at the first cycle boundary after now + --start-margin.
    #[arg(long, default_value = "0")]
    pub(crate) base_time: Nanos,
    /// Offset of the send time inside each cycle (e.g. where the gate opens).
    #[arg(long, default_value = "0")]
    pub(crate) shift_time: Nanos,
}

/// What the receiving side reports.
#[derive(Debug, Args, Clone)]
pub(crate) struct ReportOpts {
    /// Latency budget: frames later than this count as deadline misses.
    #[arg(long, default_value = "400us")]
    pub(crate) deadline: Nanos,
    /// A window of the cycle, START,END from the cycle's start (e.g. the gate's open interval):
    /// counts the arrivals inside it.
    #[arg(long)]
    pub(crate) window: Option<Window>,
    /// Write every frame to this CSV (seq, times, latency, datapath, jitter, phase, flags).
    #[arg(long)]
    pub(crate) csv: Option<PathBuf>,
    /// Print the summary as JSON on stdout (running lines then go to stderr).
    #[arg(long)]
    pub(crate) json: bool,
    /// Period of the running line (average latency, frames, losses); 0 turns it off.
    #[arg(long, default_value = "10s")]
    pub(crate) interval: Nanos,
}

#[derive(Debug, Args)]
pub(crate) struct PubArgs {
    /// Destination IPv4:PORT (the subscriber or the reflector).
    #[arg(long)]
    pub(crate) dst: SocketAddr,
    /// Source IPv4:PORT (default: any port; in raw mode the interface's address, port 7789).
    #[arg(long)]
    pub(crate) src: Option<SocketAddr>,
    /// Send raw Ethernet/IPv4/UDP frames on this interface (AF_PACKET) instead of a UDP socket:
    /// for 802.1Q tags where the kernel has no VLAN devices. Needs --dst-mac.
    #[arg(long, requires = "dst_mac")]
    pub(crate) iface: Option<String>,
    /// Destination MAC of raw frames.
    #[arg(long, requires = "iface")]
    pub(crate) dst_mac: Option<Mac>,
    /// Tag raw frames with this 802.1Q VLAN ID.
    #[arg(long, requires = "iface", value_parser = clap::value_parser!(u16).range(0..4095))]
    pub(crate) vlan: Option<u16>,
    /// 802.1Q priority code point of tagged frames.
    #[arg(long, default_value_t = 0, requires = "vlan", value_parser = clap::value_parser!(u8).range(0..8))]
    pub(crate) pcp: u8,
    /// SO_PRIORITY of the socket (the skb priority that qdiscs and VLAN egress maps use).
    #[arg(long)]
    pub(crate) priority: Option<u32>,
    /// UDP payload bytes per frame, header included (16 is the smallest: the probe header).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(16..=65507))]
    pub(crate) size: u16,
    #[command(flatten)]
    pub(crate) schedule: Schedule,
    /// With a base-time in the past: how far ahead of now the first frame is scheduled.
    #[arg(long, default_value = "100ms")]
    pub(crate) start_margin: Nanos,
    /// Frames to send (sequence numbers 0..N-1); without it and --duration, until SIGINT.
    #[arg(long)]
    pub(crate) count: Option<u64>,
    /// Send for this long (rounded up to whole cycles).
    #[arg(long)]
    pub(crate) duration: Option<Nanos>,
    /// Run the sending thread SCHED_FIFO at this priority (1-99).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..100))]
    pub(crate) fifo: Option<i32>,
    /// Pin the process to this CPU.
    #[arg(long)]
    pub(crate) cpu: Option<usize>,
    /// Listen for echoes from `tsn-latency reflect` and report RTT/2 (no shared clock needed).
    #[arg(long, conflicts_with = "iface")]
    pub(crate) reflect: bool,
    /// With --reflect: how long to wait for the last echoes after the last send.
    #[arg(long, default_value = "1s")]
    pub(crate) echo_wait: Nanos,
    #[command(flatten)]
    pub(crate) report: ReportOpts,
}

#[derive(Debug, Args)]
pub(crate) struct SubArgs {
    /// UDP IPv4:PORT to listen on (in raw mode only its port is used, to pick probes out).
    #[arg(long, default_value_t = SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)))]
    pub(crate) listen: SocketAddr,
    /// Receive raw frames on this interface (AF_PACKET): tagged frames where the kernel has no
    /// VLAN device, or frames not addressed to this host.
    #[arg(long)]
    pub(crate) iface: Option<String>,
    /// Frames the publisher sends (its --count): stop once all arrived, count the rest lost.
    #[arg(long)]
    pub(crate) count: Option<u64>,
    /// Stop after this long.
    #[arg(long)]
    pub(crate) duration: Option<Nanos>,
    /// Stop when no probe arrived for this long (counted from the first probe).
    #[arg(long, default_value = "3s")]
    pub(crate) idle_timeout: Nanos,
    #[command(flatten)]
    pub(crate) cycle: Cycle,
    #[command(flatten)]
    pub(crate) report: ReportOpts,
}

/// The publisher's cycle, for the arrival phase (measured from the cycle's start, so a
/// publisher's shift-time shows as the phase it sends at).
#[derive(Debug, Args, Clone, Copy)]
pub(crate) struct Cycle {
    /// The publisher's period T (its --cycle-time); 0 turns the phase off.
    #[arg(long, default_value = "1ms")]
    pub(crate) cycle_time: Nanos,
    /// Any cycle start on CLOCK_TAI, ns (the publisher's --base-time; 0 when it used none).
    #[arg(long, default_value = "0")]
    pub(crate) base_time: Nanos,
}

#[derive(Debug, Args)]
pub(crate) struct ReflectArgs {
    /// UDP IPv4:PORT to listen on.
    #[arg(long, default_value_t = SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)))]
    pub(crate) listen: SocketAddr,
    /// SO_PRIORITY of the echoes.
    #[arg(long)]
    pub(crate) priority: Option<u32>,
    /// Stop after echoing this many frames.
    #[arg(long)]
    pub(crate) count: Option<u64>,
    /// Stop after this long.
    #[arg(long)]
    pub(crate) duration: Option<Nanos>,
}

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// CSV files written by `sub --csv` (or `pub --reflect --csv`).
    #[arg(required = true)]
    pub(crate) csv: Vec<PathBuf>,
    /// Override the deadline recorded in the CSV.
    #[arg(long)]
    pub(crate) deadline: Option<Nanos>,
    /// Override the cycle recorded in the CSV (for the phase).
    #[arg(long)]
    pub(crate) cycle_time: Option<Nanos>,
    /// Override the base-time recorded in the CSV (for the phase).
    #[arg(long)]
    pub(crate) base_time: Option<Nanos>,
    /// Count arrivals inside this window of the cycle.
    #[arg(long)]
    pub(crate) window: Option<Window>,
    /// Print one JSON document per file.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A run to plot: `LABEL=FILE.csv`, or `FILE.csv` (labelled by its file name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunSpec {
    pub(crate) label: String,
    pub(crate) path: PathBuf,
}

impl FromStr for RunSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (label, path) = match s.split_once('=') {
            Some((l, p)) if !l.is_empty() && !l.contains('/') => (l.to_string(), PathBuf::from(p)),
            _ => {
                let p = PathBuf::from(s);
                let l = p
                    .file_stem()
                    .map(|x| x.to_string_lossy().into_owned())
                    .ok_or(format!("`{s}` names no file"))?;
                (l, p)
            }
        };
        if path.as_os_str().is_empty() {
            return Err(format!("`{s}` names no file"));
        }
        Ok(RunSpec { label, path })
    }
}

#[derive(Debug, Args)]
pub(crate) struct PlotArgs {
    /// Runs: `LABEL=FILE.csv` or `FILE.csv`, one box / curve each, in this order.
    #[arg(required = true)]
    pub(crate) runs: Vec<RunSpec>,
    /// Directory for the PNGs (created if missing).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Deadline line on the latency plots (default: the first CSV's).
    #[arg(long)]
    pub(crate) deadline: Option<Nanos>,
    /// Gate window to shade on the phase histogram, START,END in the cycle (default: the
    /// first CSV's, if it recorded one).
    #[arg(long)]
    pub(crate) window: Option<Window>,
    /// Width of the averaging slices of the latency-over-time plot.
    #[arg(long, default_value = "10s")]
    pub(crate) slice: Nanos,
    /// TrueType font for the labels (plots are drawn without system font libraries).
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    pub(crate) font: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn typed_values() {
        let c = Cli::try_parse_from([
            "tsn-latency",
            "pub",
            "--dst",
            "10.0.0.2:7788",
            "--iface",
            "veth0",
            "--dst-mac",
            "02:00:00:00:00:02",
            "--vlan",
            "10",
            "--pcp",
            "5",
            "--cycle-time",
            "1ms",
            "--shift-time",
            "250us",
            "--size",
            "16",
            "--count",
            "100",
        ])
        .unwrap();
        let Cmd::Pub(p) = c.cmd else { panic!() };
        assert_eq!(p.schedule.cycle_time, Nanos(1_000_000));
        assert_eq!(p.schedule.shift_time, Nanos(250_000));
        assert_eq!((p.vlan, p.pcp, p.size), (Some(10), 5, 16));
        for bad in [
            vec!["pub", "--dst", "10.0.0.2:1", "--size", "15"],
            vec!["pub", "--dst", "10.0.0.2:1", "--iface", "x"],
            vec!["pub", "--dst", "10.0.0.2:1", "--vlan", "3"],
            vec!["pub", "--dst", "10.0.0.2:1", "--cycle-time", "1h"],
            vec!["pub", "--dst", "nowhere"],
            vec!["sub", "--window", "3ms,1ms"],
            vec![
                "pub",
                "--dst",
                "10.0.0.2:1",
                "--iface",
                "x",
                "--dst-mac",
                "1:2:3",
                "--reflect",
            ],
        ] {
            let mut args = vec!["tsn-latency"];
            args.extend(bad.iter());
            assert!(Cli::try_parse_from(&args).is_err(), "accepted {bad:?}");
        }
        let r: RunSpec = "busy=runs/a.csv".parse().unwrap();
        assert_eq!(
            (r.label.as_str(), r.path.to_str()),
            ("busy", Some("runs/a.csv"))
        );
        let r: RunSpec = "runs/idle.csv".parse().unwrap();
        assert_eq!(r.label, "idle");
        let r: RunSpec = "./x=1/b.csv".parse().unwrap();
        assert_eq!(
            (r.label.as_str(), r.path.to_str()),
            ("b", Some("./x=1/b.csv"))
        );
    }
}
