//! Start-up, the control loop and shut-down. Everything that can fail on bad configuration
//! fails here, before any PMD core starts spinning.
use crate::cli::RunArgs;
use crate::config::{self, Config, PortKind, PortSpec, RxqAffinity};
use crate::ctl::CtlServer;
use crate::dpdk::{self, Eal, EalConfig, EthPort, Mempool, TxHandle};
use crate::fdb::Fdb;
use crate::forward::{VlanMode, L2};
use crate::pmd::{PmdCore, Shared};
use crate::stats::{self, CoreStats};
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
    let ports = port_args
        .iter()
        .map(|s| PortSpec::parse(s))
        .collect::<Result<Vec<_>>>()?;
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
    };
    cfg.validate()?;
    Ok(cfg)
}

/// A port as the control side sees it.
struct Port {
    spec: PortSpec,
    eth: EthPort,
    link: (bool, u32),
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
    let mut rxqs_by_port = Vec::new();
    let mut txqs_by_port = Vec::new();
    for spec in &cfg.ports {
        let PortKind::Dpdk { devargs } = &spec.kind;
        let mut eth = EthPort::open(devargs).with_context(|| format!("port '{}'", spec.name))?;
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
        let (rxqs, txqs) = eth
            .setup(spec.rxq, ntxq, 1024, &pool)
            .with_context(|| format!("port '{}'", spec.name))?;
        eth.set_promiscuous()
            .with_context(|| format!("port '{}'", spec.name))?;
        eth.start()
            .with_context(|| format!("port '{}'", spec.name))?;
        let link = eth.link();
        tracing::info!(
            port = %spec.name, driver = %info.driver, id = eth.id, rxq = spec.rxq, txq = ntxq,
            mac = %crate::wire::MacAddr(eth.mac()), vlan = ?spec.vlan,
            link = if link.0 { "up" } else { "down" },
            "port started"
        );
        rxqs_by_port.push(rxqs);
        txqs_by_port.push(
            txqs.into_iter()
                .map(|q| Arc::new((q, AtomicBool::new(false))))
                .collect::<Vec<_>>(),
        );
        ports.push(Port {
            spec: spec.clone(),
            eth,
            link,
        });
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

    // PMD cores: their rx queues and one tx handle per port.
    let mut cores: Vec<PmdCore> = Vec::new();
    let mut core_stats = Vec::new();
    for (k, &lcore) in cfg.pmd_cores.iter().enumerate() {
        let st = Arc::new(CoreStats::new());
        core_stats.push(st.clone());
        let mut c = PmdCore::new(lcore, shared.clone(), st, ports.len());
        for (p, txqs) in txqs_by_port.iter().enumerate() {
            let shared_q = txqs.len() < cfg.pmd_cores.len();
            c.tx[p] = Some(TxHandle::new(txqs[k % txqs.len()].clone(), shared_q));
        }
        cores.push(c);
    }
    let mut rxqs_by_port: Vec<Vec<Option<dpdk::RxQueue>>> = rxqs_by_port
        .into_iter()
        .map(|v| v.into_iter().map(Some).collect())
        .collect();
    for (lcore, p, q) in cfg.rxq_assignment() {
        let rxq = rxqs_by_port[p][usize::from(q)]
            .take()
            .expect("assigned once");
        let core = cores
            .iter_mut()
            .find(|c| c.lcore == lcore)
            .expect("validated");
        tracing::info!(port = %cfg.ports[p].name, queue = q, core = lcore, "rx queue assigned");
        core.rxqs.push((p as u16, rxq));
    }

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

    // Control loop: clock, aging, link changes, control socket.
    let start = Instant::now();
    let mut last_house = Instant::now();
    while !stop_signal.load(Ordering::Relaxed) {
        let now_s = start.elapsed().as_secs() as u32;
        shared.now_s.store(now_s, Ordering::Relaxed);
        if last_house.elapsed() >= Duration::from_secs(1) {
            last_house = Instant::now();
            let aged = shared.fdb.age(now_s);
            if aged > 0 {
                tracing::debug!(aged, "fdb entries aged out");
            }
            for p in ports.iter_mut() {
                let l = p.eth.link();
                if l.0 != p.link.0 {
                    tracing::info!(port = %p.spec.name, up = l.0, speed_mbps = l.1, "link changed");
                }
                p.link = l;
            }
        }
        ctl.poll(|words| control(words, &ports, &core_stats, &shared, now_s, &pool));
        std::thread::sleep(Duration::from_millis(20));
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
        p.eth.stop();
    }
    drop(ctl);
    drop(ports);
    Ok(())
}

fn control(
    words: &[&str],
    ports: &[Port],
    cores: &[Arc<CoreStats>],
    shared: &Shared,
    now_s: u32,
    pool: &Mempool,
) -> serde_json::Value {
    match words {
        ["stats"] => {
            let ps: Vec<_> = ports
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let t = stats::totals(cores, i as u16);
                    json!({
                        "name": p.spec.name,
                        "kind": "dpdk",
                        "device": p.eth.dev_name,
                        "vlan": p.spec.vlan,
                        "link_up": p.link.0,
                        "speed_mbps": p.link.1,
                        "mac": crate::wire::MacAddr(p.eth.mac()).to_string(),
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
                .map(|c| json!({"iterations": c.iterations.get(), "busy_iterations": c.busy_iterations.get()}))
                .collect();
            json!({
                "ports": ps,
                "pmd": pmd,
                "fdb": {"entries": shared.fdb.len(), "capacity": shared.fdb.capacity()},
                "mbufs_free": pool.available(),
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
            Some(p) => json!(p
                .eth
                .xstats()
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>()),
            None => json!({"error": format!("no port named '{name}'")}),
        },
        _ => json!({"error": format!(
            "unknown command '{}' (commands: stats, fdb, xstats NAME)",
            words.join(" ")
        )}),
    }
}
