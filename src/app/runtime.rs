//! Ports added and deleted while the switch runs (`ctl port add|del`), as `ovs-vsctl
//! add-port/del-port` give them. A request is validated whole before anything changes; the new
//! port set reaches the PMD cores by publication (see `publish`), so other ports forward
//! undisturbed.
use super::event_loop::ControlLoop;
use super::ports::{open_port, Backend};
use crate::config::{self, PortKind, PortSpec};
use crate::forward::MAX_PORTS;
use anyhow::{bail, Result};
use serde_json::json;

impl ControlLoop {
    /// `ctl port add SPEC`: opens the port as start-up does, gives its rx queues to the least
    /// loaded PMD cores and publishes it.
    pub(super) fn add_port(&mut self, mut spec: PortSpec) -> Result<serde_json::Value> {
        let id = self.check_new_port(&spec)?;
        for rule in &self.tc_rules {
            spec.classifier
                .add_rule(&spec.name, rule)
                .map_err(|e| anyhow::anyhow!("port '{}': --tc-rule {rule}: {e}", spec.name))?;
        }
        let npmd = self.cores.len() as u16;
        let port = open_port(&spec, npmd, &self.pool)?;
        let link = port.link;
        if self.ports.len() <= id {
            self.ports.resize_with(id + 1, || None);
        }
        self.ports[id] = Some(port);
        let id16 = id as u16;
        let mut queues = Vec::new();
        for q in 0..spec.rxq {
            let lcore = self.least_loaded_core();
            self.rxq_map.push((lcore, id16, q));
            tracing::info!(port = %spec.name, queue = q, core = lcore, "rx queue assigned");
            queues.push(json!({"queue": q, "core": lcore}));
        }
        self.publish_ports();
        let mut reply = json!({
            "port": spec.name,
            "id": id,
            "vlan": spec.vlan,
            "rx_queues": queues,
            "link_up": link.0,
        });
        match &spec.kind {
            PortKind::Dpdk { devargs } => {
                reply["kind"] = json!("dpdk");
                reply["devargs"] = json!(devargs);
            }
            PortKind::VhostUser { path, client } => {
                reply["kind"] = json!(if *client {
                    "vhost-user-client"
                } else {
                    "vhost-user"
                });
                reply["socket"] = json!(path.display().to_string());
                reply["qemu"] = json!(config::qemu_command(path, *client, spec.rxq, id));
            }
        }
        tracing::info!(port = %spec.name, id, "port added");
        Ok(reply)
    }

    /// `ctl port del NAME`: takes the port out of every core's port set at once; its MACs,
    /// counters and device are released once every core has moved on (a few loop iterations
    /// later, without waiting here).
    pub(super) fn del_port(&mut self, name: &str) -> Result<serde_json::Value> {
        if self.clock_port.as_deref() == Some(name) {
            bail!("port '{name}' is the gates' clock (--clock port:{name}): it cannot be deleted");
        }
        let Some((id, p)) = self.port_named_mut(name) else {
            bail!("no port named '{name}'");
        };
        if p.gate.is_some() {
            bail!(
                "port '{name}' has a gate control list (--gcl): a gated port cannot be deleted \
                 while the switch runs (its gate stage lives on the PMD core); restart without it"
            );
        }
        if let Backend::Vhost(v) = &mut p.backend {
            // Control-side only, so at once: the frontend sees the connection close, the rings
            // stop (the PMD handles see that at their next burst), and the socket path is free.
            v.dev.disconnect();
            v.listener = None;
        }
        self.retire(id);
        // Frames to its MACs flood from now on instead of meeting a port that is gone; a core
        // still on the old set may learn one again, so the release flushes once more.
        self.shared.fdb.flush_port(id);
        tracing::info!(port = %name, id, "port deleted; released once every PMD core has moved on");
        Ok(json!({"port": name, "id": id, "deleted": true}))
    }

    /// The slot a new port `spec` takes, or why it cannot be added. Changes nothing.
    fn check_new_port(&self, spec: &PortSpec) -> Result<usize> {
        let name = &spec.name;
        if self.port_named(name).is_some() {
            bail!("a port named '{name}' exists already");
        }
        match &spec.kind {
            PortKind::Dpdk { devargs } => {
                if crate::dpdk::ethdev::is_pci_address(devargs) {
                    bail!(
                        "port '{name}': PCI devices are attached at start only (EAL scans the PCI \
                         bus once): give it as --port when starting the switch"
                    );
                }
                let dev = spec.kind.dpdk_device();
                if let Some((_, q)) = self.ports().find(|(_, q)| q.spec.kind.dpdk_device() == dev) {
                    bail!(
                        "port '{name}': DPDK device '{}' is port '{}' already",
                        dev.unwrap_or_default(),
                        q.spec.name
                    );
                }
                if let Some(r) = self
                    .retiring
                    .iter()
                    .find(|r| r.port.spec.kind.dpdk_device() == dev)
                {
                    bail!(
                        "port '{name}': DPDK device '{}' is still being released by deleted port \
                         '{}'; try again in a moment",
                        dev.unwrap_or_default(),
                        r.port.spec.name
                    );
                }
            }
            PortKind::VhostUser { path, client } => {
                if let Some((_, q)) = self.ports().find(|(_, q)| {
                    matches!(&q.spec.kind, PortKind::VhostUser { path: o, .. } if o == path)
                }) {
                    bail!(
                        "port '{name}': socket {} is port '{}''s already",
                        path.display(),
                        q.spec.name
                    );
                }
                if !*client && crate::ctl::server::socket_is_live(path) {
                    bail!(
                        "port '{name}': socket {} is in use (something listens on it)",
                        path.display()
                    );
                }
            }
        }
        let id = (0..MAX_PORTS).find(|&i| self.slot_free(i));
        let Some(id) = id else {
            let held = self.retiring.len();
            bail!(
                "port '{name}': no free port slot (at most {MAX_PORTS} ports{})",
                if held > 0 {
                    format!("; {held} deleted port(s) still being released")
                } else {
                    String::new()
                }
            );
        };
        Ok(id)
    }

    /// The PMD core polling the fewest rx queues (the first such, in `--pmd-cores` order).
    fn least_loaded_core(&self) -> u32 {
        let load = |l: u32| self.rxq_map.iter().filter(|e| e.0 == l).count();
        self.cores
            .iter()
            .map(|c| c.lcore)
            .min_by_key(|&l| load(l))
            .expect("at least one PMD core")
    }
}
