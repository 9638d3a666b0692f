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

use common::testpmd::*;
use common::*;
use std::time::Duration;

fn vring_packets(sw: &Switch) -> Vec<u64> {
    sw.port_json("vm")["backend"]["vring_packets"]
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
