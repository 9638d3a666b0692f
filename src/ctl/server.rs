//! The control socket's server: a state machine per connection, driven by the control loop.
//!
//! A connection reads one request line into its own buffer, is answered once the line is
//! complete, writes the reply from its own buffer as the socket takes it, and closes. Nothing
//! blocks: a slow or malicious client holds one of [`Limits::max_connections`] slots until its
//! deadline and costs nobody else anything. When every slot is taken, a new connection takes the
//! slot of the one idle longest (nothing sent or taken for [`Limits::idle_grace`]), so clients
//! that connect and stay silent cannot lock the others out; with no idle one, it is refused.
use super::protocol::{Reply, Request, MAX_REQUEST};
use anyhow::{anyhow, bail, Context, Result};
use std::ffi::{CStr, CString};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bounds on what clients may cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Open connections; one more takes an idle one's slot, or gets a one-line error and is
    /// closed at once.
    pub(crate) max_connections: usize,
    /// A connection that moved no byte for this long may be closed to make room.
    pub(crate) idle_grace: Duration,
    /// From accept to the reply's last byte.
    pub(crate) deadline: Duration,
    /// Longest request line.
    pub(crate) max_request: usize,
    /// Largest reply; a larger one is replaced by an error.
    pub(crate) max_reply: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 16,
            idle_grace: Duration::from_secs(1),
            deadline: Duration::from_secs(5),
            max_request: MAX_REQUEST,
            max_reply: 16 << 20,
        }
    }
}

/// What the server has refused or cut off, for `ctl stats`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct ServerStats {
    pub(crate) connections: u64,
    pub(crate) open: usize,
    pub(crate) requests: u64,
    /// Refused because [`Limits::max_connections`] were open and none was idle.
    pub(crate) connections_refused: u64,
    /// Idle connections closed to make room for a new one.
    pub(crate) connections_evicted: u64,
    /// Closed at their deadline (request not complete, or reply not taken).
    pub(crate) timeouts: u64,
    pub(crate) oversize_requests: u64,
    pub(crate) malformed_requests: u64,
    pub(crate) oversize_replies: u64,
    /// Accepts that failed (out of fds, ...); each pauses accepting for [`ACCEPT_PAUSE`].
    pub(crate) accept_errors: u64,
}

/// `--ctl-group`: a group whose members may use the control socket (mode 0660).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlGroup {
    pub name: String,
    pub gid: libc::gid_t,
}

impl CtlGroup {
    /// Looks up a group by name (or number) in the system's group database.
    pub fn lookup(name: &str) -> Result<CtlGroup, String> {
        let c = std::ffi::CString::new(name).map_err(|_| format!("no group named '{name}'"))?;
        let mut buf = vec![0u8; 16 * 1024];
        // SAFETY: an all-zero `group` is a valid out-parameter for getgrnam_r.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call, and the buffer's length is passed.
        let rc = unsafe {
            libc::getgrnam_r(
                c.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if rc == 0 && !found.is_null() {
            return Ok(CtlGroup {
                name: name.to_string(),
                gid: grp.gr_gid,
            });
        }
        match name.parse::<libc::gid_t>() {
            Ok(gid) => Ok(CtlGroup {
                name: name.to_string(),
                gid,
            }),
            Err(_) => Err(format!("no group named '{name}'")),
        }
    }
}

/// Where a connection is.
enum Phase {
    /// Reading the request line.
    Reading,
    /// Writing the reply; closed once written.
    Writing,
}

struct Conn {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    deadline: Instant,
    /// When a byte last moved either way (or the accept).
    last_progress: Instant,
    phase: Phase,
}

impl Conn {
    fn reply(&mut self, reply: &Reply, max: usize, stats: &mut ServerStats) {
        let mut out = serde_json::to_vec(reply).unwrap_or_default();
        if out.len() > max {
            stats.oversize_replies += 1;
            let msg = format!(
                "the reply ({} bytes) is larger than the control socket's {} MiB limit",
                out.len(),
                max >> 20
            );
            out = serde_json::to_vec(&Reply::error(msg)).unwrap_or_default();
        }
        out.push(b'\n');
        self.output = out;
        self.written = 0;
        self.input = Vec::new();
        self.phase = Phase::Writing;
    }
}

/// What a step did to a connection.
enum Step {
    Keep,
    Close,
}

/// Reads per connection per step, so one fast client cannot hold the loop.
const READ_BUDGET: usize = 256 * 1024;
/// New connections taken per step; the rest wait in the listen backlog.
const ACCEPT_BUDGET: usize = 64;
/// How long the listener is left alone after an accept failed: out of fds, it stays readable
/// and would spin the loop.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

pub(crate) struct CtlServer {
    listener: UnixListener,
    path: PathBuf,
    /// The socket file we made (device, inode): only that one is removed at exit.
    ident: (u64, u64),
    conns: Vec<Conn>,
    limits: Limits,
    stats: ServerStats,
    /// After a failed accept: the listener is neither polled nor accepted on until then.
    accept_paused_until: Option<Instant>,
}

impl CtlServer {
    /// Binds `path` owner-only (0600), or 0660 for `group`, whatever the umask. The directory
    /// holding `path` must be one only its owner (root or us) can write, or sticky (as /tmp):
    /// in any other, a stranger could move our entries around. The socket is bound in a fresh
    /// 0700 directory beside `path` with its mode set by the umask at bind, given its group by
    /// a no-follow call relative to that directory's fd, and renamed onto `path` relative to
    /// directory fds: no path is resolved again after bind, and the socket never exists
    /// anywhere reachable with a wider mode. A stale socket a previous run left is replaced;
    /// anything else at `path` (a file, a symlink) is refused, never followed or removed.
    pub(crate) fn bind(path: &Path, group: Option<&CtlGroup>) -> Result<CtlServer> {
        Self::bind_with(path, group, Limits::default())
    }

    pub(crate) fn bind_with(
        path: &Path,
        group: Option<&CtlGroup>,
        limits: Limits,
    ) -> Result<CtlServer> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let Some(name) = path.file_name() else {
            bail!("control socket path {} names no file", path.display());
        };
        let name = cstr(name.as_bytes(), path)?;
        // 0755 at most whatever the umask: group members must be able to reach the socket.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let dirfd = open_dir(&dir)?;
        check_parent(&dirfd, &dir)?;
        let stale = match fstatat(&dirfd, &name) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFSOCK => {
                if socket_is_live(path) {
                    bail!(
                        "control socket {} is in use by another running switch",
                        path.display()
                    );
                }
                true
            }
            Ok(_) => bail!(
                "{} exists and is not a socket: refusing to replace it with the control socket",
                path.display()
            ),
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", path.display())),
        };
        let (private_name, private) = private_dir(&dirfd, &dir)?;
        let sock = c"ctl.sock";
        let result = (|| {
            let mode = if group.is_some() { 0o660 } else { 0o600 };
            // Bound through our fd of the private directory: no name on the way can be swapped.
            let at = format!("/proc/self/fd/{}/ctl.sock", private.as_raw_fd());
            let listener = {
                // The umask is per process. The switch binds once, on the control thread,
                // before the PMD cores launch: no other thread of ours creates files then. The
                // lock orders binds within one process (unit tests bind in parallel).
                let _g = UMASK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
                // SAFETY: umask only changes this process's file-creation mask; restored below.
                let old = unsafe { libc::umask(0o777 & !mode) };
                let r = UnixListener::bind(&at);
                // SAFETY: as above, restoring the previous mask.
                unsafe { libc::umask(old) };
                r
            }
            .with_context(|| format!("cannot bind control socket {}", path.display()))?;
            let st = fstatat(&private, sock)
                .with_context(|| format!("cannot inspect the new socket for {}", path.display()))?;
            if st.st_mode & libc::S_IFMT != libc::S_IFSOCK || st.st_mode & 0o777 != mode {
                bail!(
                    "the new control socket has mode {:o}, not {mode:o}: the umask changed while \
                     it was bound",
                    st.st_mode & 0o7777
                );
            }
            if let Some(g) = group {
                // fchown on the listener's fd would change the socket's in-kernel inode, not
                // the file; so by name, without following, in the directory only we can enter.
                // SAFETY: a valid directory fd and NUL-terminated name; uid -1 keeps the owner.
                let rc = unsafe {
                    libc::fchownat(
                        private.as_raw_fd(),
                        sock.as_ptr(),
                        libc::uid_t::MAX,
                        g.gid,
                        libc::AT_SYMLINK_NOFOLLOW,
                    )
                };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error()).with_context(|| {
                        format!("cannot give {} to group '{}'", path.display(), g.name)
                    });
                }
            }
            // A stale socket is replaced; otherwise nothing may have appeared at `path` since.
            let flags = if stale { 0 } else { libc::RENAME_NOREPLACE };
            // SAFETY: valid directory fds and NUL-terminated names.
            let rc = unsafe {
                libc::renameat2(
                    private.as_raw_fd(),
                    sock.as_ptr(),
                    dirfd.as_raw_fd(),
                    name.as_ptr(),
                    flags,
                )
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error()).with_context(|| {
                    format!("cannot move the control socket to {}", path.display())
                });
            }
            listener.set_nonblocking(true)?;
            Ok(CtlServer {
                listener,
                path: path.to_path_buf(),
                ident: (st.st_dev, st.st_ino),
                conns: Vec::new(),
                limits,
                stats: ServerStats::default(),
                accept_paused_until: None,
            })
        })();
        // SAFETY: valid directory fds and NUL-terminated names; failures (already moved,
        // already gone) are fine.
        unsafe {
            libc::unlinkat(private.as_raw_fd(), sock.as_ptr(), 0);
            libc::unlinkat(dirfd.as_raw_fd(), private_name.as_ptr(), libc::AT_REMOVEDIR);
        }
        result
    }

    /// The fds the loop's poll must watch: the listener (readable), each connection (readable
    /// while it reads its request, writable while it writes its reply).
    pub(crate) fn pollfds(&self, out: &mut Vec<libc::pollfd>) {
        if !self.accept_paused(Instant::now()) {
            out.push(libc::pollfd {
                fd: self.listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        for c in &self.conns {
            out.push(libc::pollfd {
                fd: c.stream.as_raw_fd(),
                events: match c.phase {
                    Phase::Reading => libc::POLLIN,
                    Phase::Writing => libc::POLLOUT,
                },
                revents: 0,
            });
        }
    }

    /// The earliest connection deadline: the loop must wake by then.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let conns = self.conns.iter().map(|c| c.deadline);
        conns.chain(self.accept_paused_until).min()
    }

    fn accept_paused(&self, now: Instant) -> bool {
        self.accept_paused_until.is_some_and(|t| now < t)
    }

    /// Accepts what is waiting, advances every connection, answers each complete request with
    /// `handle`, and closes connections that are done or past their deadline. Never blocks.
    pub(crate) fn poll(&mut self, mut handle: impl FnMut(Request, &ServerStats) -> Reply) {
        let now = Instant::now();
        self.accept(now);
        let mut i = 0;
        while i < self.conns.len() {
            let step = if now >= self.conns[i].deadline {
                self.expire(i)
            } else {
                self.advance(i, &mut handle)
            };
            match step {
                Step::Keep => i += 1,
                Step::Close => {
                    self.conns.swap_remove(i);
                }
            }
        }
        self.stats.open = self.conns.len();
    }

    fn accept(&mut self, now: Instant) {
        if self.accept_paused(now) {
            return;
        }
        self.accept_paused_until = None;
        for _ in 0..ACCEPT_BUDGET {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // That connection is gone, or a signal came: the next one may be fine.
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                Err(_) => {
                    self.stats.accept_errors += 1;
                    self.accept_paused_until = Some(now + ACCEPT_PAUSE);
                    return;
                }
            };
            self.stats.connections += 1;
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if self.conns.len() >= self.limits.max_connections && !self.evict_idle(now) {
                self.stats.connections_refused += 1;
                let msg = format!(
                    "too many control connections open ({}): try again",
                    self.limits.max_connections
                );
                let mut line = serde_json::to_vec(&Reply::error(msg)).unwrap_or_default();
                line.push(b'\n');
                // A fresh socket's buffer takes one short line; if not, the close says it.
                let _ = (&stream).write(&line);
                continue;
            }
            self.conns.push(Conn {
                stream,
                input: Vec::new(),
                output: Vec::new(),
                written: 0,
                deadline: now + self.limits.deadline,
                last_progress: now,
                phase: Phase::Reading,
            });
        }
    }

    /// Closes the connection idle longest, if one still reading its request has been idle for
    /// the grace time. One writing its reply is never evicted: an error line after part of a
    /// reply would garble it; its deadline bounds it.
    fn evict_idle(&mut self, now: Instant) -> bool {
        let grace = self.limits.idle_grace;
        let Some(i) = (0..self.conns.len())
            .filter(|&i| matches!(self.conns[i].phase, Phase::Reading))
            .filter(|&i| now.saturating_duration_since(self.conns[i].last_progress) >= grace)
            .min_by_key(|&i| self.conns[i].last_progress)
        else {
            return false;
        };
        let c = self.conns.swap_remove(i);
        self.stats.connections_evicted += 1;
        let msg = format!(
            "closed: idle while {} control connections were open and another came",
            self.limits.max_connections
        );
        let mut line = serde_json::to_vec(&Reply::error(msg)).unwrap_or_default();
        line.push(b'\n');
        let _ = (&c.stream).write(&line);
        true
    }

    fn expire(&mut self, i: usize) -> Step {
        self.stats.timeouts += 1;
        let c = &mut self.conns[i];
        if let Phase::Reading = c.phase {
            let msg = format!(
                "no complete request within {} s: closed",
                self.limits.deadline.as_secs()
            );
            let mut line = serde_json::to_vec(&Reply::error(msg)).unwrap_or_default();
            line.push(b'\n');
            let _ = (&c.stream).write(&line);
        }
        Step::Close
    }

    fn advance(
        &mut self,
        i: usize,
        handle: &mut impl FnMut(Request, &ServerStats) -> Reply,
    ) -> Step {
        let limits = self.limits;
        if let Phase::Reading = self.conns[i].phase {
            match read_line(&mut self.conns[i], limits.max_request) {
                Ok(Some(line)) => {
                    self.stats.requests += 1;
                    self.stats.open = self.conns.len();
                    let reply = match serde_json::from_slice::<Request>(&line) {
                        Ok(req) => handle(req, &self.stats),
                        Err(e) => {
                            self.stats.malformed_requests += 1;
                            // Position and class only: the request's bytes are never echoed.
                            let what = match e.classify() {
                                serde_json::error::Category::Io => "unreadable",
                                serde_json::error::Category::Syntax => "not JSON",
                                serde_json::error::Category::Data => "not a known request",
                                serde_json::error::Category::Eof => "cut short",
                            };
                            Reply::error(format!(
                                "malformed request ({what}, at column {}): send one JSON \
                                 request per line, as `tsn-vswitch ctl` does",
                                e.column()
                            ))
                        }
                    };
                    self.conns[i].reply(&reply, limits.max_reply, &mut self.stats);
                }
                Ok(None) => return Step::Keep,
                Err(ReadEnd::Oversize) => {
                    self.stats.oversize_requests += 1;
                    let msg = format!("request larger than {} bytes: closed", limits.max_request);
                    self.conns[i].reply(&Reply::error(msg), limits.max_reply, &mut self.stats);
                }
                Err(ReadEnd::Closed) => return Step::Close,
            }
        }
        let c = &mut self.conns[i];
        while c.written < c.output.len() {
            match (&c.stream).write(&c.output[c.written..]) {
                Ok(0) => return Step::Close,
                Ok(n) => {
                    c.written += n;
                    c.last_progress = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Keep,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Step::Close,
            }
        }
        Step::Close
    }
}

/// Why reading a request ended without one.
enum ReadEnd {
    /// More than the limit without a newline.
    Oversize,
    /// The peer closed (or the socket failed) before a complete line.
    Closed,
}

/// Reads what the socket has (up to [`READ_BUDGET`]); the request line once complete.
fn read_line(c: &mut Conn, max: usize) -> Result<Option<Vec<u8>>, ReadEnd> {
    let mut chunk = [0u8; 16 * 1024];
    let mut budget = READ_BUDGET;
    while budget > 0 {
        match (&c.stream).read(&mut chunk) {
            Ok(0) => return Err(ReadEnd::Closed),
            Ok(n) => {
                c.last_progress = Instant::now();
                budget = budget.saturating_sub(n);
                let old = c.input.len();
                c.input.extend_from_slice(&chunk[..n]);
                if let Some(k) = c.input[old..].iter().position(|&b| b == b'\n') {
                    let end = old + k;
                    if end > max {
                        return Err(ReadEnd::Oversize);
                    }
                    c.input.truncate(end);
                    return Ok(Some(std::mem::take(&mut c.input)));
                }
                if c.input.len() > max {
                    return Err(ReadEnd::Oversize);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(ReadEnd::Closed),
        }
    }
    Ok(None)
}

/// Whether a process listens on the unix socket `path`. The probe never waits: a listener whose
/// backlog is full counts as live instead of stalling the caller (the control thread).
pub(crate) fn socket_is_live(path: &Path) -> bool {
    match vhost::try_connect(path) {
        Ok(_) => true,
        Err(e) => e.kind() == ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::EINPROGRESS),
    }
}

/// Orders the umask changes of binds within this process.
static UMASK_LOCK: Mutex<()> = Mutex::new(());

fn cstr(bytes: &[u8], path: &Path) -> Result<CString> {
    CString::new(bytes).map_err(|_| anyhow!("{} contains a NUL byte", path.display()))
}

fn open_dir(dir: &Path) -> Result<OwnedFd> {
    let c = cstr(dir.as_os_str().as_bytes(), dir)?;
    // SAFETY: a NUL-terminated path; the fd is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot open {}", dir.display()));
    }
    // SAFETY: fd is fresh and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: &OwnedFd) -> std::io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd and a valid out-pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

/// `name` in the directory `dir`, not following a symlink.
fn fstatat(dir: &OwnedFd, name: &CStr) -> std::io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid directory fd, a NUL-terminated name, a valid out-pointer.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

/// The socket's directory must be owned by root or us, and writable by nobody else unless
/// sticky (as OpenSSH's StrictModes): in a directory a stranger can write, they can rename our
/// entries and put theirs in their place.
fn check_parent(fd: &OwnedFd, dir: &Path) -> Result<()> {
    let st = fstat(fd).with_context(|| format!("cannot inspect {}", dir.display()))?;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if st.st_uid != 0 && st.st_uid != euid {
        bail!(
            "refusing to put the control socket in {}: it is owned by uid {}, neither root nor \
             us (uid {euid})",
            dir.display(),
            st.st_uid
        );
    }
    if st.st_mode & 0o022 != 0 && st.st_mode & libc::S_ISVTX == 0 {
        bail!(
            "refusing to put the control socket in {}: it is writable by group or others (mode \
             {:o}) and not sticky; use a directory only its owner can write, such as \
             /run/tsn-vswitch",
            dir.display(),
            st.st_mode & 0o7777
        );
    }
    Ok(())
}

/// A fresh directory only we can enter, beside the socket's final place (same filesystem, so the
/// rename is atomic), and our fd of it. `mkdirat` fails if the name exists: nothing an attacker
/// prepared is used; the fd is opened without following a symlink and checked to be ours.
fn private_dir(dirfd: &OwnedFd, dir: &Path) -> Result<(CString, OwnedFd)> {
    for n in 0..100u32 {
        let name = CString::new(format!(".tsn-vswitch-ctl.{}.{n}", std::process::id()))
            .expect("no NUL in a formatted name");
        // SAFETY: a valid directory fd and a NUL-terminated name.
        if unsafe { libc::mkdirat(dirfd.as_raw_fd(), name.as_ptr(), 0o700) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::AlreadyExists {
                continue;
            }
            return Err(e)
                .with_context(|| format!("cannot create a directory in {}", dir.display()));
        }
        // SAFETY: as above; the fd is owned below.
        let fd = unsafe {
            libc::openat(
                dirfd.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot open the directory made in {}", dir.display()));
        }
        // SAFETY: fd is fresh and ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let st = fstat(&fd)?;
        // SAFETY: geteuid has no preconditions.
        if st.st_uid != unsafe { libc::geteuid() } || st.st_mode & 0o077 != 0 {
            bail!(
                "the private directory made in {} was replaced by another",
                dir.display()
            );
        }
        return Ok((name, fd));
    }
    bail!("cannot create a private directory in {}", dir.display())
}

impl Drop for CtlServer {
    fn drop(&mut self) {
        // Only the socket we made: another switch may have taken the path since.
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.ident {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tsn-ctl-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        // Whatever the umask another test set meanwhile.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    /// Serves `srv` on this thread until `done` says so (bounded).
    fn serve_until(srv: &mut CtlServer, mut done: impl FnMut(&CtlServer) -> bool) {
        let end = Instant::now() + Duration::from_secs(20);
        while !done(srv) {
            assert!(Instant::now() < end, "server loop did not finish");
            srv.poll(|req, _| Reply::Ok(serde_json::json!({ "echo": req })));
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn socket_is_owner_only_whatever_the_umask() {
        let d = dir("mode");
        let p = d.join("ctl.sock");
        let old = {
            let _g = UMASK_LOCK.lock().unwrap();
            // SAFETY: umask only changes this process's file-creation mask.
            unsafe { libc::umask(0) }
        };
        let srv = CtlServer::bind(&p, None);
        {
            let _g = UMASK_LOCK.lock().unwrap();
            // SAFETY: as above, restoring it.
            unsafe { libc::umask(old) };
        }
        let srv = srv.unwrap();
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert!(m.file_type().is_socket());
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        // Nothing left beside it.
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("ctl.sock")]);
        drop(srv);
        assert!(!p.exists(), "the socket is removed at exit");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_symlink_or_file_at_the_path_is_refused_not_followed() {
        let d = dir("symlink");
        let target = d.join("victim");
        std::fs::write(&target, "keep me").unwrap();
        let link = d.join("ctl.sock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = CtlServer::bind(&link, None).err().expect("refused");
        assert!(format!("{e:#}").contains("is not a socket"), "{e:#}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        let e = CtlServer::bind(&target, None).err().expect("refused");
        assert!(format!("{e:#}").contains("is not a socket"), "{e:#}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_directory_others_can_write_is_refused_unless_sticky() {
        let d = dir("parent");
        let p = d.join("ctl.sock");
        for mode in [0o777, 0o770, 0o757] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = CtlServer::bind(&p, None).err().expect("refused");
            assert!(
                format!("{e:#}").contains("writable by group or others"),
                "{mode:o}: {e:#}"
            );
            assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0, "nothing made");
        }
        // Sticky and ours (as /tmp is root's): accepted.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let srv = CtlServer::bind(&p, None).expect("sticky directory accepted");
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        drop(srv);
        // Owned by someone else, even if only they can write it: refused.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&d, Some(65534), None).unwrap();
            let e = CtlServer::bind(&p, None).err().expect("refused");
            assert!(format!("{e:#}").contains("owned by uid 65534"), "{e:#}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_group_socket_gets_mode_0660_and_the_group() {
        let d = dir("group");
        let p = d.join("ctl.sock");
        let g = CtlGroup {
            name: "test".into(),
            // Root may give it any group; others only their own.
            // SAFETY: geteuid and getegid have no preconditions.
            gid: if unsafe { libc::geteuid() } == 0 {
                65534
            } else {
                // SAFETY: as above.
                unsafe { libc::getegid() }
            },
        };
        let srv = CtlServer::bind(&p, Some(&g)).unwrap();
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o660);
        assert_eq!(m.gid(), g.gid);
        drop(srv);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let d = dir("stale");
        let p = d.join("ctl.sock");
        drop(UnixListener::bind(&p).unwrap());
        let srv = CtlServer::bind(&p, None).expect("stale socket replaced");
        let e = CtlServer::bind(&p, None).err().expect("in use");
        assert!(format!("{e:#}").contains("in use"), "{e:#}");
        drop(srv);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_listener_with_a_full_backlog_is_live_and_the_probe_does_not_wait() {
        let d = dir("backlog");
        let p = d.join("s.sock");
        assert!(!socket_is_live(&p), "nothing there");
        let l = UnixListener::bind(&p).unwrap();
        assert!(socket_is_live(&p));
        // Fill the backlog (nobody accepts): the next connect would block.
        let mut held = Vec::new();
        let full = loop {
            match vhost::try_connect(&p) {
                Ok(s) => held.push(s),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break true,
                Err(e) => panic!("{e}"),
            }
            if held.len() > 100_000 {
                break false;
            }
        };
        assert!(full, "the backlog never filled");
        assert!(socket_is_live(&p), "a full backlog is live");
        let e = CtlServer::bind(&p, None).err().expect("in use");
        assert!(format!("{e:#}").contains("in use"), "{e:#}");
        drop(held);
        drop(l);
        assert!(!socket_is_live(&p), "stale: nobody listens");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Run by `out_of_fds_accept_pauses_instead_of_spinning` in its own process (it exhausts
    /// the process's fds): prints the counts the parent checks.
    #[test]
    #[ignore = "a helper process for another test"]
    fn out_of_fds_helper() {
        let Some(d) = std::env::var_os("TSN_EMFILE_TEST_DIR") else {
            return;
        };
        let p = PathBuf::from(d).join("ctl.sock");
        let mut srv = CtlServer::bind_with(&p, None, limits()).unwrap();
        let mut c = UnixStream::connect(&p).unwrap();
        c.write_all(b"\"stats\"\n").unwrap();
        // Use up every fd.
        let lim = libc::rlimit {
            rlim_cur: 256,
            rlim_max: 256,
        };
        // SAFETY: a valid rlimit; this process only.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
        let mut fill = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            fill.push(f);
        }
        let start = Instant::now();
        let mut polls = 0u64;
        let mut listener_polled = 0u64;
        while start.elapsed() < Duration::from_millis(500) {
            srv.poll(|_, _| panic!("no request can be accepted without fds"));
            let mut fds = Vec::new();
            srv.pollfds(&mut fds);
            if fds.iter().any(|f| f.fd == srv.listener.as_raw_fd()) {
                listener_polled += 1;
            }
            polls += 1;
        }
        let errors = srv.stats.accept_errors;
        drop(fill);
        serve_until(&mut srv, |s| s.stats.requests == 1 && s.conns.is_empty());
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        println!("errors={errors} polls={polls} listener_polled={listener_polled} reply={out}");
    }

    #[test]
    fn out_of_fds_accept_pauses_instead_of_spinning() {
        let d = dir("emfile");
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "ctl::server::tests::out_of_fds_helper",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TSN_EMFILE_TEST_DIR", &d)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let num = |k: &str| -> u64 {
            let v = text.split(&format!("{k}=")).nth(1).expect(k);
            v.split(' ').next().unwrap().parse().unwrap()
        };
        // 500 ms out of fds: an error every 100 ms or so, not one per loop.
        let errors = num("errors");
        assert!((1..=10).contains(&errors), "{text}");
        assert!(num("listener_polled") <= errors + 1, "{text}");
        assert!(
            text.contains("reply={\"ok\":{\"echo\":\"stats\"}}"),
            "served once fds were back: {text}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn group_lookup() {
        assert_eq!(CtlGroup::lookup("root").unwrap().gid, 0);
        assert!(CtlGroup::lookup("no-such-group-tsn")
            .unwrap_err()
            .contains("no group named"));
    }

    fn limits() -> Limits {
        Limits {
            max_connections: 3,
            idle_grace: Duration::from_secs(60),
            deadline: Duration::from_millis(300),
            max_request: 100,
            max_reply: 1 << 20,
        }
    }

    #[test]
    fn silent_clients_are_capped_and_expire_while_others_are_served() {
        let d = dir("caps");
        let p = d.join("ctl.sock");
        let mut srv = CtlServer::bind_with(&p, None, limits()).unwrap();
        let silent: Vec<UnixStream> = (0..3).map(|_| UnixStream::connect(&p).unwrap()).collect();
        serve_until(&mut srv, |s| s.conns.len() == 3);
        // A fourth is refused with a line and closed.
        let mut extra = UnixStream::connect(&p).unwrap();
        serve_until(&mut srv, |s| s.stats.connections_refused == 1);
        let mut line = String::new();
        extra.read_to_string(&mut line).unwrap();
        assert!(line.contains("too many control connections"), "{line}");
        // The silent ones time out; then a real request is answered.
        serve_until(&mut srv, |s| s.stats.timeouts == 3);
        for s in silent {
            let mut r = std::io::BufReader::new(s);
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            assert!(l.contains("no complete request"), "{l}");
        }
        let mut c = UnixStream::connect(&p).unwrap();
        c.write_all(b"\"stats\"\n").unwrap();
        serve_until(&mut srv, |s| s.stats.requests == 1 && s.conns.is_empty());
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert_eq!(out, "{\"ok\":{\"echo\":\"stats\"}}\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn when_full_a_new_client_takes_the_slot_of_the_one_idle_longest() {
        let d = dir("evict");
        let p = d.join("ctl.sock");
        let l = Limits {
            max_connections: 2,
            idle_grace: Duration::from_millis(100),
            deadline: Duration::from_secs(30),
            ..limits()
        };
        let mut srv = CtlServer::bind_with(&p, None, l).unwrap();
        let oldest = UnixStream::connect(&p).unwrap();
        serve_until(&mut srv, |s| s.conns.len() == 1);
        std::thread::sleep(Duration::from_millis(20));
        let younger = UnixStream::connect(&p).unwrap();
        serve_until(&mut srv, |s| s.conns.len() == 2);
        std::thread::sleep(Duration::from_millis(150));
        let mut c = UnixStream::connect(&p).unwrap();
        c.write_all(b"\"stats\"\n").unwrap();
        serve_until(&mut srv, |s| s.stats.requests == 1 && s.conns.len() == 1);
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("{\"ok\""), "{out}");
        out.clear();
        (&oldest).read_to_string(&mut out).unwrap();
        assert!(
            out.contains("closed: idle"),
            "the oldest idle one made room: {out}"
        );
        assert_eq!(srv.stats.connections_evicted, 1);
        assert_eq!(srv.stats.connections_refused, 0);
        younger.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        assert!(
            matches!((&younger).read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock),
            "the younger one is still open"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_connection_writing_its_reply_is_never_evicted() {
        let d = dir("evict-writing");
        let p = d.join("ctl.sock");
        let l = Limits {
            max_connections: 1,
            idle_grace: Duration::from_millis(100),
            deadline: Duration::from_secs(30),
            ..limits()
        };
        let mut srv = CtlServer::bind_with(&p, None, l).unwrap();
        let big = "x".repeat(900 * 1024);
        let mut slow = UnixStream::connect(&p).unwrap();
        slow.write_all(b"\"stats\"\n").unwrap();
        // Answered with more than the socket takes at once; the client reads nothing yet.
        let end = Instant::now() + Duration::from_secs(20);
        while srv.stats.requests == 0 {
            assert!(Instant::now() < end, "request not read");
            srv.poll(|req, _| Reply::Ok(serde_json::json!({ "echo": req, "pad": big })));
            std::thread::sleep(Duration::from_millis(2));
        }
        for _ in 0..3 {
            srv.poll(|_, _| panic!("one request only"));
        }
        assert!(matches!(srv.conns[0].phase, Phase::Writing));
        std::thread::sleep(Duration::from_millis(150));
        let mut other = UnixStream::connect(&p).unwrap();
        serve_until(&mut srv, |s| s.stats.connections_refused == 1);
        let mut out = String::new();
        other.read_to_string(&mut out).unwrap();
        assert!(out.contains("too many control connections"), "{out}");
        assert_eq!(srv.stats.connections_evicted, 0);
        // The slow one gets its whole reply, nothing after it.
        let reader = std::thread::spawn(move || {
            let mut out = String::new();
            slow.read_to_string(&mut out).unwrap();
            out
        });
        serve_until(&mut srv, |s| s.conns.is_empty());
        let out = reader.join().unwrap();
        let v: serde_json::Value = serde_json::from_str(out.trim_end()).expect("one whole reply");
        assert_eq!(v["ok"]["echo"], "stats");
        assert!(v["ok"]["pad"].as_str().unwrap().len() == big.len());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn oversize_and_malformed_requests_get_an_error_without_their_bytes() {
        let d = dir("oversize");
        let p = d.join("ctl.sock");
        let mut srv = CtlServer::bind_with(&p, None, limits()).unwrap();
        let mut big = UnixStream::connect(&p).unwrap();
        big.write_all(&[b'x'; 150]).unwrap();
        let mut bad = UnixStream::connect(&p).unwrap();
        bad.write_all(b"{\"gcl\":{\"port\":\"h\",\"text\":[\"secret-token\"]}}\n")
            .unwrap();
        serve_until(&mut srv, |s| s.conns.is_empty() && s.stats.requests == 1);
        let mut out = String::new();
        big.read_to_string(&mut out).unwrap();
        assert!(out.contains("request larger than 100 bytes"), "{out}");
        out.clear();
        bad.read_to_string(&mut out).unwrap();
        assert!(out.contains("malformed request"), "{out}");
        assert!(!out.contains("secret"), "{out}");
        assert_eq!(srv.stats.oversize_requests, 1);
        assert_eq!(srv.stats.malformed_requests, 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_request_split_over_many_writes_is_answered_once_complete() {
        let d = dir("split");
        let p = d.join("ctl.sock");
        let mut srv = CtlServer::bind_with(&p, None, limits()).unwrap();
        let mut c = UnixStream::connect(&p).unwrap();
        for b in b"\"fdb\"" {
            c.write_all(&[*b]).unwrap();
            srv.poll(|_, _| panic!("answered before the line was complete"));
        }
        c.write_all(b"\n").unwrap();
        serve_until(&mut srv, |s| s.conns.is_empty());
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert!(out.contains("\"echo\":\"fdb\""), "{out}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
