//! The command line. Every option is documented here; `--help` prints it.
use crate::classify::TcRule;
use crate::clock::ClockSpec;
use crate::config::{CoreList, GclSpec, PortSpec, RxqAffinity};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const PORT_HELP: &str = "\
A switch port (repeatable): NAME[,OPT=VAL...]=KIND:TARGET

Our own per-port options sit with the NAME, before the '=KIND:' that starts the target; the
TARGET is everything after 'KIND:' and goes to its backend verbatim, so DPDK devargs keep their
own commas and '='. Port names are what counters, --rxq-affinity and the control socket use.

Kinds:
  dpdk:DEVARGS   a DPDK ethdev: a PCI address (the I210: 0000:03:00.0) or a vdev string
                 (net_af_packet0,iface=veth0  net_tap0,iface=tsn0  net_ring0 ...)
  vhost-user:PATH
                 a QEMU guest: the switch listens on PATH; QEMU connects with
                 -chardev socket,path=PATH,reconnect=1 (survives a switch restart)
  vhost-user-client:PATH
                 a QEMU guest that listens (-chardev socket,path=PATH,server=on): the switch
                 connects, and retries every second while it cannot
Options:
  vlan=ID        access port in VLAN ID (1..4094): untagged frames enter VLAN ID, leave
                 untagged. Without it the port is an 802.1Q trunk carrying every VLAN.
  rxq=N          rx queues to poll (default 1), spread over the PMD cores
  queues=N       vhost-user: queue pairs offered to the guest (multiqueue; same as rxq)
  prio=P         priority (0..7) of untagged frames received here (tagged frames use their PCP);
                 an egress GCL's `map` turns priorities into traffic classes
  queue-map=Q:C/Q:C
                 rx queue Q's frames go to traffic class C (vhost-user: the guest's tx queue,
                 the paper's multiqueue scheme); '/' separates entries
  speed=MBPS     link speed of the gate's wire model (with --gcl). Required on ports whose
                 driver reports a speed no wire paces: vdevs (af_packet, af_xdp, tap, ring,
                 null, vhost, virtio-user, pcap, memif), paravirtual NICs and vhost-user; a
                 NIC's negotiated speed is used otherwise

Examples:
  --port h1=dpdk:net_af_packet0,iface=veth0
  --port h2,vlan=10=dpdk:net_af_packet1,iface=veth1
  --port nic,rxq=2=dpdk:0000:03:00.0
  --port vm1,queues=2=vhost-user:/run/tsn-vswitch/vm1.sock

Without any --port, the embedded default runs: vhost-user sockets /run/tsn-vswitch/vm1.sock and\nvm2.sock for two QEMU guests (the QEMU command lines are printed at start) and a TAP uplink\nthe host sees as 'tsn0'.";

/// tsn-vswitch: a poll-mode virtual switch on DPDK with an 802.1Qbv time-aware shaper.
#[derive(Debug, Parser)]
#[command(name = "tsn-vswitch", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Ask or change a running switch over its control socket (stats, fdb, show, port, gcl ...).
    Ctl(CtlArgs),
    /// Gate control lists (802.1Qbv): check a file before deploying it.
    #[command(subcommand)]
    Gcl(GclCmd),
}

#[derive(Debug, Subcommand)]
pub enum GclCmd {
    /// Validate a GCL file and print the schedule, like a dry run of `tc`.
    /// On error prints `FILE:LINE: reason` and exits non-zero.
    Check {
        /// The GCL file: the text format (num_tc, map, base-time, [cycle-time],
        /// [cycle-time-extension], sched-entry ... one per line), a `tc qdisc ... taprio ...`
        /// command line, or an IEEE 802.1Qcw gate-parameter-table in JSON; told apart by content.
        file: PathBuf,
        /// Also print the gate state at T (ns, same clock as base-time):
        /// `T gates=0xMM next=T_NS` (bit i = class i open; time of the next gate change).
        #[arg(long = "at", value_name = "T_NS")]
        at: Vec<u64>,
        /// Apply the switch's rule for a port at this link speed (Mb/s): every entry must last
        /// at least as long as a minimum frame (60 bytes) takes on the wire (as taprio). Each
        /// entry shorter than that is printed and the check fails.
        #[arg(long, value_name = "MBPS", value_parser = clap::value_parser!(u32).range(1..))]
        speed: Option<u32>,
        /// Check the list's clockid against this --clock, as the switch does.
        #[arg(long, value_name = "CLOCK")]
        clock: Option<ClockSpec>,
        /// For a JSON document with several interfaces' tables: the interface to read (the
        /// switch reads the one named like the port).
        #[arg(long, value_name = "NAME")]
        interface: Option<String>,
    },
}

/// `tsn-vswitch ctl [--ctl PATH] [--json] COMMAND`: each command is one [`Request`] over the
/// control socket.
///
/// [`Request`]: crate::ctl::Request
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The running switch's control socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CTL, global = true)]
    pub ctl: PathBuf,
    /// Print `show` output as JSON (for scripts) instead of aligned tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: CtlCommand,
}

/// The commands of `tsn-vswitch ctl`.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Ports, counters, drops by reason, PMD load, clock, control socket (JSON).
    Stats {
        #[command(subcommand)]
        action: Option<StatsAction>,
    },
    /// Learned MAC+VLAN -> port (JSON).
    Fdb {
        #[command(subcommand)]
        action: Option<FdbAction>,
    },
    /// The DPDK extended statistics of a port (JSON).
    Xstats {
        /// A DPDK port.
        port: String,
    },
    /// Replace the gate control list of a port started with --gcl (like `tc qdisc replace`).
    ///
    /// This command reads FILE with your rights (a regular file of at most 1 MiB) and sends its
    /// text: the switch opens no file. The switch validates it whole (a bad one changes nothing:
    /// FILE:LINE: reason) and it takes effect at its ConfigChangeTime, printed.
    Gcl {
        /// The gated port.
        port: String,
        /// The new list, in any format `tsn-vswitch gcl check` reads.
        file: PathBuf,
    },
    /// Add or delete a port while the others forward.
    #[command(subcommand)]
    Port(PortAction),
    /// Tables for people: ports, pmd, fdb, gcl PORT, clock (--json for their rows as JSON).
    #[command(subcommand)]
    Show(crate::ctl::ShowWhat),
}

#[derive(Debug, Subcommand)]
pub enum StatsAction {
    /// Restart the port and PMD counters from zero.
    Clear,
}

#[derive(Debug, Subcommand)]
pub enum FdbAction {
    /// Forget the learned MACs of PORT, or all of them.
    Flush {
        /// Only this port's.
        port: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PortAction {
    /// Open a port: NAME[,OPT=VAL...]=KIND:TARGET, everything --port takes (see --help).
    Add {
        #[arg(value_name = "NAME[,OPT=VAL...]=KIND:TARGET")]
        spec: String,
    },
    /// Close a port: its rx queues leave their cores, its MACs leave the FDB.
    Del {
        /// The port.
        name: String,
    },
}

pub const DEFAULT_CTL: &str = "/run/tsn-vswitch/ctl.sock";

#[derive(Debug, Args)]
pub struct RunArgs {
    #[arg(long = "port", value_name = "NAME[,OPT=VAL...]=KIND:TARGET", long_help = PORT_HELP)]
    pub ports: Vec<PortSpec>,

    /// Core for control and housekeeping (EAL's main lcore).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub main_core: u32,

    /// Busy-polling PMD threads: N, N-M or N,M,... (lcore N on CPU N), or DPDK's LCORE@CPU
    /// (`1@1,2@1`: two PMD threads sharing CPU 1). No CPU of the main core, no lcore id of it.
    #[arg(long, value_name = "LIST", default_value = "1")]
    pub pmd_cores: CoreList,

    /// Pin rx queue Q of port NAME to PMD lcore LCORE (repeatable); others go round-robin. The
    /// core polling a gated port's queue 0 runs its gate; other cores hand it their frames.
    #[arg(long, value_name = "NAME:Q=LCORE")]
    pub rxq_affinity: Vec<RxqAffinity>,

    /// Forwarding database capacity (MAC+VLAN entries; rounded up to a power of two).
    #[arg(long, value_name = "N", default_value_t = 8192)]
    pub fdb_size: usize,

    /// Seconds after which an unseen MAC is forgotten.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub fdb_aging: u32,

    /// Control socket path (for `tsn-vswitch ctl`).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CTL)]
    pub ctl: PathBuf,

    /// Group whose members may use the control socket (mode 0660). Without it the socket is
    /// owner-only (0600), whatever the umask.
    #[arg(long, value_name = "GROUP", value_parser = crate::ctl::CtlGroup::lookup)]
    pub ctl_group: Option<crate::ctl::CtlGroup>,

    /// Packet buffers in the pool.
    #[arg(long, value_name = "N", default_value_t = 16383)]
    pub mbufs: u32,

    /// Memory for DPDK, in MiB (hugepages when available, else anonymous memory).
    #[arg(long, value_name = "MB", default_value_t = 256)]
    pub mem: u32,

    /// Gate control list of an egress port (repeatable): an IEEE 802.1Qbv schedule in tc-taprio's
    /// words (num_tc, map, base-time, cycle-time, cycle-time-extension, sched-entry S|H|R MASK NS),
    /// as a `tc qdisc ... taprio ...` command line, or as an IEEE 802.1Qcw gate-parameter-table in
    /// JSON. A clockid in it must be the gates' clock (CLOCK_TAI). Check a file first with
    /// `tsn-vswitch gcl check FILE`.
    #[arg(long = "gcl", value_name = "PORT=FILE")]
    pub gcls: Vec<GclSpec>,

    /// The gates' time base: `tai` (CLOCK_TAI, as taprio), `phc:/dev/ptpN` (a PTP hardware clock)
    /// or `port:NAME` (a DPDK port's IEEE 1588 clock). Read through the TSC, calibrated against
    /// it once a second.
    #[arg(long, value_name = "CLOCK", default_value = "tai")]
    pub clock: ClockSpec,

    /// Classify UDP by destination port (repeatable): PORT:udp-dst=N[-M]:class=C|prio=P, where
    /// PORT is an ingress port name or '*'. First match wins, before queue-map, PCP and prio.
    #[arg(long = "tc-rule", value_name = "RULE")]
    pub tc_rules: Vec<TcRule>,

    /// Log level: error, warn, info, debug, trace. RUST_LOG, when set, overrides it.
    #[arg(long, value_name = "LEVEL", default_value = "info",
          value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,
}
