//! `tsn-vswitch ctl`: builds the [`Request`] from the command line, sends it, prints the reply
//! (JSON, or a table for `show`).
use super::protocol::{
    ClockShow, FdbRow, GclShow, PmdRow, PortRow, Reply, Request, ShowWhat, MAX_GCL_TEXT,
    MAX_REQUEST,
};
use super::table;
use crate::cli::{CtlArgs, CtlCommand, FdbAction, PortAction, StatsAction};
use anyhow::{anyhow, bail, Context, Result};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long the client waits for the switch (it answers within its own 5 s deadline).
const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `tsn-vswitch ctl ...`: the text to print, or the switch's (or our own) error.
pub fn run(args: &CtlArgs) -> Result<String> {
    let (req, gcl_file) = request_for(&args.cmd)?;
    let reply = send(&args.ctl, &req)?;
    let value = match reply {
        Reply::Ok(v) => v,
        Reply::Error(e) => bail!("{e}"),
        Reply::GclSyntax { line, reason } => {
            bail!("{}:{line}: {reason}", display(gcl_file))
        }
        Reply::GclRefused(reason) => bail!("{}: {reason}", display(gcl_file)),
    };
    match (&req, args.json) {
        (Request::Show(what), false) => render(what, value),
        _ => Ok(serde_json::to_string_pretty(&value)?),
    }
}

fn display(file: Option<&Path>) -> String {
    file.map_or_else(|| "GCL".into(), |f| f.display().to_string())
}

/// The request a command line asks for, and the GCL file it read (for error messages).
fn request_for(cmd: &CtlCommand) -> Result<(Request, Option<&Path>)> {
    let r = match cmd {
        CtlCommand::Stats { action: None } => Request::Stats,
        CtlCommand::Stats {
            action: Some(StatsAction::Clear),
        } => Request::StatsClear,
        CtlCommand::Fdb { action: None } => Request::Fdb,
        CtlCommand::Fdb {
            action: Some(FdbAction::Flush { port }),
        } => Request::FdbFlush { port: port.clone() },
        CtlCommand::Xstats { port } => Request::Xstats { port: port.clone() },
        CtlCommand::Gcl { port, file } => {
            return Ok((
                Request::Gcl {
                    port: port.clone(),
                    text: read_gcl(file)?,
                },
                Some(file),
            ))
        }
        CtlCommand::Port(PortAction::Add { spec }) => Request::PortAdd { spec: spec.clone() },
        CtlCommand::Port(PortAction::Del { name }) => Request::PortDel { name: name.clone() },
        CtlCommand::Show(what) => Request::Show(what.clone()),
    };
    Ok((r, None))
}

/// Reads a GCL file with the user's own rights: a regular file of at most 1 MiB of UTF-8 text.
fn read_gcl(file: &Path) -> Result<String> {
    let text = crate::config::read_gcl_text(file)
        .map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
    debug_assert!(text.len() <= MAX_GCL_TEXT);
    Ok(text)
}

/// Sends one request and reads the reply.
pub fn send(path: &Path, req: &Request) -> Result<Reply> {
    let mut line = serde_json::to_vec(req)?;
    if line.len() >= MAX_REQUEST {
        bail!(
            "the request is {} bytes, more than the switch reads ({MAX_REQUEST})",
            line.len()
        );
    }
    line.push(b'\n');
    let mut s = UnixStream::connect(path)
        .with_context(|| format!("cannot reach the switch at {}", path.display()))?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    s.write_all(&line)
        .with_context(|| format!("cannot send the request to {}", path.display()))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .with_context(|| format!("no reply from {}", path.display()))?;
    serde_json::from_str(out.trim()).context("malformed reply from the switch")
}

fn render(what: &ShowWhat, v: serde_json::Value) -> Result<String> {
    let bad = |e: serde_json::Error| anyhow!("unexpected reply to show: {e}");
    Ok(match what {
        ShowWhat::Ports => table::ports(&serde_json::from_value::<Vec<PortRow>>(v).map_err(bad)?),
        ShowWhat::Pmd => table::pmd(&serde_json::from_value::<Vec<PmdRow>>(v).map_err(bad)?),
        ShowWhat::Fdb => table::fdb(&serde_json::from_value::<Vec<FdbRow>>(v).map_err(bad)?),
        ShowWhat::Gcl { .. } => table::gcl(&serde_json::from_value::<GclShow>(v).map_err(bad)?),
        ShowWhat::Clock => table::clock(&serde_json::from_value::<ClockShow>(v).map_err(bad)?),
    }
    .trim_end()
    .to_string())
}
