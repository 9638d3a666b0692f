//! QEMU guests (TCG) on the switch's vhost-user ports, as users run them in place of OVS-DPDK:
//! - two guests exchange ping and UDP through the switch, and a guest reaches a network
//!   namespace behind an af_packet port;
//! - a guest killed and started again on its socket gets its traffic back;
//! - the switch restarted under running guests (QEMU `reconnect=1`): traffic resumes without
//!   restarting the guests;
//! - the switch as vhost-user client of a listening QEMU (`server=on`).
mod common;
#[path = "qemu/mod.rs"]
mod qemu;

use common::*;
use qemu::*;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

/// Pings until one succeeds (ARP and the FDB fill on the first tries), bounded.
fn ping_until(g: &Guest, addr: &str, within: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if g.ping(addr, 1) {
            return true;
        }
    }
    false
}

#[test]
fn guests_and_a_namespace_through_the_switch_with_restarts() {
    let mut lab = Lab::new("vqemu");
    lab.add_host("h1", 1);
    let (s1, s2) = (lab.dir.join("vm1.sock"), lab.dir.join("vm2.sock"));
    let mut args = lab.port_args(&[("h1", "")]);
    for (name, s) in [("vm1", &s1), ("vm2", &s2)] {
        args.push("--port".into());
        args.push(format!("{name}=vhost-user:{}", s.display()));
    }
    lab.start_switch_args(args.clone());

    let mut a = Guest::launch("vm1", &s1, Mode::Connect, &guest_mac(1), "10.77.0.51/24");
    let b = Guest::launch("vm2", &s2, Mode::Connect, &guest_mac(2), "10.77.0.52/24");
    a.wait_ready(BOOT_TIMEOUT);
    b.wait_ready(BOOT_TIMEOUT);
    let diag = |lab: &Lab, g: &Guest| {
        format!(
            "{}\n--- switch ---\n{}",
            g.diagnostics(),
            lab.switch().log_text()
        )
    };

    // Guest <-> guest: ping both ways, UDP.
    assert!(
        ping_until(&a, &b.ip, Duration::from_secs(60)),
        "vm1 -> vm2\n{}",
        diag(&lab, &a)
    );
    assert!(b.ping(&a.ip, 2), "vm2 -> vm1\n{}", diag(&lab, &b));
    b.spawn("nc.openbsd -u -l 5000", "udp5000");
    std::thread::sleep(Duration::from_millis(500));
    a.udp_send(&b.ip, 5000, "hello-through-tsn-vswitch");
    let got = b.wait_output("cat /tmp/udp5000", "hello-through-tsn-vswitch", T);
    assert!(
        got.contains("hello-through-tsn-vswitch"),
        "vm2 received {got:?}"
    );

    // Guest <-> namespace behind an af_packet port.
    let h1 = lab.host("h1");
    let h1_ip = h1.ip.to_string();
    assert!(
        ping_until(&a, &h1_ip, Duration::from_secs(30)),
        "vm1 -> h1\n{}",
        diag(&lab, &a)
    );
    let out = h1.ping(b.ip.parse().unwrap(), 2);
    assert!(
        out.status.success(),
        "h1 -> vm2: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let st = lab.switch().port_stats("vm1");
    assert!(
        st.rx_packets > 0 && st.tx_packets > 0,
        "vm1 counted: {st:?}"
    );
    let fdb = lab.switch().fdb();
    assert!(
        fdb.iter().any(|e| e.port == "vm1" && e.mac == guest_mac(1)),
        "vm1's MAC learned on vm1: {fdb:?}"
    );

    // The guest's QEMU dies and comes back on the same socket: traffic resumes.
    a.kill();
    a.restart();
    a.wait_ready(BOOT_TIMEOUT);
    assert!(
        ping_until(&a, &b.ip, Duration::from_secs(60)),
        "vm1 -> vm2 after QEMU restart\n{}",
        diag(&lab, &a)
    );

    // The switch restarts under running guests: QEMU reconnects, no guest restarts.
    let status = lab.stop_switch();
    assert!(status.success(), "switch exits 0 on SIGTERM: {status:?}");
    lab.start_switch_args(args);
    assert!(
        ping_until(&a, &b.ip, Duration::from_secs(90)),
        "vm1 -> vm2 after switch restart\n{}",
        diag(&lab, &a)
    );
    assert!(
        ping_until(&b, &h1_ip, Duration::from_secs(30)),
        "vm2 -> h1 after switch restart"
    );
    assert_eq!(
        b.console().matches(READY_MARKER).count(),
        1,
        "vm2 did not reboot"
    );
    assert!(a.is_running());
}

#[test]
fn switch_as_vhost_user_client_of_a_listening_qemu() {
    let mut lab = Lab::new("vqcli");
    lab.add_host("h1", 1);
    let s = lab.dir.join("vmc.sock");
    // QEMU listens first (server=on,wait=off); the switch connects and retries every second.
    let g = Guest::launch("vmc", &s, Mode::Listen, &guest_mac(3), "10.77.0.53/24");
    let mut args = lab.port_args(&[("h1", "")]);
    args.push("--port".into());
    args.push(format!("vmc=vhost-user-client:{}", s.display()));
    lab.start_switch_args(args);
    g.wait_ready(BOOT_TIMEOUT);
    let h1 = lab.host("h1");
    assert!(
        ping_until(&g, &h1.ip.to_string(), Duration::from_secs(60)),
        "guest -> h1 with the switch as client\n{}\n--- switch ---\n{}",
        g.diagnostics(),
        lab.switch().log_text()
    );
    let status = lab.stop_switch();
    assert!(status.success(), "switch exits 0: {status:?}");
}
