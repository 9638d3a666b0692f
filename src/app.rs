//! Start-up, the control loop and shut-down. Everything that can fail on bad configuration
//! fails here, before any PMD core starts spinning.
use crate::cli::RunArgs;
use crate::clock::{Calibrator, ClockSpec, PortClock, Tsc};
use crate::config::{self, Config, PortKind, PortSpec, RxqAffinity};
use crate::ctl::CtlServer;
use crate::dpdk::{self, Eal, EalConfig, EthPort, Mempool, TxHandle};
use crate::fdb::Fdb;
use crate::forward::{VlanMode, L2};
use crate::pmd::{PmdCore, Shared};
use crate::port::{RxPort, SpinLock, TxPort, VhostRx, VhostTx};
use crate::stats::{self, CoreStats};
use crate::tas::{GateControl, GateStage, StageConfig};
use anyhow::{Context, Result};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Turns the command line into a validated configuration (no side effects).
pub fn build_config(a: &RunArgs) -> Result<Config> {
    let port_args: Vec<String> = if a.ports.is_empty() {
        config::DEFAULT_PORTS
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        a.ports.clone()
    };
    let mut ports = port_args
        .iter()
        .map(|s| PortSpec::parse(s))
        .collect::<Result<Vec<_>>>()?;
    for r in &a.tc_rules {
        let rule: crate::classify::TcRule = r
            .parse()
            .map_err(|e| anyhow::anyhow!("--tc-rule {r}: {e}"))?;
        if let crate::classify::PortMatch::Named(n) = &rule.port {
            if !ports.iter().any(|p| &p.name == n) {
                anyhow::bail!("--tc-rule {r}: no port named '{n}'");
            }
        }
        for p in ports.iter_mut() {
            p.classifier
                .add_rule(&p.name, &rule)
                .map_err(|e| anyhow::anyhow!("--tc-rule {r}: port '{}': {e}", p.name))?;
        }
    }
    let gcls = a
        .gcls
        .iter()
        .map(|g| config::GclSpec::parse(g))
        .collect::<Result<Vec<_>>>()?;
    let clock: crate::clock::ClockSpec = a
        .clock
        .parse()
        .map_err(|e| anyhow::anyhow!("--clock {}: {e}", a.clock))?;
    let pmd_cores =
        config::parse_core_list(&a.pmd_cores).map_err(|e| anyhow::anyhow!("--pmd-cores: {e}"))?;
    let rxq_affinity = a
        .rxq_affinity
        .iter()
        .map(|s| RxqAffinity::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let cfg = Config {
        ports,
        main_core: a.main_core,
        pmd_cores,
        rxq_affinity,
        fdb_size: a.fdb_size,
        fdb_aging_s: a.fdb_aging,
        ctl_path: a.ctl.clone(),
        mbufs: a.mbufs,
        mem_mb: a.mem,
        dpdk_log_level: config::dpdk_log_level(&a.log_level),
        gcls,
        clock,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// A vhost-user port's control side: the device state machine and its socket.
struct VhostCtl {
    dev: vhost::VhostUserNet,
    path: std::path::PathBuf,
    listener: Option<vhost::Listener>,
    /// Client mode: when the last connection attempt was made.
    last_try: Option<Instant>,
    /// Vrings whose breakage has been logged (one error log per episode).
    broken_logged: Vec<bool>,
}

enum Backend {
    Eth(EthPort),
    Vhost(Box<VhostCtl>),
}

/// A port as the control side sees it.
struct Port {
    spec: PortSpec,
    backend: Backend,
    link: (bool, u32),
    /// The control side of the port's gate stage, if it has a GCL.
    gate: Option<GateControl>,
}

impl Port {
    fn link_now(&self) -> (bool, u32) {
        match &self.backend {
            Backend::Eth(e) => e.link(),
            Backend::Vhost(v) => (v.dev.link_up(), 0),
        }
    }
}

/// Per-port queues handed to the PMD cores: rx queues, and the tx path each core uses.
struct PortQueues {
    rx: Vec<Option<RxPort>>,
    tx_for_core: Box<dyn Fn(usize) -> TxPort>,
}

fn open_port(spec: &PortSpec, npmd: u16, pool: &Arc<Mempool>) -> Result<(Port, PortQueues)> {
    let ctx = || format!("port '{}'", spec.name);
    match &spec.kind {
        PortKind::Dpdk { devargs } => {
            let mut eth = EthPort::open(devargs).with_context(ctx)?;
            let info = eth.info()?;
            if spec.rxq > info.max_rx_queues {
                anyhow::bail!(
                    "port '{}': rxq={} but the device has at most {} rx queues",
                    spec.name,
                    spec.rxq,
                    info.max_rx_queues
                );
            }
            // One tx queue per PMD core where the device has enough; otherwise cores share.
            let ntxq = npmd.min(info.max_tx_queues).max(1);
            let (rxqs, txqs) = eth.setup(spec.rxq, ntxq, 1024, pool).with_context(ctx)?;
            eth.set_promiscuous().with_context(ctx)?;
            eth.start().with_context(ctx)?;
            let link = eth.link();
            tracing::info!(
                port = %spec.name, driver = %info.driver, id = eth.id, rxq = spec.rxq, txq = ntxq,
                mac = %crate::wire::MacAddr(eth.mac()), vlan = ?spec.vlan,
                link = if link.0 { "up" } else { "down" },
                "port started"
            );
            let txqs: Vec<_> = txqs
                .into_iter()
                .map(|q| Arc::new((q, AtomicBool::new(false))))
                .collect();
            let shared = usize::from(ntxq) < usize::from(npmd);
            let queues = PortQueues {
                rx: rxqs.into_iter().map(|q| Some(RxPort::Eth(q))).collect(),
                tx_for_core: Box::new(move |k| {
                    TxPort::Eth(TxHandle::new(txqs[k % txqs.len()].clone(), shared))
                }),
            };
            Ok((
                Port {
                    spec: spec.clone(),
                    backend: Backend::Eth(eth),
                    link,
                    gate: None,
                },
                queues,
            ))
        }
        PortKind::VhostUser { path, client } => {
            let dev = vhost::VhostUserNet::new(vhost::NetConfig {
                queue_pairs: spec.rxq,
                ..Default::default()
            });
            let mut rx = Vec::new();
            let mut tx = Vec::new();
            for q in 0..spec.rxq {
                let (r, t) = dev
                    .queue_pair(q)
                    .expect("fresh device has every queue pair");
                rx.push(Some(RxPort::Vhost(VhostRx::new(r, pool.clone()))));
                tx.push(SpinLock::new(t));
            }
            let tx = Arc::new(tx);
            let listener = if *client {
                None
            } else {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).with_context(|| {
                        format!("port '{}': cannot create {}", spec.name, dir.display())
                    })?;
                }
                let l = vhost::Listener::bind(path).with_context(|| {
                    format!("port '{}': cannot listen on {}", spec.name, path.display())
                })?;
                l.listener().set_nonblocking(true)?;
                Some(l)
            };
            tracing::info!(
                port = %spec.name, socket = %path.display(), queues = spec.rxq,
                mode = if *client { "client" } else { "server" }, vlan = ?spec.vlan,
                "vhost-user port ready"
            );
            let nvrings = usize::from(spec.rxq) * 2;
            let queues = PortQueues {
                rx,
                tx_for_core: Box::new(move |k| {
                    let first = k % tx.len();
                    TxPort::Vhost(VhostTx::new(tx.clone(), first))
                }),
            };
            Ok((
                Port {
                    spec: spec.clone(),
                    backend: Backend::Vhost(Box::new(VhostCtl {
                        dev,
                        path: path.clone(),
                        listener,
                        last_try: None,
                        broken_logged: vec![false; nvrings],
                    })),
                    link: (false, 0),
                    gate: None,
                },
                queues,
            ))
        }
    }
}

/// Runs the switch until SIGINT/SIGTERM.
pub fn run(cfg: Config) -> Result<()> {
    let stop_signal = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop_signal.clone())?;
    }

    let pci: Vec<String> = cfg
        .ports
        .iter()
        .filter_map(|p| match &p.kind {
            PortKind::Dpdk { devargs } if dpdk::ethdev::is_pci_address(devargs) => {
                Some(devargs.clone())
            }
            _ => None,
        })
        .collect();
    let eal = Eal::init(&EalConfig {
        main_core: cfg.main_core,
        pmd_cores: cfg.pmd_cores.clone(),
        pci,
        log_level: cfg.dpdk_log_level,
        mem_mb: cfg.mem_mb,
    })?;
    if eal.no_huge {
        tracing::warn!(
            "no free hugepages: running in no-huge mode, 3-4x slower (run scripts/setup.sh)"
        );
    }
    let result = run_with_eal(&eal, &cfg, &stop_signal);
    drop(eal);
    result
}

fn run_with_eal(eal: &Eal, cfg: &Config, stop_signal: &AtomicBool) -> Result<()> {
    let pool = Arc::new(Mempool::new("tsn_mbufs", cfg.mbufs, 256, 0)?);
    let npmd = cfg.pmd_cores.len() as u16;

    // Ports: probe, configure, start. Any failure names the port and stops here.
    let mut ports: Vec<Port> = Vec::new();
    let mut queues: Vec<PortQueues> = Vec::new();
    for spec in &cfg.ports {
        let (p, q) = open_port(spec, npmd, &pool)?;
        ports.push(p);
        queues.push(q);
    }

    // The gates' clock: the TSC, calibrated against the reference (--clock).
    let reference = match &cfg.clock {
        ClockSpec::Port(name) => {
            let id = ports
                .iter()
                .find_map(|p| match (&p.backend, p.spec.name == *name) {
                    (Backend::Eth(e), true) => Some(e.id),
                    _ => None,
                })
                .ok_or_else(|| {
                    anyhow::anyhow!("--clock port:{name}: no DPDK port named '{name}'")
                })?;
            dpdk::ethdev::timesync_enable(id).with_context(|| format!("--clock port:{name}"))?;
            Box::new(PortClock::new(name, move || {
                dpdk::ethdev::timesync_read_ns(id)
            })) as Box<dyn crate::clock::ReferenceClock>
        }
        other => other.open().with_context(|| format!("--clock {other}"))?,
    };
    let mut calibrator = Calibrator::new(reference, Tsc, dpdk::tsc_hz())
        .with_context(|| format!("--clock {}", cfg.clock))?;

    // Gate stages: one per gated egress port, owned by the (single) PMD core.
    let mut stages: Vec<Option<GateStage<dpdk::Mbuf>>> = (0..ports.len()).map(|_| None).collect();
    for g in &cfg.gcls {
        let i = ports
            .iter()
            .position(|p| p.spec.name == g.port)
            .expect("validated");
        for w in &g.warnings {
            tracing::warn!(port = %g.port, "GCL {w}");
        }
        let p = &mut ports[i];
        let mbps = match p.spec.speed_mbps {
            Some(s) => s,
            None if p.link.1 > 0 => p.link.1,
            None => 1000,
        };
        let (stage, mut ctl) = GateStage::new(StageConfig::new(u64::from(mbps) * 1_000_000));
        let inst = ctl
            .install(g.list.clone(), calibrator.now_ns())
            .map_err(|e| anyhow::anyhow!("--gcl {}={}: {e}", g.port, g.path.display()))?;
        if let Backend::Eth(e) = &p.backend {
            let capa = e.info().map(|i| i.tx_offload_capa).unwrap_or(0);
            if capa & dpdk::ethdev::TX_OFFLOAD_SEND_ON_TIMESTAMP == 0 {
                tracing::info!(port = %g.port, "no launch-time offload (SEND_ON_TIMESTAMP) in this driver: the gate runs in software");
            } else {
                tracing::info!(port = %g.port, "driver offers SEND_ON_TIMESTAMP; this version still gates in software");
            }
        }
        tracing::info!(
            port = %g.port, file = %g.path.display(), link_mbps = mbps,
            start_ns = inst.config_change_time, "gate control list installed"
        );
        p.gate = Some(ctl);
        stages[i] = Some(stage);
    }

    // Tell the operator how to attach a guest to each vhost-user port.
    for (i, p) in cfg.ports.iter().enumerate() {
        if let PortKind::VhostUser { path, client } = &p.kind {
            println!(
                "# guest on port '{}':\n{}",
                p.name,
                config::qemu_command(path, *client, p.rxq, i)
            );
        }
    }

    let modes = cfg
        .ports
        .iter()
        .map(|p| p.vlan.map_or(VlanMode::Trunk, VlanMode::Access))
        .collect();
    let shared = Arc::new(Shared {
        l2: L2::new(modes),
        fdb: Fdb::new(cfg.fdb_size, cfg.fdb_aging_s),
        pool: pool.clone(),
        stop: AtomicBool::new(false),
        now_s: Default::default(),
    });

    // PMD cores: their rx queues and one tx path per port.
    let mut cores: Vec<PmdCore> = Vec::new();
    let mut core_stats = Vec::new();
    for (k, &lcore) in cfg.pmd_cores.iter().enumerate() {
        let st = Arc::new(CoreStats::new());
        core_stats.push(st.clone());
        let mut c = PmdCore::new(lcore, shared.clone(), st, ports.len());
        for (p, q) in queues.iter().enumerate() {
            c.tx[p] = Some((q.tx_for_core)(k));
            c.classifiers[p] = cfg.ports[p].classifier.clone();
        }
        if k == 0 {
            // Validation allows GCLs with one PMD core only: it owns every stage.
            for (p, s) in stages.iter_mut().enumerate() {
                if let Some(stage) = s.take() {
                    c.gates[p] = Some(stage);
                    c.gated.push(p as u16);
                }
            }
            c.clock = Some(calibrator.clock());
        }
        cores.push(c);
    }
    for (lcore, p, q) in cfg.rxq_assignment() {
        let rxq = queues[p].rx[usize::from(q)].take().expect("assigned once");
        let core = cores
            .iter_mut()
            .find(|c| c.lcore == lcore)
            .expect("validated");
        tracing::info!(port = %cfg.ports[p].name, queue = q, core = lcore, "rx queue assigned");
        core.rxqs.push((p as u16, q, rxq));
    }
    drop(queues);

    let ctl = CtlServer::bind(&cfg.ctl_path)?;

    // Launch. From here on, cores spin.
    for mut c in cores {
        let lcore = c.lcore;
        eal.launch(lcore, move || c.run())?;
    }
    tracing::info!(
        ports = ports.len(),
        pmd_cores = ?cfg.pmd_cores,
        ctl = %cfg.ctl_path.display(),
        "forwarding"
    );

    // Control loop: vhost-user protocol, control socket, clock, aging, link changes.
    let start = Instant::now();
    let mut last_house = Instant::now() - Duration::from_secs(2);
    while !stop_signal.load(Ordering::Relaxed) {
        let now_s = start.elapsed().as_secs() as u32;
        shared.now_s.store(now_s, Ordering::Relaxed);
        wait_for_events(&ports, &ctl, Duration::from_millis(100));
        for p in ports.iter_mut() {
            if let Backend::Vhost(v) = &mut p.backend {
                serve_vhost(&p.spec.name, v, false);
            }
        }
        let now_ns = calibrator.now_ns();
        ctl.poll(|words| {
            if let ["gcl", name, file] = words {
                return replace_gcl(&mut ports, name, file, now_ns);
            }
            control(
                words,
                &ports,
                &core_stats,
                &shared,
                now_s,
                &pool,
                calibrator.stats(),
            )
        });
        if last_house.elapsed() >= Duration::from_secs(1) {
            last_house = Instant::now();
            let aged = shared.fdb.age(now_s);
            if aged > 0 {
                tracing::debug!(aged, "fdb entries aged out");
            }
            if let Err(e) = calibrator.calibrate() {
                tracing::warn!(error = %e, "clock calibration failed");
            }
            let now_ns = calibrator.now_ns();
            for (i, p) in ports.iter_mut().enumerate() {
                if let Backend::Vhost(v) = &mut p.backend {
                    serve_vhost(&p.spec.name, v, true);
                }
                if let Some(g) = &mut p.gate {
                    g.collect();
                    g.advance(now_ns);
                    if p.spec.speed_mbps.is_none() && p.link.1 > 0 {
                        g.set_link_speed(u64::from(p.link.1) * 1_000_000);
                    }
                }
                let l = p.link_now();
                if l.0 != p.link.0 {
                    tracing::info!(port = %p.spec.name, up = l.0, speed_mbps = l.1, "link changed");
                    if !l.0 {
                        shared.fdb.flush_port(i as u16);
                    }
                }
                p.link = l;
            }
        }
    }

    tracing::info!("stopping");
    shared.stop.store(true, Ordering::Relaxed);
    eal.wait_all();
    for (i, p) in ports.iter_mut().enumerate() {
        let t = stats::totals(&core_stats, i as u16);
        tracing::info!(
            port = %p.spec.name, rx = t.rx_packets, tx = t.tx_packets,
            drops = t.drops.values().sum::<u64>(), "final counters"
        );
        if let Backend::Eth(e) = &mut p.backend {
            e.stop();
        }
    }
    drop(ctl);
    drop(ports);
    Ok(())
}

/// Sleeps until a control-side socket is readable (or `timeout`): vhost-user sockets and
/// listeners, the control socket. Signals interrupt it.
fn wait_for_events(ports: &[Port], ctl: &CtlServer, timeout: Duration) {
    use std::os::fd::AsRawFd;
    let mut fds = vec![libc::pollfd {
        fd: ctl.raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    for p in ports {
        if let Backend::Vhost(v) = &p.backend {
            let fd = match (v.dev.socket(), &v.listener) {
                (Some(s), _) => s.as_raw_fd(),
                (None, Some(l)) => l.listener().as_raw_fd(),
                (None, None) => continue,
            };
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
    }
    // SAFETY: fds is a valid array of pollfd for the duration of the call.
    unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            timeout.as_millis() as i32,
        )
    };
}

/// The control side of one vhost-user port: accept or (re)connect, handle pending messages,
/// report broken queues once. `housekeeping` runs the once-a-second parts.
fn serve_vhost(name: &str, v: &mut VhostCtl, housekeeping: bool) {
    if !v.dev.is_connected() {
        let stream = match &v.listener {
            Some(l) => l.accept().ok(),
            None if housekeeping
                && v.last_try
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) =>
            {
                v.last_try = Some(Instant::now());
                std::os::unix::net::UnixStream::connect(&v.path).ok()
            }
            None => None,
        };
        if let Some(s) = stream {
            let _ = s.set_nonblocking(false);
            // A frontend that stops mid-message (or stops reading replies) must not hold the
            // control thread: the read/write fails, which is fatal, and the connection ends.
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
            tracing::info!(port = name, socket = %v.path.display(), "vhost-user frontend connected");
            v.dev.attach(s);
        }
    }
    // Handle what is pending, bounded so one chatty guest cannot starve the rest.
    for _ in 0..256 {
        if !v.dev.is_connected() {
            break;
        }
        match v.dev.poll_message(Duration::ZERO) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                if v.dev.is_connected() {
                    tracing::warn!(port = name, error = %e, "vhost-user request failed");
                } else {
                    tracing::info!(port = name, reason = %e, "vhost-user frontend disconnected");
                    break;
                }
            }
        }
    }
    // A frontend that shrank its memory file under us: the access faulted, the vhost crate's
    // SIGBUS guard swapped zero pages in; the frontend goes, the port waits for the next one.
    if v.dev.take_memory_fault() {
        tracing::error!(
            port = name,
            "guest memory file shrank under the switch (SIGBUS caught): frontend disconnected"
        );
    }
    if housekeeping {
        v.dev.service();
        for (i, logged) in v.broken_logged.iter_mut().enumerate() {
            let broken = v.dev.vring_broken(i as u16);
            if broken && !*logged {
                tracing::error!(
                    port = name,
                    vring = i,
                    "guest violated the virtio ring protocol: queue stopped until the guest resets it"
                );
            }
            *logged = broken;
        }
    }
}

/// `ctl gcl NAME FILE`: a new admin list for a gated port, as `tc qdisc replace ... taprio`
/// does: validated whole first (a bad file changes nothing), then it takes effect at its
/// ConfigChangeTime (its base-time, or its first cycle boundary after now when that is past,
/// cycle-time-extension applied to the running list as 802.1Qbv §Q.5 says).
fn replace_gcl(ports: &mut [Port], name: &str, file: &str, now_ns: u64) -> serde_json::Value {
    let Some(p) = ports.iter_mut().find(|p| p.spec.name == name) else {
        return json!({"error": format!("no port named '{name}'")});
    };
    let Some(g) = p.gate.as_mut() else {
        return json!({"error": format!(
            "port '{name}' has no gate stage: start the switch with --gcl {name}=FILE to gate it"
        )});
    };
    let (list, warnings) = match config::read_gcl(file) {
        Ok(x) => x,
        Err(e) => return json!({"error": e.to_string()}),
    };
    match g.install(list, now_ns) {
        Ok(inst) => {
            for w in &warnings {
                tracing::warn!(port = %name, "GCL {w}");
            }
            tracing::info!(
                port = %name, file, start_ns = inst.config_change_time,
                config_change_error = inst.config_change_error, "gate control list replaced"
            );
            json!({
                "port": name,
                "file": file,
                "config_change_time": inst.config_change_time,
                "config_change_error": inst.config_change_error,
                "warnings": warnings,
            })
        }
        Err(e) => json!({"error": format!("{file}: {e}")}),
    }
}

fn control(
    words: &[&str],
    ports: &[Port],
    cores: &[Arc<CoreStats>],
    shared: &Shared,
    now_s: u32,
    pool: &Mempool,
    clock: &crate::clock::CalibrationStats,
) -> serde_json::Value {
    match words {
        ["stats"] => {
            let ps: Vec<_> = ports
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let t = stats::totals(cores, i as u16);
                    let backend = match &p.backend {
                        Backend::Eth(e) => json!({
                            "kind": "dpdk",
                            "device": e.dev_name,
                            "mac": crate::wire::MacAddr(e.mac()).to_string(),
                        }),
                        Backend::Vhost(v) => {
                            let m = v.dev.metrics();
                            let c = v.dev.control_stats();
                            json!({
                                "kind": if v.listener.is_some() { "vhost-user" } else { "vhost-user-client" },
                                "socket": v.path.display().to_string(),
                                "connected": v.dev.is_connected(),
                                "queue_pairs": v.dev.queue_pairs(),
                                "ready_queue_pairs": v.dev.ready_queue_pairs(),
                                "features": format!("{:#x}", v.dev.acked_features().bits()),
                                "mtu": v.dev.mtu(),
                                "connections": c.connections,
                                "messages": c.messages,
                                "message_errors": c.errors,
                                "memory_faults": c.memory_faults,
                                "queue_errors": m.queue_errors,
                                "budget_stops": m.budget_stops,
                                "from_guest_packets": m.from_guest_packets,
                                "to_guest_packets": m.to_guest_packets,
                                "guest_drops": {
                                    "short": m.drop_short,
                                    "oversize": m.drop_oversize,
                                    "no_buffer": m.drop_no_buffer,
                                    "not_ready": m.drop_not_ready,
                                },
                                "notifications": m.notifications,
                                "vring_packets": (0..v.dev.queue_pairs() * 2)
                                    .map(|i| v.dev.vring_metrics(i).map_or(0, |m| m.packets.get()))
                                    .collect::<Vec<_>>(),
                            })
                        }
                    };
                    json!({
                        "name": p.spec.name,
                        "backend": backend,
                        "gate": p.gate.as_ref().map(|g| g.stats()),
                        "vlan": p.spec.vlan,
                        "link_up": p.link.0,
                        "speed_mbps": p.link.1,
                        "rx_packets": t.rx_packets,
                        "rx_bytes": t.rx_bytes,
                        "tx_packets": t.tx_packets,
                        "tx_bytes": t.tx_bytes,
                        "drops": t.drops,
                    })
                })
                .collect();
            let pmd: Vec<_> = cores
                .iter()
                .map(|c| {
                    json!({
                        "iterations": c.iterations.get(),
                        "busy_iterations": c.busy_iterations.get(),
                        "busy_cycles": c.busy_cycles.get(),
                        "idle_cycles": c.idle_cycles.get(),
                    })
                })
                .collect();
            json!({
                "ports": ps,
                "pmd": pmd,
                "tsc_hz": crate::dpdk::tsc_hz(),
                "fdb": {"entries": shared.fdb.len(), "capacity": shared.fdb.capacity()},
                "mbufs_free": pool.available(),
                "clock": clock,
            })
        }
        ["fdb"] => {
            let entries: Vec<_> = shared
                .fdb
                .entries(now_s)
                .into_iter()
                .map(|e| {
                    let name = ports
                        .get(usize::from(e.port))
                        .map_or("?", |p| p.spec.name.as_str());
                    json!({"mac": e.mac, "vlan": e.vlan, "port": name, "age_s": e.age_s})
                })
                .collect();
            json!({ "entries": entries })
        }
        ["xstats", name] => match ports.iter().find(|p| p.spec.name == *name) {
            Some(Port {
                backend: Backend::Eth(e),
                ..
            }) => json!(e
                .xstats()
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>()),
            Some(_) => json!({"error": format!("port '{name}' is not a DPDK port")}),
            None => json!({"error": format!("no port named '{name}'")}),
        },
        _ => json!({"error": format!(
            "unknown command '{}' (commands: stats, fdb, xstats NAME, gcl NAME FILE)",
            words.join(" ")
        )}),
    }
}
