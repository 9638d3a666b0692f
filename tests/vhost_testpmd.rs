//! vhost-user ports against a real frontend: `dpdk-testpmd` with a `net_virtio_user` port.
//!
//! Topology: namespace host h1 -- af_packet port "h1" -- [switch] -- vhost-user port "vm" --
//! testpmd (virtio-user, macswap forwarding, `--tx-first`).
//! - testpmd's first burst (32 frames per queue, IPv4/UDP 198.18.0.1 -> 198.18.0.2 to h1's MAC)
//!   must reach h1 intact (valid IPv4 header checksum, addresses, the virtio-user MAC);
//! - frames h1 sends to the virtio-user MAC come back MAC-swapped with the payload unchanged:
//!   switch -> guest RX ring -> testpmd -> guest TX ring -> switch -> h1;
//! - with queues=2, both guest TX queues carry frames (per-vring counters);
//! - killing testpmd mid-traffic and starting it again resumes traffic (both socket modes).
mod common;

use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const VM_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];

/// A testpmd process acting as the guest; killed on drop.
struct Testpmd {
    child: Child,
    log: std::path::PathBuf,
}

impl Testpmd {
    /// `server`: testpmd listens (the switch port is vhost-user-client).
    fn start(dir: &Path, sock: &Path, queues: u16, peer: [u8; 6], server: bool) -> Testpmd {
        if server {
            // A killed testpmd leaves its socket file behind; its successor's bind would fail.
            let _ = std::fs::remove_file(sock);
        }
        let log = dir.join(format!("testpmd-{}.log", std::process::id()));
        let out = std::fs::File::create(&log).expect("testpmd log");
        let vdev = format!(
            "net_virtio_user0,path={},queues={queues},mac={}{}",
            sock.display(),
            mac_str(&VM_MAC),
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

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(mut self) {
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
fn collect_txonly_frames(sock: &RawSocket, want: usize, timeout: Duration) -> usize {
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
fn echo_through_guest(h1: &Host, sock: &RawSocket, label: &str) -> Result<(), String> {
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

fn vring_packets(sw: &Switch) -> Vec<u64> {
    let v = sw.ctl_json("stats").expect("stats");
    let port = v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "vm")
        .cloned()
        .expect("port vm");
    port["backend"]["vring_packets"]
        .as_array()
        .expect("vring_packets")
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn run_case(test: &str, queues: u16, client_mode: bool) {
    let mut lab = Lab::new(test);
    lab.add_host("h1", 1);
    let sock = lab.dir.join("vm.sock");
    let kind = if client_mode {
        "vhost-user-client"
    } else {
        "vhost-user"
    };
    let mut args = lab.port_args(&[("h1", "")]);
    args.push("--port".into());
    args.push(format!("vm,queues={queues}={kind}:{}", sock.display()));
    // Listen at h1 before anything can send: in client mode testpmd's tx-first burst crosses
    // the switch as soon as it connects, possibly before start_switch_args has returned.
    let raw = lab.host("h1").raw();
    // In client mode the frontend must listen first.
    let tp = client_mode.then(|| Testpmd::start(&lab.dir, &sock, queues, lab.host("h1").mac, true));
    lab.start_switch_args(args);
    let h1 = lab.host("h1");
    let tp = tp.unwrap_or_else(|| Testpmd::start(&lab.dir, &sock, queues, h1.mac, false));

    let want = 32 * usize::from(queues);
    let got = collect_txonly_frames(&raw, want, Duration::from_secs(60));
    assert_eq!(
        got,
        want,
        "testpmd's first burst through the switch\n--- testpmd ---\n{}\n--- switch ---\n{}",
        tp.log_text(),
        lab.switch().log_text()
    );
    echo_through_guest(h1, &raw, "echo1").unwrap_or_else(|e| {
        panic!(
            "{e}\n--- testpmd ---\n{}\n--- switch ---\n{}",
            tp.log_text(),
            lab.switch().log_text()
        )
    });

    let vr = vring_packets(lab.switch());
    assert_eq!(vr.len(), usize::from(queues) * 2);
    for q in 0..usize::from(queues) {
        assert!(
            vr[2 * q + 1] >= 32,
            "guest TX queue {q} carried frames: {vr:?}"
        );
    }
    let st = lab.switch().port_stats("vm");
    assert!(st.rx_packets >= want as u64, "vm rx counted: {st:?}");
    assert!(st.tx_packets >= 1, "vm tx counted: {st:?}");

    // The frontend goes away mid-traffic and comes back: traffic resumes, switch unharmed.
    tp.kill();
    std::thread::sleep(Duration::from_secs(1));
    let tp = Testpmd::start(&lab.dir, &sock, queues, h1.mac, client_mode);
    echo_through_guest(h1, &raw, "echo2").unwrap_or_else(|e| {
        panic!(
            "after frontend restart: {e}\n--- testpmd ---\n{}\n--- switch ---\n{}",
            tp.log_text(),
            lab.switch().log_text()
        )
    });
    drop(tp);
    let status = lab.stop_switch();
    assert!(status.success(), "switch exits 0 on SIGTERM: {status:?}");
}

#[test]
fn testpmd_frontend_one_queue() {
    run_case("vtp1", 1, false);
}

#[test]
fn testpmd_frontend_two_queues() {
    run_case("vtp2", 2, false);
}

#[test]
fn testpmd_frontend_switch_as_client() {
    run_case("vtpc", 1, true);
}
