//! `dpdk-testpmd` as a real vhost-user frontend (a `net_virtio_user` port, macswap forwarding,
//! `--tx-first`), and the checks tests make through it.
use super::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The virtio-user port's MAC.
pub const VM_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];

/// A testpmd process acting as the guest; killed on drop.
pub struct Testpmd {
    child: Child,
    log: std::path::PathBuf,
}

impl Testpmd {
    /// `server`: testpmd listens (the switch port is vhost-user-client).
    pub fn start(dir: &Path, sock: &Path, queues: u16, peer: [u8; 6], server: bool) -> Testpmd {
        Testpmd::start_as(dir, sock, queues, VM_MAC, peer, server)
    }

    /// [`Testpmd::start`] with the virtio-user port's MAC `mac` (several guests in one test).
    pub fn start_as(
        dir: &Path,
        sock: &Path,
        queues: u16,
        mac: [u8; 6],
        peer: [u8; 6],
        server: bool,
    ) -> Testpmd {
        if server {
            // A killed testpmd leaves its socket file behind; its successor's bind would fail.
            let _ = std::fs::remove_file(sock);
        }
        let stem = sock.file_stem().and_then(|s| s.to_str()).unwrap_or("vm");
        let log = dir.join(format!("testpmd-{}-{stem}.log", std::process::id()));
        let out = std::fs::File::create(&log).expect("testpmd log");
        let vdev = format!(
            "net_virtio_user0,path={},queues={queues},mac={}{}",
            sock.display(),
            mac_str(&mac),
            if server { ",server=1" } else { "" }
        );
        // Main lcore on core 1 (idle), forwarding on core 0: the switch's PMD owns core 1.
        let child = Command::new("dpdk-testpmd")
            .args([
                "-l",
                "0,1",
                "--main-lcore",
                "1",
                "--in-memory",
                "--single-file-segments",
            ])
            .args([
                "--no-pci",
                "-m",
                "256",
                "--log-level=6",
                "--vdev",
                &vdev,
                "--",
            ])
            .args([
                "--forward-mode=macswap",
                "--auto-start",
                "--tx-first",
                "--stats-period=1",
            ])
            .arg(format!("--rxq={queues}"))
            .arg(format!("--txq={queues}"))
            .args(["--nb-cores=1", "--no-lsc-interrupt"])
            .arg(format!("--eth-peer=0,{}", mac_str(&peer)))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("dpdk-testpmd runs (scripts/setup.sh installs it)");
        Testpmd { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// RFC 1071 checksum over an IPv4 header: 0 when the header is intact.
fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Counts testpmd's tx-first frames at h1 and checks each is intact.
pub fn collect_txonly_frames(sock: &RawSocket, want: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    let mut n = 0;
    while n < want && Instant::now() < deadline {
        let Ok(Some(f)) = sock.recv(Duration::from_millis(200)) else {
            continue;
        };
        if f.outgoing() || f.src() != VM_MAC || f.ethertype() != 0x0800 {
            continue;
        }
        let ip = &f.data[14..];
        let ihl = usize::from(ip[0] & 0xf) * 4;
        assert_eq!(ip[0] >> 4, 4, "IPv4 frame from testpmd: {}", f.describe());
        assert_eq!(
            ipv4_checksum(&ip[..ihl]),
            0,
            "IPv4 header corrupted: {}",
            f.describe()
        );
        assert_eq!(&ip[12..20], &[198, 18, 0, 1, 198, 18, 0, 2], "addresses");
        assert_eq!(ip[9], 17, "UDP");
        n += 1;
    }
    n
}

/// h1 sends marker frames to the guest MAC until one comes back MAC-swapped, payload intact.
pub fn echo_through_guest(h1: &Host, sock: &RawSocket, label: &str) -> Result<(), String> {
    let m = marker(label);
    let f = frame(VM_MAC, h1.mac, None, 0x88b5, &m);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        sock.send(&f);
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            let Ok(Some(r)) = sock.recv(Duration::from_millis(100)) else {
                continue;
            };
            if r.outgoing() || !r.has(&m) {
                continue;
            }
            if r.src() != VM_MAC || r.dst() != h1.mac {
                return Err(format!("echo not MAC-swapped: {}", r.describe()));
            }
            if r.data[12..] != f[12..] {
                return Err(format!("payload changed on the way: {}", r.describe()));
            }
            return Ok(());
        }
    }
    Err("no echo from the guest within 30 s".into())
}
