//! vhost-user ports against a real frontend: `dpdk-testpmd` with a `net_virtio_user` port.
//!
//! Topology: namespace host h1 -- af_packet port "h1" -- [switch] -- vhost-user port "vm" --
//! testpmd (virtio-user, macswap forwarding, `--tx-first`).
//! - testpmd's first burst (32 frames per queue, IPv4/UDP 198.18.0.1 -> 198.18.0.2 to h1's MAC)
//!   must reach h1 intact (valid IPv4 header checksum, addresses, the virtio-user MAC);
//! - frames h1 sends to the virtio-user MAC come back MAC-swapped with the payload unchanged:
//!   switch -> guest RX ring -> testpmd -> guest TX ring -> switch -> h1;
//! - with queues=2, both guest TX queues carry frames (per-vring counters);
//! - killing testpmd mid-traffic and starting it again resumes traffic (both socket modes);
//! - between two such guests with two queue pairs each, what one sends on its TX queue q
//!   arrives on the other's RX queue q: both queue pairs carry traffic both ways.
mod common;

use common::testpmd::*;
use common::*;
use std::time::Duration;

fn vring_packets(sw: &Switch, port: &str) -> Vec<u64> {
    sw.port_json(port)["backend"]["vring_packets"]
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

    let vr = vring_packets(lab.switch(), "vm");
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

/// Two testpmd guests with two queue pairs each, bouncing frames between them (macswap, 32
/// frames injected per queue): a burst from guest TX queue q leaves on the other guest's RX
/// queue q, so both guests receive on both queues (and each frame stays on its queue pair).
#[test]
fn two_guests_with_two_queue_pairs_use_both() {
    let mut lab = Lab::new("vtpq");
    let (sa, sb) = (lab.dir.join("a.sock"), lab.dir.join("b.sock"));
    let mut args = Vec::new();
    for (name, sock) in [("a", &sa), ("b", &sb)] {
        args.push("--port".to_string());
        args.push(format!("{name},queues=2=vhost-user:{}", sock.display()));
    }
    lab.start_switch_args(args);
    let (ma, mb) = ([0x02, 0, 0, 0, 0xaa, 0x0a], [0x02, 0, 0, 0, 0xaa, 0x0b]);
    let ta = Testpmd::start_as(&lab.dir, &sa, 2, ma, mb, false);
    let tb = Testpmd::start_as(&lab.dir, &sb, 2, mb, ma, false);
    let sw = lab.switch();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let (mut va, mut vb);
    loop {
        (va, vb) = (vring_packets(sw, "a"), vring_packets(sw, "b"));
        // vring 2q is guest RX queue q: both guests received on both their queues.
        if [&va, &vb]
            .iter()
            .all(|v| v.len() == 4 && v[0] >= 32 && v[2] >= 32)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "guest RX queues 0 and 1 of both guests carry frames (vring packets a {va:?}, b \
             {vb:?})\n--- testpmd a ---\n{}\n--- testpmd b ---\n{}\n--- switch ---\n{}",
            ta.log_text(),
            tb.log_text(),
            sw.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop((ta, tb));
    let status = lab.stop_switch();
    assert!(status.success(), "switch exits 0 on SIGTERM: {status:?}");
}
