//! Guest to guest through two vhost-user ports, one an access port of VLAN 10 and one a trunk:
//! every frame arrives once, byte for byte, tagged on the trunk and untagged on the access port.
//!
//! Both guests are played by this test (`common::evil`'s frontend, well behaved here). The
//! switch's PMD core keeps the mbufs of frames it copied into a guest for the frames it takes
//! from one next (`dpdk::Recycle`): the same 32 mbufs go round again and again, all tagged on
//! the way (4 bytes of headroom taken each time), then all untagged. More rounds than the
//! headroom has tags (128 bytes: 32) show that a reused mbuf starts as a fresh one: headroom
//! that did not come back would drop the frames of round 32.
mod common;

use common::evil::*;
use common::*;
use std::time::Instant;

/// Frames a round sends one way: a burst.
const PER_ROUND: usize = 32;
/// Rounds each way: more than the 32 tags the default headroom holds.
const ROUNDS: usize = 48;
const VID: u16 = 10;

/// One guest: its frontend and, per RX descriptor head, the RX buffer it posted there.
struct Guest {
    ev: Evil,
    bufs: Vec<u16>,
    /// Used entries read so far.
    seen: u16,
}

impl Guest {
    fn connect(lab: &Lab, name: &str, mac: [u8; 6]) -> Guest {
        let sock = lab.dir.join(format!("{name}.sock"));
        let setup = Setup { mac, ..Setup::BASE };
        let mut g = Guest {
            ev: Evil::connect(&sock, &setup),
            bufs: vec![0; usize::from(QSZ)],
            seen: 0,
        };
        for k in 0..QSZ {
            g.post(k);
        }
        g
    }

    fn post(&mut self, k: u16) {
        let head = self.ev.post_rx_buffer(k);
        self.bufs[usize::from(head)] = k;
    }

    /// Sends every frame (the TX ring takes them all: fewer than its slots).
    fn send(&mut self, frames: &[Vec<u8>]) {
        for f in frames {
            assert!(self.ev.send_frame(f), "guest TX ring full");
        }
    }

    /// The next `n` frames the switch put in this guest's RX ring (virtio-net header
    /// stripped), within [`WAIT`]; each buffer goes back to the ring once read.
    fn receive(&mut self, n: usize, sw: &Switch, what: &str) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + WAIT;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let used = self.ev.rx.used_idx(&self.ev.g);
            if used == self.seen {
                assert!(
                    Instant::now() < deadline,
                    "{what}: {} of {n} frames arrived within {WAIT:?}; stats: {:?}",
                    out.len(),
                    sw.stats()
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            }
            let (id, len) = self.ev.rx.used_elem(&self.ev.g, self.seen);
            self.seen = self.seen.wrapping_add(1);
            let k = self.bufs[id as usize];
            let b = self.ev.g.read(self.ev.rx_buf(k), len as usize);
            out.push(b[VNET_HDR.min(b.len())..].to_vec());
            self.post(k);
        }
        out
    }
}

fn frames(src: [u8; 6], dst: [u8; 6], tag: Option<VlanTag>, round: usize) -> Vec<Vec<u8>> {
    (0..PER_ROUND)
        .map(|i| {
            // Lengths vary within a round so that a frame landing in the wrong place shows.
            let mut payload = marker(&format!("r{round}f{i}"));
            payload.resize(
                payload.len() + (i * 37) % 200,
                (round * PER_ROUND + i) as u8,
            );
            frame(dst, src, tag, ETH_TEST, &payload)
        })
        .collect()
}

#[test]
fn frames_cross_between_an_access_guest_and_a_trunk_guest_intact_round_after_round() {
    let mut lab = Lab::new("g2g");
    let (mac_a, mac_t) = ([2, 0, 0, 0, 0x9a, 1], [2, 0, 0, 0, 0x9a, 2]);
    let args = [
        format!(
            "acc,vlan={VID}=vhost-user:{}",
            lab.dir.join("acc.sock").display()
        ),
        format!("trunk=vhost-user:{}", lab.dir.join("trunk.sock").display()),
    ];
    lab.start_switch_args(
        args.iter()
            .flat_map(|p| ["--port".into(), p.clone()])
            .collect(),
    );
    let mut acc = Guest::connect(&lab, "acc", mac_a);
    let mut trunk = Guest::connect(&lab, "trunk", mac_t);
    let sw = lab.switch();
    let tag = Some(VlanTag::new(VID, 5));
    let untag = |f: &[u8]| [&f[..12], &f[16..]].concat();
    // The trunk guest first, so that the switch learns its MAC: the rounds are unicast.
    let hello = frame(BROADCAST, mac_t, tag, ETH_TEST, &marker("hello"));
    trunk.send(std::slice::from_ref(&hello));
    let got = acc.receive(1, sw, "hello, trunk -> access");
    assert_eq!(got[0], untag(&hello), "hello: trunk -> access, untagged");
    // One direction at a time, so that every reuse of an mbuf takes the same turn: access ->
    // trunk pushes a tag into the headroom each time (32 times would use it all up), trunk ->
    // access pops one.
    for round in 0..ROUNDS {
        // The switch pushes the access port's tag (PCP 0).
        let sent = frames(mac_a, mac_t, None, round);
        acc.send(&sent);
        let got = trunk.receive(PER_ROUND, sw, &format!("round {round}, access -> trunk"));
        for (i, (s, g)) in sent.iter().zip(&got).enumerate() {
            let want = frame(mac_t, mac_a, Some(VlanTag::new(VID, 0)), ETH_TEST, &s[14..]);
            assert_eq!(
                g, &want,
                "round {round}, frame {i}: access -> trunk, tagged"
            );
        }
    }
    for round in 0..ROUNDS {
        // Tagged VID 10 PCP 5: the switch pops the tag.
        let sent = frames(mac_t, mac_a, tag, round);
        trunk.send(&sent);
        let got = acc.receive(PER_ROUND, sw, &format!("round {round}, trunk -> access"));
        for (i, (s, g)) in sent.iter().zip(&got).enumerate() {
            assert_eq!(
                g,
                &untag(s),
                "round {round}, frame {i}: trunk -> access, untagged"
            );
        }
    }
    for p in ["acc", "trunk"] {
        let st = sw.port_stats(p);
        let n = (ROUNDS * PER_ROUND) as u64;
        // The hello: one more frame from the trunk guest to the access guest.
        let want = if p == "trunk" { (n + 1, n) } else { (n, n + 1) };
        assert_eq!(
            (st.rx_packets, st.tx_packets),
            want,
            "{p}: frames in and out"
        );
        let dropped: u64 = st
            .drops
            .as_object()
            .map_or(0, |d| d.values().filter_map(|v| v.as_u64()).sum());
        assert_eq!(dropped, 0, "{p}: drops {}", st.drops);
    }
}
