//! The switch's configuration, built from the command line and validated before anything runs.
//! Each error is one sentence naming the input it rejects.
use anyhow::{anyhow, bail, Result};

/// What a port is backed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortKind {
    /// A DPDK ethdev: a PCI address or a vdev string, passed to DPDK verbatim.
    Dpdk { devargs: String },
    /// A vhost-user socket for a QEMU guest: the switch listens (`client == false`, QEMU
    /// connects with `reconnect=1`) or connects and keeps retrying (`client == true`, QEMU is
    /// the server).
    VhostUser {
        path: std::path::PathBuf,
        client: bool,
    },
}

impl PortKind {
    /// The DPDK device name (first devargs field) of a dpdk port.
    pub fn dpdk_device(&self) -> Option<&str> {
        match self {
            PortKind::Dpdk { devargs } => devargs.split(',').next(),
            PortKind::VhostUser { .. } => None,
        }
    }
}

/// One `--port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub name: String,
    pub kind: PortKind,
    /// Access VLAN (`vlan=ID`); None = trunk.
    pub vlan: Option<u16>,
    /// Rx queues to poll (`rxq=N`; for vhost-user, the queue pairs offered: `queues=N`).
    pub rxq: u16,
    /// Ingress classification (`prio=N`, `queue-map=Q:C/...`, and the `--tc-rule`s naming it).
    pub classifier: crate::classify::Classifier,
    /// Link speed of the gate's wire model (`speed=MBPS`): required for a GCL on a port whose
    /// driver reports a speed no wire paces (see [`crate::tas::gate_link_mbps`]).
    pub speed_mbps: Option<u32>,
}

/// Port kinds, as written after the `=` of a `--port`.
pub const KINDS: &[&str] = &["dpdk", "vhost-user", "vhost-user-client"];

/// The embedded default when no `--port` is given: two vhost-user sockets for QEMU guests in
/// the run directory, and a TAP uplink the host sees as `tsn0`.
pub const DEFAULT_PORTS: &[&str] = &[
    "vm1=vhost-user:/run/tsn-vswitch/vm1.sock",
    "vm2=vhost-user:/run/tsn-vswitch/vm2.sock",
    "uplink=dpdk:net_tap0,iface=tsn0",
];

/// The QEMU options that attach a guest to a vhost-user port (memory must be shared with the
/// switch, hence the memfd backend). `index` picks a distinct MAC.
pub fn qemu_command(path: &std::path::Path, client: bool, queues: u16, index: usize) -> String {
    let chardev = if client {
        format!("socket,id=c0,path={},server=on,wait=off", path.display())
    } else {
        format!("socket,id=c0,path={},reconnect=1", path.display())
    };
    let (mq, netq) = if queues > 1 {
        (",mq=on".to_string(), format!(",queues={queues}"))
    } else {
        (String::new(), String::new())
    };
    [
        "qemu-system-x86_64 -machine q35,memory-backend=mem -m 1G".to_string(),
        "-object memory-backend-memfd,id=mem,size=1G,share=on".to_string(),
        format!("-chardev {chardev}"),
        format!("-netdev vhost-user,id=n0,chardev=c0{netq}"),
        format!(
            "-device virtio-net-pci,netdev=n0,mac=02:00:00:00:01:{:02x}{mq}",
            (index + 1) & 0xff
        ),
        "... (your disk, kernel and console options)".to_string(),
    ]
    .join(" \\\n    ")
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

impl PortSpec {
    /// Parses `NAME[,OPT=VAL...]=KIND:TARGET`. Our options sit with the name, before the
    /// `=KIND:` that starts the target; the target (DPDK devargs, which have commas and `=` of
    /// their own) is everything after `KIND:` and is never split.
    pub fn parse(s: &str) -> Result<PortSpec> {
        // The first '=' that is followed by "KIND:" ends the name-and-options part. Our option
        // values never contain ':' so the first `=WORD:` is the kind.
        let (head, kind, target) = split_kind(s).ok_or_else(|| {
            anyhow!(
                "'{s}': expected NAME[,OPT=VAL...]=KIND:TARGET, e.g. h1=dpdk:net_af_packet0,iface=veth0"
            )
        })?;
        let mut parts = head.split(',');
        let name = parts.next().unwrap_or_default();
        if !valid_name(name) {
            bail!("'{s}': port name '{name}' must be 1-32 characters of [A-Za-z0-9_.-]");
        }
        let kind = match kind {
            "dpdk" => {
                if target.is_empty() {
                    bail!(
                        "port '{name}': dpdk ports need DEVARGS (a PCI address or a vdev string)"
                    );
                }
                PortKind::Dpdk {
                    devargs: target.to_string(),
                }
            }
            "vhost-user" | "vhost-user-client" => {
                if target.is_empty() {
                    bail!("port '{name}': {kind} ports need a socket PATH");
                }
                PortKind::VhostUser {
                    path: target.into(),
                    client: kind == "vhost-user-client",
                }
            }
            other => bail!(
                "port '{name}': unknown port kind '{other}' (expected one of: {})",
                KINDS.join(", ")
            ),
        };
        let mut spec = PortSpec {
            name: name.to_string(),
            kind,
            vlan: None,
            rxq: 1,
            classifier: crate::classify::Classifier::new(),
            speed_mbps: None,
        };
        let mut prev: Option<(&str, &str)> = None;
        for opt in parts {
            let Some((k, v)) = opt.split_once('=') else {
                if let Some(("queue-map", pv)) = prev {
                    // `queue-map=0:1,1:2`: the user separated entries with a comma.
                    let e = crate::classify::ClassifyError::CommaInQueueMap(format!("{pv},{opt}"));
                    bail!("port '{name}': {e}");
                }
                bail!("port '{name}': option '{opt}' must be KEY=VALUE");
            };
            prev = Some((k, v));
            match k {
                "vlan" => {
                    let id: u16 = v
                        .parse()
                        .ok()
                        .filter(|id| (1..=4094).contains(id))
                        .ok_or_else(|| {
                            anyhow!("port '{name}': vlan={v} is not a VLAN ID (1..=4094)")
                        })?;
                    spec.vlan = Some(id);
                }
                "rxq" | "queues" => {
                    spec.rxq =
                        v.parse()
                            .ok()
                            .filter(|n| (1..=64).contains(n))
                            .ok_or_else(|| {
                                anyhow!("port '{name}': rxq={v} is not a queue count (1..=64)")
                            })?;
                }
                "speed" => {
                    spec.speed_mbps = Some(
                        v.parse()
                            .ok()
                            .filter(|s| (1..=1_000_000).contains(s))
                            .ok_or_else(|| {
                                anyhow!("port '{name}': speed={v} is not a link speed in Mb/s")
                            })?,
                    );
                }
                _ => {
                    if !spec
                        .classifier
                        .apply_port_option(k, v)
                        .map_err(|e| anyhow!("port '{name}': {e}"))?
                    {
                        bail!(
                            "port '{name}': unknown port option '{k}' (known: vlan, rxq, queues, speed, prio, queue-map)"
                        );
                    }
                }
            }
        }
        Ok(spec)
    }
}

impl std::str::FromStr for PortSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<PortSpec> {
        PortSpec::parse(s)
    }
}

/// Splits at the first `=KIND:`; None if there is none.
/// A known kind wins over an earlier `=WORD:` inside an option value (`queue-map=0:1` has one);
/// with no known kind, the first candidate is returned so the error names the unknown kind.
fn split_kind(s: &str) -> Option<(&str, &str, &str)> {
    let mut first = None;
    let mut from = 0;
    while let Some(i) = s[from..].find('=') {
        let eq = from + i;
        let rest = &s[eq + 1..];
        if let Some(colon) = rest.find(':') {
            let kind = &rest[..colon];
            if !kind.is_empty() && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                let cand = (&s[..eq], kind, &rest[colon + 1..]);
                if KINDS.contains(&kind) {
                    return Some(cand);
                }
                first.get_or_insert(cand);
            }
        }
        from = eq + 1;
    }
    first
}

/// One PMD thread: a DPDK lcore id and the CPU it runs on (DPDK's `--lcores LCORE@CPU`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lcore {
    pub id: u32,
    pub cpu: u32,
}

/// Lcore ids DPDK accepts (its build's `RTE_MAX_LCORE`).
pub const MAX_LCORE: u32 = 128;

/// A core list as `--pmd-cores` takes it: `1`, `1-3`, `1,3,5-6` (lcore N on CPU N), and DPDK's
/// `LCORE@CPU` (`1@1,2@1`: two PMD threads sharing CPU 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreList(pub Vec<Lcore>);

impl std::str::FromStr for CoreList {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<CoreList> {
        parse_core_list(s).map(CoreList)
    }
}

/// Parses a core list: `1`, `1-3`, `1,3,5-6`, `1@1,2@1`.
pub fn parse_core_list(s: &str) -> Result<Vec<Lcore>> {
    let bad = || anyhow!("core list '{s}' is not of the form N, N-M, LCORE@CPU or a list of them");
    let num = |v: &str| v.trim().parse::<u32>().map_err(|_| bad());
    let mut out: Vec<Lcore> = Vec::new();
    for part in s.split(',') {
        let (lo, hi, cpu) = match (part.split_once('@'), part.split_once('-')) {
            (Some((l, c)), _) => (num(l)?, num(l)?, Some(num(c)?)),
            (None, Some((a, b))) => (num(a)?, num(b)?, None),
            (None, None) => (num(part)?, num(part)?, None),
        };
        if lo > hi {
            return Err(bad());
        }
        for id in lo..=hi {
            if id >= MAX_LCORE {
                bail!("core list '{s}': lcore {id} is beyond DPDK's {MAX_LCORE} lcores");
            }
            if out.iter().any(|l| l.id == id) {
                bail!("core list '{s}' names lcore {id} twice");
            }
            out.push(Lcore {
                id,
                cpu: cpu.unwrap_or(id),
            });
        }
    }
    Ok(out)
}

/// The cores this process may run on.
pub fn allowed_cores() -> Vec<u32> {
    // SAFETY: sched_getaffinity fills a cpu_set_t we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..std::thread::available_parallelism().map_or(1, |n| n.get() as u32))
                .collect();
        }
        (0..libc::CPU_SETSIZE as u32)
            .filter(|&c| libc::CPU_ISSET(c as usize, &set))
            .collect()
    }
}

/// `--rxq-affinity NAME:Q=LCORE`: rx queue Q of the port named NAME is polled by PMD lcore
/// LCORE (an lcore id of `--pmd-cores`; the CPU number when the list has no `@`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxqAffinity {
    pub port: String,
    pub queue: u16,
    /// The lcore id.
    pub core: u32,
}

impl std::str::FromStr for RxqAffinity {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<RxqAffinity> {
        let bad = || anyhow!("'{s}': expected NAME:QUEUE=LCORE, e.g. h1:0=1");
        let (pq, core) = s.split_once('=').ok_or_else(bad)?;
        let (port, q) = pq.rsplit_once(':').ok_or_else(bad)?;
        Ok(RxqAffinity {
            port: port.to_string(),
            queue: q.parse().map_err(|_| bad())?,
            core: core.parse().map_err(|_| bad())?,
        })
    }
}

/// Everything the switch needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub ports: Vec<PortSpec>,
    pub main_core: u32,
    pub pmd_cores: Vec<Lcore>,
    pub rxq_affinity: Vec<RxqAffinity>,
    pub fdb_size: usize,
    pub fdb_aging_s: u32,
    pub ctl_path: std::path::PathBuf,
    /// `--ctl-group`: the control socket is 0660 for this group instead of 0600.
    pub ctl_group: Option<crate::ctl::CtlGroup>,
    pub mbufs: u32,
    pub mem_mb: u32,
    pub dpdk_log_level: u32,
    /// `--gcl PORT=FILE`: the gate control list of an egress port.
    pub gcls: Vec<GclSpec>,
    /// `--clock`: the time base of every gate.
    pub clock: crate::clock::ClockSpec,
    /// `--tc-rule`s: applied to the ports at start, and to each port added at runtime.
    pub tc_rules: Vec<crate::classify::TcRule>,
}

/// One `--gcl PORT=FILE`, parsed and validated.
#[derive(Debug, Clone)]
pub struct GclSpec {
    pub port: String,
    pub path: std::path::PathBuf,
    pub list: gcl::GateControlList,
    pub warnings: Vec<String>,
}

impl std::str::FromStr for GclSpec {
    type Err = anyhow::Error;
    /// Parses `PORT=FILE` and the file; errors read `--gcl PORT=FILE: FILE:LINE: reason`.
    fn from_str(arg: &str) -> Result<GclSpec> {
        let (port, file) = arg
            .split_once('=')
            .filter(|(p, f)| !p.is_empty() && !f.is_empty())
            .ok_or_else(|| anyhow!("'{arg}': expected PORT=FILE"))?;
        let (list, warnings) = read_gcl(file, port)?;
        Ok(GclSpec {
            port: port.to_string(),
            path: file.into(),
            list,
            warnings,
        })
    }
}

/// Largest GCL file read: about 50 000 entries, far more than any NIC's list holds (the I210's
/// has none, taprio's is bounded by one netlink message).
pub const MAX_GCL_FILE: u64 = 1 << 20;

/// The text of a GCL file. Only a regular file of at most [`MAX_GCL_FILE`] bytes: a FIFO would
/// block the reader (the switch at start, the `ctl gcl` client) and `/dev/zero` would fill the
/// memory. Opened non-blocking so that even a FIFO only costs the `fstat` that refuses it.
pub fn read_gcl_text(file: &std::path::Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(file)?;
    if !f.metadata()?.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut bytes = Vec::new();
    f.take(MAX_GCL_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_GCL_FILE {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("larger than {} KiB", MAX_GCL_FILE >> 10),
        ));
    }
    String::from_utf8(bytes).map_err(|_| Error::new(ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Reads and validates a GCL file (`--gcl` at start) for port `port`, in any format
/// [`gcl::parse_for`] reads (an 802.1Qcw document with several interfaces is read for the one
/// named like the port): the list and its warnings, each `FILE:LINE: ...`; errors read
/// `cannot read FILE: ...` or `FILE:LINE: reason`.
pub fn read_gcl(file: &str, port: &str) -> Result<(gcl::GateControlList, Vec<String>)> {
    let text = read_gcl_text(file.as_ref()).map_err(|e| anyhow!("cannot read {file}: {e}"))?;
    let parsed = gcl::parse_for(&text, Some(port)).map_err(|e| anyhow!("{file}:{e}"))?;
    let warnings = parsed
        .warnings
        .iter()
        .map(|w| format!("{file}:{w}"))
        .collect();
    Ok((parsed.list, warnings))
}

impl Config {
    /// Cross-checks that need the whole picture (names, cores, affinities).
    pub fn validate(&self) -> Result<()> {
        if self.ports.is_empty() {
            bail!("no ports configured");
        }
        if self.ports.len() > crate::forward::MAX_PORTS {
            bail!("at most {} ports are supported", crate::forward::MAX_PORTS);
        }
        for (i, p) in self.ports.iter().enumerate() {
            if self.ports[..i].iter().any(|q| q.name == p.name) {
                bail!("duplicate port name '{}'", p.name);
            }
            if let Some(dev) = p.kind.dpdk_device() {
                if let Some(q) = self.ports[..i]
                    .iter()
                    .find(|q| q.kind.dpdk_device() == Some(dev))
                {
                    bail!(
                        "ports '{}' and '{}' name the same DPDK device '{dev}'",
                        q.name,
                        p.name
                    );
                }
            }
            if let PortKind::VhostUser { path, .. } = &p.kind {
                if let Some(q) = self.ports[..i]
                    .iter()
                    .find(|q| matches!(&q.kind, PortKind::VhostUser { path: o, .. } if o == path))
                {
                    bail!(
                        "ports '{}' and '{}' use the same socket {}",
                        q.name,
                        p.name,
                        path.display()
                    );
                }
            }
        }
        let allowed = allowed_cores();
        if !allowed.contains(&self.main_core) {
            bail!(
                "--main-core {}: no such core available (available: {:?})",
                self.main_core,
                allowed
            );
        }
        if self.pmd_cores.is_empty() {
            bail!("--pmd-cores: at least one PMD core is needed");
        }
        for l in &self.pmd_cores {
            if !allowed.contains(&l.cpu) {
                bail!(
                    "--pmd-cores: CPU {} (lcore {}) is not available (available: {allowed:?})",
                    l.cpu,
                    l.id
                );
            }
            if l.cpu == self.main_core {
                bail!(
                    "--pmd-cores: lcore {} runs on CPU {}, the main core; PMD cores must be dedicated",
                    l.id,
                    l.cpu
                );
            }
            if l.id == self.main_core {
                bail!(
                    "--pmd-cores: lcore {} is the main core's lcore id (--main-core {}); give the \
                     PMD thread another id, e.g. {}@{}",
                    l.id,
                    self.main_core,
                    MAX_LCORE - 1,
                    l.cpu
                );
            }
        }
        for a in &self.rxq_affinity {
            let port = self
                .ports
                .iter()
                .find(|p| p.name == a.port)
                .ok_or_else(|| anyhow!("--rxq-affinity: no port named '{}'", a.port))?;
            if a.queue >= port.rxq {
                bail!(
                    "--rxq-affinity: port '{}' has {} rx queue(s); queue {} does not exist",
                    a.port,
                    port.rxq,
                    a.queue
                );
            }
            if !self.pmd_cores.iter().any(|l| l.id == a.core) {
                bail!(
                    "--rxq-affinity: core {} is not a PMD lcore (--pmd-cores {})",
                    a.core,
                    self.pmd_lcore_list()
                );
            }
        }
        for (i, g) in self.gcls.iter().enumerate() {
            if !self.ports.iter().any(|p| p.name == g.port) {
                bail!(
                    "--gcl {}={}: no port named '{}'",
                    g.port,
                    g.path.display(),
                    g.port
                );
            }
            if self.gcls[..i].iter().any(|o| o.port == g.port) {
                bail!("--gcl: port '{}' is given two lists", g.port);
            }
            self.clock
                .check_clockid(g.list.clockid())
                .map_err(|e| anyhow!("--gcl {}={}: {e}", g.port, g.path.display()))?;
        }
        if self.fdb_size == 0 || self.fdb_size > 1 << 24 {
            bail!("--fdb-size must be between 1 and {}", 1 << 24);
        }
        Ok(())
    }

    /// `--pmd-cores` as DPDK's `--lcores` writes it: `1@1,2@1`.
    pub fn pmd_lcore_list(&self) -> String {
        let l: Vec<String> = self
            .pmd_cores
            .iter()
            .map(|l| format!("{}@{}", l.id, l.cpu))
            .collect();
        l.join(",")
    }

    /// Rx queues per PMD core: round-robin over (port, queue), then the pinned ones moved.
    /// Returns (lcore id, port index, queue).
    pub fn rxq_assignment(&self) -> Vec<(u32, usize, u16)> {
        let mut out = Vec::new();
        let mut next = 0usize;
        for (pi, p) in self.ports.iter().enumerate() {
            for q in 0..p.rxq {
                let core = match self
                    .rxq_affinity
                    .iter()
                    .find(|a| a.port == p.name && a.queue == q)
                {
                    Some(a) => a.core,
                    None => {
                        let c = self.pmd_cores[next % self.pmd_cores.len()].id;
                        next += 1;
                        c
                    }
                };
                out.push((core, pi, q));
            }
        }
        out
    }
}

/// Maps our log level to DPDK's (1 emergency .. 8 debug). DPDK's INFO is chatty: our `info`
/// shows its warnings and worse.
pub fn dpdk_log_level(level: &str) -> u32 {
    match level {
        "error" => 4,
        "warn" | "info" => 5,
        "debug" => 7,
        "trace" => 8,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs_keep_devargs_whole() {
        let p = PortSpec::parse("h1=dpdk:net_af_packet0,iface=veth0").unwrap();
        assert_eq!(p.name, "h1");
        assert_eq!(
            p.kind,
            PortKind::Dpdk {
                devargs: "net_af_packet0,iface=veth0".into()
            }
        );
        assert_eq!((p.vlan, p.rxq), (None, 1));
        let p = PortSpec::parse("h2,vlan=10,rxq=2=dpdk:0000:03:00.0").unwrap();
        assert_eq!((p.vlan, p.rxq), (Some(10), 2));
        assert_eq!(
            p.kind,
            PortKind::Dpdk {
                devargs: "0000:03:00.0".into()
            }
        );
    }

    #[test]
    fn port_spec_errors_name_the_input() {
        for (s, want) in [
            ("a", "expected NAME"),
            ("=dpdk:net_null0", "port name ''"),
            ("a=bogus:x", "unknown port kind 'bogus'"),
            ("a,vlan=0=dpdk:net_null0", "vlan=0"),
            ("a,vlan=5000=dpdk:net_null0", "vlan=5000"),
            ("a,vlan=x=dpdk:net_null0", "vlan=x"),
            ("a,mtu=1=dpdk:net_null0", "unknown port option 'mtu'"),
            ("a=dpdk:", "need DEVARGS"),
        ] {
            let e = PortSpec::parse(s).unwrap_err().to_string();
            assert!(e.contains(want), "{s}: {e}");
        }
    }

    #[test]
    fn queue_map_values_are_not_mistaken_for_kinds() {
        let p = PortSpec::parse("p0,queue-map=0:1/1:0=dpdk:net_null0").unwrap();
        assert_eq!(p.kind.dpdk_device(), Some("net_null0"));
        let e = PortSpec::parse("p0,queue-map=0:1,1:2=dpdk:net_null0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("queue-map") && e.contains("'/'"), "{e}");
        let e = PortSpec::parse("p0,queue-map=0:9=dpdk:net_null0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("queue-map") || e.contains("class 9"), "{e}");
        let e = PortSpec::parse("a=bogus:x").unwrap_err().to_string();
        assert!(e.contains("unknown port kind 'bogus'"), "{e}");
    }

    #[test]
    fn core_lists() {
        let ids = |s: &str| -> Vec<(u32, u32)> {
            parse_core_list(s)
                .unwrap()
                .iter()
                .map(|l| (l.id, l.cpu))
                .collect()
        };
        assert_eq!(ids("1"), [(1, 1)]);
        assert_eq!(ids("1-3,5"), [(1, 1), (2, 2), (3, 3), (5, 5)]);
        // DPDK's LCORE@CPU: two PMD threads on CPU 1, mixed with the plain form.
        assert_eq!(ids("1@1,2@1"), [(1, 1), (2, 1)]);
        assert_eq!(ids("3,7@1"), [(3, 3), (7, 1)]);
        for bad in [
            "", "1-", "3-1", "a", "1,1", "1@", "@1", "1@x", "1-2@1", "2@1,2@0", "128",
        ] {
            assert!(parse_core_list(bad).is_err(), "{bad}");
        }
        let e = parse_core_list("2@1,2@0").unwrap_err().to_string();
        assert!(e.contains("lcore 2 twice"), "{e}");
    }

    #[test]
    fn rxq_affinity_syntax() {
        let a = "h1:1=3".parse::<RxqAffinity>().unwrap();
        assert_eq!((a.port.as_str(), a.queue, a.core), ("h1", 1, 3));
        assert!("h1=3".parse::<RxqAffinity>().is_err());
        assert!("h1:x=3".parse::<RxqAffinity>().is_err());
    }

    /// A configuration of two ports on `pmd` lcores, main core 0.
    fn two_ports(pmd: &str, affinity: &[&str]) -> Config {
        Config {
            ports: vec![
                PortSpec::parse("h1=dpdk:net_null0").unwrap(),
                PortSpec::parse("h2=dpdk:net_null1").unwrap(),
            ],
            main_core: 0,
            pmd_cores: parse_core_list(pmd).unwrap(),
            rxq_affinity: affinity.iter().map(|a| a.parse().unwrap()).collect(),
            fdb_size: 1024,
            fdb_aging_s: 300,
            ctl_path: "/nonexistent/ctl.sock".into(),
            ctl_group: None,
            mbufs: 1024,
            mem_mb: 64,
            dpdk_log_level: 5,
            gcls: Vec::new(),
            clock: Default::default(),
            tc_rules: Vec::new(),
        }
    }

    #[test]
    fn lcores_sharing_a_cpu_take_rx_queues_by_lcore_id() {
        if !allowed_cores().contains(&1) {
            eprintln!("skipped: CPU 1 is not available here");
            return;
        }
        let c = two_ports("1@1,2@1", &["h1:0=2", "h2:0=1"]);
        c.validate().unwrap();
        assert_eq!(c.rxq_assignment(), [(2, 0, 0), (1, 1, 0)]);
        assert_eq!(c.pmd_lcore_list(), "1@1,2@1");
        for (pmd, aff, want) in [
            ("1@1,2@1", "h1:0=3", "core 3 is not a PMD lcore"),
            ("0@1", "h1:0=0", "lcore 0 is the main core's lcore id"),
            ("1@0", "h1:0=1", "lcore 1 runs on CPU 0, the main core"),
        ] {
            let e = two_ports(pmd, &[aff]).validate().unwrap_err().to_string();
            assert!(e.contains(want), "{pmd} {aff}: {e}");
        }
    }
}
