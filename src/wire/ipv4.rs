use super::Truncated;

mod field {
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const TOTAL_LEN: std::ops::Range<usize> = 2..4;
    pub const PROTOCOL: usize = 9;
    pub const SRC: std::ops::Range<usize> = 12..16;
    pub const DST: std::ops::Range<usize> = 16..20;
    pub const MIN_HEADER: usize = 20;
}

/// An IPv4 packet header view (options skipped, checksum not verified: the switch only reads).
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Checks version 4, a sane IHL and that the whole header is present.
    pub fn new_checked(buffer: T) -> Result<Self, Truncated> {
        let b = buffer.as_ref();
        if b.len() < field::MIN_HEADER || b[field::VER_IHL] >> 4 != 4 {
            return Err(Truncated);
        }
        let hl = usize::from(b[field::VER_IHL] & 0xf) * 4;
        if hl < field::MIN_HEADER || b.len() < hl {
            return Err(Truncated);
        }
        Ok(Ipv4Packet { buffer })
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[field::VER_IHL] & 0xf) * 4
    }
    pub fn dscp(&self) -> u8 {
        self.b()[field::DSCP_ECN] >> 2
    }
    pub fn total_len(&self) -> u16 {
        let t = &self.b()[field::TOTAL_LEN];
        u16::from_be_bytes([t[0], t[1]])
    }
    pub fn protocol(&self) -> u8 {
        self.b()[field::PROTOCOL]
    }
    pub fn src(&self) -> [u8; 4] {
        let mut a = [0; 4];
        a.copy_from_slice(&self.b()[field::SRC]);
        a
    }
    pub fn dst(&self) -> [u8; 4] {
        let mut a = [0; 4];
        a.copy_from_slice(&self.b()[field::DST]);
        a
    }
    /// Bytes after the header (bounded by the buffer, not by total_len).
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..]
    }
}

/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_header() {
        let mut h = [0u8; 28];
        h[0] = 0x45;
        h[1] = 46 << 2;
        h[2..4].copy_from_slice(&28u16.to_be_bytes());
        h[9] = PROTO_UDP;
        h[12..16].copy_from_slice(&[10, 0, 0, 1]);
        h[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let p = Ipv4Packet::new_checked(&h[..]).unwrap();
        assert_eq!((p.header_len(), p.dscp(), p.total_len()), (20, 46, 28));
        assert_eq!(
            (p.protocol(), p.src(), p.dst()),
            (17, [10, 0, 0, 1], [10, 0, 0, 2])
        );
        assert_eq!(p.payload().len(), 8);
        h[0] = 0x4f; // IHL 60 > buffer
        assert!(Ipv4Packet::new_checked(&h[..]).is_err());
        h[0] = 0x65;
        assert!(Ipv4Packet::new_checked(&h[..]).is_err());
    }
}
