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
pub(crate) fn send(path: &Path, req: &Request) -> Result<Reply> {
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
    check_peer(&s, path)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    s.write_all(&line)
        .with_context(|| format!("cannot send the request to {}", path.display()))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .with_context(|| format!("no reply from {}", path.display()))?;
    serde_json::from_str(out.trim()).context("malformed reply from the switch")
}

/// The request may carry text read with the caller's rights (`ctl gcl`): it goes only to a
/// switch run by root or by the caller, never to whoever else bound a socket at `path`.
fn check_peer(s: &UnixStream, path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero ucred is a valid out-parameter.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a valid socket fd, and an out-buffer of the length passed.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot tell who listens at {}", path.display()));
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if cred.uid != 0 && cred.uid != euid {
        bail!(
            "{} is served by uid {} (pid {}), neither root nor you (uid {euid}): refusing to \
             send it anything",
            path.display(),
            cred.uid,
            cred.pid
        );
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::os::unix::process::CommandExt;
    use std::time::Instant;

    /// Run by `a_socket_served_by_another_user_gets_nothing` as another user: serves one
    /// connection on `$TSN_PEER_TEST_SOCK` and prints how many bytes it received.
    #[test]
    #[ignore = "a helper process for another test"]
    fn peer_helper_listener() {
        let path = std::env::var_os("TSN_PEER_TEST_SOCK").expect("run by another test");
        let l = UnixListener::bind(path).unwrap();
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        println!("received={}", got.len());
    }

    #[test]
    fn a_socket_served_by_another_user_gets_nothing() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("needs root to run a listener as another user: skipped");
            return;
        }
        let d = std::env::temp_dir().join(format!("tsn-ctl-peer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::os::unix::fs::chown(&d, Some(65534), None).unwrap();
        // The helper runs as nobody, who may not reach this binary where cargo built it (a
        // checkout under a 0700 directory): it runs a copy from the test's own directory.
        let exe = d.join("peer-helper");
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let p = d.join("ctl.sock");
        let child = std::process::Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "ctl::client::tests::peer_helper_listener",
                "--nocapture",
            ])
            .env("TSN_PEER_TEST_SOCK", &p)
            .uid(65534)
            .gid(65534)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        while !p.exists() {
            assert!(Instant::now() < end, "helper listener did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let e = send(&p, &Request::Stats).expect_err("refused");
        assert!(
            format!("{e:#}").contains("uid 65534") && format!("{e:#}").contains("refusing"),
            "{e:#}"
        );
        let out = child.wait_with_output().unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        assert!(out.contains("received=0"), "the listener got bytes: {out}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
