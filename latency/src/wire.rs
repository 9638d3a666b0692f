//! What goes on the wire: the probe payload (the UDP payload of every frame) and, for raw
//! AF_PACKET mode, the Ethernet / 802.1Q / IPv4 / UDP headers around it. Pure: no I/O.
//!
//! The payload is 16 bytes of header, big-endian, padded with zeros to the requested size
//! (`--size`, UDP payload bytes, at least 16 so the paper's 16-byte payload fits):
//!
//! | bytes  | field                                                                 |
//! |--------|-----------------------------------------------------------------------|
//! | 0..4   | sequence number, low 32 bits (the receiver extends it to 64)          |
//! | 4..12  | scheduled transmission time, ns on CLOCK_TAI                          |
//! | 12..16 | send delay: actual send time − scheduled, ns (saturates at 4.29 s)    |
//!
//! Sixteen bytes leave no room for a magic number: receivers tell probes apart by UDP port.

/// Bytes of the probe header, the smallest `--size`.
pub(crate) const HEADER_LEN: usize = 16;

/// Ethernet header, 802.1Q tag, IPv4 header (no options), UDP header.
#[cfg(test)]
const ETH_LEN: usize = 14;
pub(crate) const VLAN_LEN: usize = 4;
pub(crate) const IPV4_LEN: usize = 20;
pub(crate) const UDP_LEN: usize = 8;
pub(crate) const TPID_8021Q: u16 = 0x8100;
pub(crate) const ETHERTYPE_IPV4: u16 = 0x0800;
const IPPROTO_UDP: u8 = 17;

/// One probe's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Probe {
    /// Sequence number (only its low 32 bits travel).
    pub(crate) seq: u64,
    /// Scheduled transmission time, ns on CLOCK_TAI.
    pub(crate) sched: i64,
    /// Actual send time, ns on CLOCK_TAI (read right before the send call).
    pub(crate) sent: i64,
}

impl Probe {
    /// Writes the header into the start of `buf` (at least [`HEADER_LEN`] bytes).
    pub(crate) fn write(&self, buf: &mut [u8]) {
        let delay = u32::try_from((self.sent - self.sched).max(0)).unwrap_or(u32::MAX);
        buf[0..4].copy_from_slice(&(self.seq as u32).to_be_bytes());
        buf[4..12].copy_from_slice(&(self.sched as u64).to_be_bytes());
        buf[12..16].copy_from_slice(&delay.to_be_bytes());
    }

    /// Reads a header; the sequence number comes back as its 32 low bits.
    pub(crate) fn read(buf: &[u8]) -> Option<Probe> {
        let b = buf.get(..HEADER_LEN)?;
        let seq = u32::from_be_bytes(b[0..4].try_into().ok()?);
        let sched = u64::from_be_bytes(b[4..12].try_into().ok()?) as i64;
        let delay = u32::from_be_bytes(b[12..16].try_into().ok()?);
        Some(Probe {
            seq: u64::from(seq),
            sched,
            sent: sched + i64::from(delay),
        })
    }
}

/// Extends 32-bit sequence numbers to 64 bits: picks the value nearest the last one seen.
#[derive(Debug, Default)]
pub(crate) struct SeqExtender {
    last: Option<u64>,
}

impl SeqExtender {
    pub(crate) fn extend(&mut self, low: u32) -> u64 {
        let Some(last) = self.last else {
            self.last = Some(u64::from(low));
            return u64::from(low);
        };
        let base = last & !0xffff_ffff;
        let candidates = [
            base.checked_sub(1 << 32).map(|b| b | u64::from(low)),
            Some(base | u64::from(low)),
            base.checked_add(1 << 32).map(|b| b | u64::from(low)),
        ];
        let v = candidates
            .into_iter()
            .flatten()
            .min_by_key(|c| c.abs_diff(last))
            .unwrap_or(u64::from(low));
        self.last = Some(v.max(last));
        v
    }
}

/// Addresses of a raw frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameAddrs {
    pub(crate) dst_mac: [u8; 6],
    pub(crate) src_mac: [u8; 6],
    /// 802.1Q tag: (VID, PCP); none sends an untagged frame.
    pub(crate) vlan: Option<(u16, u8)>,
    pub(crate) src_ip: [u8; 4],
    pub(crate) dst_ip: [u8; 4],
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
    /// IPv4 DSCP/ECN byte.
    pub(crate) tos: u8,
}

/// Offset of the UDP payload in a frame built by [`build_frame`].
#[cfg(test)]
fn payload_offset(vlan: bool) -> usize {
    ETH_LEN + if vlan { VLAN_LEN } else { 0 } + IPV4_LEN + UDP_LEN
}

/// Builds Ethernet [/ 802.1Q] / IPv4 / UDP around `payload` into `out` (cleared first), with
/// the IPv4 header checksum and the UDP checksum filled in.
pub(crate) fn build_frame(a: &FrameAddrs, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&a.dst_mac);
    out.extend_from_slice(&a.src_mac);
    if let Some((vid, pcp)) = a.vlan {
        out.extend_from_slice(&TPID_8021Q.to_be_bytes());
        let tci = (u16::from(pcp & 7) << 13) | (vid & 0x0fff);
        out.extend_from_slice(&tci.to_be_bytes());
    }
    out.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip_start = out.len();
    let udp_len = (UDP_LEN + payload.len()) as u16;
    let total = IPV4_LEN as u16 + udp_len;
    out.extend_from_slice(&[0x45, a.tos]);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0x40, 0]); // id 0, don't fragment
    out.extend_from_slice(&[64, IPPROTO_UDP, 0, 0]); // ttl, proto, checksum (below)
    out.extend_from_slice(&a.src_ip);
    out.extend_from_slice(&a.dst_ip);
    let ip_sum = checksum(&[&out[ip_start..ip_start + IPV4_LEN]]);
    out[ip_start + 10..ip_start + 12].copy_from_slice(&ip_sum.to_be_bytes());
    let udp_start = out.len();
    out.extend_from_slice(&a.src_port.to_be_bytes());
    out.extend_from_slice(&a.dst_port.to_be_bytes());
    out.extend_from_slice(&udp_len.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&a.src_ip);
    pseudo[4..8].copy_from_slice(&a.dst_ip);
    pseudo[9] = IPPROTO_UDP;
    pseudo[10..12].copy_from_slice(&udp_len.to_be_bytes());
    let mut sum = checksum(&[&pseudo, &out[udp_start..]]);
    if sum == 0 {
        sum = 0xffff; // 0 means "no checksum" in UDP over IPv4
    }
    out[udp_start + 6..udp_start + 8].copy_from_slice(&sum.to_be_bytes());
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for p in parts {
        for &b in *p {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A UDP datagram found in a received raw frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UdpView<'a> {
    /// 802.1Q tag in the frame itself: (VID, PCP).
    pub(crate) vlan: Option<(u16, u8)>,
    pub(crate) src_ip: [u8; 4],
    pub(crate) dst_ip: [u8; 4],
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
    pub(crate) payload: &'a [u8],
}

/// Parses Ethernet [/ 802.1Q] / IPv4 / UDP; anything else (or a truncated frame) is `None`.
pub(crate) fn parse_udp(frame: &[u8]) -> Option<UdpView<'_>> {
    let be16 = |o: usize| {
        frame
            .get(o..o + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let mut off = 12;
    let mut vlan = None;
    let mut ethertype = be16(off)?;
    if ethertype == TPID_8021Q {
        let tci = be16(off + 2)?;
        vlan = Some((tci & 0x0fff, (tci >> 13) as u8));
        off += VLAN_LEN;
        ethertype = be16(off)?;
    }
    if ethertype != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = frame.get(off + 2..)?;
    if ip.len() < IPV4_LEN || ip[0] >> 4 != 4 || ip[9] != IPPROTO_UDP {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    // A fragment other than the first carries no UDP header.
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0 || ihl < IPV4_LEN || total < ihl {
        return None;
    }
    let ip = ip.get(..total)?;
    let udp = ip.get(ihl..)?;
    if udp.len() < UDP_LEN {
        return None;
    }
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    let payload = udp.get(UDP_LEN..udp_len.max(UDP_LEN))?;
    Some(UdpView {
        vlan,
        src_ip: ip[12..16].try_into().ok()?,
        dst_ip: ip[16..20].try_into().ok()?,
        src_port: u16::from_be_bytes([udp[0], udp[1]]),
        dst_port: u16::from_be_bytes([udp[2], udp[3]]),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_round_trip() {
        let p = Probe {
            seq: 0x1_0000_0007,
            sched: 1_700_000_000_123_456_789,
            sent: 1_700_000_000_123_456_789 + 12_345,
        };
        let mut buf = [0u8; 64];
        p.write(&mut buf);
        let q = Probe::read(&buf).unwrap();
        assert_eq!(q.seq, 7);
        assert_eq!((q.sched, q.sent), (p.sched, p.sent));
        assert!(Probe::read(&buf[..15]).is_none());
        // A send before its schedule (clock step) is carried as 0, far too late saturates.
        let early = Probe {
            sent: p.sched - 5,
            ..p
        };
        early.write(&mut buf);
        assert_eq!(Probe::read(&buf).unwrap().sent, p.sched);
        let late = Probe {
            sent: p.sched + 10_000_000_000,
            ..p
        };
        late.write(&mut buf);
        assert_eq!(
            Probe::read(&buf).unwrap().sent,
            p.sched + i64::from(u32::MAX)
        );
    }

    #[test]
    fn sequence_extension_across_wrap_and_reorder() {
        let mut x = SeqExtender::default();
        assert_eq!(x.extend(0xffff_fffe), 0xffff_fffe);
        assert_eq!(x.extend(0xffff_ffff), 0xffff_ffff);
        assert_eq!(x.extend(1), 0x1_0000_0001);
        // A late frame from before the wrap stays before it.
        assert_eq!(x.extend(0xffff_fffd), 0xffff_fffd);
        assert_eq!(x.extend(2), 0x1_0000_0002);
        let mut y = SeqExtender::default();
        assert_eq!(y.extend(5), 5);
        assert_eq!(y.extend(3), 3);
        assert_eq!(y.extend(6), 6);
    }

    #[test]
    fn frame_round_trip_tagged_and_untagged() {
        let payload = [0xabu8; 17];
        for vlan in [None, Some((10u16, 5u8))] {
            let a = FrameAddrs {
                dst_mac: [2, 0, 0, 0, 0, 2],
                src_mac: [2, 0, 0, 0, 0, 1],
                vlan,
                src_ip: [10, 77, 0, 1],
                dst_ip: [10, 77, 0, 2],
                src_port: 40000,
                dst_port: 7788,
                tos: 0xb8,
            };
            let mut f = Vec::new();
            build_frame(&a, &payload, &mut f);
            assert_eq!(f.len(), payload_offset(vlan.is_some()) + payload.len());
            let v = parse_udp(&f).unwrap();
            assert_eq!(v.vlan, vlan);
            assert_eq!((v.src_port, v.dst_port), (40000, 7788));
            assert_eq!((v.src_ip, v.dst_ip), (a.src_ip, a.dst_ip));
            assert_eq!(v.payload, &payload);
            // Both checksums verify: summing a header with its checksum gives 0.
            let ip = payload_offset(vlan.is_some()) - UDP_LEN - IPV4_LEN;
            assert_eq!(checksum(&[&f[ip..ip + IPV4_LEN]]), 0);
            let mut pseudo = [0u8; 12];
            pseudo[0..4].copy_from_slice(&a.src_ip);
            pseudo[4..8].copy_from_slice(&a.dst_ip);
            pseudo[9] = 17;
            pseudo[10..12].copy_from_slice(&((UDP_LEN + payload.len()) as u16).to_be_bytes());
            assert_eq!(checksum(&[&pseudo, &f[ip + IPV4_LEN..]]), 0);
            assert!(parse_udp(&f[..f.len() - 1]).is_none());
        }
        // Not IPv4 / not UDP.
        let mut arp = vec![0u8; 60];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert!(parse_udp(&arp).is_none());
    }
}
