//! Start-up, the control loop and shut-down. Everything that can fail on bad configuration
//! fails here, before any PMD core starts spinning.
//!
//! - [`ports`]: ports as the control side sees them, and how one is opened;
//! - [`event_loop`]: the control thread's loop and housekeeping;
//! - [`publish`]: how the port set reaches the PMD cores, and deleted ports are released;
//! - [`runtime`]: ports added and deleted while the switch runs;
//! - [`vhost`]: the control side of vhost-user ports;
//! - [`requests`]: what control-socket commands do.
mod event_loop;
mod ports;
mod publish;
mod requests;
mod runtime;
mod vhost;

use crate::cli::RunArgs;
use crate::clock::{Calibrator, ClockSpec, PortClock, Tsc};
use crate::config::{self, Config, PortKind, PortSpec};
use crate::ctl::CtlServer;
use crate::dpdk::{self, Eal, EalConfig, Mempool};
use crate::fdb::Fdb;
use crate::pmd::{PmdCore, Shared};
use crate::stats::CoreStats;
use crate::tas::{GateStage, StageConfig};
use anyhow::{Context, Result};
use event_loop::{ControlLoop, Start};
use ports::{open_port, Backend, Port};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Frames one PMD core may have in flight to the owner of one gated port. The owner drains its
/// rings every iteration, so they fill only while it is off its CPU (another lcore on the same
/// CPU runs for a scheduler slice of a few ms: 512 frames is ~6 ms at 80 kpps of 1500-byte
/// frames, a gigabit wire's worth); the gate's own queues (256 per class) do the queuing.
const HANDOFF_RING: usize = 512;

/// Turns the command line into a validated configuration (no side effects).
pub fn build_config(a: &RunArgs) -> Result<Config> {
    let mut ports = if a.ports.is_empty() {
        config::DEFAULT_PORTS
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<PortSpec>>>()?
    } else {
        a.ports.clone()
    };
    for rule in &a.tc_rules {
        if let crate::classify::PortMatch::Named(n) = &rule.port {
            if !ports.iter().any(|p| &p.name == n) {
                anyhow::bail!("--tc-rule {rule}: no port named '{n}'");
            }
        }
        for p in ports.iter_mut() {
            p.classifier
                .add_rule(&p.name, rule)
                .map_err(|e| anyhow::anyhow!("--tc-rule {rule}: port '{}': {e}", p.name))?;
        }
    }
    let cfg = Config {
        ports,
        main_core: a.main_core,
        pmd_cores: a.pmd_cores.0.clone(),
        rxq_affinity: a.rxq_affinity.clone(),
        fdb_size: a.fdb_size,
        fdb_aging_s: a.fdb_aging,
        ctl_path: a.ctl.clone(),
        ctl_group: a.ctl_group.clone(),
        mbufs: a.mbufs,
        mem_mb: a.mem,
        dpdk_log_level: config::dpdk_log_level(&a.log_level),
        gcls: a.gcls.clone(),
        clock: a.clock.clone(),
        tc_rules: a.tc_rules.clone(),
    };
    cfg.validate()?;
    Ok(cfg)
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
        pmd_lcores: cfg.pmd_cores.iter().map(|l| (l.id, l.cpu)).collect(),
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
    for spec in &cfg.ports {
        ports.push(open_port(spec, npmd, &pool)?);
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
    let calibrator = Calibrator::new(reference, Tsc, dpdk::tsc_hz())
        .with_context(|| format!("--clock {}", cfg.clock))?;

    // Which PMD core polls which rx queue (--rxq-affinity, else round-robin).
    let rxq_map: Vec<(u32, u16, u16)> = cfg
        .rxq_assignment()
        .into_iter()
        .map(|(lcore, p, q)| {
            tracing::info!(port = %cfg.ports[p].name, queue = q, core = lcore, "rx queue assigned");
            (lcore, p as u16, q)
        })
        .collect();

    // Gate stages: one per gated egress port, run by the core that polls the port's rx queue 0
    // (its owner; `--rxq-affinity NAME:0=LCORE` chooses it). Other cores hand it their frames.
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
        let driver = match &p.backend {
            Backend::Eth(e) => Some(e.info()?.driver),
            Backend::Vhost(_) => None,
        };
        if crate::tas::tx_queues_needed(&g.list) > p.tx_queues {
            anyhow::bail!(
                "--gcl {}={}: {}",
                g.port,
                g.path.display(),
                requests::queues_refusal(&g.port, p.tx_queues)
            );
        }
        let mbps = crate::tas::gate_link_mbps(driver.as_deref(), p.link.1, p.spec.speed_mbps)
            .map_err(|e| anyhow::anyhow!("port '{}': {e}", g.port))?;
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
        let owner = rxq_map
            .iter()
            .find(|&&(_, port, q)| usize::from(port) == i && q == 0)
            .map(|e| e.0)
            .expect("every port has rx queue 0");
        tracing::info!(
            port = %g.port, file = %g.path.display(), link_mbps = mbps, core = owner,
            start_ns = inst.config_change_time, "gate control list installed"
        );
        p.gate = Some(ctl);
        p.gate_core = Some(owner);
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

    let shared = Arc::new(Shared {
        fdb: Fdb::new(cfg.fdb_size, cfg.fdb_aging_s),
        pool: pool.clone(),
        stop: AtomicBool::new(false),
        now_s: Default::default(),
    });
    let core_stats: Vec<_> = cfg
        .pmd_cores
        .iter()
        .map(|_| Arc::new(CoreStats::new()))
        .collect();
    let mut control = ControlLoop::new(Start {
        ports,
        rxq_map,
        lcores: cfg.pmd_cores.clone(),
        core_stats: core_stats.clone(),
        shared: shared.clone(),
        pool,
        calibrator,
        clock: cfg.clock.clone(),
        tc_rules: cfg.tc_rules.clone(),
    });

    // PMD cores: each starts on its share of the port set, with the gate stages it owns, and a
    // ring to the owner of every other gated port.
    let owners: Vec<Option<u32>> = control
        .ports
        .iter()
        .map(|p| p.as_ref().and_then(|p| p.gate_core))
        .collect();
    let mut cores: Vec<PmdCore> = Vec::new();
    for (k, l) in cfg.pmd_cores.iter().enumerate() {
        let ports = control.core_ports_at_start(k);
        let mailbox = control.cores[k].mailbox.clone();
        let c = PmdCore::new(l.id, shared.clone(), core_stats[k].clone(), ports, mailbox);
        cores.push(c);
    }
    for (p, owner) in owners.iter().enumerate() {
        let Some(owner) = *owner else { continue };
        let k = cores
            .iter()
            .position(|c| c.lcore == owner)
            .expect("gate owners are PMD cores");
        cores[k].gates[p] = stages[p].take();
        cores[k].gated.push(p as u16);
        cores[k].clock = Some(control.calibrator.clock());
        for j in (0..cores.len()).filter(|&j| j != k) {
            let (tx, rx) = crate::tas::handoff::ring(HANDOFF_RING);
            cores[j].handoff[p] = Some(tx);
            cores[k].inbound.push((p as u16, rx));
        }
    }

    let mut ctl = CtlServer::bind(&cfg.ctl_path, cfg.ctl_group.as_ref())?;

    // Launch. From here on, cores spin.
    for mut c in cores {
        let lcore = c.lcore;
        eal.launch(lcore, move || c.run())?;
    }
    tracing::info!(
        ports = cfg.ports.len(),
        pmd_cores = %cfg.pmd_lcore_list(),
        ctl = %cfg.ctl_path.display(),
        "forwarding"
    );

    // Control loop: vhost-user protocol, control socket, clock, aging, link changes.
    control.run(&mut ctl, stop_signal);

    tracing::info!("stopping");
    shared.stop.store(true, Ordering::Relaxed);
    eal.wait_all();
    control.shutdown();
    drop(ctl);
    Ok(())
}
