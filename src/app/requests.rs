//! What the control socket's commands do: they read or change the control loop's state.
use super::event_loop::ControlLoop;
use super::ports::{Backend, Port};
use crate::config;
use crate::stats;
use serde_json::json;

/// `ctl gcl NAME FILE`: a new admin list for a gated port, as `tc qdisc replace ... taprio`
/// does: validated whole first (a bad file changes nothing), then it takes effect at its
/// ConfigChangeTime (its base-time, or its first cycle boundary after now when that is past,
/// cycle-time-extension applied to the running list as 802.1Qbv §Q.5 says).
fn replace_gcl(cl: &mut ControlLoop, name: &str, file: &str, now_ns: u64) -> serde_json::Value {
    let Some((_, p)) = cl.port_named_mut(name) else {
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

impl ControlLoop {
    /// Answers one control-socket command.
    pub(super) fn handle(&mut self, words: &[&str]) -> serde_json::Value {
        if let ["gcl", name, file] = words {
            let now_ns = self.calibrator.now_ns();
            return replace_gcl(self, name, file, now_ns);
        }
        let port_change = match words {
            ["port", "add", spec] => {
                Some(crate::config::PortSpec::parse(spec).and_then(|spec| self.add_port(spec)))
            }
            ["port", "del", name] => Some(self.del_port(name)),
            _ => None,
        };
        if let Some(r) = port_change {
            return r.unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
        }
        let now_s = self.now_s();
        let (cores, shared, pool) = (&self.core_stats, &self.shared, &self.pool);
        let clock = self.calibrator.stats();
        match words {
            ["stats"] => {
                let ps: Vec<_> = self
                .ports()
                .map(|(i, p)| {
                    let t = stats::totals(cores, i);
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
                                "message_timeouts": c.message_timeouts,
                                "reply_backlogs": c.reply_backlogs,
                                "refused_fds": c.refused_fds,
                                "stop_timeouts": c.stop_timeouts,
                                "err_writes_skipped": c.err_writes_skipped,
                                "fds_made_blocking": c.fds_made_blocking,
                                "writer_interrupts": c.writer_interrupts,
                                "queue_errors": m.queue_errors,
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
                        let name = self
                            .ports()
                            .find(|(i, _)| *i == e.port)
                            .map_or("?", |(_, p)| p.spec.name.as_str());
                        json!({"mac": e.mac, "vlan": e.vlan, "port": name, "age_s": e.age_s})
                    })
                    .collect();
                json!({ "entries": entries })
            }
            ["xstats", name] => match self.port_named(name).map(|(_, p)| p) {
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
}
