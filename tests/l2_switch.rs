//! L2 forwarding through the switch: namespaces behind veth pairs whose root ends are
//! `net_af_packet` ports. Asserts outcomes only; every wait has a generous bound.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Bound for something that must happen.
const WAIT: Duration = Duration::from_secs(15);
/// Window during which something must not happen.
const QUIET: Duration = Duration::from_millis(1500);
const NO_VLAN: u64 = 0;

/// Send `frame` from `tx`, repeating every ~300 ms (loss of first frames is tolerated), until
/// every socket in `want` has received a frame carrying `m`; returns the first one of each.
fn deliver(tx: &RawSocket, frame: &[u8], m: &[u8], want: &[(&str, &RawSocket)]) -> Vec<RxFrame> {
    let deadline = Instant::now() + WAIT;
    let mut got: Vec<Option<RxFrame>> = vec![None; want.len()];
    while Instant::now() < deadline && got.iter().any(Option::is_none) {
        tx.send(frame);
        for (slot, (_, rx)) in got.iter_mut().zip(want) {
            if slot.is_none() {
                *slot = rx.wait_for(m, Duration::from_millis(300));
            }
        }
    }
    let missing: Vec<&str> = got
        .iter()
        .zip(want)
        .filter(|(g, _)| g.is_none())
        .map(|(_, (name, _))| *name)
        .collect();
    assert!(
        missing.is_empty(),
        "frame {} never reached {missing:?} within {WAIT:?}",
        String::from_utf8_lossy(m)
    );
    got.into_iter().map(Option::unwrap).collect()
}

/// Assert that none of `socks` receives (incoming) a frame carrying `m` within `QUIET`.
fn assert_never(socks: &[(&str, &RawSocket)], m: &[u8]) {
    let deadline = Instant::now() + QUIET;
    for (name, s) in socks {
        let got = s.capture_until(m, deadline);
        assert!(
            got.is_empty(),
            "{name} received frame(s) {} it must not: {:?}",
            String::from_utf8_lossy(m),
            got.iter().map(RxFrame::describe).collect::<Vec<_>>()
        );
    }
}

/// Make the switch learn `host` on `port` (and VLAN `vlan` in the fdb) by sending broadcasts from
/// it until `witness` receives one and the fdb shows the entry.
fn learn(
    lab: &Lab,
    host: &Host,
    tx: &RawSocket,
    tag: Option<VlanTag>,
    witness: &RawSocket,
    vlan: u64,
) {
    let m = marker(&format!("learn-{}", host.name));
    deliver(
        tx,
        &frame(BROADCAST, host.mac, tag, ETH_TEST, &m),
        &m,
        &[("witness", witness)],
    );
    if let Err(fdb) = lab.switch().wait_fdb(host.mac, vlan, &host.name, WAIT) {
        panic!(
            "fdb never showed {} vlan {vlan} on port {}: {fdb:?}",
            mac_str(&host.mac),
            host.name
        );
    }
}

/// `frame` without its 802.1Q tag.
fn untag(f: &[u8]) -> Vec<u8> {
    let mut v = f.to_vec();
    v.drain(12..16);
    v
}

#[test]
fn ping_and_udp_cross_the_switch() {
    let mut lab = Lab::new("ping_udp");
    lab.add_host("h1", 1);
    lab.add_host("h2", 2);
    lab.add_host("h3", 3);
    lab.start_switch(&[("h1", ""), ("h2", ""), ("h3", "")], &[]);
    let (h1, h2, h3) = (lab.host("h1"), lab.host("h2"), lab.host("h3"));

    let (ok, out) = h1.ping_until_ok(h2.ip, Duration::from_secs(30));
    assert!(ok, "ping h1 -> h2 never succeeded:\n{out}");
    let out = h1.ping(h2.ip, 3);
    assert!(
        out.status.success(),
        "ping -c 3 h1 -> h2 failed after a first success:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (ok, out) = h3.ping_until_ok(h1.ip, Duration::from_secs(30));
    assert!(ok, "ping h3 -> h1 never succeeded:\n{out}");

    udp_exchange(h1, h2, WAIT).unwrap_or_else(|e| panic!("UDP h1 <-> h2: {e}"));
    udp_exchange(h3, h2, WAIT).unwrap_or_else(|e| panic!("UDP h3 <-> h2: {e}"));
}

#[test]
fn learned_unicast_reaches_only_its_port() {
    let mut lab = Lab::new("unicast");
    lab.add_host("h1", 1);
    lab.add_host("h2", 2);
    lab.add_host("h3", 3);
    lab.start_switch(&[("h1", ""), ("h2", ""), ("h3", "")], &[]);
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    let (r1, r2, r3) = (h1.raw(), h2.raw(), lab.host("h3").raw());

    learn(&lab, h1, &r1, None, &r2, NO_VLAN);
    learn(&lab, h2, &r2, None, &r1, NO_VLAN);

    // Unicast both ways between learned hosts: delivered, never seen by h3, never echoed back.
    let m12 = marker("uc-1-2");
    let f12 = frame(h2.mac, h1.mac, None, ETH_TEST, &m12);
    let m21 = marker("uc-2-1");
    let f21 = frame(h1.mac, h2.mac, None, ETH_TEST, &m21);
    for _ in 0..5 {
        r1.send(&f12);
        r2.send(&f21);
    }
    let deadline = Instant::now() + QUIET;
    let at2 = r2.capture_until(&m12, deadline);
    let at1 = r1.capture_until(&m21, deadline);
    assert!(!at2.is_empty(), "h2 got none of 5 unicast frames from h1");
    assert!(!at1.is_empty(), "h1 got none of 5 unicast frames from h2");
    assert!(at2.len() <= 5 && at1.len() <= 5, "frames duplicated");
    assert_eq!(at2[0].data, f12, "frame altered: {}", at2[0].describe());
    assert_eq!(at1[0].data, f21, "frame altered: {}", at1[0].describe());
    assert_never(
        &[
            ("h3", &r3),
            ("h1 (own frame back)", &r1),
            ("h2 (own frame back)", &r2),
        ],
        &m12,
    );
    assert_never(&[("h3", &r3), ("h2 (own frame back)", &r2)], &m21);

    // The fdb puts each MAC on its own port, and nowhere else.
    let fdb = lab.switch().fdb();
    for h in [h1, h2] {
        let mac = mac_str(&h.mac);
        let entries: Vec<_> = fdb.iter().filter(|e| e.mac == mac).collect();
        assert!(!entries.is_empty(), "{mac} missing from fdb {fdb:?}");
        assert!(
            entries
                .iter()
                .all(|e| e.port == h.name && e.vlan == NO_VLAN),
            "{mac} should be on port {} vlan 0 only: {fdb:?}",
            h.name
        );
    }
}

#[test]
fn broadcast_and_unknown_unicast_reach_all_other_ports() {
    let mut lab = Lab::new("flood");
    for i in 1..=4u8 {
        lab.add_host(&format!("h{i}"), i);
    }
    lab.start_switch(&[("h1", ""), ("h2", ""), ("h3", ""), ("h4", "")], &[]);
    let socks: Vec<RawSocket> = (1..=4).map(|i| lab.host(&format!("h{i}")).raw()).collect();
    let h1 = lab.host("h1");

    for (what, dst) in [
        ("broadcast", BROADCAST),
        ("unknown unicast", [0x02, 0, 0, 0, 0, 0x99]),
        ("multicast", [0x01, 0x00, 0x5e, 0x00, 0x00, 0x42]),
    ] {
        let m = marker(what);
        let f = frame(dst, h1.mac, None, ETH_TEST, &m);
        let got = deliver(
            &socks[0],
            &f,
            &m,
            &[("h2", &socks[1]), ("h3", &socks[2]), ("h4", &socks[3])],
        );
        for g in &got {
            assert_eq!(g.data, f, "{what} altered: {}", g.describe());
        }
        // Never back out of the ingress port: anything h1 receives (not PACKET_OUTGOING) with the
        // marker came back from the switch.
        assert_never(&[("h1 (ingress port)", &socks[0])], &m);
    }
}

#[test]
fn access_ports_keep_vlans_apart() {
    let mut lab = Lab::new("access");
    lab.add_host("h1", 1);
    lab.add_host("h2", 2);
    lab.add_host("h3", 3);
    lab.start_switch(
        &[("h1", "vlan=10"), ("h2", "vlan=20"), ("h3", "vlan=10")],
        &[],
    );
    let (h1, h2, h3) = (lab.host("h1"), lab.host("h2"), lab.host("h3"));
    let (r1, r2, r3) = (h1.raw(), h2.raw(), h3.raw());

    // Broadcast from h1 reaches h3 (same VLAN, untagged), never h2.
    let m = marker("bc-vlan10");
    let f = frame(BROADCAST, h1.mac, None, ETH_TEST, &m);
    let got = deliver(&r1, &f, &m, &[("h3", &r3)]);
    assert_eq!(
        got[0].vlan(),
        None,
        "access port must strip: {}",
        got[0].describe()
    );
    assert_eq!(got[0].data, f);
    assert_never(&[("h2 (vlan 20)", &r2), ("h1 (ingress)", &r1)], &m);

    // Broadcast from h2 (alone in VLAN 20) reaches nobody.
    let m = marker("bc-vlan20");
    for _ in 0..3 {
        r2.send(&frame(BROADCAST, h2.mac, None, ETH_TEST, &m));
    }
    assert_never(&[("h1 (vlan 10)", &r1), ("h3 (vlan 10)", &r3)], &m);

    // Learned unicast within VLAN 10 reaches h3 only; the fdb holds MACs in VLAN 10.
    learn(&lab, h1, &r1, None, &r3, 10);
    learn(&lab, h3, &r3, None, &r1, 10);
    let m = marker("uc-1-3");
    let f = frame(h3.mac, h1.mac, None, ETH_TEST, &m);
    let got = deliver(&r1, &f, &m, &[("h3", &r3)]);
    assert_eq!(got[0].vlan(), None);
    assert_never(&[("h2 (vlan 20)", &r2)], &m);

    // Unicast from VLAN 20 to a MAC known only in VLAN 10 must not cross.
    let m = marker("uc-2-3");
    for _ in 0..3 {
        r2.send(&frame(h3.mac, h2.mac, None, ETH_TEST, &m));
    }
    assert_never(&[("h3 (vlan 10)", &r3), ("h1 (vlan 10)", &r1)], &m);

    // IP: h1 <-> h3 works, h1 <-> h2 does not.
    let (ok, out) = h1.ping_until_ok(h3.ip, Duration::from_secs(30));
    assert!(ok, "ping h1 -> h3 (both vlan 10) never succeeded:\n{out}");
    let (ok, out) = h3.ping_until_ok(h1.ip, Duration::from_secs(30));
    assert!(ok, "ping h3 -> h1 (both vlan 10) never succeeded:\n{out}");
    for (a, b) in [(h1, h2), (h2, h1), (h2, h3)] {
        let out = a.ping(b.ip, 3);
        assert!(
            !out.status.success(),
            "ping {} -> {} crossed VLANs 10/20:\n{}",
            a.name,
            b.name,
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn tagged_frames_cross_trunks_and_access_ports() {
    let mut lab = Lab::new("trunk");
    lab.add_host("t1", 1);
    lab.add_host("t2", 2);
    lab.add_host("a1", 3);
    lab.start_switch(&[("t1", ""), ("t2", ""), ("a1", "vlan=10")], &[]);
    let (t1, a1) = (lab.host("t1"), lab.host("a1"));
    let (rt1, rt2, ra1) = (t1.raw(), lab.host("t2").raw(), a1.raw());

    // Trunk to trunk: VID 100 / PCP 5 kept; the access port (VLAN 10) never sees it.
    let m = marker("vid100");
    let f = frame(BROADCAST, t1.mac, Some(VlanTag::new(100, 5)), ETH_TEST, &m);
    let got = deliver(&rt1, &f, &m, &[("t2", &rt2)]);
    assert_eq!(
        got[0].vlan(),
        Some(VlanTag::new(100, 5)),
        "trunk must keep the tag: {}",
        got[0].describe()
    );
    assert_eq!(got[0].data, f, "frame altered: {}", got[0].describe());
    assert_never(&[("a1 (vlan 10)", &ra1), ("t1 (ingress)", &rt1)], &m);

    // Trunk, VID 10 -> access port untagged, other trunk still tagged 10 (PCP kept).
    let m = marker("vid10");
    let f = frame(BROADCAST, t1.mac, Some(VlanTag::new(10, 3)), ETH_TEST, &m);
    let got = deliver(&rt1, &f, &m, &[("a1", &ra1), ("t2", &rt2)]);
    assert_eq!(
        got[0].vlan(),
        None,
        "access port must strip: {}",
        got[0].describe()
    );
    assert_eq!(
        got[0].data,
        untag(&f),
        "frame altered: {}",
        got[0].describe()
    );
    assert_eq!(
        got[1].vlan(),
        Some(VlanTag::new(10, 3)),
        "{}",
        got[1].describe()
    );
    assert_eq!(got[1].data, f);

    // Access port, untagged -> both trunks tagged VID 10.
    let m = marker("from-access");
    let f = frame(BROADCAST, a1.mac, None, ETH_TEST, &m);
    let got = deliver(&ra1, &f, &m, &[("t1", &rt1), ("t2", &rt2)]);
    for (g, name) in got.iter().zip(["t1", "t2"]) {
        assert_eq!(
            g.vlan().map(|t| t.vid),
            Some(10),
            "{name} must get the access port's frame tagged VID 10: {}",
            g.describe()
        );
        assert_eq!(untag(&g.data), f, "frame altered: {}", g.describe());
    }
    assert_never(&[("a1 (ingress)", &ra1)], &m);

    // Other VIDs never reach the access port, broadcast or unicast to its (learned) MAC.
    if let Err(fdb) = lab.switch().wait_fdb(a1.mac, 10, "a1", WAIT) {
        panic!("fdb never showed a1's MAC in VLAN 10 on a1: {fdb:?}");
    }
    for vid in [20u16, 100, 4094] {
        let m = marker(&format!("vid{vid}-to-access"));
        for dst in [BROADCAST, a1.mac] {
            rt1.send(&frame(
                dst,
                t1.mac,
                Some(VlanTag::new(vid, 0)),
                ETH_TEST,
                &m,
            ));
        }
        // Still flooded within its VLAN to the other trunk.
        deliver(
            &rt1,
            &frame(BROADCAST, t1.mac, Some(VlanTag::new(vid, 0)), ETH_TEST, &m),
            &m,
            &[("t2", &rt2)],
        );
        assert_never(&[("a1 (vlan 10)", &ra1)], &m);
    }

    // Unicast in VLAN 10 from the trunk to a1's learned MAC: untagged at a1, not flooded to t2.
    let m = marker("uc-vid10");
    let f = frame(a1.mac, t1.mac, Some(VlanTag::new(10, 6)), ETH_TEST, &m);
    let got = deliver(&rt1, &f, &m, &[("a1", &ra1)]);
    assert_eq!(got[0].vlan(), None, "{}", got[0].describe());
    assert_eq!(got[0].data, untag(&f));
    assert_never(&[("t2 (a1's MAC is learned)", &rt2)], &m);

    // The trunk's MAC is learned per VLAN.
    for vid in [10u64, 100] {
        if let Err(fdb) = lab.switch().wait_fdb(t1.mac, vid, "t1", WAIT) {
            panic!("fdb never showed t1's MAC in VLAN {vid} on t1: {fdb:?}");
        }
    }
}

#[test]
fn counters_follow_forwarded_frames() {
    const N: u64 = 20;
    let mut lab = Lab::new("counters");
    lab.add_host("h1", 1);
    lab.add_host("h2", 2);
    lab.add_host("h3", 3);
    lab.start_switch(&[("h1", ""), ("h2", ""), ("h3", "vlan=10")], &[]);
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    let (r1, r2) = (h1.raw(), h2.raw());
    let sw = lab.switch();

    // Ports as configured, links up.
    let stats = sw
        .wait_stats(WAIT, |s| s.iter().all(|p| p.link_up))
        .unwrap_or_else(|s| panic!("links never all up: {s:?}"));
    let names: BTreeSet<&str> = stats.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["h1", "h2", "h3"]), "{stats:?}");
    let vlan_of = |n: &str| stats.iter().find(|p| p.name == n).unwrap().vlan;
    assert_eq!(vlan_of("h1"), None);
    assert_eq!(vlan_of("h2"), None);
    assert_eq!(vlan_of("h3"), Some(10));
    assert!(
        stats.iter().all(|p| p.drops.is_object()),
        "drops must be an object: {stats:?}"
    );

    learn(&lab, h2, &r2, None, &r1, NO_VLAN);
    let before = sw.stats();
    let m = marker("count");
    let f = frame(h2.mac, h1.mac, None, ETH_TEST, &m);
    for _ in 0..N {
        r1.send(&f);
    }
    let got = r2.capture(&m, QUIET);
    assert!(!got.is_empty(), "h2 received none of {N} frames");

    let get = |s: &[PortStats], n: &str| s.iter().find(|p| p.name == n).unwrap().clone();
    let (b1, b2, b3) = (get(&before, "h1"), get(&before, "h2"), get(&before, "h3"));
    let len = f.len() as u64;
    let received = got.len() as u64;
    let after = sw
        .wait_stats(WAIT, |s| {
            let (a1, a2) = (get(s, "h1"), get(s, "h2"));
            a1.rx_packets >= b1.rx_packets + N
                && a1.rx_bytes >= b1.rx_bytes + N * len
                && a2.tx_packets >= b2.tx_packets + received
                && a2.tx_bytes >= b2.tx_bytes + received * len
        })
        .unwrap_or_else(|s| {
            panic!(
                "counters did not follow {N} frames h1 -> h2 ({received} received at h2):\n\
                 before {before:?}\nafter {s:?}"
            )
        });
    // The unicast went to h2 only.
    let a3 = get(&after, "h3");
    assert!(
        a3.tx_packets < b3.tx_packets + N,
        "h3 transmitted the unicast for h2: before {b3:?} after {a3:?}"
    );

    let status = lab.stop_switch();
    assert!(status.success(), "switch exit on SIGTERM: {status}");
}

#[test]
fn explicit_options_forward_and_fdb_ages_out() {
    let mut lab = Lab::new("options");
    lab.add_host("h1", 1);
    lab.add_host("h2", 2);
    let (if1, if2) = (
        lab.host("h1").root_if.clone().unwrap(),
        lab.host("h2").root_if.clone().unwrap(),
    );
    let args: Vec<String> = [
        "--port",
        &format!("h1,rxq=2=dpdk:net_af_packet0,iface={if1},qpairs=2"),
        "--port",
        &format!("h2=dpdk:net_af_packet1,iface={if2}"),
        "--main-core",
        "0",
        "--pmd-cores",
        "1",
        "--rxq-affinity",
        "h1:1=1",
        "--fdb-size",
        "1024",
        "--fdb-aging",
        "2",
        "--log-level",
        "info",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    lab.start_switch_args(args);
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));

    let (ok, out) = h1.ping_until_ok(h2.ip, Duration::from_secs(30));
    assert!(ok, "ping h1 -> h2 never succeeded:\n{out}");
    udp_exchange(h1, h2, WAIT).unwrap_or_else(|e| panic!("UDP h1 <-> h2: {e}"));

    // A MAC seen once is learned, then ages out (--fdb-aging 2) once it stays silent.
    let (r1, r2) = (h1.raw(), h2.raw());
    let ghost = [0x02, 0, 0, 0, 0, 0x77];
    let m = marker("ghost");
    deliver(
        &r1,
        &frame(BROADCAST, ghost, None, ETH_TEST, &m),
        &m,
        &[("h2", &r2)],
    );
    if let Err(fdb) = lab.switch().wait_fdb(ghost, NO_VLAN, "h1", WAIT) {
        panic!("fdb never learned {}: {fdb:?}", mac_str(&ghost));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let fdb = lab.switch().fdb();
        if !fdb.iter().any(|e| e.mac == mac_str(&ghost)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} still in the fdb 30 s after it went silent (--fdb-aging 2): {fdb:?}",
            mac_str(&ghost)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn forwarding_resumes_after_a_link_flap() {
    let mut lab = Lab::new("link");
    lab.add_host("h1", 1);
    lab.add_host("h2", 2);
    lab.start_switch(&[("h1", ""), ("h2", "")], &[]);
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    let sw = lab.switch();
    let link = |s: &[PortStats], n: &str| s.iter().find(|p| p.name == n).unwrap().link_up;
    sw.wait_stats(WAIT, |s| link(s, "h1") && link(s, "h2"))
        .unwrap_or_else(|s| panic!("links never up: {s:?}"));
    let (ok, out) = h1.ping_until_ok(h2.ip, Duration::from_secs(30));
    assert!(ok, "ping h1 -> h2 never succeeded:\n{out}");

    // Carrier loss on the switch's end of h2's veth, then back. (DPDK 22.11's af_packet PMD keeps
    // reporting link up throughout, so link_up is not asserted while down.)
    sh(&["ip", "-n", &h2.ns, "link", "set", &h2.ifname, "down"]);
    let out = h1.ping(h2.ip, 2);
    assert!(!out.status.success(), "ping crossed a downed link");
    sh(&["ip", "-n", &h2.ns, "link", "set", &h2.ifname, "up"]);
    sw.wait_stats(WAIT, |s| link(s, "h2"))
        .unwrap_or_else(|s| panic!("h2 not up after the flap: {s:?}"));
    let (ok, out) = h1.ping_until_ok(h2.ip, Duration::from_secs(30));
    assert!(
        ok,
        "ping h1 -> h2 after a link flap never succeeded:\n{out}"
    );
    udp_exchange(h2, h1, WAIT).unwrap_or_else(|e| panic!("UDP h2 <-> h1 after the flap: {e}"));
}
