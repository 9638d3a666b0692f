//! The 802.1Q tag: TPID 0x8100, then TCI (PCP 3 bits, DEI 1 bit, VID 12 bits), then the inner
//! EtherType. `VlanTag` holds the TCI and the inner EtherType (4 bytes after the addresses' TPID).

/// Bytes a tag adds to a frame.
pub const VLAN_TAG_LEN: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanTag {
    pub tci: u16,
    pub inner_ethertype: u16,
}

impl VlanTag {
    #[inline]
    pub fn from_bytes(b: [u8; 4]) -> VlanTag {
        VlanTag {
            tci: u16::from_be_bytes([b[0], b[1]]),
            inner_ethertype: u16::from_be_bytes([b[2], b[3]]),
        }
    }
    /// VLAN identifier (0 = priority-tagged only).
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci & 0x0fff
    }
    /// Priority code point (what 802.1Qbv maps to a traffic class).
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci >> 13) as u8
    }
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci & 0x1000 != 0
    }
    /// A TCI from its parts (VID masked to 12 bits, PCP to 3).
    #[inline]
    pub fn tci_of(pcp: u8, vid: u16) -> u16 {
        (u16::from(pcp & 7) << 13) | (vid & 0x0fff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn tci_fields() {
        let t = VlanTag::from_bytes([0xb0, 0x0a, 0x08, 0x00]);
        assert_eq!((t.pcp(), t.dei(), t.vid()), (5, true, 10));
        assert_eq!(VlanTag::tci_of(5, 10) | 0x1000, t.tci);
        assert_eq!(VlanTag::tci_of(9, 0xffff), 0x2fff);
    }
}
