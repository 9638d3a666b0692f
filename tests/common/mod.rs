//! Integration-test harness for tsn-vswitch.
//!
//! - [`Lab`]: per-test unique names (prefix from pid + test name), clean-up of leftovers of the same
//!   prefix (and of test runs whose process is gone) at start, and of everything on drop (panics
//!   included).
//! - [`Host`]: a network namespace with one end of a veth pair inside (MAC 02:00:00:00:00:0N, IPv4
//!   10.77.0.N/24, IPv6 off, TX checksum offload off) and the other end up in the root namespace,
//!   where the switch's `net_af_packet` port binds.
//! - [`in_netns`]: run a closure on a thread that entered a namespace (sockets made there belong to it).
//! - [`RawSocket`]: AF_PACKET socket sending frames verbatim and receiving them with the 802.1Q tag
//!   that the kernel moved to PACKET_AUXDATA put back in place; [`frame`] builds frames.
//! - [`Switch`]: the switch process, readiness by `ctl stats`, `stats()`/`fdb()`, SIGTERM on drop,
//!   and its log printed when a test fails.
//! - [`evil`]: a hostile vhost-user frontend played by the test, and watching its port;
//!   [`testpmd`]: `dpdk-testpmd` as a real frontend.
#![allow(dead_code)]

pub mod evil;
pub mod tas;
pub mod testpmd;

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read};
use std::mem;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The switch binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tsn-vswitch");

/// Every name this harness creates (namespaces, interfaces) starts with this.
const FAMILY: &str = "tsv";
/// Local experimental EtherType used for the test frames.
pub const ETH_TEST: u16 = 0x88b5;
pub const TPID_8021Q: u16 = 0x8100;
pub const BROADCAST: [u8; 6] = [0xff; 6];

const SOL_PACKET: libc::c_int = 263;
const PACKET_AUXDATA: libc::c_int = 8;
pub const PACKET_HOST: u8 = 0;
pub const PACKET_BROADCAST: u8 = 1;
pub const PACKET_MULTICAST: u8 = 2;
pub const PACKET_OTHERHOST: u8 = 3;
pub const PACKET_OUTGOING: u8 = 4;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// `struct tpacket_auxdata` from <linux/if_packet.h>.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

fn base36(mut n: u64, width: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out).unwrap()
}

fn parse_base36(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 36).ok()
}

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Run a command to completion, killing it if it outlives `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {desc}: {e}"))?;
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let stdout = out_t.join().unwrap_or_default();
                let stderr = err_t.join().unwrap_or_default();
                return Err(format!(
                    "{desc} did not finish within {timeout:?} (killed)\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&stdout),
                    String::from_utf8_lossy(&stderr)
                ));
            }
            Err(e) => return Err(format!("wait {desc}: {e}")),
        }
    };
    Ok(Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    })
}

/// Run a set-up command that must succeed (e.g. `ip ...`).
pub fn sh(args: &[&str]) {
    let out = run_with_timeout(
        Command::new(args[0]).args(&args[1..]),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "command {:?} failed ({}): {}{}",
        args,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run a clean-up command, ignoring failure.
fn sh_quiet(args: &[&str]) {
    let _ = run_with_timeout(
        Command::new(args[0]).args(&args[1..]),
        Duration::from_secs(30),
    );
}

/// Strip ANSI escape sequences (coloured log output) from text.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c2 in chars.by_ref() {
                    if ('@'..='~').contains(&c2) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

pub fn mac_str(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Namespaces
// ---------------------------------------------------------------------------------------------

/// Run `f` on a thread that has entered network namespace `ns` (a name under /var/run/netns).
/// Sockets created by `f` belong to that namespace and may be used from any thread afterwards.
pub fn in_netns<T: Send, F: FnOnce() -> T + Send>(ns: &str, f: F) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::scope(|s| {
        let handle = s.spawn(move || {
            let file = fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: plain syscall on a valid fd; only this thread changes namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns({path}): {}", io::Error::last_os_error());
            f()
        });
        handle
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

fn ifindex(ifname: &str) -> io::Result<libc::c_int> {
    let c = CString::new(ifname).unwrap();
    // SAFETY: valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(idx as libc::c_int)
    }
}

/// Turn off TX checksum offload on `ifname` in the calling thread's namespace (like
/// `ethtool -K IF tx off`). Needed because a packet socket (DPDK af_packet) reading from a veth
/// gets locally generated UDP/TCP with only a partial checksum, which the far side would drop.
pub fn disable_tx_csum(ifname: &str) -> io::Result<()> {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    #[repr(C)]
    struct IfreqData {
        name: [u8; 16],
        data: *mut libc::c_void,
        _pad: [u8; 16],
    }
    const ETHTOOL_STXCSUM: u32 = 0x17;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    let mut val = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: 0,
    };
    let mut req = IfreqData {
        name: [0; 16],
        data: &mut val as *mut EthtoolValue as *mut libc::c_void,
        _pad: [0; 16],
    };
    req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    // SAFETY: plain socket; ioctl with a properly laid-out ifreq pointing at a live ethtool_value.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        if libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL as _, &mut req as *mut IfreqData) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn list_netns() -> Vec<String> {
    fs::read_dir("/var/run/netns")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub fn list_links() -> Vec<String> {
    fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a name made by this harness is stale: it carries `prefix`, or the pid encoded in it
/// belongs to no running process (a crashed or killed earlier run).
fn is_stale(name: &str, prefix: &str) -> bool {
    if name.starts_with(prefix) {
        return true;
    }
    if !name.starts_with(FAMILY) || name.len() < FAMILY.len() + 5 {
        return false;
    }
    match parse_base36(&name[FAMILY.len()..FAMILY.len() + 5]) {
        Some(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
        None => false,
    }
}

fn cleanup_prefix(prefix: &str) {
    for link in list_links() {
        if is_stale(&link, prefix) {
            sh_quiet(&["ip", "link", "del", &link]);
        }
    }
    for ns in list_netns() {
        if is_stale(&ns, prefix) {
            sh_quiet(&["ip", "netns", "del", &ns]);
        }
    }
    // Temp dirs (switch logs) kept by failed tests of runs that are gone.
    if let Ok(rd) = fs::read_dir(std::env::temp_dir()) {
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix("tsnt-") {
                if rest.starts_with(FAMILY) && is_stale(rest, prefix) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hosts
// ---------------------------------------------------------------------------------------------

/// A network namespace behind a veth pair.
#[derive(Debug)]
pub struct Host {
    /// Logical name (also used as the switch port name in the tests), e.g. "h1".
    pub name: String,
    /// Network namespace name.
    pub ns: String,
    /// The veth end inside the namespace.
    pub ifname: String,
    /// The veth end in the root namespace (what the switch binds to); None for a host linked
    /// directly to another namespace (harness self-test).
    pub root_if: Option<String>,
    pub index: u8,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
}

impl Host {
    pub fn mac_for(index: u8) -> [u8; 6] {
        [0x02, 0, 0, 0, 0, index]
    }

    pub fn ip_for(index: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, index)
    }

    fn blank(prefix: &str, name: &str, index: u8, root: bool) -> Host {
        Host {
            name: name.to_string(),
            ns: format!("{prefix}-{name}"),
            ifname: format!("{prefix}n{index}"),
            root_if: root.then(|| format!("{prefix}r{index}")),
            index,
            mac: Self::mac_for(index),
            ip: Self::ip_for(index),
        }
    }

    fn create_ns(&self) {
        sh(&["ip", "netns", "add", &self.ns]);
        // New devices in the namespace start with IPv6 off (no router solicitations, no MLD).
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.ns,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; \
             echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6; ip link set lo up",
        ]);
    }

    /// Inside the namespace: MAC, address, checksum offload off, up.
    fn configure_inside(&self) {
        let mac = mac_str(&self.mac);
        let ip = format!("{}/24", self.ip);
        for args in [
            vec!["link", "set", &self.ifname, "address", &mac],
            vec!["addr", "add", &ip, "dev", &self.ifname],
        ] {
            let mut full = vec!["ip", "-n", &self.ns];
            full.extend(args);
            sh(&full);
        }
        let ifname = self.ifname.clone();
        in_netns(&self.ns, move || disable_tx_csum(&ifname))
            .unwrap_or_else(|e| panic!("disable tx checksum offload on {}: {e}", self.ifname));
        sh(&["ip", "-n", &self.ns, "link", "set", &self.ifname, "up"]);
    }

    /// A namespace whose veth peer stays in the root namespace (a switch port).
    pub fn new(prefix: &str, name: &str, index: u8) -> Host {
        let h = Host::blank(prefix, name, index, true);
        let root_if = h.root_if.clone().unwrap();
        h.create_ns();
        sh(&[
            "ip", "link", "add", &root_if, "type", "veth", "peer", "name", &h.ifname,
        ]);
        // Root end: no address, IPv6 off before it comes up, so it sends nothing by itself.
        fs::write(
            format!("/proc/sys/net/ipv6/conf/{root_if}/disable_ipv6"),
            "1",
        )
        .unwrap_or_else(|e| panic!("disable IPv6 on {root_if}: {e}"));
        sh(&["ip", "link", "set", &h.ifname, "netns", &h.ns]);
        h.configure_inside();
        sh(&["ip", "link", "set", &root_if, "up"]);
        h
    }

    /// Two namespaces linked directly by one veth pair (no switch): for the harness self-test.
    pub fn pair(prefix: &str, a: (&str, u8), b: (&str, u8)) -> (Host, Host) {
        let ha = Host::blank(prefix, a.0, a.1, false);
        let hb = Host::blank(prefix, b.0, b.1, false);
        ha.create_ns();
        hb.create_ns();
        sh(&[
            "ip", "link", "add", &ha.ifname, "type", "veth", "peer", "name", &hb.ifname,
        ]);
        sh(&["ip", "link", "set", &ha.ifname, "netns", &ha.ns]);
        sh(&["ip", "link", "set", &hb.ifname, "netns", &hb.ns]);
        ha.configure_inside();
        hb.configure_inside();
        (ha, hb)
    }

    /// Raw packet socket on this host's interface, inside its namespace.
    pub fn raw(&self) -> RawSocket {
        let ifname = self.ifname.clone();
        in_netns(&self.ns, move || RawSocket::open(&ifname))
            .unwrap_or_else(|e| panic!("raw socket on {} in {}: {e}", self.ifname, self.ns))
    }

    /// Raw packet socket on the root-namespace end of the veth (what the switch port sees).
    pub fn raw_root_end(&self) -> RawSocket {
        let root_if = self.root_if.as_deref().expect("host has no root end");
        RawSocket::open(root_if).unwrap_or_else(|e| panic!("raw socket on {root_if}: {e}"))
    }

    /// UDP socket bound to this host's address inside its namespace (port 0: any).
    pub fn udp(&self, port: u16) -> UdpSocket {
        let addr = SocketAddrV4::new(self.ip, port);
        in_netns(&self.ns, move || UdpSocket::bind(addr))
            .unwrap_or_else(|e| panic!("udp bind {addr} in {}: {e}", self.ns))
    }

    /// `ping -c COUNT -W 1 ADDR` from inside the namespace; returns its output.
    pub fn ping(&self, addr: Ipv4Addr, count: u32) -> Output {
        let count = count.to_string();
        let target = addr.to_string();
        run_with_timeout(
            Command::new("ip").args([
                "netns", "exec", &self.ns, "ping", "-n", "-c", &count, "-W", "1", "-i", "0.2",
                &target,
            ]),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Ping (one echo at a time) until a reply comes or `timeout` passes. The first echoes may be
    /// lost legitimately (ARP, learning); returns whether one succeeded, with the last output.
    pub fn ping_until_ok(&self, addr: Ipv4Addr, timeout: Duration) -> (bool, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.ping(addr, 1);
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.success() {
                return (true, text);
            }
            if Instant::now() >= deadline {
                return (false, text);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn destroy(&self) {
        if let Some(root_if) = &self.root_if {
            sh_quiet(&["ip", "link", "del", root_if]);
        }
        sh_quiet(&["ip", "netns", "del", &self.ns]);
    }
}

/// Send one UDP datagram from `a` to `b` and a reply back, retrying (loss before learning/ARP is
/// legitimate) until `timeout`. Returns an error describing what was missing.
pub fn udp_exchange(a: &Host, b: &Host, timeout: Duration) -> Result<(), String> {
    let sa = a.udp(0);
    let sb = b.udp(0);
    let addr_a = sa.local_addr().unwrap();
    let addr_b = sb.local_addr().unwrap();
    sa.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    sb.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let req = marker("udp-req");
    let rep = marker("udp-rep");
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 2048];
    let mut got_req = false;
    while Instant::now() < deadline {
        if !got_req {
            sa.send_to(&req, addr_b)
                .map_err(|e| format!("send a->b: {e}"))?;
            if let Ok((n, from)) = sb.recv_from(&mut buf) {
                if buf[..n] == req[..] && from == addr_a {
                    got_req = true;
                }
            }
        }
        if got_req {
            sb.send_to(&rep, addr_a)
                .map_err(|e| format!("send b->a: {e}"))?;
            if let Ok((n, from)) = sa.recv_from(&mut buf) {
                if buf[..n] == rep[..] && from == addr_b {
                    return Ok(());
                }
            }
        }
    }
    Err(if got_req {
        format!("UDP reply {addr_b} -> {addr_a} never arrived")
    } else {
        format!("UDP request {addr_a} -> {addr_b} never arrived")
    })
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/// An 802.1Q tag (DEI not modelled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanTag {
    pub pcp: u8,
    pub vid: u16,
}

impl VlanTag {
    pub fn new(vid: u16, pcp: u8) -> Self {
        VlanTag { pcp, vid }
    }
    pub fn tci(self) -> u16 {
        (u16::from(self.pcp & 7) << 13) | (self.vid & 0x0fff)
    }
    pub fn from_tci(tci: u16) -> Self {
        VlanTag {
            pcp: (tci >> 13) as u8,
            vid: tci & 0x0fff,
        }
    }
}

static MARKER_SEQ: AtomicU64 = AtomicU64::new(0);

/// A payload marker unique to this process, call and label.
pub fn marker(label: &str) -> Vec<u8> {
    let seq = MARKER_SEQ.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("TSNT-{}-{seq}-{nanos:x}-{label}", std::process::id()).into_bytes()
}

/// An untagged Ethernet/IPv4/UDP frame of `len` bytes (without FCS; at least the headers and
/// `head`) from `src` to `dst` (MAC, address), source port 40000, no UDP checksum, whose
/// payload starts with `head` and is padded with 0x5a.
pub fn udp_frame_to(
    src: ([u8; 6], Ipv4Addr),
    dst: ([u8; 6], Ipv4Addr),
    dport: u16,
    len: usize,
    head: &[u8],
) -> Vec<u8> {
    let len = len.max(14 + 20 + 8 + head.len());
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (len - 14) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.1.octets());
    ip[16..20].copy_from_slice(&dst.1.octets());
    let mut sum: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&(ip_len - 20).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum (IPv4)
    f.extend_from_slice(head);
    f.resize(len, 0x5a);
    f
}

/// Build an Ethernet frame, optionally 802.1Q-tagged, padded to at least 60 bytes untagged.
pub fn frame(
    dst: [u8; 6],
    src: [u8; 6],
    vlan: Option<VlanTag>,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(18 + payload.len().max(46));
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(tag) = vlan {
        f.extend_from_slice(&TPID_8021Q.to_be_bytes());
        f.extend_from_slice(&tag.tci().to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    let min = if vlan.is_some() { 64 } else { 60 };
    if f.len() < min {
        f.resize(min, 0);
    }
    f
}

/// A received frame, with the 802.1Q tag back in place if the kernel had moved it to auxdata.
#[derive(Clone, Debug)]
pub struct RxFrame {
    pub data: Vec<u8>,
    /// sll_pkttype: PACKET_HOST, PACKET_BROADCAST, ..., PACKET_OUTGOING.
    pub pkttype: u8,
    /// Whether the tag came from PACKET_AUXDATA (rather than inline in the data).
    pub tag_from_aux: bool,
}

impl RxFrame {
    pub fn outgoing(&self) -> bool {
        self.pkttype == PACKET_OUTGOING
    }
    pub fn dst(&self) -> [u8; 6] {
        self.data[0..6].try_into().unwrap()
    }
    pub fn src(&self) -> [u8; 6] {
        self.data[6..12].try_into().unwrap()
    }
    fn tagged(&self) -> bool {
        self.data.len() >= 18 && u16::from_be_bytes([self.data[12], self.data[13]]) == TPID_8021Q
    }
    /// The outer 802.1Q tag, if the frame carried one.
    pub fn vlan(&self) -> Option<VlanTag> {
        self.tagged()
            .then(|| VlanTag::from_tci(u16::from_be_bytes([self.data[14], self.data[15]])))
    }
    /// EtherType after the (optional) tag.
    pub fn ethertype(&self) -> u16 {
        let o = if self.tagged() { 16 } else { 12 };
        u16::from_be_bytes([self.data[o], self.data[o + 1]])
    }
    pub fn has(&self, marker: &[u8]) -> bool {
        contains(&self.data, marker)
    }
    pub fn describe(&self) -> String {
        format!(
            "{} -> {} vlan={:?} type={:#06x} pkttype={} len={}",
            mac_str(&self.src()),
            mac_str(&self.dst()),
            self.vlan(),
            self.ethertype(),
            self.pkttype,
            self.data.len()
        )
    }
}

/// An AF_PACKET socket bound to one interface.
pub struct RawSocket {
    fd: OwnedFd,
    pub ifname: String,
}

impl RawSocket {
    /// Open on `ifname` in the calling thread's namespace (see [`Host::raw`]).
    pub fn open(ifname: &str) -> io::Result<RawSocket> {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain syscalls with correctly sized arguments.
        unsafe {
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::c_int::from(proto),
            );
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let one: libc::c_int = 1;
            if libc::setsockopt(
                fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_AUXDATA,
                &one as *const _ as *const libc::c_void,
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
            let rcvbuf: libc::c_int = 4 << 20;
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &rcvbuf as *const _ as *const libc::c_void,
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            let mut sll: libc::sockaddr_ll = mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex(ifname)?;
            if libc::bind(
                fd.as_raw_fd(),
                &sll as *const _ as *const libc::sockaddr,
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
            let sock = RawSocket {
                fd,
                ifname: ifname.to_string(),
            };
            // Before bind the socket saw every interface: drop that.
            while sock.recv(Duration::ZERO)?.is_some() {}
            Ok(sock)
        }
    }

    /// Send one frame verbatim.
    pub fn send(&self, frame: &[u8]) {
        // SAFETY: valid buffer.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
        assert_eq!(
            n,
            frame.len() as isize,
            "send on {}: {}",
            self.ifname,
            io::Error::last_os_error()
        );
    }

    /// Receive one frame (any direction), waiting at most `timeout`.
    pub fn recv(&self, timeout: Duration) -> io::Result<Option<RxFrame>> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(e)
            };
        }
        if rc == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; 65536];
        let mut ctrl = [0u64; 64];
        // SAFETY: zeroed C structs are valid.
        let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: a zeroed msghdr is valid (null pointers, zero lengths); filled in below.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_name = &mut sll as *mut _ as *mut libc::c_void;
        msg.msg_namelen = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = mem::size_of_val(&ctrl) as _;
        // SAFETY: msg points at live buffers of the stated sizes.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock
                || e.kind() == io::ErrorKind::Interrupted
            {
                Ok(None)
            } else {
                Err(e)
            };
        }
        buf.truncate(n as usize);
        let mut aux: Option<TpacketAuxdata> = None;
        // SAFETY: walking the control buffer the kernel filled, with the libc CMSG helpers.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == SOL_PACKET && (*cmsg).cmsg_type == PACKET_AUXDATA {
                    aux = Some(std::ptr::read_unaligned(
                        libc::CMSG_DATA(cmsg) as *const TpacketAuxdata
                    ));
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        let mut tag_from_aux = false;
        if let Some(a) = aux {
            if a.tp_status & TP_STATUS_VLAN_VALID != 0 && buf.len() >= 12 {
                let tpid = if a.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 && a.tp_vlan_tpid != 0 {
                    a.tp_vlan_tpid
                } else {
                    TPID_8021Q
                };
                let mut tag = Vec::with_capacity(4);
                tag.extend_from_slice(&tpid.to_be_bytes());
                tag.extend_from_slice(&a.tp_vlan_tci.to_be_bytes());
                buf.splice(12..12, tag);
                tag_from_aux = true;
            }
        }
        Ok(Some(RxFrame {
            data: buf,
            pkttype: sll.sll_pkttype,
            tag_from_aux,
        }))
    }

    /// Collect the incoming (not PACKET_OUTGOING) frames containing `marker` until `deadline`,
    /// then whatever is already queued.
    pub fn capture_until(&self, marker: &[u8], deadline: Instant) -> Vec<RxFrame> {
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left.min(Duration::from_millis(200))) {
                Ok(Some(f)) => {
                    if !f.outgoing() && f.has(marker) {
                        got.push(f);
                    }
                }
                Ok(None) if left.is_zero() => break,
                Ok(None) => {}
                Err(e) => panic!("recv on {}: {e}", self.ifname),
            }
        }
        got
    }

    /// Like [`capture_until`](Self::capture_until), for a window from now.
    pub fn capture(&self, marker: &[u8], window: Duration) -> Vec<RxFrame> {
        self.capture_until(marker, Instant::now() + window)
    }

    /// The first incoming frame containing `marker` within `timeout`.
    pub fn wait_for(&self, marker: &[u8], timeout: Duration) -> Option<RxFrame> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left.min(Duration::from_millis(200))) {
                Ok(Some(f)) if !f.outgoing() && f.has(marker) => return Some(f),
                Ok(_) if left.is_zero() => return None,
                Ok(_) => {}
                Err(e) => panic!("recv on {}: {e}", self.ifname),
            }
        }
    }

    /// Every frame (both directions) containing `marker` until `deadline`.
    pub fn capture_all_directions(&self, marker: &[u8], deadline: Instant) -> Vec<RxFrame> {
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left.min(Duration::from_millis(200))) {
                Ok(Some(f)) if f.has(marker) => got.push(f),
                Ok(None) if left.is_zero() => break,
                Ok(_) => {}
                Err(e) => panic!("recv on {}: {e}", self.ifname),
            }
        }
        got
    }
}

/// Send `frame` from `tx` every 250 ms until `rx` receives a frame carrying `marker` (first
/// frames may be lost legitimately), up to `timeout`.
pub fn send_until_received(
    tx: &RawSocket,
    frame: &[u8],
    rx: &RawSocket,
    marker: &[u8],
    timeout: Duration,
) -> Option<RxFrame> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        tx.send(frame);
        if let Some(f) = rx.wait_for(marker, Duration::from_millis(250)) {
            return Some(f);
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Lab: names, hosts, switch, clean-up
// ---------------------------------------------------------------------------------------------

/// Everything one test sets up. Dropping it stops the switch first, then removes the hosts.
pub struct Lab {
    pub switch: Option<Switch>,
    pub hosts: Vec<Host>,
    pub prefix: String,
    pub dir: PathBuf,
}

impl Lab {
    /// A lab for `test` (a short, unique-per-file test name): prefix `tsv` + pid + test hash
    /// (11 chars; interfaces `PREFIXr1`/`PREFIXn1` stay within 15 chars).
    pub fn new(test: &str) -> Lab {
        let pid = u64::from(std::process::id());
        let prefix = format!(
            "{FAMILY}{}{}",
            base36(pid, 5),
            base36(fnv1a(test) % (36 * 36 * 36), 3)
        );
        cleanup_prefix(&prefix);
        let dir = std::env::temp_dir().join(format!("tsnt-{prefix}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Lab {
            switch: None,
            hosts: Vec::new(),
            prefix,
            dir,
        }
    }

    /// Add host `name` with index `n` (1..=99): MAC 02:00:00:00:00:n, IPv4 10.77.0.n/24.
    pub fn add_host(&mut self, name: &str, n: u8) -> &Host {
        assert!((1..=99).contains(&n), "host index {n} out of range");
        let h = Host::new(&self.prefix, name, n);
        self.hosts.push(h);
        self.hosts.last().unwrap()
    }

    /// Two namespaces linked directly (no switch), for the harness self-test.
    pub fn add_linked_pair(&mut self, a: (&str, u8), b: (&str, u8)) {
        let (ha, hb) = Host::pair(&self.prefix, a, b);
        self.hosts.push(ha);
        self.hosts.push(hb);
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    /// `--port` values for the given hosts: `(host name, options)` where options is e.g.
    /// `"vlan=10"` or `""`. The port is named after the host; vdevs are net_af_packet0, 1, ...
    pub fn port_args(&self, ports: &[(&str, &str)]) -> Vec<String> {
        let mut args = Vec::new();
        for (i, (name, opts)) in ports.iter().enumerate() {
            let h = self.host(name);
            let root_if = h
                .root_if
                .as_deref()
                .expect("host linked directly has no port");
            let spec = if opts.is_empty() {
                name.to_string()
            } else {
                format!("{name},{opts}")
            };
            args.push("--port".to_string());
            args.push(format!("{spec}=dpdk:net_af_packet{i},iface={root_if}"));
        }
        args
    }

    /// Start the switch with a port per `(host, options)` plus `extra` arguments; waits until ready.
    pub fn start_switch(&mut self, ports: &[(&str, &str)], extra: &[&str]) -> &Switch {
        let mut args = self.port_args(ports);
        args.extend(extra.iter().map(|s| s.to_string()));
        let sw = Switch::start(&self.dir, args);
        self.switch = Some(sw);
        self.switch.as_ref().unwrap()
    }

    /// Start the switch with exactly `args` (plus `--ctl`/`--log-level` defaults); waits until ready.
    pub fn start_switch_args(&mut self, args: Vec<String>) -> &Switch {
        let sw = Switch::start(&self.dir, args);
        self.switch = Some(sw);
        self.switch.as_ref().unwrap()
    }

    pub fn switch(&self) -> &Switch {
        self.switch.as_ref().expect("switch not started")
    }

    /// Stop the switch (SIGTERM) and return how it exited.
    pub fn stop_switch(&mut self) -> ExitStatus {
        self.switch.take().expect("switch not started").stop()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Stop the switch before its interfaces disappear.
        drop(self.switch.take());
        for h in self.hosts.drain(..) {
            h.destroy();
        }
        cleanup_prefix(&self.prefix);
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The switch process
// ---------------------------------------------------------------------------------------------

/// How long the switch may take to become ready (EAL init, hugepages, ports).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Default)]
pub struct PortStats {
    pub name: String,
    pub link_up: bool,
    pub vlan: Option<u64>,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: serde_json::Value,
}

#[derive(Clone, Debug)]
pub struct FdbEntry {
    pub mac: String,
    pub vlan: u64,
    pub port: String,
    pub age_s: u64,
}

pub struct Switch {
    child: Option<Child>,
    pub ctl: PathBuf,
    pub log: PathBuf,
    pub args: Vec<String>,
}

static SWITCH_SEQ: AtomicU64 = AtomicU64::new(0);

impl Switch {
    /// Spawn the switch with `args` (a `--ctl` under `dir` is added unless given), output to a log
    /// file in `dir`, and wait until `ctl stats` answers. Panics (printing the log) otherwise.
    pub fn start(dir: &Path, mut args: Vec<String>) -> Switch {
        let seq = SWITCH_SEQ.fetch_add(1, Ordering::Relaxed);
        let ctl = match args.iter().position(|a| a == "--ctl") {
            Some(i) => PathBuf::from(&args[i + 1]),
            None => {
                let p = dir.join(format!("ctl{seq}.sock"));
                args.push("--ctl".into());
                args.push(p.to_string_lossy().into_owned());
                p
            }
        };
        if !args.iter().any(|a| a == "--log-level") {
            args.push("--log-level".into());
            args.push("debug".into());
        }
        let _ = fs::remove_file(&ctl);
        let log = dir.join(format!("switch{seq}.log"));
        let logf = fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        let mut sw = Switch {
            child: Some(child),
            ctl,
            log,
            args,
        };
        sw.wait_ready();
        sw
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last_err: String;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "switch exited before becoming ready ({st}); args {:?}\n--- switch log ---\n{}",
                    self.args,
                    self.log_text()
                );
            }
            match self.ctl_json("stats") {
                Ok(_) => return,
                Err(e) => last_err = e,
            }
            if Instant::now() >= deadline {
                panic!(
                    "switch not ready after {READY_TIMEOUT:?} (last ctl error: {last_err}); args {:?}",
                    self.args
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log_text(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(
            &fs::read(&self.log).unwrap_or_default(),
        ))
    }

    /// `tsn-vswitch ctl --ctl PATH <what>` parsed as JSON.
    pub fn ctl_json(&self, what: &str) -> Result<serde_json::Value, String> {
        let out = run_with_timeout(
            Command::new(BIN)
                .arg("ctl")
                .arg("--ctl")
                .arg(&self.ctl)
                .arg(what),
            Duration::from_secs(15),
        )?;
        if !out.status.success() {
            return Err(format!(
                "ctl {what} exited {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "ctl {what}: bad JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    pub fn stats(&self) -> Vec<PortStats> {
        let v = self.ctl_json("stats").unwrap_or_else(|e| panic!("{e}"));
        let ports = v["ports"]
            .as_array()
            .unwrap_or_else(|| panic!("stats without a ports array: {v}"));
        ports
            .iter()
            .map(|p| {
                let num = |k: &str| {
                    p[k].as_u64()
                        .unwrap_or_else(|| panic!("stats: port field {k} not a number: {p}"))
                };
                PortStats {
                    name: p["name"]
                        .as_str()
                        .unwrap_or_else(|| panic!("stats: port without name: {p}"))
                        .to_string(),
                    link_up: p["link_up"]
                        .as_bool()
                        .unwrap_or_else(|| panic!("stats: link_up not a bool: {p}")),
                    vlan: p["vlan"].as_u64(),
                    rx_packets: num("rx_packets"),
                    rx_bytes: num("rx_bytes"),
                    tx_packets: num("tx_packets"),
                    tx_bytes: num("tx_bytes"),
                    drops: p["drops"].clone(),
                }
            })
            .collect()
    }

    pub fn port_stats(&self, name: &str) -> PortStats {
        let all = self.stats();
        all.iter()
            .find(|p| p.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("stats: no port {name} in {all:?}"))
    }

    /// Port `name` as `ctl stats` reports it, raw JSON (vhost-user ports carry `backend`).
    pub fn port_json(&self, name: &str) -> serde_json::Value {
        let v = self
            .ctl_json("stats")
            .unwrap_or_else(|e| panic!("ctl stats no longer answers: {e}"));
        v["ports"]
            .as_array()
            .unwrap_or_else(|| panic!("stats without a ports array: {v}"))
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("stats: no port {name} in {v}"))
    }

    /// Counter `key` of vhost-user port `name`'s backend.
    pub fn backend_u64(&self, name: &str, key: &str) -> u64 {
        let b = &self.port_json(name)["backend"];
        b[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} backend counter {key} missing: {b}"))
    }

    pub fn fdb(&self) -> Vec<FdbEntry> {
        let v = self.ctl_json("fdb").unwrap_or_else(|e| panic!("{e}"));
        let entries = v["entries"]
            .as_array()
            .unwrap_or_else(|| panic!("fdb without an entries array: {v}"));
        entries
            .iter()
            .map(|e| FdbEntry {
                mac: e["mac"]
                    .as_str()
                    .unwrap_or_else(|| panic!("fdb entry without mac: {e}"))
                    .to_ascii_lowercase(),
                vlan: e["vlan"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("fdb entry vlan not a number: {e}")),
                port: e["port"]
                    .as_str()
                    .unwrap_or_else(|| panic!("fdb entry without port: {e}"))
                    .to_string(),
                age_s: e["age_s"].as_u64().unwrap_or(0),
            })
            .collect()
    }

    /// Poll the fdb until `mac` (on `vlan`) is on `port`, up to `timeout`; returns the last fdb.
    pub fn wait_fdb(
        &self,
        mac: [u8; 6],
        vlan: u64,
        port: &str,
        timeout: Duration,
    ) -> Result<(), Vec<FdbEntry>> {
        let want = mac_str(&mac);
        let deadline = Instant::now() + timeout;
        loop {
            let fdb = self.fdb();
            if fdb
                .iter()
                .any(|e| e.mac == want && e.vlan == vlan && e.port == port)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(fdb);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Poll stats until `pred` holds, up to `timeout`; returns the last stats either way.
    pub fn wait_stats(
        &self,
        timeout: Duration,
        pred: impl Fn(&[PortStats]) -> bool,
    ) -> Result<Vec<PortStats>, Vec<PortStats>> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.stats();
            if pred(&s) {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                return Err(s);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL. Returns the exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.terminate().expect("switch already gone")
    }

    fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(st)) => return Some(st),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => break,
            }
        }
        eprintln!("switch did not exit within 10 s of SIGTERM: SIGKILL");
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let status = self.terminate();
        if std::thread::panicking() {
            let mut msg = String::new();
            let _ = writeln!(msg, "--- switch args: {:?}", self.args);
            let _ = writeln!(msg, "--- switch exit on SIGTERM: {status:?}");
            let text = self.log_text();
            let lines: Vec<&str> = text.lines().collect();
            let skip = lines.len().saturating_sub(300);
            let _ = writeln!(
                msg,
                "--- switch log {} (last {} of {} lines) ---",
                self.log.display(),
                lines.len() - skip,
                lines.len()
            );
            for l in &lines[skip..] {
                let _ = writeln!(msg, "{l}");
            }
            let _ = writeln!(msg, "--- end of switch log ---");
            eprint!("{msg}");
        }
    }
}
