//! What the control socket's requests do: they read or change the control loop's state.
use super::event_loop::ControlLoop;
use super::ports::{Backend, Port};
use crate::config::PortKind;
use crate::ctl::protocol::{
    ClockShow, FdbRow, GclEntryShow, GclListShow, GclShow, PmdRow, PortRow, RxqRow,
};
use crate::ctl::{Reply, Request, ServerStats, ShowWhat};
use crate::forward::MAX_PORTS;
use crate::stats::{self, CoreStats, PortTotals};
use serde_json::json;
use std::collections::BTreeSet;

/// The counters as they were at the last `ctl stats clear`: what is shown is the difference.
/// PMD cores own their counters (single writer, plain stores), so the control side never resets
/// them; it remembers where zero is.
#[derive(Default)]
pub(super) struct Baseline {
    /// By port id; none: zero.
    ports: Vec<Option<PortTotals>>,
    /// By PMD core (index into the core stats).
    cores: Vec<CoreSnapshot>,
}

/// One PMD core's load counters (and the frames it received) at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct CoreSnapshot {
    iterations: u64,
    busy_iterations: u64,
    busy_cycles: u64,
    idle_cycles: u64,
    stalled_cycles: u64,
    packets: u64,
}

impl CoreSnapshot {
    fn of(c: &CoreStats) -> CoreSnapshot {
        CoreSnapshot {
            iterations: c.iterations.get(),
            busy_iterations: c.busy_iterations.get(),
            busy_cycles: c.busy_cycles.get(),
            idle_cycles: c.idle_cycles.get(),
            stalled_cycles: c.stalled_cycles.get(),
            packets: (0..MAX_PORTS).map(|p| c.ports[p].rx_packets.get()).sum(),
        }
    }

    fn since(self, base: CoreSnapshot) -> CoreSnapshot {
        CoreSnapshot {
            iterations: self.iterations.saturating_sub(base.iterations),
            busy_iterations: self.busy_iterations.saturating_sub(base.busy_iterations),
            busy_cycles: self.busy_cycles.saturating_sub(base.busy_cycles),
            idle_cycles: self.idle_cycles.saturating_sub(base.idle_cycles),
            stalled_cycles: self.stalled_cycles.saturating_sub(base.stalled_cycles),
            packets: self.packets.saturating_sub(base.packets),
        }
    }
}

fn totals_since(mut t: PortTotals, base: Option<&PortTotals>) -> PortTotals {
    if let Some(b) = base {
        t.rx_packets = t.rx_packets.saturating_sub(b.rx_packets);
        t.rx_bytes = t.rx_bytes.saturating_sub(b.rx_bytes);
        t.tx_packets = t.tx_packets.saturating_sub(b.tx_packets);
        t.tx_bytes = t.tx_bytes.saturating_sub(b.tx_bytes);
        for (k, v) in t.drops.iter_mut() {
            *v = v.saturating_sub(b.drops.get(k).copied().unwrap_or(0));
        }
    }
    t
}

/// A GCL parse error's reason without anything taken from the text (a reply to `ctl gcl` never
/// echoes file content, only line numbers and reasons).
fn reason_without_tokens(kind: &gcl::ErrorKind) -> String {
    use gcl::ErrorKind as K;
    match kind {
        K::UnknownKeyword(_) => "unknown keyword (expected num_tc, map, queues, base-time, \
             cycle-time, cycle-time-extension, sched-entry, max-sdu, clockid, flags or \
             txtime-delay)"
            .into(),
        K::BadValue {
            keyword, expected, ..
        } => format!("the value after `{keyword}` is not {expected}"),
        K::NumberOverflows { keyword, .. } => {
            format!("the value after `{keyword}` does not fit in 64 bits")
        }
        K::ExtraToken { keyword, .. } => {
            format!("unexpected token after the value of `{keyword}`")
        }
        K::QueuesZeroCount(_) => "a queues pair has a zero count".into(),
        K::QueuesValueTooLarge(_) => "a queues pair has a number past 65535".into(),
        K::UnknownCommand(_) => "unknown sched-entry command (expected S, H or R)".into(),
        K::UnknownClockid(_) => "unknown clockid (expected CLOCK_TAI, CLOCK_REALTIME, \
             CLOCK_MONOTONIC or CLOCK_BOOTTIME)"
            .into(),
        K::LeadingZero { keyword, .. } => format!(
            "the value after `{keyword}` starts with 0, which tc reads as octal: write it in \
             decimal without the 0, or in hex with 0x"
        ),
        K::NotAQdiscCommand(_) => "a gate control list is a `tc qdisc add|replace|change ... \
             taprio ...` command"
            .into(),
        K::QdiscVerb(_) => "the `tc qdisc` command sets no schedule (expected add, replace \
             or change)"
            .into(),
        K::QdiscOption(_) => "an option before `taprio` this switch does not read (expected \
             dev, parent, root or handle)"
            .into(),
        K::NotTaprio(_) => "the qdisc is not taprio".into(),
        K::JsonUnknownMember { at, .. } => format!("unknown member in `{at}`"),
        K::JsonOperation { at, .. } => format!(
            "the operation-name in `{at}` is not an operation of ieee802-dot1q-sched \
             (set-gate-states, set-and-hold-mac or set-and-release-mac)"
        ),
        // The others carry no text of the file, only numbers it was checked as, names this
        // switch knows, JSON paths built from those and indices, or serde_json's own reasons.
        K::DuplicateKeyword { .. }
        | K::MissingKeyword(_)
        | K::NoSchedEntry
        | K::MissingValue { .. }
        | K::NumTcOutOfRange(_)
        | K::MapHasWrongLength(_)
        | K::MapClassBeyondNumTc { .. }
        | K::QueuesCountMismatch { .. }
        | K::QueuesOverlap { .. }
        | K::MaskClassBeyondNumTc { .. }
        | K::IntervalIsZero
        | K::IntervalsOverflow
        | K::CycleTimeIsZero
        | K::FirstCycleOverflows
        | K::MaxSduBeyondNumTc { .. }
        | K::MaxSduTooLarge { .. }
        | K::UnknownFlags(_)
        | K::FlagsExclusive
        | K::TxtimeDelayWithoutAssist
        | K::MissingTaprio
        | K::SecondCommand
        | K::JsonSyntax { .. }
        | K::JsonValue { .. }
        | K::JsonMissing(_)
        | K::JsonTwice { .. }
        | K::JsonNoTable
        | K::JsonSeveralTables { .. }
        | K::JsonGateDisabled
        | K::JsonCycleTime { .. }
        | K::JsonDuplicateIndex { .. } => kind.to_string(),
    }
}

fn list_show(l: &gcl::GateControlList, start_ns: u64) -> GclListShow {
    let mut offset = 0u64;
    GclListShow {
        start_ns,
        base_time: l.base_time(),
        cycle_time: l.cycle_time(),
        cycle_time_extension: l.cycle_time_extension(),
        num_tc: l.num_tc(),
        map: l.map().to_vec(),
        clockid: l.clockid().map(|c| c.name().to_owned()),
        max_sdu: if l.has_max_sdu() {
            l.max_sdu()[..usize::from(l.num_tc())].to_vec()
        } else {
            Vec::new()
        },
        queues: l
            .queues()
            .map(|q| q.iter().map(|q| (q.count, q.offset)).collect())
            .unwrap_or_default(),
        entries: l
            .entries()
            .iter()
            .map(|e| {
                let row = GclEntryShow {
                    command: e.command.letter(),
                    gates: e.gates,
                    offset_ns: offset,
                    interval_ns: e.interval,
                };
                offset = offset.saturating_add(e.interval);
                row
            })
            .collect(),
    }
}

impl ControlLoop {
    /// Answers one control-socket request.
    pub(super) fn handle(&mut self, req: Request, ctl: &ServerStats) -> Reply {
        match req {
            Request::Stats => Reply::Ok(self.stats_json(ctl)),
            Request::StatsClear => self.stats_clear(),
            Request::Fdb => Reply::Ok(json!({ "entries": self.fdb_rows() })),
            Request::FdbFlush { port } => self.fdb_flush(port.as_deref()),
            Request::Xstats { port } => self.xstats(&port),
            Request::Gcl { port, text } => self.replace_gcl(&port, &text),
            Request::PortAdd { spec } => {
                let added = crate::config::PortSpec::parse(&spec).and_then(|spec| {
                    let name = spec.name.clone();
                    self.add_port(spec).map(|v| (name, v))
                });
                match added {
                    Ok((name, v)) => {
                        // A new port's counters start at zero, whatever its id counted before.
                        if let Some((id, _)) = self.port_named(&name) {
                            self.set_port_baseline(id);
                        }
                        Reply::Ok(v)
                    }
                    Err(e) => Reply::error(format!("{e:#}")),
                }
            }
            Request::PortDel { name } => match self.del_port(&name) {
                Ok(v) => Reply::Ok(v),
                Err(e) => Reply::error(format!("{e:#}")),
            },
            Request::Show(what) => self.show(what),
        }
    }

    fn show(&mut self, what: ShowWhat) -> Reply {
        let v = match what {
            ShowWhat::Ports => serde_json::to_value(self.port_rows()),
            ShowWhat::Pmd => serde_json::to_value(self.pmd_rows()),
            ShowWhat::Fdb => serde_json::to_value(self.fdb_rows()),
            ShowWhat::Gcl { port } => match self.gcl_show(&port) {
                Ok(g) => serde_json::to_value(g),
                Err(e) => return Reply::Error(e),
            },
            ShowWhat::Clock => serde_json::to_value(self.clock_show()),
        };
        v.map_or_else(
            |e| Reply::error(format!("cannot encode the reply: {e}")),
            Reply::Ok,
        )
    }

    /// Port `id`'s counters since the last clear.
    fn port_totals(&self, id: u16) -> PortTotals {
        let base = self
            .baseline
            .ports
            .get(usize::from(id))
            .and_then(Option::as_ref);
        totals_since(stats::totals(&self.core_stats, id), base)
    }

    /// PMD core `k`'s load since the last clear.
    fn core_load(&self, k: usize) -> CoreSnapshot {
        let now = CoreSnapshot::of(&self.core_stats[k]);
        now.since(self.baseline.cores.get(k).copied().unwrap_or_default())
    }

    fn set_port_baseline(&mut self, id: u16) {
        let i = usize::from(id);
        if self.baseline.ports.len() <= i {
            self.baseline.ports.resize(i + 1, None);
        }
        self.baseline.ports[i] = Some(stats::totals(&self.core_stats, id));
    }

    fn stats_clear(&mut self) -> Reply {
        let ids: Vec<u16> = self.ports().map(|(i, _)| i).collect();
        for id in ids {
            self.set_port_baseline(id);
        }
        self.baseline.cores = self
            .core_stats
            .iter()
            .map(|c| CoreSnapshot::of(c))
            .collect();
        Reply::Ok(json!({
            "cleared": ["ports", "pmd"],
            "kept": "vhost-user, gate and clock counters run on"
        }))
    }

    fn stats_json(&self, ctl: &ServerStats) -> serde_json::Value {
        let ps: Vec<_> = self
            .ports()
            .map(|(i, p)| {
                let t = self.port_totals(i);
                json!({
                    "name": p.spec.name,
                    "backend": backend_json(p),
                    "gate": p.gate.as_ref().map(|g| g.stats()),
                    "gate_core": p.gate_core,
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
        let pmd: Vec<_> = (0..self.core_stats.len())
            .map(|k| {
                let c = self.core_load(k);
                let l = self.pmd_lcores.get(k);
                json!({
                    "core": l.map(|l| l.id),
                    "cpu": l.map(|l| l.cpu),
                    "iterations": c.iterations,
                    "busy_iterations": c.busy_iterations,
                    "busy_cycles": c.busy_cycles,
                    "idle_cycles": c.idle_cycles,
                    "stalled_cycles": c.stalled_cycles,
                })
            })
            .collect();
        json!({
            "ports": ps,
            "pmd": pmd,
            "tsc_hz": crate::dpdk::tsc_hz(),
            "fdb": {"entries": self.shared.fdb.len(), "capacity": self.shared.fdb.capacity()},
            "mbufs_free": self.pool.available(),
            "clock": self.calibrator.stats(),
            "ctl": ctl,
        })
    }

    fn port_name(&self, id: u16) -> &str {
        self.ports()
            .find(|(i, _)| *i == id)
            .map_or("?", |(_, p)| p.spec.name.as_str())
    }

    fn fdb_rows(&self) -> Vec<FdbRow> {
        let mut rows: Vec<FdbRow> = self
            .shared
            .fdb
            .entries(self.now_s())
            .into_iter()
            .map(|e| FdbRow {
                port: self.port_name(e.port).to_string(),
                mac: e.mac,
                vlan: e.vlan,
                age_s: e.age_s,
            })
            .collect();
        rows.sort_by(|a, b| (&a.port, a.vlan, &a.mac).cmp(&(&b.port, b.vlan, &b.mac)));
        rows
    }

    fn fdb_flush(&mut self, port: Option<&str>) -> Reply {
        let fdb = &self.shared.fdb;
        match port {
            Some(name) => match self.port_named(name) {
                Some((id, _)) => Reply::Ok(json!({"port": name, "flushed": fdb.flush_port(id)})),
                None => Reply::error(format!("no port named '{name}'")),
            },
            None => {
                let ids: BTreeSet<u16> = fdb.entries(0).iter().map(|e| e.port).collect();
                let n: usize = ids.into_iter().map(|id| fdb.flush_port(id)).sum();
                Reply::Ok(json!({ "flushed": n }))
            }
        }
    }

    fn xstats(&self, name: &str) -> Reply {
        match self.port_named(name).map(|(_, p)| p) {
            Some(Port {
                backend: Backend::Eth(e),
                ..
            }) => Reply::Ok(json!(e
                .xstats()
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>())),
            Some(_) => Reply::error(format!("port '{name}' is not a DPDK port")),
            None => Reply::error(format!("no port named '{name}'")),
        }
    }

    /// `ctl gcl PORT FILE`: a new admin list for a gated port, as `tc qdisc replace ... taprio`
    /// does: validated whole first (a bad text, or a clockid that is not the gates' clock,
    /// changes nothing), then it takes effect at its
    /// ConfigChangeTime (its base-time, or its first cycle boundary after now when that is past,
    /// cycle-time-extension applied to the running list as 802.1Qbv §Q.5 says). The text comes
    /// over the socket: the switch opens no file for it.
    fn replace_gcl(&mut self, name: &str, text: &str) -> Reply {
        let now_ns = self.calibrator.now_ns();
        match self.port_named(name) {
            None => return Reply::error(format!("no port named '{name}'")),
            Some((_, p)) if p.gate.is_none() => {
                return Reply::error(format!(
                    "port '{name}' has no gate stage: start the switch with --gcl {name}=FILE to gate it"
                ))
            }
            Some(_) => {}
        }
        // Any format gcl reads; an 802.1Qcw document with several interfaces is read for the
        // one named like the port.
        let parsed = match gcl::parse_for(text, Some(name)) {
            Ok(p) => p,
            Err(e) => {
                return Reply::GclSyntax {
                    line: e.line,
                    reason: reason_without_tokens(&e.kind),
                }
            }
        };
        if let Err(e) = self.clock.check_clockid(parsed.list.clockid()) {
            return Reply::GclRefused(e.to_string());
        }
        let Some((_, p)) = self.port_named_mut(name) else {
            return Reply::error(format!("no port named '{name}'"));
        };
        if crate::tas::tx_queues_needed(&parsed.list) > p.tx_queues {
            return Reply::GclRefused(queues_refusal(name, p.tx_queues));
        }
        let Some(g) = p.gate.as_mut() else {
            return Reply::error(format!("port '{name}' has no gate stage"));
        };
        let warnings: Vec<String> = parsed
            .warnings
            .iter()
            .map(|w| format!("line {}: {}", w.line, w.kind))
            .collect();
        match g.install(parsed.list, now_ns) {
            Ok(inst) => {
                for w in &warnings {
                    tracing::warn!(port = %name, "GCL {w}");
                }
                tracing::info!(
                    port = %name, start_ns = inst.config_change_time,
                    config_change_error = inst.config_change_error, "gate control list replaced"
                );
                Reply::Ok(json!({
                    "port": name,
                    "config_change_time": inst.config_change_time,
                    "config_change_error": inst.config_change_error,
                    "warnings": warnings,
                }))
            }
            Err(e) => Reply::GclRefused(e.to_string()),
        }
    }

    fn port_rows(&self) -> Vec<PortRow> {
        self.ports()
            .map(|(id, p)| {
                let (kind, target) = match &p.spec.kind {
                    PortKind::Dpdk { devargs } => ("dpdk", devargs.clone()),
                    PortKind::VhostUser { path, client } => (
                        if *client {
                            "vhost-user-client"
                        } else {
                            "vhost-user"
                        },
                        path.display().to_string(),
                    ),
                };
                let t = self.port_totals(id);
                PortRow {
                    id,
                    name: p.spec.name.clone(),
                    kind: kind.into(),
                    target,
                    link_up: p.link.0,
                    speed_mbps: p.link.1,
                    vlan: p.spec.vlan,
                    rxq: p.spec.rxq,
                    rx_packets: t.rx_packets,
                    tx_packets: t.tx_packets,
                    drops: t.drops.values().sum(),
                    gated: p.gate.is_some(),
                }
            })
            .collect()
    }

    fn pmd_rows(&self) -> Vec<PmdRow> {
        (0..self.core_stats.len())
            .map(|k| {
                let (core, cpu) = self
                    .pmd_lcores
                    .get(k)
                    .map_or((k as u32, k as u32), |l| (l.id, l.cpu));
                let c = self.core_load(k);
                let ran = c.busy_cycles.saturating_add(c.idle_cycles);
                let all = ran.saturating_add(c.stalled_cycles);
                let pct = |part: u64, whole: u64| {
                    if whole == 0 {
                        0.0
                    } else {
                        part as f64 * 100.0 / whole as f64
                    }
                };
                PmdRow {
                    core,
                    cpu,
                    rxqs: self
                        .rxq_map
                        .iter()
                        .filter(|(l, _, _)| *l == core)
                        .map(|&(_, port, queue)| RxqRow {
                            port: self.port_name(port).to_string(),
                            queue,
                        })
                        .collect(),
                    gates: self
                        .ports()
                        .filter(|(_, p)| p.gate_core == Some(core))
                        .map(|(_, p)| p.spec.name.clone())
                        .collect(),
                    busy_pct: pct(c.busy_cycles, ran),
                    on_cpu_pct: pct(ran, all),
                    packets: c.packets,
                    cycles_per_packet: c.busy_cycles.checked_div(c.packets).unwrap_or(0),
                    busy_cycles: c.busy_cycles,
                    idle_cycles: c.idle_cycles,
                    stalled_cycles: c.stalled_cycles,
                    iterations: c.iterations,
                }
            })
            .collect()
    }

    fn gcl_show(&mut self, name: &str) -> Result<GclShow, String> {
        let now_ns = self.calibrator.now_ns();
        let (_, p) = self
            .port_named_mut(name)
            .ok_or_else(|| format!("no port named '{name}'"))?;
        let g = p
            .gate
            .as_mut()
            .ok_or_else(|| format!("port '{name}' has no gate stage (no --gcl {name}=FILE)"))?;
        g.advance(now_ns);
        let link_mbps = g.stats().link_bps / 1_000_000;
        let s = g.schedule();
        Ok(GclShow {
            port: name.to_string(),
            link_mbps,
            config_change_time: s.admin().and(s.config_change_time()),
            oper: s.oper().map(|l| list_show(l, s.oper_start().unwrap_or(0))),
            admin: s
                .admin()
                .map(|l| list_show(l, s.config_change_time().unwrap_or(0))),
            config_change_errors: s.config_change_errors(),
        })
    }

    fn clock_show(&self) -> ClockShow {
        let c = self.calibrator.stats();
        ClockShow {
            reference: c.reference.clone(),
            now_ns: self.calibrator.now_ns(),
            tsc_hz: crate::dpdk::tsc_hz(),
            calibrations: c.calibrations,
            steps: c.steps,
            failures: c.failures,
            offset_ns: c.offset_ns,
            drift_ppm: c.drift_ppm,
            last_calibration_ns: c.last_calibration_ns,
            sample_width_ns: c.sample_width_ns,
        }
    }
}

/// A port's backend in `ctl stats`.
fn backend_json(p: &Port) -> serde_json::Value {
    match &p.backend {
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
                "message_timeouts": c.message_timeouts,
                "reply_backlogs": c.reply_backlogs,
                "refused_fds": c.refused_fds,
                "stop_timeouts": c.stop_timeouts,
                "err_writes_skipped": c.err_writes_skipped,
                "fds_made_blocking": c.fds_made_blocking,
                "writer_interrupts": c.writer_interrupts,
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
                "notifications_skipped": m.notifications_skipped,
                "vring_packets": (0..v.dev.queue_pairs() * 2)
                    .map(|i| v.dev.vring_metrics(i).map_or(0, |m| m.packets.get()))
                    .collect::<Vec<_>>(),
            })
        }
    }
}

/// Why a list whose `queues` map names a tx queue the port lacks is refused (as taprio refuses
/// it), without a token of the list.
pub(super) fn queues_refusal(port: &str, have: u16) -> String {
    format!(
        "the list's queues map names a tx queue port '{port}' does not have (it has {have}: \
         qpairs=N for af_packet, rxq=N queue pairs for vhost-user)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcl_errors_in_replies_carry_no_token_of_the_text() {
        for text in [
            "SECRETWORD 1\n",
            "num_tc 2\nbase-time SECRETWORD\n",
            "num_tc 2\nbase-time 99999999999999999999999\n",
            "num_tc 2\nbase-time 0 SECRETWORD\n",
            "num_tc 2\nqueues 0@SECRETWORD\n",
            "num_tc 2\nmap 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\nsched-entry SECRETWORD 01 1000\n",
            "num_tc 2\nclockid SECRETWORD\n",
            "tc SECRETWORD add dev x root taprio",
            "tc qdisc SECRETWORD dev x root taprio",
            "tc qdisc add SECRETWORD taprio",
            "tc qdisc add dev x root SECRETWORD taprio",
            "taprio SECRETWORD 1",
            "taprio num_tc 2 sched-entry S 01 0SECRETWORD",
            "taprio num_tc 2 sched-entry S 01 099999999999999999999999",
            "taprio num_tc 2 queues 1@0 1@99999999999999999999999",
            "{\"admin-control-list\": {\"SECRETWORD\": 1}}",
            "{\"gate-parameter-table\": {\"SECRETWORD\": 1}}",
            "{\"admin-control-list\": {\"gate-control-entry\": [{\"index\": 0, \
             \"operation-name\": \"SECRETWORD\", \"gate-states-value\": 1, \
             \"time-interval-value\": 5}]}}",
            "{\"admin-base-time\": {\"seconds\": \"SECRETWORD\"}}",
            "{\"admin-base-time\": SECRETWORD}",
            "{\"admin-gate-states\": 255, \"SECRETWORD\": 1}",
            "{\"admin-cycle-time\": {\"SECRETWORD\": 1}}",
            "{\"admin-base-time\": {\"SECRETWORD\": 1}}",
            "{\"queue-max-sdu-table\": [{\"SECRETWORD\": 1}]}",
            "{\"ietf-interfaces:interfaces\": {\"interface\": [{\"name\": \"SECRETWORD\", \
             \"ieee802-dot1q-sched-bridge:gate-parameter-table\": {}}, {\"name\": \"b\", \
             \"ieee802-dot1q-sched-bridge:gate-parameter-table\": {}}]}}",
        ] {
            let e = gcl::parse(text).expect_err(text);
            let r = reason_without_tokens(&e.kind);
            assert!(
                !r.contains("SECRETWORD") && !r.contains("99999999999999999999999"),
                "{text:?}: {r}"
            );
            assert!(!r.is_empty());
        }
    }
}
