//! Ports as the control side sees them, and how one is opened: a DPDK ethdev or a vhost-user
//! device, with the queues handed to the PMD cores.
use crate::config::{PortKind, PortSpec};
use crate::dpdk::{EthPort, Mempool, TxHandle};
use crate::port::{RxPort, SpinLock, TxPort, VhostRx, VhostTx};
use crate::tas::GateControl;
use anyhow::{Context, Result};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// A vhost-user port's control side: the device state machine and its socket.
pub(super) struct VhostCtl {
    pub(super) dev: vhost::VhostUserNet,
    pub(super) path: std::path::PathBuf,
    pub(super) listener: Option<vhost::Listener>,
    /// Client mode: when the last connection attempt was made.
    pub(super) last_try: Option<Instant>,
    /// Vrings whose breakage has been logged (one error log per episode).
    pub(super) broken_logged: Vec<bool>,
    /// After a failed accept (out of fds, ...): the listener is left alone until then, as it
    /// stays readable and would spin the loop.
    pub(super) accept_paused_until: Option<Instant>,
    /// An accept failure was logged and no accept has worked since (one log per episode).
    pub(super) accept_failing: bool,
}

pub(super) enum Backend {
    Eth(EthPort),
    Vhost(Box<VhostCtl>),
}

/// A port as the control side sees it.
pub(super) struct Port {
    pub(super) spec: PortSpec,
    pub(super) backend: Backend,
    pub(super) link: (bool, u32),
    /// Tx queues a gate control list's `queues` map may name: the ethdev's tx queues, or the
    /// guest RX queues of the queue pairs a vhost-user port offers.
    pub(super) tx_queues: u16,
    /// The control side of the port's gate stage, if it has a GCL.
    pub(super) gate: Option<GateControl>,
    /// The lcore that runs the port's gate stage (it polls the port's rx queue 0).
    pub(super) gate_core: Option<u32>,
    /// Its rx queues not yet handed to a core, and how to make each core's tx path.
    pub(super) queues: PortQueues,
}

impl Port {
    pub(super) fn link_now(&self) -> (bool, u32) {
        match &self.backend {
            Backend::Eth(e) => e.link(),
            Backend::Vhost(v) => (v.dev.link_up(), 0),
        }
    }
}

/// Per-port queues handed to the PMD cores: rx queues, and the tx path each core uses.
pub(super) struct PortQueues {
    pub(super) rx: Vec<Option<RxPort>>,
    pub(super) tx_for_core: Box<dyn Fn(usize) -> TxPort>,
}

/// Opens the port `spec` describes (probe, configure, start; or bind/prepare the vhost-user
/// socket). On error nothing stays open.
pub(super) fn open_port(spec: &PortSpec, npmd: u16, pool: &Arc<Mempool>) -> Result<Port> {
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
            // One tx queue per PMD core where the device has enough (otherwise cores share), and
            // at least one per traffic class the device can give, for a gate control list's
            // `queues` map (the I210 has 4).
            let ntxq = npmd
                .max(u16::from(gcl::MAX_TC))
                .min(info.max_tx_queues)
                .max(1);
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
            let txqs: Arc<[_]> = txqs
                .into_iter()
                .map(|q| Arc::new((q, AtomicBool::new(false))))
                .collect();
            let shared = usize::from(ntxq) < usize::from(npmd);
            let queues = PortQueues {
                rx: rxqs.into_iter().map(|q| Some(RxPort::Eth(q))).collect(),
                tx_for_core: Box::new(move |k| TxPort::Eth(TxHandle::new(txqs.clone(), k, shared))),
            };
            Ok(Port {
                spec: spec.clone(),
                backend: Backend::Eth(eth),
                link,
                tx_queues: ntxq,
                gate: None,
                gate_core: None,
                queues,
            })
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
                rx.push(Some(RxPort::Vhost(VhostRx::new(r))));
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
            Ok(Port {
                spec: spec.clone(),
                backend: Backend::Vhost(Box::new(VhostCtl {
                    dev,
                    path: path.clone(),
                    listener,
                    last_try: None,
                    broken_logged: vec![false; nvrings],
                    accept_paused_until: None,
                    accept_failing: false,
                })),
                link: (false, 0),
                tx_queues: spec.rxq,
                gate: None,
                gate_core: None,
                queues,
            })
        }
    }
}
