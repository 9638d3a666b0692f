use super::Truncated;

mod field {
    pub const SRC_PORT: std::ops::Range<usize> = 0..2;
    pub const DST_PORT: std::ops::Range<usize> = 2..4;
    pub const LENGTH: std::ops::Range<usize> = 4..6;
    pub const HEADER: usize = 8;
}

/// A UDP datagram header view.
#[derive(Debug, Clone, Copy)]
pub struct UdpDatagram<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpDatagram<T> {
    pub fn new_checked(buffer: T) -> Result<Self, Truncated> {
        if buffer.as_ref().len() < field::HEADER {
            return Err(Truncated);
        }
        Ok(UdpDatagram { buffer })
    }
    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }
    pub fn len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }
    pub fn is_empty(&self) -> bool {
        self.len() as usize <= field::HEADER
    }
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::HEADER..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_ports() {
        let d = [0x13, 0x88, 0x00, 0x35, 0x00, 0x0c, 0, 0, 1, 2, 3, 4];
        let u = UdpDatagram::new_checked(&d[..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port(), u.len()), (5000, 53, 12));
        assert_eq!(u.payload(), &[1, 2, 3, 4]);
        assert!(UdpDatagram::new_checked(&d[..7]).is_err());
    }
}
