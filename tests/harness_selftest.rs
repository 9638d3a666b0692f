//! Checks of the test harness itself, without the switch: namespaces linked directly by a veth
//! pair, raw frames, 802.1Q tags recovered from PACKET_AUXDATA, ping, UDP, and clean-up.

mod common;

use common::*;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(5);

#[test]
fn linked_pair_carries_frames_tags_ping_and_udp() {
    let mut lab = Lab::new("selftest_pair");
    lab.add_linked_pair(("a", 1), ("b", 2));
    let (a, b) = (lab.host("a"), lab.host("b"));
    let (ra, rb) = (a.raw(), b.raw());
    // A second socket on a: it sees a's own transmissions, as PACKET_OUTGOING.
    let ra2 = a.raw();

    // Untagged broadcast a -> b.
    let m = marker("plain");
    ra.send(&frame(BROADCAST, a.mac, None, ETH_TEST, &m));
    let f = rb.wait_for(&m, T).expect("b did not receive a's frame");
    assert_eq!(f.src(), a.mac);
    assert_eq!(f.dst(), BROADCAST);
    assert_eq!(f.vlan(), None, "{}", f.describe());
    assert_eq!(f.ethertype(), ETH_TEST);
    // Another socket on the sender sees the frame only as PACKET_OUTGOING, which the capture
    // helpers filter out.
    let own = ra2.capture_all_directions(&m, Instant::now() + Duration::from_millis(300));
    assert!(
        !own.is_empty(),
        "second socket on a did not see a's outgoing frame"
    );
    assert!(own.iter().all(|f| f.outgoing()), "{own:?}");
    assert!(ra2.capture(&m, Duration::from_millis(100)).is_empty());
    ra2.send(&frame(BROADCAST, a.mac, None, ETH_TEST, &m));
    assert!(ra.capture(&m, Duration::from_millis(300)).is_empty());

    // Tagged frame: the kernel moves the tag to auxdata; the harness puts it back.
    let m = marker("tagged");
    ra.send(&frame(
        b.mac,
        a.mac,
        Some(VlanTag::new(100, 5)),
        ETH_TEST,
        &m,
    ));
    let f = rb
        .wait_for(&m, T)
        .expect("b did not receive a's tagged frame");
    assert_eq!(f.vlan(), Some(VlanTag::new(100, 5)), "{}", f.describe());
    assert!(
        f.tag_from_aux,
        "tag expected via PACKET_AUXDATA: {}",
        f.describe()
    );
    assert_eq!(f.ethertype(), ETH_TEST);
    assert_eq!(f.dst(), b.mac);

    // Other direction, other tag; nothing of it comes back to b as incoming.
    let m = marker("tagged-back");
    rb.send(&frame(
        a.mac,
        b.mac,
        Some(VlanTag::new(4094, 7)),
        ETH_TEST,
        &m,
    ));
    let f = ra
        .wait_for(&m, T)
        .expect("a did not receive b's tagged frame");
    assert_eq!(f.vlan(), Some(VlanTag::new(4094, 7)), "{}", f.describe());
    assert!(rb.capture(&m, Duration::from_millis(300)).is_empty());

    let (ok, out) = a.ping_until_ok(b.ip, Duration::from_secs(10));
    assert!(ok, "ping a -> b failed: {out}");
    udp_exchange(a, b, Duration::from_secs(10)).unwrap();
    udp_exchange(b, a, Duration::from_secs(10)).unwrap();
}

#[test]
fn root_end_sees_host_frames_with_tags() {
    let mut lab = Lab::new("selftest_root");
    lab.add_host("h1", 1);
    let h = lab.host("h1");
    assert!(h.ifname.len() <= 15 && h.root_if.as_ref().unwrap().len() <= 15);
    let inside = h.raw();
    let outside = h.raw_root_end();

    let m = marker("out");
    inside.send(&frame(
        BROADCAST,
        h.mac,
        Some(VlanTag::new(10, 3)),
        ETH_TEST,
        &m,
    ));
    let f = outside
        .wait_for(&m, T)
        .expect("root end did not see the host's frame");
    assert_eq!(f.vlan(), Some(VlanTag::new(10, 3)), "{}", f.describe());
    assert_eq!(f.src(), Host::mac_for(1));

    let m = marker("in");
    let src = [0x02, 0, 0, 0, 0, 0x42];
    outside.send(&frame(h.mac, src, None, ETH_TEST, &m));
    let f = inside
        .wait_for(&m, T)
        .expect("host did not see the root end's frame");
    assert_eq!(f.vlan(), None);
    assert_eq!(f.src(), src);
    assert_eq!(f.pkttype, PACKET_HOST, "{}", f.describe());
}

#[test]
fn cleanup_on_drop_and_of_leftovers() {
    let lab = {
        let mut lab = Lab::new("selftest_clean");
        lab.add_host("h1", 1);
        lab
    };
    let root_if = lab.host("h1").root_if.clone().unwrap();
    let ns = lab.host("h1").ns.clone();
    assert!(list_links().contains(&root_if));
    assert!(list_netns().contains(&ns));
    // Simulate a crashed run: leak it, then a new lab of the same name cleans it up.
    std::mem::forget(lab);
    let lab = Lab::new("selftest_clean");
    assert!(!list_links().contains(&root_if), "leftover link {root_if}");
    assert!(!list_netns().contains(&ns), "leftover netns {ns}");
    let mut lab = lab;
    lab.add_host("h1", 1);
    drop(lab);
    assert!(
        !list_links().contains(&root_if),
        "link {root_if} left after drop"
    );
    assert!(!list_netns().contains(&ns), "netns {ns} left after drop");
}
