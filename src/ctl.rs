//! The control socket: one line in, one JSON document out, then the connection closes. Served
//! by the control thread between housekeeping steps; a bad command gets `{"error": ...}` and
//! changes nothing.
use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct CtlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl CtlServer {
    /// Binds `path`, replacing a stale socket a previous run left behind.
    pub fn bind(path: &Path) -> Result<CtlServer> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        if UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "control socket {} is in use by another running switch",
                path.display()
            );
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)
            .with_context(|| format!("cannot bind control socket {}", path.display()))?;
        listener.set_nonblocking(true)?;
        Ok(CtlServer {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// The listening socket's fd, for the control loop's poll.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.listener.as_raw_fd()
    }

    /// Serves every pending connection with `handle(command words) -> JSON`.
    pub fn poll(&self, mut handle: impl FnMut(&[&str]) -> serde_json::Value) {
        while let Ok((stream, _)) = self.listener.accept() {
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let mut line = String::new();
            let mut r = BufReader::new(stream.take(4096));
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let reply = handle(&words);
            let mut s = r.into_inner().into_inner();
            let _ = writeln!(s, "{reply}");
        }
    }
}

impl Drop for CtlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The client side: sends `command`, prints the reply; an `{"error":..}` reply is an Err.
pub fn request(path: &Path, command: &[String]) -> Result<String> {
    let command = absolute_files(command)?;
    let mut s = UnixStream::connect(path)
        .with_context(|| format!("cannot reach the switch at {}", path.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    writeln!(s, "{}", command.join(" "))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let v: serde_json::Value = serde_json::from_str(out.trim()).context("malformed reply")?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        anyhow::bail!("{e}");
    }
    Ok(serde_json::to_string_pretty(&v)?)
}

/// `gcl NAME FILE`: the switch reads FILE itself, from its own working directory, so a relative
/// path is made absolute here; the command travels as one line of words, so the path may not
/// contain whitespace.
fn absolute_files(command: &[String]) -> Result<Vec<String>> {
    let mut out = command.to_vec();
    if let [verb, _, file] = &mut out[..] {
        if verb == "gcl" {
            let abs =
                std::fs::canonicalize(&*file).with_context(|| format!("cannot read {file}"))?;
            let abs = abs.to_string_lossy().into_owned();
            if abs.chars().any(char::is_whitespace) {
                anyhow::bail!("{abs}: a GCL path for ctl may not contain whitespace");
            }
            *file = abs;
        }
    }
    Ok(out)
}
