//! The L2 forwarding stage: parse, learn, look up, decide the output; and the 802.1Q edit an
//! egress port needs (push at trunk egress of an access frame, pop at access egress).
//!
//! VLAN model: every frame belongs to one VLAN inside the switch. A trunk port (the default)
//! carries all VLANs: a tagged frame is in its VID, an untagged one in VLAN 0 (the untagged
//! domain, which leaves trunks untagged). An access port (`vlan=ID`) puts its untagged (or
//! priority-tagged, VID 0) frames in VLAN ID, drops frames tagged with any other VID, and sends
//! only VLAN ID frames, untagged.
use crate::dpdk::BURST;
use crate::fdb::{Fdb, Probe};
use crate::stats::DropReason;
use crate::wire::{EtherType, EthernetFrame, MacAddr, VlanTag, ETH_HEADER_LEN, VLAN_TAG_LEN};

/// Ports per switch: flood sets are `u64` masks.
pub const MAX_PORTS: usize = 64;

/// A port's 802.1Q role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VlanMode {
    Trunk,
    Access(u16),
}

/// Where a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Drop(DropReason),
    Unicast(u16),
    /// Every port in the mask (never the ingress port).
    Flood(u64),
}

/// The frame's VLAN and tag as parsed at ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameVlan {
    /// The switch-internal VLAN (0 = untagged domain on trunks).
    pub vlan: u16,
    /// The frame arrived with an 802.1Q tag.
    pub tagged: bool,
    /// Priority code point (the tag's, or 0 untagged).
    pub pcp: u8,
}

/// How far ahead of the frame it decides [`L2::decide_burst`] prefetches the buckets of a table
/// beyond the caches into the first-level cache, in frames: far enough for a line to arrive
/// (8 frames are ~100 ns of decisions), near enough that the misses in flight (2 lines a frame,
/// each bucket's home line) stay within what the first-level cache can track; 16 and 32 were
/// no better at 1 M hosts, nor were 2, 4 or 16 once the rest of the burst is asked for into the
/// outer caches in the first pass.
const AHEAD: usize = 8;

/// What a frame dropped before its VLAN is known reports.
const NO_VLAN: FrameVlan = FrameVlan {
    vlan: 0,
    tagged: false,
    pcp: 0,
};

/// The forwarding configuration: each port's VLAN role and, per VLAN, the ports that carry it.
pub struct L2 {
    modes: Vec<VlanMode>,
    /// Ports carrying each VLAN (4096 masks: 32 KiB, one load per flood).
    members: Box<[u64; 4096]>,
}

impl L2 {
    pub fn new(modes: Vec<VlanMode>) -> L2 {
        let slots: Vec<_> = modes.into_iter().map(Some).collect();
        L2::from_slots(&slots)
    }

    /// The configuration of a port set with holes: slot `i` is port `i`, `None` a free slot
    /// (or a port being deleted), which is in no VLAN, so nothing floods or forwards to it.
    pub fn from_slots(slots: &[Option<VlanMode>]) -> L2 {
        assert!(slots.len() <= MAX_PORTS, "at most {MAX_PORTS} ports");
        let mut members = Box::new([0u64; 4096]);
        for (i, m) in slots.iter().enumerate() {
            match *m {
                Some(VlanMode::Trunk) => members.iter_mut().for_each(|v| *v |= 1 << i),
                Some(VlanMode::Access(v)) => members[usize::from(v & 0x0fff)] |= 1 << i,
                None => {}
            }
        }
        let modes = slots.iter().map(|m| m.unwrap_or(VlanMode::Trunk)).collect();
        L2 { modes, members }
    }

    pub fn mode(&self, port: u16) -> VlanMode {
        self.modes
            .get(usize::from(port))
            .copied()
            .unwrap_or(VlanMode::Trunk)
    }

    /// Parses and admits a frame at `ingress`: its VLAN, or why it is dropped.
    #[inline]
    pub fn admit(
        &self,
        ingress: u16,
        frame: &[u8],
    ) -> Result<(FrameVlan, MacAddr, MacAddr), DropReason> {
        let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::Malformed)?;
        let (tagged, vid, pcp) = match eth.vlan() {
            Some(t) => (true, t.vid(), t.pcp()),
            None => (false, 0, 0),
        };
        let vlan = match self.mode(ingress) {
            VlanMode::Trunk => vid,
            VlanMode::Access(v) if vid == 0 || vid == v => v,
            VlanMode::Access(_) => return Err(DropReason::VlanFiltered),
        };
        if vid == 0x0fff {
            return Err(DropReason::VlanFiltered); // reserved VID
        }
        Ok((FrameVlan { vlan, tagged, pcp }, eth.src(), eth.dst()))
    }

    /// The forwarding decision for one frame: learn the source, look up the destination.
    #[inline]
    pub fn decide(&self, fdb: &Fdb, ingress: u16, frame: &[u8], now: u32) -> (Verdict, FrameVlan) {
        match self.hash(fdb, ingress, frame) {
            Ok((fv, src, dst)) => (self.forward(fdb, ingress, fv, src, dst, now), fv),
            Err(early) => early,
        }
    }

    /// [`L2::decide`] for the first [`BURST`] frames of `frames` (a burst from `ingress`), with
    /// the same outcome and in the same order, but in two passes: the first parses every frame
    /// and hashes its addresses, the second learns, looks up and decides. Each frame's buckets
    /// are prefetched before the second pass reaches it, so that misses overlap. In a table
    /// within the caches they are all asked for in the first pass (hits come back soon, and
    /// many at once). In one beyond them ([`Fdb::beyond_cache`]) every bucket comes from
    /// memory and the first-level cache tracks only so many misses: the buckets are asked for
    /// into it [`AHEAD`] frames ahead of their use (the first ones in the first pass, the rest
    /// as the second pass reaches the frame that many places before them), so the misses
    /// overlap with the decisions, a few at a time (all at once, 1 M hosts took 1.6-1.85x as
    /// long; 256 k hosts, in the caches, took ~10 % longer this way); and the first pass asks
    /// for the rest of the burst's buckets into the outer caches only
    /// ([`Fdb::prefetch_both_outer`]), so that they are on their way from memory from the start
    /// of the burst and the second pass's prefetches find them nearer (1 M hosts: 0.72-0.85x
    /// the time in six of eight cells of the grid). A frame whose first 16 bytes
    /// (addresses, EtherType or tag) are those of the frame before it, both long enough for a
    /// tagged header, is neither parsed nor hashed: it gets that frame's verdict, which is what
    /// deciding it would give (its learning finds its source just learned, its lookup the same
    /// entry). A burst from one guest queue is mostly one flow, so most of its frames are
    /// decided by one 16-byte compare. Entry i of the result is frame i's; entries past the last
    /// frame are meaningless.
    #[inline]
    pub fn decide_burst<'a>(
        &self,
        fdb: &Fdb,
        ingress: u16,
        frames: impl IntoIterator<Item = &'a [u8]>,
        now: u32,
    ) -> [(Verdict, FrameVlan); BURST] {
        let mut out = [(Verdict::Drop(DropReason::Malformed), NO_VLAN); BURST];
        // Frame i's hashed addresses, if it was admitted and waits for the second pass.
        let mut probes: [Option<(Probe<'_>, Option<Probe<'_>>)>; BURST] = [None; BURST];
        // Bit i: frame i has the header of frame i - 1, and gets its verdict.
        let mut same = 0u32;
        // The previous frame's first 16 bytes, if it has a whole (tagged) header.
        let mut prev: Option<u128> = None;
        let ahead = if fdb.beyond_cache() { AHEAD } else { BURST };
        let mut n = 0;
        for (i, frame) in frames.into_iter().take(BURST).enumerate() {
            n = i + 1;
            let head = head16(frame);
            if head.is_some() && head == prev {
                same |= 1 << i;
                continue;
            }
            prev = head;
            match self.hash(fdb, ingress, frame) {
                Ok((fv, src, dst)) => {
                    if i < ahead {
                        fdb.prefetch_both(src, dst);
                    } else {
                        fdb.prefetch_both_outer(src, dst);
                    }
                    out[i].1 = fv;
                    probes[i] = Some((src, dst));
                }
                Err(early) => out[i] = early,
            }
        }
        // In frame order, so that a frame of a run finds its first frame decided. A run copies
        // from `out[first]`, not from a copy of the verdict kept in a local: that local was
        // spilled field by field and read back whole, a failed store-to-load forward every
        // frame (about a tenth of the PMD's time with 64 B frames of one flow).
        let mut first = 0;
        for k in 0..n {
            if let Some((src, dst)) = probes.get(k + ahead).copied().flatten() {
                fdb.prefetch_both(src, dst);
            }
            if same >> k & 1 != 0 {
                out[k] = out[first];
                continue;
            }
            if let Some((src, dst)) = probes[k] {
                out[k].0 = self.forward(fdb, ingress, out[k].1, src, dst, now);
            }
            first = k;
        }
        out
    }

    /// Parses and admits a frame and hashes its source and (unicast) destination; or the
    /// verdict of a frame that goes no further.
    #[inline]
    fn hash<'f>(
        &self,
        fdb: &'f Fdb,
        ingress: u16,
        frame: &[u8],
    ) -> Result<(FrameVlan, Probe<'f>, Option<Probe<'f>>), (Verdict, FrameVlan)> {
        let (fv, src, dst) = self
            .admit(ingress, frame)
            .map_err(|r| (Verdict::Drop(r), NO_VLAN))?;
        if src.is_multicast() {
            return Err((Verdict::Drop(DropReason::Malformed), fv));
        }
        let dst = (!dst.is_multicast()).then(|| fdb.probe(dst, fv.vlan));
        Ok((fv, fdb.probe(src, fv.vlan), dst))
    }

    /// Learns the source, looks up the destination (`None`: a group address, never learned)
    /// and picks the output.
    #[inline]
    fn forward(
        &self,
        fdb: &Fdb,
        ingress: u16,
        fv: FrameVlan,
        src: Probe<'_>,
        dst: Option<Probe<'_>>,
        now: u32,
    ) -> Verdict {
        fdb.learn_probed(src, ingress, now);
        let flood = self.members[usize::from(fv.vlan)] & !(1u64 << ingress);
        if let Some(p) = dst.and_then(|d| fdb.lookup_probed(d)) {
            return if p == ingress {
                Verdict::Drop(DropReason::SamePort)
            } else if flood & (1u64 << p) != 0 {
                Verdict::Unicast(p)
            } else {
                Verdict::Drop(DropReason::VlanFiltered)
            };
        }
        if flood == 0 {
            return Verdict::Drop(DropReason::NoEgress);
        }
        Verdict::Flood(flood)
    }

    /// The TCI the frame must carry out of `egress`, or None for untagged.
    #[inline]
    pub fn egress_tci(&self, egress: u16, fv: FrameVlan) -> Option<u16> {
        match self.mode(egress) {
            VlanMode::Access(_) => None,
            VlanMode::Trunk if fv.vlan == 0 => None,
            VlanMode::Trunk => Some(VlanTag::tci_of(fv.pcp, fv.vlan)),
        }
    }
}

/// A frame's first 16 bytes (addresses, EtherType, and a tag's TCI if it has one), all that its
/// admission and forwarding read, when it is long enough for a tagged header (shorter frames,
/// truncated or not, go the whole way).
#[inline(always)]
fn head16(frame: &[u8]) -> Option<u128> {
    let h: &[u8; 16] = frame.get(..16)?.try_into().ok()?;
    (frame.len() >= ETH_HEADER_LEN + VLAN_TAG_LEN).then(|| u128::from_ne_bytes(*h))
}

/// A packet buffer whose front can grow or shrink (an mbuf, or a Vec in tests).
pub trait FrameBuf {
    fn bytes_mut(&mut self) -> &mut [u8];
    /// Grows the front by `n` bytes; false if there is no headroom.
    fn push_front(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the front; false if too short.
    fn pull_front(&mut self, n: usize) -> bool;
}

impl FrameBuf for crate::dpdk::Mbuf {
    #[inline]
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.data_mut()
    }
    #[inline]
    fn push_front(&mut self, n: usize) -> bool {
        self.prepend(n as u16).is_some()
    }
    #[inline]
    fn pull_front(&mut self, n: usize) -> bool {
        self.adj(n as u16).is_some()
    }
}

/// Makes the frame carry `want` (a TCI) or no tag, given whether it carries one now.
/// Returns false when the buffer has no headroom for a tag.
#[inline]
pub fn retag<B: FrameBuf>(buf: &mut B, tagged: bool, want: Option<u16>) -> bool {
    match (tagged, want) {
        (false, None) => true,
        (true, Some(tci)) => {
            buf.bytes_mut()[14..16].copy_from_slice(&tci.to_be_bytes());
            true
        }
        (true, None) => {
            // Slide the addresses forward over the tag, then drop the front.
            let b = buf.bytes_mut();
            b.copy_within(0..12, VLAN_TAG_LEN);
            buf.pull_front(VLAN_TAG_LEN)
        }
        (false, Some(tci)) => {
            if !buf.push_front(VLAN_TAG_LEN) {
                return false;
            }
            let b = buf.bytes_mut();
            b.copy_within(VLAN_TAG_LEN..VLAN_TAG_LEN + 12, 0);
            b[12..14].copy_from_slice(&EtherType::VLAN.to_be_bytes());
            b[14..16].copy_from_slice(&tci.to_be_bytes());
            true
        }
    }
}

/// A Vec-backed frame buffer with headroom, for tests and benches.
pub struct VecFrame {
    pub buf: Vec<u8>,
    pub off: usize,
}

impl VecFrame {
    pub fn new(frame: &[u8]) -> VecFrame {
        let mut buf = vec![0; 64];
        buf.extend_from_slice(frame);
        VecFrame { buf, off: 64 }
    }
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.off..]
    }
}

impl FrameBuf for VecFrame {
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.off..]
    }
    fn push_front(&mut self, n: usize) -> bool {
        if self.off < n {
            return false;
        }
        self.off -= n;
        true
    }
    fn pull_front(&mut self, n: usize) -> bool {
        if self.buf.len() - self.off < n {
            return false;
        }
        self.off += n;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: u64, src: u64, tag: Option<(u8, u16)>) -> Vec<u8> {
        let mut f = MacAddr::from_u64(dst).0.to_vec();
        f.extend(MacAddr::from_u64(src).0);
        if let Some((pcp, vid)) = tag {
            f.extend(EtherType::VLAN.to_be_bytes());
            f.extend(VlanTag::tci_of(pcp, vid).to_be_bytes());
        }
        f.extend(EtherType::IPV4.to_be_bytes());
        f.extend([0xabu8; 46]);
        f
    }
    const BC: u64 = 0xffff_ffff_ffff;
    const A: u64 = 0x0200_0000_000a;
    const B: u64 = 0x0200_0000_000b;

    #[test]
    fn floods_unknown_then_unicasts_after_learning() {
        let l2 = L2::new(vec![VlanMode::Trunk; 3]);
        let fdb = Fdb::new(64, 300);
        let (v, _) = l2.decide(&fdb, 0, &frame(B, A, None), 0);
        assert_eq!(v, Verdict::Flood(0b110));
        let (v, _) = l2.decide(&fdb, 1, &frame(A, B, None), 0);
        assert_eq!(v, Verdict::Unicast(0));
        let (v, _) = l2.decide(&fdb, 0, &frame(B, A, None), 0);
        assert_eq!(v, Verdict::Unicast(1));
        // Broadcast always floods, never back to the ingress.
        let (v, _) = l2.decide(&fdb, 2, &frame(BC, 0x0200_0000_000c, None), 0);
        assert_eq!(v, Verdict::Flood(0b011));
        // A frame for a host on the ingress port is filtered.
        let (v, _) = l2.decide(&fdb, 0, &frame(A, 0x0200_0000_000d, None), 0);
        assert_eq!(v, Verdict::Drop(DropReason::SamePort));
    }

    #[test]
    fn access_ports_keep_vlans_apart() {
        // 0: access 10, 1: access 20, 2: access 10, 3: trunk
        use VlanMode::*;
        let l2 = L2::new(vec![Access(10), Access(20), Access(10), Trunk]);
        let fdb = Fdb::new(64, 300);
        let (v, fv) = l2.decide(&fdb, 0, &frame(BC, A, None), 0);
        assert_eq!(v, Verdict::Flood(0b1100));
        assert_eq!(fv.vlan, 10);
        assert_eq!(l2.egress_tci(3, fv), Some(10));
        assert_eq!(l2.egress_tci(2, fv), None);
        // Tagged with another VID at an access port: dropped.
        let (v, _) = l2.decide(&fdb, 0, &frame(BC, A, Some((0, 20))), 0);
        assert_eq!(v, Verdict::Drop(DropReason::VlanFiltered));
        // Priority-tagged (VID 0) is admitted into the port's VLAN.
        let (v, fv) = l2.decide(&fdb, 1, &frame(BC, B, Some((3, 0))), 0);
        assert_eq!((v, fv.vlan, fv.pcp), (Verdict::Flood(0b1000), 20, 3));
        // From the trunk, VID 20 reaches only port 1; untagged reaches no access port.
        let (v, _) = l2.decide(&fdb, 3, &frame(BC, 0x0200_0000_00ee, Some((5, 20))), 0);
        assert_eq!(v, Verdict::Flood(0b0010));
        let (v, _) = l2.decide(&fdb, 3, &frame(BC, 0x0200_0000_00ee, None), 0);
        assert_eq!(v, Verdict::Drop(DropReason::NoEgress));
        // A learned MAC in VLAN 10 is not reachable from VLAN 20.
        let (v, _) = l2.decide(&fdb, 1, &frame(A, B, None), 0);
        assert_eq!(v, Verdict::Flood(0b1000));
    }

    #[test]
    fn free_slots_get_nothing() {
        use VlanMode::*;
        let l2 = L2::from_slots(&[Some(Trunk), None, Some(Access(10)), Some(Trunk)]);
        let fdb = Fdb::new(64, 300);
        let (v, _) = l2.decide(&fdb, 0, &frame(BC, A, None), 0);
        assert_eq!(v, Verdict::Flood(0b1000));
        let (v, _) = l2.decide(&fdb, 0, &frame(BC, A, Some((0, 10))), 0);
        assert_eq!(v, Verdict::Flood(0b1100));
        // A MAC still learned on a deleted port's slot is not forwarded to.
        fdb.learn(MacAddr::from_u64(B), 0, 1, 0);
        let (v, _) = l2.decide(&fdb, 0, &frame(B, A, None), 0);
        assert_eq!(v, Verdict::Drop(DropReason::VlanFiltered));
    }

    #[test]
    fn trunks_keep_tags_and_pcp() {
        let l2 = L2::new(vec![VlanMode::Trunk; 2]);
        let fdb = Fdb::new(64, 300);
        let (_, fv) = l2.decide(&fdb, 0, &frame(BC, A, Some((5, 100))), 0);
        assert_eq!(
            fv,
            FrameVlan {
                vlan: 100,
                tagged: true,
                pcp: 5
            }
        );
        assert_eq!(l2.egress_tci(1, fv), Some(VlanTag::tci_of(5, 100)));
    }

    #[test]
    fn malformed_and_bad_sources_are_dropped() {
        let l2 = L2::new(vec![VlanMode::Trunk; 2]);
        let fdb = Fdb::new(64, 300);
        assert_eq!(
            l2.decide(&fdb, 0, &[0u8; 10], 0).0,
            Verdict::Drop(DropReason::Malformed)
        );
        assert_eq!(
            l2.decide(&fdb, 0, &frame(A, BC, None), 0).0,
            Verdict::Drop(DropReason::Malformed)
        );
        assert!(fdb.is_empty());
    }

    /// A pseudo-random number below `n` per call (xorshift64 from `seed`).
    fn xorshift(mut seed: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        }
    }

    /// `frames` as one burst from `port` on `many` get the verdicts that deciding them one by
    /// one on `one` gives, and leave the same table.
    fn decides_as_one_by_one(
        l2: &L2,
        (one, many): (&Fdb, &Fdb),
        port: u16,
        frames: &[Vec<u8>],
        now: u32,
        round: u32,
    ) {
        let got = l2.decide_burst(many, port, frames.iter().map(|f| &f[..]), now);
        for (i, f) in frames.iter().take(BURST).enumerate() {
            assert_eq!(
                got[i],
                l2.decide(one, port, f, now),
                "round {round} frame {i}"
            );
        }
        assert_eq!(many.entries(now), one.entries(now), "round {round}");
    }

    #[test]
    fn a_burst_decides_as_its_frames_one_by_one() {
        // Two switches alike, one fed frame by frame, the other in bursts: the same verdicts,
        // the same table. The bursts mix what learns, what looks up a source learned earlier
        // in the same burst, moves, broadcasts, bad sources, filtered VLANs and runts.
        use VlanMode::*;
        let l2 = L2::new(vec![Trunk, Trunk, Access(10), Trunk]);
        let (one, many) = (Fdb::new(256, 300), Fdb::new(256, 300));
        // And a second pair whose burst side prefetches as a table beyond the caches does.
        let (one_far, far) = (
            Fdb::new(256, 300),
            Fdb::new(256, 300).treated_as_beyond_cache(),
        );
        let mut rnd = xorshift(0x9e37_79b9);
        for round in 0..50u32 {
            let port = rnd(4) as u16;
            let frames: Vec<Vec<u8>> = (0..1 + rnd(BURST as u64 + 8))
                .map(|_| {
                    let host = |r: u64| 0x0200_0000_0000 | r;
                    let dst = if rnd(8) == 0 { BC } else { host(rnd(12)) };
                    let src = if rnd(16) == 0 { BC } else { host(rnd(12)) };
                    match rnd(10) {
                        0 => vec![0u8; 13],
                        1 | 2 => frame(dst, src, Some((3, [10, 20, 0][rnd(3) as usize]))),
                        _ => frame(dst, src, None),
                    }
                })
                .collect();
            let now = round / 10;
            decides_as_one_by_one(&l2, (&one, &many), port, &frames, now, round);
            decides_as_one_by_one(&l2, (&one_far, &far), port, &frames, now, round);
        }
        assert!(!one.is_empty());
    }

    #[test]
    fn runs_of_one_header_decide_as_their_frames_one_by_one() {
        // Bursts made of runs of equal headers (what a guest queue sends, and what the burst
        // decides once per run): the first frame of a run learns, moves or is dropped, the
        // others get its verdict; runs of runts, of a source that is its own destination, and
        // frames whose first 16 bytes match but that differ after them (payload, length).
        use VlanMode::*;
        let l2 = L2::new(vec![Trunk, Access(10), Trunk]);
        let (one, many) = (Fdb::new(64, 300), Fdb::new(64, 300));
        let mut rnd = xorshift(0x2545_f491);
        for round in 0..60u32 {
            let port = rnd(3) as u16;
            let mut frames: Vec<Vec<u8>> = Vec::new();
            while frames.len() < 1 + BURST {
                let host = |r: u64| 0x0200_0000_0000 | r;
                let (dst, src) = (host(rnd(4)), host(rnd(4)));
                let mut f = match rnd(8) {
                    0 => vec![0u8; 13 + rnd(5) as usize],
                    1 => frame(BC, src, None),
                    2 => frame(src, src, None),
                    3 => frame(dst, src, Some((1, [10, 20][rnd(2) as usize]))),
                    _ => frame(dst, src, None),
                };
                for _ in 0..1 + rnd(12) {
                    frames.push(f.clone());
                    if f.len() > 18 {
                        f.push(rnd(256) as u8);
                    }
                }
            }
            let now = round / 20;
            decides_as_one_by_one(&l2, (&one, &many), port, &frames, now, round);
        }
        assert!(!one.is_empty());
    }

    #[test]
    fn retag_pushes_pops_and_rewrites() {
        let plain = frame(B, A, None);
        let tagged = frame(B, A, Some((5, 10)));
        let mut f = VecFrame::new(&plain);
        assert!(retag(&mut f, false, Some(VlanTag::tci_of(5, 10))));
        assert_eq!(f.bytes(), &tagged[..]);
        assert!(retag(&mut f, true, None));
        assert_eq!(f.bytes(), &plain[..]);
        let mut f = VecFrame::new(&tagged);
        assert!(retag(&mut f, true, Some(VlanTag::tci_of(1, 20))));
        assert_eq!(f.bytes(), &frame(B, A, Some((1, 20)))[..]);
        let mut f = VecFrame {
            buf: plain.clone(),
            off: 0,
        };
        assert!(!retag(&mut f, false, Some(1)), "no headroom");
    }
}
