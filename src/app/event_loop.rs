//! The control loop: one thread, woken by its sockets or its next deadline, serving the
//! vhost-user frontends, the control socket and the once-a-second housekeeping (FDB aging,
//! clock calibration, gate list staging, link changes).
use super::ports::{Backend, Port};
use super::publish::{CoreLink, Retiring};
use super::vhost::serve_vhost;
use crate::classify::TcRule;
use crate::clock::{Calibrator, ClockSpec};
use crate::config::Lcore;
use crate::ctl::CtlServer;
use crate::dpdk::Mempool;
use crate::pmd::Shared;
use crate::stats::{self, CoreStats};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything the control thread owns once the PMD cores run.
pub(super) struct ControlLoop {
    /// Port slots by id (the index PMD cores, counters and the FDB use); `None` is free, or
    /// held by a deleted port still being released (see `retiring`).
    pub(super) ports: Vec<Option<Port>>,
    pub(super) core_stats: Vec<Arc<CoreStats>>,
    pub(super) shared: Arc<Shared>,
    pub(super) pool: Arc<Mempool>,
    pub(super) calibrator: Calibrator,
    /// The lcore (id and CPU) of each PMD core, in the order of `core_stats`.
    pub(super) pmd_lcores: Vec<Lcore>,
    /// Which PMD core polls which rx queue: (lcore, port id, queue). Kept up to date when ports
    /// come and go; `ctl show pmd` reads it.
    pub(super) rxq_map: Vec<(u32, u16, u16)>,
    /// Where `ctl stats clear` put zero.
    pub(super) baseline: super::requests::Baseline,
    /// The PMD cores as the control thread publishes port sets to them.
    pub(super) cores: Vec<CoreLink>,
    /// Generation of the port set: every add and delete makes a new one.
    pub(super) gen: u64,
    /// Deleted ports waiting for every PMD core to let go of them.
    pub(super) retiring: Vec<Retiring>,
    /// The port whose clock the gates follow (`--clock port:NAME`): it cannot be deleted.
    pub(super) clock_port: Option<String>,
    /// `--clock`: what a new list's `clockid` is checked against.
    pub(super) clock: ClockSpec,
    /// `--tc-rule`s, for ports added at runtime.
    pub(super) tc_rules: Vec<TcRule>,
    /// When the loop started: the FDB's seconds count from here.
    start: Instant,
    last_house: Instant,
}

/// What the control loop starts from (`ControlLoop::new`).
pub(super) struct Start {
    pub(super) ports: Vec<Port>,
    pub(super) rxq_map: Vec<(u32, u16, u16)>,
    pub(super) lcores: Vec<Lcore>,
    pub(super) core_stats: Vec<Arc<CoreStats>>,
    pub(super) shared: Arc<Shared>,
    pub(super) pool: Arc<Mempool>,
    pub(super) calibrator: Calibrator,
    pub(super) clock: ClockSpec,
    pub(super) tc_rules: Vec<TcRule>,
}

impl ControlLoop {
    pub(super) fn new(s: Start) -> ControlLoop {
        let now = Instant::now();
        ControlLoop {
            ports: s.ports.into_iter().map(Some).collect(),
            core_stats: s.core_stats,
            shared: s.shared,
            pool: s.pool,
            calibrator: s.calibrator,
            pmd_lcores: s.lcores.clone(),
            rxq_map: s.rxq_map,
            baseline: Default::default(),
            cores: s.lcores.iter().map(|l| CoreLink::new(l.id)).collect(),
            gen: 0,
            retiring: Vec::new(),
            clock_port: match &s.clock {
                ClockSpec::Port(name) => Some(name.clone()),
                _ => None,
            },
            clock: s.clock,
            tc_rules: s.tc_rules,
            start: now,
            last_house: now - Duration::from_secs(2),
        }
    }

    /// The ports with their ids (the index PMD cores, counters and the FDB use).
    pub(super) fn ports(&self) -> impl Iterator<Item = (u16, &Port)> {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i as u16, p.as_ref()?)))
    }

    /// The port named `name`, with its id.
    pub(super) fn port_named(&self, name: &str) -> Option<(u16, &Port)> {
        self.ports().find(|(_, p)| p.spec.name == name)
    }

    /// The port named `name`, mutably, with its id.
    pub(super) fn port_named_mut(&mut self, name: &str) -> Option<(u16, &mut Port)> {
        self.ports
            .iter_mut()
            .enumerate()
            .filter_map(|(i, p)| Some((i as u16, p.as_mut()?)))
            .find(|(_, p)| p.spec.name == name)
    }

    /// Seconds since start (the FDB's clock).
    pub(super) fn now_s(&self) -> u32 {
        self.start.elapsed().as_secs() as u32
    }

    /// Serves until `stop` is set (SIGINT/SIGTERM).
    pub(super) fn run(&mut self, ctl: &mut CtlServer, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let now_s = self.now_s();
            self.shared.now_s.store(now_s, Ordering::Relaxed);
            // A port set in flight is taken back, and a deleted port released, within a
            // millisecond or two of the cores moving on; otherwise sleep until a socket wakes us.
            let busy = self.publication_pending();
            let timeout = Duration::from_millis(if busy { 1 } else { 100 });
            self.wait_for_events(ctl, timeout);
            self.sync_cores();
            for p in self.ports.iter_mut().flatten() {
                if let Backend::Vhost(v) = &mut p.backend {
                    serve_vhost(&p.spec.name, v, false);
                }
            }
            ctl.poll(|req, stats| self.handle(req, stats));
            if self.last_house.elapsed() >= Duration::from_secs(1) {
                self.last_house = Instant::now();
                self.housekeeping(now_s);
            }
        }
    }

    /// The once-a-second work.
    fn housekeeping(&mut self, now_s: u32) {
        let aged = self.shared.fdb.age(now_s);
        if aged > 0 {
            tracing::debug!(aged, "fdb entries aged out");
        }
        if let Err(e) = self.calibrator.calibrate() {
            tracing::warn!(error = %e, "clock calibration failed");
        }
        let now_ns = self.calibrator.now_ns();
        for (i, p) in self.ports.iter_mut().enumerate() {
            let Some(p) = p else { continue };
            if let Backend::Vhost(v) = &mut p.backend {
                serve_vhost(&p.spec.name, v, true);
            }
            if let Some(g) = &mut p.gate {
                g.collect();
                g.advance(now_ns);
                // (Only NICs get here without speed=: their negotiated speed, once known.)
                if p.spec.speed_mbps.is_none() && p.link.1 > 0 && p.link.1 != u32::MAX {
                    g.set_link_speed(u64::from(p.link.1) * 1_000_000);
                }
            }
            let l = p.link_now();
            if l.0 != p.link.0 {
                tracing::info!(port = %p.spec.name, up = l.0, speed_mbps = l.1, "link changed");
                if !l.0 {
                    self.shared.fdb.flush_port(i as u16);
                }
            }
            p.link = l;
        }
    }

    /// Logs each port's final counters and stops its device (after the PMD cores stopped).
    pub(super) fn shutdown(mut self) {
        for r in &mut self.retiring {
            if let Backend::Eth(e) = &mut r.port.backend {
                e.stop();
            }
        }
        for (i, p) in self.ports.iter_mut().enumerate() {
            let Some(p) = p else { continue };
            let t = stats::totals(&self.core_stats, i as u16);
            tracing::info!(
                port = %p.spec.name, rx = t.rx_packets, tx = t.tx_packets,
                drops = t.drops.values().sum::<u64>(), "final counters"
            );
            if let Backend::Eth(e) = &mut p.backend {
                e.stop();
            }
        }
    }

    /// Sleeps until a control-side socket is ready (or `timeout`, or the earliest deadline a
    /// vhost-user device or a control connection asks for: a pending GET_VRING_BASE, a started
    /// message, buffered messages, a control request's deadline): vhost-user connections
    /// (read/write as each wants) and listeners, the control socket and its connections (read
    /// while a request comes in, write while a reply goes out). Signals interrupt it.
    fn wait_for_events(&self, ctl: &CtlServer, timeout: Duration) {
        use std::os::fd::AsRawFd;
        let now = Instant::now();
        let mut timeout = timeout;
        if let Some(d) = ctl.next_deadline() {
            timeout = timeout.min(d.saturating_duration_since(now));
        }
        let mut fds = Vec::new();
        ctl.pollfds(&mut fds);
        for (_, p) in self.ports() {
            let Backend::Vhost(v) = &p.backend else {
                continue;
            };
            if let Some(d) = v.dev.next_deadline() {
                timeout = timeout.min(d.saturating_duration_since(now));
            }
            let (fd, events) = match (v.dev.poll_interest(), &v.listener) {
                (Some(i), _) => (
                    i.fd,
                    if i.read { libc::POLLIN } else { 0 } | if i.write { libc::POLLOUT } else { 0 },
                ),
                // After a failed accept the listener is left alone until the pause ends.
                (None, Some(l)) => match v.accept_paused_until {
                    Some(t) if now < t => {
                        timeout = timeout.min(t - now);
                        continue;
                    }
                    _ => (l.listener().as_raw_fd(), libc::POLLIN),
                },
                (None, None) => continue,
            };
            // A connection that wants nothing now (input full behind a pending reply) is not
            // polled: a hung-up peer would wake the loop for nothing; its deadline brings us back.
            if events != 0 {
                fds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
            }
        }
        // Round up: a deadline a fraction of a millisecond away must not be spun on.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: fds is a valid array of pollfd for the duration of the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    }
}
