//! Ports added and deleted while the switch runs (`tsn-vswitch ctl port add|del`), while two
//! namespaces ping each other through it without a break.
//!
//! Topology: h1, h2 (af_packet ports at start); h3 (a third veth namespace, no port at start);
//! testpmd as the guest of a vhost-user port "vm" added at runtime.
//! - bad requests (duplicate name, bad specs, a device or socket in use, PCI at runtime, an
//!   unknown port to delete) are refused with a message and change nothing;
//! - "vm" added: testpmd's tx-first burst reaches h1 (guest -> namespace) and h1's frames come
//!   back MAC-swapped (namespace -> guest -> namespace); deleted: its socket file goes, its MAC
//!   leaves the FDB; added again (same name, socket, slot): counters from zero, frames both ways;
//!   a vhost-user-client port connects to a listening testpmd and passes frames both ways;
//! - h3 added as an af_packet port pings h1; deleted, then added again as an access port
//!   (vlan=10): its frames reach h1's trunk tagged VID 10;
//! - the h1 -> h2 ping loses a handful of echoes at most and never stops for seconds;
//! - the switch's fd count after the last delete is back to what it was before the first add;
//! - a gated port (`--gcl`) is not deleted (refused with the reason); an ungated one is.
mod common;

use common::testpmd::*;
use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `tsn-vswitch ctl --ctl CTL ARGS...`: the reply as JSON, or the error line.
fn ctl(sw: &Switch, args: &[&str]) -> Result<serde_json::Value, String> {
    let out = run_with_timeout(
        Command::new(BIN)
            .arg("ctl")
            .arg("--ctl")
            .arg(&sw.ctl)
            .args(args),
        Duration::from_secs(15),
    )?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("ctl {args:?}: bad JSON: {e}"))
}

/// A refusal whose message contains `want`.
fn refused(sw: &Switch, args: &[&str], want: &str) {
    match ctl(sw, args) {
        Ok(v) => panic!("ctl {args:?} was accepted: {v}"),
        Err(e) => assert!(
            e.contains(want),
            "ctl {args:?}: message {e:?} lacks {want:?}"
        ),
    }
}

fn port_names(sw: &Switch) -> Vec<String> {
    sw.stats().into_iter().map(|p| p.name).collect()
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits until the switch has released `n` deleted ports in all (a deleted port is released a
/// few loop iterations after `port del` answered), then returns its fd count.
fn released_then_fds(sw: &Switch, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    while sw.log_text().matches("port released").count() < n {
        assert!(
            Instant::now() < deadline,
            "{n} deleted port(s) not all released after 20 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    fd_count(sw.pid().expect("switch runs"))
}

/// `ping -i 0.1` from a namespace, for the whole test.
struct Pinger {
    child: Child,
    out: std::path::PathBuf,
}

/// What a continuous ping saw.
#[derive(Debug)]
struct PingReport {
    sent: u64,
    received: u64,
    /// The longest run of consecutive echoes without a reply.
    longest_gap: u64,
}

impl Pinger {
    fn start(from: &Host, to: std::net::Ipv4Addr, dir: &std::path::Path) -> Pinger {
        let out = dir.join(format!("ping-{}.log", from.name));
        let f = std::fs::File::create(&out).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &from.ns, "ping", "-n", "-i", "0.1"])
            .arg(to.to_string())
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .expect("ping runs");
        Pinger { child, out }
    }

    /// SIGINT (ping prints its summary), then counts sequence numbers replied to.
    fn stop(mut self) -> PingReport {
        // SAFETY: signalling our own child (`ip netns exec` execs ping: same pid).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let mut seqs: Vec<u64> = text
            .lines()
            .filter_map(|l| l.split("icmp_seq=").nth(1))
            .filter_map(|s| s.split_whitespace().next()?.parse().ok())
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        let sent: u64 = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no ping summary in:\n{text}"));
        let mut longest_gap = 0;
        let mut prev = 0;
        for &s in seqs.iter().chain(std::iter::once(&(sent + 1))) {
            longest_gap = longest_gap.max(s.saturating_sub(prev + 1));
            prev = s;
        }
        PingReport {
            sent,
            received: seqs.len() as u64,
            longest_gap,
        }
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Frames both ways through the guest behind port "vm": testpmd's tx-first burst reaches h1,
/// and h1's frames come back from the guest MAC-swapped.
fn frames_both_ways(lab: &Lab, raw: &RawSocket, tp: &Testpmd, label: &str) {
    let got = collect_txonly_frames(raw, 32, Duration::from_secs(60));
    assert_eq!(
        got,
        32,
        "{label}: testpmd's first burst from the guest to h1\n--- testpmd ---\n{}",
        tp.log_text()
    );
    echo_through_guest(lab.host("h1"), raw, label)
        .unwrap_or_else(|e| panic!("{label}: {e}\n--- testpmd ---\n{}", tp.log_text()));
}

#[test]
fn ports_come_and_go_while_others_forward() {
    let mut lab = Lab::new("rtports");
    lab.add_host("h1", 1);
    lab.add_host("h2", 2);
    lab.add_host("h3", 3);
    lab.start_switch(&[("h1", ""), ("h2", "")], &[]);
    let sw = lab.switch();
    let (h1, h2, h3) = (lab.host("h1"), lab.host("h2"), lab.host("h3"));
    let (ok, out) = h1.ping_until_ok(h2.ip, Duration::from_secs(30));
    assert!(ok, "h1 pings h2 before any change: {out}");
    let pinger = Pinger::start(h1, h2.ip, &lab.dir);
    std::thread::sleep(Duration::from_secs(1));
    let fds_before = fd_count(sw.pid().expect("switch runs"));

    // Bad requests: refused with a reason, nothing changes.
    let sock = lab.dir.join("vm.sock");
    let vm_spec = format!("vm=vhost-user:{}", sock.display());
    let h3_if = h3.root_if.clone().unwrap();
    let h1_if = h1.root_if.clone().unwrap();
    for (args, want) in [
        (
            vec!["port", "add", "h1=dpdk:net_af_packet9,iface=lo"],
            "a port named 'h1' exists already",
        ),
        (vec!["port", "add", "nokind"], "expected NAME"),
        (
            vec!["port", "add", "x=bogus:y"],
            "unknown port kind 'bogus'",
        ),
        (
            vec!["port", "add", "x,vlan=5000=vhost-user:/tmp/x"],
            "vlan=5000",
        ),
        (
            vec![
                "port",
                "add",
                &format!("x=dpdk:net_af_packet0,iface={h1_if}"),
            ],
            "is port 'h1' already",
        ),
        (
            vec!["port", "add", "x=dpdk:net_nosuchdriver0"],
            "DPDK rejected devargs",
        ),
        (
            vec!["port", "add", "x=dpdk:net_af_packet9,iface=tsvnosuchif"],
            "DPDK rejected devargs",
        ),
        (vec!["port", "add", "x=dpdk:0000:03:00.0"], "PCI devices"),
        (vec!["port", "del", "nosuch"], "no port named 'nosuch'"),
    ] {
        refused(sw, &args, want);
    }
    // A socket another process listens on is not taken over.
    let foreign = lab.dir.join("foreign.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&foreign).unwrap();
    refused(
        sw,
        &[
            "port",
            "add",
            &format!("x=vhost-user:{}", foreign.display()),
        ],
        "is in use",
    );
    assert!(foreign.exists(), "the foreign socket is left alone");
    assert_eq!(port_names(sw), ["h1", "h2"], "refusals changed nothing");

    // A vhost-user port and its guest.
    let raw = h1.raw();
    let v = ctl(sw, &["port", "add", &vm_spec]).expect("port add vm");
    assert_eq!(
        (v["port"].as_str(), v["kind"].as_str()),
        (Some("vm"), Some("vhost-user"))
    );
    let vm_id = v["id"].as_u64().expect("id");
    refused(sw, &["port", "add", &vm_spec], "exists already");
    refused(
        sw,
        &["port", "add", &format!("vm2=vhost-user:{}", sock.display())],
        "is port 'vm''s already",
    );
    assert_eq!(port_names(sw), ["h1", "h2", "vm"]);
    let tp = Testpmd::start(&lab.dir, &sock, 1, h1.mac, false);
    frames_both_ways(&lab, &raw, &tp, "vm-first");
    sw.wait_fdb(VM_MAC, 0, "vm", Duration::from_secs(10))
        .unwrap_or_else(|f| panic!("guest MAC learned on vm: {f:?}"));

    let v = ctl(sw, &["port", "del", "vm"]).expect("port del vm");
    assert_eq!(v["deleted"], true, "{v}");
    tp.kill();
    assert_eq!(port_names(sw), ["h1", "h2"]);
    assert!(!sock.exists(), "the server socket file is removed");
    let fds = released_then_fds(sw, 1);
    assert!(
        fds <= fds_before,
        "fds after deleting vm: {fds} > {fds_before}"
    );
    let mac = mac_str(&VM_MAC);
    assert!(
        !sw.fdb().iter().any(|e| e.mac == mac),
        "the guest's MAC left the FDB: {:?}",
        sw.fdb()
    );

    // The same port again: same name, socket and (released) slot, counters from zero.
    let v = ctl(sw, &["port", "add", &vm_spec]).expect("port add vm again");
    assert_eq!(
        v["id"].as_u64(),
        Some(vm_id),
        "the released slot is reused: {v}"
    );
    let st = sw.port_stats("vm");
    assert_eq!(
        st.rx_packets, 0,
        "a re-added port's counters start at zero: {st:?}"
    );
    let tp = Testpmd::start(&lab.dir, &sock, 1, h1.mac, false);
    frames_both_ways(&lab, &raw, &tp, "vm-again");
    ctl(sw, &["port", "del", "vm"]).expect("port del vm again");
    tp.kill();

    // The switch as the client of a listening frontend.
    let csock = lab.dir.join("vmc.sock");
    let tp = Testpmd::start(&lab.dir, &csock, 1, h1.mac, true);
    let spec = format!("vmc=vhost-user-client:{}", csock.display());
    let v = ctl(sw, &["port", "add", &spec]).expect("port add vmc");
    assert_eq!(v["kind"], "vhost-user-client", "{v}");
    frames_both_ways(&lab, &raw, &tp, "vm-client");
    ctl(sw, &["port", "del", "vmc"]).expect("port del vmc");
    tp.kill();

    // An af_packet port on a third namespace, pinging through the switch.
    let h3_spec = format!("h3=dpdk:net_af_packet2,iface={h3_if}");
    let v = ctl(sw, &["port", "add", &h3_spec]).expect("port add h3");
    assert_eq!(v["kind"], "dpdk", "{v}");
    let (ok, out) = h3.ping_until_ok(h1.ip, Duration::from_secs(30));
    assert!(ok, "h3 pings h1 through a port added at runtime: {out}");
    ctl(sw, &["port", "del", "h3"]).expect("port del h3");
    assert_eq!(port_names(sw), ["h1", "h2"]);
    let out = h3.ping(h1.ip, 3);
    assert!(
        !out.status.success(),
        "no way from h3 to h1 once h3 is deleted"
    );

    // The same device again, as an access port: h3's frames reach h1's trunk tagged VID 10.
    let fds = released_then_fds(sw, 4);
    assert!(
        fds <= fds_before,
        "fds after deleting h3: {fds} > {fds_before}"
    );
    let spec = format!("h3,vlan=10=dpdk:net_af_packet2,iface={h3_if}");
    ctl(sw, &["port", "add", &spec]).expect("port add h3 vlan=10");
    let m = marker("access");
    let f = frame(BROADCAST, h3.mac, None, ETH_TEST, &m);
    let got = send_until_received(&h3.raw(), &f, &raw, &m, Duration::from_secs(20))
        .expect("h3's broadcast reaches h1");
    assert_eq!(got.vlan().map(|t| t.vid), Some(10), "{}", got.describe());
    ctl(sw, &["port", "del", "h3"]).expect("port del h3 (access)");

    // Nothing left behind, and the ping never stopped.
    let fds = released_then_fds(sw, 5);
    eprintln!("switch fds: {fds_before} before the first add, {fds} after the last delete");
    assert!(
        fds <= fds_before,
        "fds after the last delete: {fds} > {fds_before}"
    );
    let report = pinger.stop();
    eprintln!("ping h1 -> h2 during the changes: {report:?}");
    // The pinger sends every 0.1 s for as long as the changes take (about 5 s or more).
    assert!(report.sent >= 20, "ping ran: {report:?}");
    assert!(
        report.sent - report.received <= 5 && report.longest_gap <= 10,
        "h1 -> h2 lost more than a handful, or stopped for a second: {report:?}"
    );
    let status = lab.stop_switch();
    assert!(status.success(), "switch exits 0 on SIGTERM: {status:?}");
}

#[test]
fn a_gated_port_is_not_deleted() {
    let mut lab = Lab::new("rtgated");
    lab.add_host("h1", 1);
    lab.add_host("h2", 2);
    let gcl = lab.dir.join("open.gcl");
    std::fs::write(
        &gcl,
        "num_tc 2\nmap 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\nbase-time 0\ncycle-time 1000000\n\
         sched-entry S 03 1000000\n",
    )
    .unwrap();
    let arg = format!("h2={}", gcl.display());
    lab.start_switch(&[("h1", ""), ("h2", "speed=1000")], &["--gcl", &arg]);
    let sw = lab.switch();
    refused(sw, &["port", "del", "h2"], "gate control list");
    assert_eq!(port_names(sw), ["h1", "h2"], "the refusal changed nothing");
    let (ok, out) = lab
        .host("h1")
        .ping_until_ok(lab.host("h2").ip, Duration::from_secs(30));
    assert!(ok, "h1 still reaches the gated h2: {out}");
    // The ungated port goes.
    ctl(sw, &["port", "del", "h1"]).expect("port del h1");
    assert_eq!(port_names(sw), ["h2"]);
}
