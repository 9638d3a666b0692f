use super::{Truncated, VlanTag, VLAN_TAG_LEN};

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// Group (multicast or broadcast) addresses have the I/G bit set.
    #[inline]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }
    /// As a u64 (48 significant bits), for hashing.
    #[inline]
    pub fn to_u64(self) -> u64 {
        // Two loads (2 + 4 bytes) rather than an 8-byte array put together byte by byte,
        // which the compiler turns into shuffles: this runs twice per frame.
        let b = self.0;
        (u64::from(u16::from_be_bytes([b[0], b[1]])) << 32)
            | u64::from(u32::from_be_bytes([b[2], b[3], b[4], b[5]]))
    }
    #[inline]
    pub fn from_u64(v: u64) -> MacAddr {
        let b = v.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl std::str::FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in out.iter_mut() {
            let p = parts
                .next()
                .ok_or_else(|| format!("'{s}' is not a MAC address"))?;
            *b = u8::from_str_radix(p, 16).map_err(|_| format!("'{s}' is not a MAC address"))?;
        }
        if parts.next().is_some() {
            return Err(format!("'{s}' is not a MAC address"));
        }
        Ok(MacAddr(out))
    }
}

/// EtherTypes the switch looks at.
pub struct EtherType;
impl EtherType {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    /// 802.1Q C-tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad S-tag (treated as opaque payload: the switch is a C-VLAN bridge).
    pub const QINQ: u16 = 0x88a8;
}

/// An Ethernet II frame, possibly 802.1Q-tagged.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer holding at least an Ethernet header (and the whole tag if the frame says
    /// it is tagged).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Truncated> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Truncated);
        }
        let f = EthernetFrame { buffer };
        if f.outer_ethertype() == EtherType::VLAN && len < HEADER_LEN + VLAN_TAG_LEN {
            return Err(Truncated);
        }
        Ok(f)
    }

    #[inline]
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    #[inline]
    pub fn dst(&self) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&self.b()[field::DST]);
        MacAddr(m)
    }
    #[inline]
    pub fn src(&self) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&self.b()[field::SRC]);
        MacAddr(m)
    }
    /// The EtherType right after the addresses (0x8100 on a tagged frame).
    #[inline]
    pub fn outer_ethertype(&self) -> u16 {
        let b = &self.b()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }
    /// The 802.1Q tag, if the frame carries one.
    #[inline]
    pub fn vlan(&self) -> Option<VlanTag> {
        if self.outer_ethertype() != EtherType::VLAN {
            return None;
        }
        let t = &self.b()[field::PAYLOAD..field::PAYLOAD + VLAN_TAG_LEN];
        Some(VlanTag::from_bytes([t[0], t[1], t[2], t[3]]))
    }
    /// The EtherType of the payload (after the tag, if any).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        match self.vlan() {
            Some(t) => t.inner_ethertype,
            None => self.outer_ethertype(),
        }
    }
    /// Header length including the tag.
    #[inline]
    pub fn header_len(&self) -> usize {
        if self.outer_ethertype() == EtherType::VLAN {
            HEADER_LEN + VLAN_TAG_LEN
        } else {
            HEADER_LEN
        }
    }
    /// The bytes after the Ethernet header (and tag).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline]
    pub fn set_dst(&mut self, m: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&m.0);
    }
    #[inline]
    pub fn set_src(&mut self, m: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&m.0);
    }
    #[inline]
    pub fn set_outer_ethertype(&mut self, t: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&t.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tagged: bool) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend([2, 0, 0, 0, 0, 1]);
        if tagged {
            f.extend([0x81, 0x00, 0xa0, 0x64]); // PCP 5, VID 100
        }
        f.extend([0x08, 0x00]);
        f.extend([0u8; 46]);
        f
    }

    #[test]
    fn parses_untagged_and_tagged() {
        let u = frame(false);
        let e = EthernetFrame::new_checked(&u[..]).unwrap();
        assert!(e.dst().is_multicast());
        assert_eq!(e.src().to_string(), "02:00:00:00:00:01");
        assert_eq!(e.vlan(), None);
        assert_eq!(e.ethertype(), EtherType::IPV4);
        assert_eq!(e.header_len(), 14);

        let t = frame(true);
        let e = EthernetFrame::new_checked(&t[..]).unwrap();
        let tag = e.vlan().unwrap();
        assert_eq!((tag.pcp(), tag.vid()), (5, 100));
        assert_eq!(e.ethertype(), EtherType::IPV4);
        assert_eq!(e.header_len(), 18);
    }

    #[test]
    fn rejects_truncated() {
        assert_eq!(
            EthernetFrame::new_checked(&[0u8; 13][..]).err(),
            Some(Truncated)
        );
        let t = frame(true);
        assert!(EthernetFrame::new_checked(&t[..16]).is_err());
    }

    #[test]
    fn mac_round_trips() {
        let m: MacAddr = "02:aa:bb:cc:dd:ee".parse().unwrap();
        assert_eq!(MacAddr::from_u64(m.to_u64()), m);
        assert!("02:aa".parse::<MacAddr>().is_err());
        assert!("02:aa:bb:cc:dd:ee:ff".parse::<MacAddr>().is_err());
    }
}
