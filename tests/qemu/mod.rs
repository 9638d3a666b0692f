//! QEMU guests as vhost-user test peers.
//!
//! Include from an integration test with `#[path = "qemu/mod.rs"] mod qemu;`.
//!
//! - [`Guest::launch`] boots a small Linux guest (Debian cloud kernel + busybox initramfs, built
//!   once by `scripts/guest/build.sh`, cached in `target/guest`) under QEMU 7.2 / TCG, with one
//!   virtio-net NIC on a vhost-user socket. eth0 gets the given MAC and IPv4 address; IPv6 is off
//!   unless [`GuestOpts::ipv6`].
//! - [`Mode::Connect`]: QEMU connects to a backend that listens on the socket (switch port
//!   `vhost-user:PATH`, testpmd's `net_vhost`), retrying every second (`reconnect=1`), so the
//!   backend may start before or after the guest and may restart.
//!   [`Mode::Listen`]: QEMU is the vhost-user server (`server=on,wait=off`) and the backend
//!   connects (switch port `vhost-user-client:PATH`). QEMU 7.2 creates the socket at once but does
//!   not start the guest until the backend has connected the first time.
//! - [`Guest::wait_ready`] waits for the guest's readiness marker on the serial console (eth0 up
//!   and addressed); [`Guest::run`] runs a shell command in the guest over the serial console and
//!   returns its exit code and output (stdout + stderr). Busybox applets: ping, ip, arping,
//!   cat, grep, awk, sleep, timeout, taskset, …; netcat-openbsd as `nc.openbsd` (UDP: `nc.openbsd -u -l PORT`,
//!   `echo x | nc.openbsd -u -w 1 ADDR PORT`; busybox's own `nc` has no UDP and the shell prefers
//!   applets, so `nc` is busybox's); `ethtool` (`-S eth0` for per-queue counters).
//! - [`Guest::kill`] / [`Guest::restart`]: for reconnect tests (SIGKILL QEMU; launch it again on the
//!   same socket with the same settings). Drop kills QEMU and removes its files (kept, with the
//!   console and QEMU's log printed, when the test is panicking).
//!
//! Timing here (2 shared cores, TCG): a guest is ready 5–10 s after launch when idle, up to ~30 s
//! on a loaded machine; use generous timeouts ([`BOOT_TIMEOUT`]).
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// A generous boot timeout for TCG on a loaded 2-core machine.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// What the guest prints on ttyS0 once eth0 is configured.
pub const READY_MARKER: &str = "TSN-GUEST-READY";
const ERROR_MARKER: &str = "TSN-GUEST-ERROR";
/// Extra time granted to the serial round trip on top of a command's own timeout.
const RUN_MARGIN: Duration = Duration::from_secs(20);

/// Which side of the vhost-user socket QEMU is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// QEMU is the client: `-chardev socket,path=SOCK,reconnect=1`; the backend listens.
    Connect,
    /// QEMU is the server: `-chardev socket,path=SOCK,server=on,wait=off`; the backend connects.
    Listen,
}

/// Less common launch settings.
#[derive(Clone, Debug)]
pub struct GuestOpts {
    /// Queue pairs of the virtio-net device (`queues=N` on the netdev, `mq=on` on the device);
    /// the guest enables them all (`ethtool -L eth0 combined N`).
    pub queues: u16,
    /// Guest vCPUs. With one vCPU the guest transmits on one queue only (per-CPU XPS); the
    /// backend may still deliver on every queue. Each vCPU costs a host thread under TCG.
    pub smp: u16,
    /// Guest memory (MiB), a shared memfd as vhost-user needs.
    pub mem_mib: u32,
    /// Keep IPv6 on eth0 (off by default: no router solicitations, DAD or MLD on the wire).
    pub ipv6: bool,
    /// Appended to the kernel command line.
    pub extra_append: String,
    /// Extra QEMU arguments.
    pub extra_args: Vec<String>,
}

impl Default for GuestOpts {
    fn default() -> Self {
        GuestOpts {
            queues: 1,
            smp: 1,
            mem_mib: 256,
            ipv6: false,
            extra_append: String::new(),
            extra_args: Vec::new(),
        }
    }
}

/// The kernel and initramfs built by `scripts/guest/build.sh`.
#[derive(Clone, Debug)]
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Builds the guest image once per test process (the script itself is cached across runs, and
/// installs QEMU, busybox-static and cpio when missing). Output dir: `$TSN_GUEST_DIR` or
/// `target/guest` in the workspace.
pub fn image() -> &'static GuestImage {
    static IMAGE: OnceLock<GuestImage> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = std::env::var_os("TSN_GUEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target/guest"));
        let status = Command::new("bash")
            .arg(root.join("scripts/guest/build.sh"))
            .arg(&out)
            .stdin(Stdio::null())
            .status()
            .expect("run scripts/guest/build.sh");
        assert!(status.success(), "scripts/guest/build.sh failed: {status}");
        GuestImage {
            kernel: out.join("vmlinuz"),
            initrd: out.join("initramfs.cpio"),
        }
    })
}

/// True when QEMU can be used here (the image builds and qemu-system-x86_64 runs).
pub fn available() -> bool {
    std::panic::catch_unwind(image).is_ok()
        && Command::new("qemu-system-x86_64")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// Process spawning with a parent-death signal
// ---------------------------------------------------------------------------------------------

type SpawnReq = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns children from one thread that lives as long as the test process, with
/// PR_SET_PDEATHSIG=SIGKILL: QEMU dies with the test process even when it is killed (the signal is
/// tied to the spawning *thread*, so a test's own thread would kill its guests when it ends).
fn spawn_tied(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnReq>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnReq>();
        thread::Builder::new()
            .name("qemu-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    // SAFETY: the pre-exec hook only calls prctl, which is async-signal-safe.
                    unsafe {
                        cmd.pre_exec(|| {
                            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                                return Err(std::io::Error::last_os_error());
                            }
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn qemu-spawner thread");
        Mutex::new(tx)
    });
    let (rtx, rrx) = mpsc::channel();
    tx.lock().unwrap().send((cmd, rtx)).expect("spawner gone");
    rrx.recv().expect("spawner gone")
}

// ---------------------------------------------------------------------------------------------
// Serial console
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct ConsoleBuf {
    text: String,
    closed: bool,
}

#[derive(Default)]
struct Console {
    buf: Mutex<ConsoleBuf>,
    cv: Condvar,
}

impl Console {
    /// Reads QEMU's stdout (the guest's ttyS0) until EOF, into memory and `log`.
    fn pump(self: Arc<Self>, mut out: impl Read, mut log: fs::File) {
        let mut chunk = [0u8; 4096];
        loop {
            let n = match out.read(&mut chunk) {
                Ok(0) | Err(_) => 0,
                Ok(n) => n,
            };
            let mut b = self.buf.lock().unwrap();
            if n == 0 {
                b.closed = true;
                self.cv.notify_all();
                return;
            }
            let _ = log.write_all(&chunk[..n]);
            let s = String::from_utf8_lossy(&chunk[..n]).replace('\r', "");
            b.text.push_str(&s);
            self.cv.notify_all();
        }
    }

    /// Waits until `f(text)` returns Some, the console closes, or the deadline passes.
    fn wait<T>(&self, deadline: Instant, mut f: impl FnMut(&str) -> Option<T>) -> Option<T> {
        let mut b = self.buf.lock().unwrap();
        loop {
            if let Some(v) = f(&b.text) {
                return Some(v);
            }
            let now = Instant::now();
            if b.closed || now >= deadline {
                return None;
            }
            b = self.cv.wait_timeout(b, deadline - now).unwrap().0;
        }
    }

    fn text(&self) -> String {
        self.buf.lock().unwrap().text.clone()
    }

    fn closed(&self) -> bool {
        self.buf.lock().unwrap().closed
    }
}

/// Removes `$TMPDIR/tsn-qemu-<pid>-…` directories of test processes that are gone (kept by a
/// failed test for inspection). Once per process.
pub fn remove_stale_dirs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let Ok(rd) = fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("tsn-qemu-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    });
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Guest
// ---------------------------------------------------------------------------------------------

static SEQ: AtomicU64 = AtomicU64::new(0);

/// One QEMU guest with one virtio-net NIC on a vhost-user socket.
pub struct Guest {
    pub name: String,
    pub socket: PathBuf,
    pub mode: Mode,
    /// MAC of eth0, `02:..:..` form.
    pub mac: String,
    /// IPv4 address of eth0 without the prefix length.
    pub ip: String,
    /// Address with prefix length, as configured (`10.77.1.2/24`).
    pub cidr: String,
    pub opts: GuestOpts,
    /// Per-guest directory: console.log (ttyS0), qemu.log (QEMU's stderr).
    pub dir: PathBuf,
    child: Option<Child>,
    stdin: Option<Mutex<ChildStdin>>,
    console: Arc<Console>,
    launched: Instant,
    cmd_seq: AtomicU64,
    launches: u32,
}

impl Guest {
    /// Boots a guest (does not wait: see [`Guest::wait_ready`]). `ip` is `A.B.C.D/N` (or
    /// `A.B.C.D`, then /24).
    pub fn launch(name: &str, socket: impl AsRef<Path>, mode: Mode, mac: &str, ip: &str) -> Guest {
        Self::launch_with(name, socket, mode, mac, ip, GuestOpts::default())
    }

    /// [`Guest::launch`] with more settings (multiqueue, vCPUs, …).
    pub fn launch_with(
        name: &str,
        socket: impl AsRef<Path>,
        mode: Mode,
        mac: &str,
        ip: &str,
        opts: GuestOpts,
    ) -> Guest {
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "guest name must be [A-Za-z0-9_-]+: {name:?}"
        );
        assert!(opts.queues >= 1 && opts.smp >= 1);
        let cidr = if ip.contains('/') {
            ip.to_string()
        } else {
            format!("{ip}/24")
        };
        remove_stale_dirs();
        let dir = std::env::temp_dir().join(format!(
            "tsn-qemu-{}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            name
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create guest dir");
        let mut g = Guest {
            name: name.to_string(),
            socket: socket.as_ref().to_path_buf(),
            mode,
            mac: mac.to_string(),
            ip: cidr.split('/').next().unwrap().to_string(),
            cidr,
            opts,
            dir,
            child: None,
            stdin: None,
            console: Arc::new(Console::default()),
            launched: Instant::now(),
            cmd_seq: AtomicU64::new(0),
            launches: 0,
        };
        g.start();
        g
    }

    /// The QEMU command line for this guest.
    pub fn qemu_args(&self) -> Vec<String> {
        let img = image();
        let o = &self.opts;
        let sock = self.socket.display();
        let chardev = match self.mode {
            Mode::Connect => format!("socket,id=c0,path={sock},reconnect=1"),
            Mode::Listen => format!("socket,id=c0,path={sock},server=on,wait=off"),
        };
        let mut netdev = "vhost-user,id=n0,chardev=c0".to_string();
        let mut device = format!("virtio-net-pci,netdev=n0,mac={},vectors=0", self.mac);
        if o.queues > 1 {
            write!(netdev, ",queues={}", o.queues).unwrap();
            device.push_str(",mq=on");
        }
        let mut append = format!(
            "console=ttyS0 quiet loglevel=1 panic=-1 tsn.name={} tsn.ip={} tsn.mac={}",
            self.name, self.cidr, self.mac
        );
        if o.queues > 1 {
            write!(append, " tsn.queues={}", o.queues).unwrap();
        }
        if o.ipv6 {
            append.push_str(" tsn.ipv6=1");
        }
        if !o.extra_append.is_empty() {
            write!(append, " {}", o.extra_append).unwrap();
        }
        let mut a: Vec<String> = [
            "-name",
            &format!("tsn-{},process=qemu-tsn-{}", self.name, self.name),
            "-accel",
            "tcg",
            "-machine",
            "pc,memory-backend=mem",
            "-object",
            &format!("memory-backend-memfd,id=mem,size={}M,share=on", o.mem_mib),
            "-m",
            &format!("{}M", o.mem_mib),
            "-smp",
            &o.smp.to_string(),
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-kernel",
            &img.kernel.display().to_string(),
            "-initrd",
            &img.initrd.display().to_string(),
            "-append",
            &append,
            "-chardev",
            &chardev,
            "-netdev",
            &netdev,
            "-device",
            &device,
            "-serial",
            "stdio",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(o.extra_args.iter().cloned());
        a
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "guest {} already running", self.name);
        if self.mode == Mode::Listen {
            let _ = fs::remove_file(&self.socket);
        }
        let args = self.qemu_args();
        self.launches += 1;
        let mut qlog = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("qemu.log"))
            .expect("open qemu.log");
        let _ = writeln!(
            qlog,
            "=== launch {}: qemu-system-x86_64 {}",
            self.launches,
            args.join(" ")
        );
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(qlog));
        let mut child = spawn_tied(cmd).expect("spawn qemu-system-x86_64 (installed by build.sh)");
        let out = child.stdout.take().unwrap();
        self.stdin = Some(Mutex::new(child.stdin.take().unwrap()));
        self.console = Arc::new(Console::default());
        let clog = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("console.log"))
            .expect("open console.log");
        let c = self.console.clone();
        thread::Builder::new()
            .name(format!("console-{}", self.name))
            .spawn(move || c.pump(out, clog))
            .expect("spawn console thread");
        self.child = Some(child);
        self.launched = Instant::now();
    }

    /// QEMU's pid, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// True while QEMU runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits for the readiness marker; returns the time since launch, or an error with the
    /// console's tail (QEMU exited, the guest reported an error, or the timeout passed).
    pub fn try_wait_ready(&self, timeout: Duration) -> Result<Duration, String> {
        let deadline = Instant::now() + timeout;
        let r = self.console.wait(deadline, |t| {
            if let Some(i) = t.find(ERROR_MARKER) {
                let line = t[i..].lines().next().unwrap_or("").to_string();
                return Some(Err(line));
            }
            t.contains(READY_MARKER).then_some(Ok(()))
        });
        match r {
            Some(Ok(())) => Ok(self.launched.elapsed()),
            Some(Err(line)) => Err(format!(
                "guest {}: {line}\n{}",
                self.name,
                self.diagnostics()
            )),
            None => Err(format!(
                "guest {} not ready after {:?} ({}):\n{}",
                self.name,
                timeout,
                if self.console.closed() {
                    "QEMU exited"
                } else {
                    "timeout"
                },
                self.diagnostics()
            )),
        }
    }

    /// Waits for the readiness marker (panics with the console and QEMU log on failure); returns
    /// the time since launch.
    pub fn wait_ready(&self, timeout: Duration) -> Duration {
        self.try_wait_ready(timeout)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `cmd` with `sh -c` in the guest (stdin /dev/null, stderr merged into stdout); the guest
    /// kills it after `timeout` (rounded up to whole seconds; exit code 137 then). Returns the
    /// exit code and output. `None` when the guest did not answer in time (QEMU gone, guest hung).
    pub fn try_run(&self, cmd: &str, timeout: Duration) -> Option<(i32, String)> {
        assert!(
            !cmd.contains('\n') && !cmd.contains('\r'),
            "guest commands are one line: {cmd:?}"
        );
        let stdin = self.stdin.as_ref()?;
        let id = format!(
            "{}.{}",
            self.launches,
            self.cmd_seq.fetch_add(1, Ordering::Relaxed)
        );
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        let begin = format!("TSN-BEGIN {id}\n");
        let end = format!("TSN-END {id} ");
        // Only look at console output that arrives after the command is sent.
        let start = self.console.buf.lock().unwrap().text.len();
        {
            let mut w = stdin.lock().unwrap();
            w.write_all(format!("TSNCMD {id} {} {cmd}\n", secs.max(1)).as_bytes())
                .ok()?;
            w.flush().ok()?;
        }
        let deadline = Instant::now() + timeout + RUN_MARGIN;
        self.console.wait(deadline, |t| {
            let t = &t[start..];
            let b = t.find(&begin)? + begin.len();
            let e = b + t[b..].find(&end)?;
            let rest = &t[e + end.len()..];
            let nl = rest.find('\n')?;
            let code: i32 = rest[..nl].trim().parse().ok()?;
            let out = t[b..e].strip_suffix('\n').unwrap_or(&t[b..e]);
            Some((code, out.to_string()))
        })
    }

    /// [`Guest::try_run`], panicking (with the console tail) when the guest does not answer.
    pub fn run(&self, cmd: &str, timeout: Duration) -> (i32, String) {
        self.try_run(cmd, timeout).unwrap_or_else(|| {
            panic!(
                "guest {}: no answer to {cmd:?} within {:?}\n{}",
                self.name,
                timeout + RUN_MARGIN,
                self.diagnostics()
            )
        })
    }

    /// Runs `cmd` and asserts exit code 0; returns the output.
    pub fn run_ok(&self, cmd: &str, timeout: Duration) -> String {
        let (code, out) = self.run(cmd, timeout);
        assert_eq!(code, 0, "guest {}: `{cmd}` failed:\n{out}", self.name);
        out
    }

    /// Starts `cmd` in the background in the guest (output to `/tmp/<log>`, read it later with
    /// `cat`); returns at once. E.g. `spawn("nc.openbsd -u -l 5000", "udp5000")`.
    pub fn spawn(&self, cmd: &str, log: &str) {
        let c = format!("({cmd}) >/tmp/{log} 2>&1 </dev/null & echo $! >/tmp/{log}.pid");
        self.run_ok(&c, Duration::from_secs(5));
    }

    /// `ping -c COUNT -W 2 ADDR` (0.2 s apart); true when it got replies (exit code 0).
    pub fn ping(&self, addr: &str, count: u32) -> bool {
        let t = Duration::from_secs(u64::from(count) + 5);
        self.run(&format!("ping -c {count} -i 0.2 -W 2 {addr}"), t)
            .0
            == 0
    }

    /// Runs `cmd` every 300 ms until its output contains `want` (or `timeout`); the last output.
    pub fn wait_output(&self, cmd: &str, want: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, out) = self.run(cmd, Duration::from_secs(10));
            if out.contains(want) || Instant::now() > deadline {
                return out;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Sends `text` in one UDP datagram to ADDR:PORT (netcat-openbsd `nc -u`).
    pub fn udp_send(&self, addr: &str, port: u16, text: &str) {
        assert!(!text.contains('\'') && !text.contains('\n'));
        self.run_ok(
            &format!("echo '{text}' | nc.openbsd -u -w 1 {addr} {port}"),
            Duration::from_secs(5),
        );
    }

    /// `(rx_packets, tx_packets)` of an interface from /proc/net/dev.
    pub fn netdev_stats(&self, iface: &str) -> (u64, u64) {
        let out = self.run_ok("cat /proc/net/dev", Duration::from_secs(5));
        parse_proc_net_dev(&out, iface)
            .unwrap_or_else(|| panic!("no {iface} in /proc/net/dev:\n{out}"))
    }

    /// SIGKILL QEMU and wait for it (the vhost-user connection drops at once). In `Listen` mode the
    /// socket file is removed too.
    pub fn kill(&mut self) {
        self.stdin = None;
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.mode == Mode::Listen {
            let _ = fs::remove_file(&self.socket);
        }
    }

    /// Kills QEMU (if running) and boots the guest again on the same socket with the same
    /// settings. Call [`Guest::wait_ready`] again afterwards.
    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }

    /// Everything the guest printed on its serial console since the last launch.
    pub fn console(&self) -> String {
        self.console.text()
    }

    /// The console's and QEMU log's tails, for failure messages.
    pub fn diagnostics(&self) -> String {
        let qlog = fs::read_to_string(self.dir.join("qemu.log")).unwrap_or_default();
        format!(
            "--- {} console (tail) ---\n{}\n--- {} qemu.log (tail) ---\n{}\n--- ({}) ---",
            self.name,
            tail(&self.console.text(), 40),
            self.name,
            tail(&qlog, 20),
            self.dir.display()
        )
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!("{}", self.diagnostics());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// `(rx_packets, tx_packets)` for `iface` from the text of /proc/net/dev.
pub fn parse_proc_net_dev(text: &str, iface: &str) -> Option<(u64, u64)> {
    text.lines().find_map(|l| {
        let (name, rest) = l.split_once(':')?;
        if name.trim() != iface {
            return None;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        Some((*f.get(1)?, *f.get(9)?))
    })
}

/// A locally administered MAC `02:00:00:77:XX:YY` for guest `n` (1..=65535).
pub fn guest_mac(n: u16) -> String {
    format!("02:00:00:77:{:02x}:{:02x}", n >> 8, n & 0xff)
}

// ---------------------------------------------------------------------------------------------
// testpmd as a vhost-user backend (for the harness's self-test and comparisons)
// ---------------------------------------------------------------------------------------------

/// `dpdk-testpmd` with one `net_vhost` port per socket, io-forwarding port 0 <-> 1 (2 <-> 3 ...).
/// `client=false`: testpmd listens on the sockets (guests use [`Mode::Connect`]);
/// `client=true`: testpmd connects (guests use [`Mode::Listen`]).
pub struct Testpmd {
    child: Option<Child>,
    pub sockets: Vec<PathBuf>,
    pub log: PathBuf,
    client: bool,
}

impl Testpmd {
    pub fn start(sockets: &[PathBuf], queues: u16, client: bool, log: &Path) -> Testpmd {
        assert!(sockets.len() & 1 == 0, "io forwarding pairs ports");
        let prefix = format!(
            "tsnq{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut args: Vec<String> = vec![
            "-l".into(),
            "0,1".into(),
            "--no-pci".into(),
            format!("--file-prefix={prefix}"),
        ];
        // Without hugepages to spare, testpmd's own buffers in ordinary memory do for vhost
        // (--in-memory is refused together with --no-huge).
        if hugepages_free() < 64 || std::env::var_os("TSN_TESTPMD_NO_HUGE").is_some() {
            args.extend(["--no-huge", "-m", "256", "--no-shconf"].map(String::from));
        } else {
            args.push("--in-memory".into());
        }
        for (i, s) in sockets.iter().enumerate() {
            if !client {
                let _ = fs::remove_file(s);
            }
            let mut v = format!("net_vhost{i},iface={}", s.display());
            if queues > 1 {
                write!(v, ",queues={queues}").unwrap();
            }
            if client {
                v.push_str(",client=1");
            }
            args.push("--vdev".into());
            args.push(v);
        }
        args.extend([
            "--".into(),
            "--forward-mode=io".into(),
            "--auto-start".into(),
            "--stats-period=1".into(),
            // 36 MB of mbufs instead of the default ~340 MB.
            "--total-num-mbufs=16384".into(),
        ]);
        if queues > 1 {
            args.push(format!("--rxq={queues}"));
            args.push(format!("--txq={queues}"));
        }
        let logf = fs::File::create(log).expect("create testpmd log");
        let mut cmd = Command::new("dpdk-testpmd");
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(logf.try_clone().unwrap()))
            .stderr(Stdio::from(logf));
        let child = spawn_tied(cmd).expect("spawn dpdk-testpmd (Debian package dpdk)");
        let mut t = Testpmd {
            child: Some(child),
            sockets: sockets.to_vec(),
            log: log.to_path_buf(),
            client,
        };
        // Ready once forwarding has started (listening sockets exist by then; in client mode it
        // connects, and retries, in the background).
        let deadline = Instant::now() + Duration::from_secs(60);
        while !fs::read_to_string(&t.log)
            .unwrap_or_default()
            .contains("packet forwarding - ports=")
        {
            if let Some(Ok(Some(st))) = t.child.as_mut().map(|c| c.try_wait()) {
                panic!("testpmd exited ({st}):\n{}", t.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "testpmd did not start forwarding:\n{}",
                t.log_tail()
            );
            thread::sleep(Duration::from_millis(100));
        }
        t
    }

    pub fn log_tail(&self) -> String {
        tail(&fs::read_to_string(&self.log).unwrap_or_default(), 40)
    }

    /// SIGTERM, then SIGKILL after 5 s; removes the sockets it listened on.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill on our own child's pid (not yet reaped) has no memory effects.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if !self.client {
            for s in &self.sockets {
                let _ = fs::remove_file(s);
            }
        }
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!("--- testpmd log (tail) ---\n{}", self.log_tail());
        }
    }
}

fn hugepages_free() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
