//! Ports added and deleted while the switch runs (`ctl port add|del`).
use super::event_loop::ControlLoop;
use crate::config::PortSpec;
use anyhow::{bail, Result};

impl ControlLoop {
    /// `ctl port add SPEC`: opens the port and publishes it to the PMD cores.
    pub(super) fn add_port(&mut self, spec: PortSpec) -> Result<serde_json::Value> {
        bail!("port add is not implemented yet (port '{}')", spec.name)
    }

    /// `ctl port del NAME`: takes the port away from the PMD cores, then closes it.
    pub(super) fn del_port(&mut self, name: &str) -> Result<serde_json::Value> {
        bail!("port del is not implemented yet (port '{name}')")
    }
}
