//! Sockets: UDP and raw AF_PACKET, SO_PRIORITY on send, kernel software receive timestamps
//! (SO_TIMESTAMPING) on receive. Thin, safe wrappers around the libc calls.

use std::ffi::CString;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::clock;
use crate::wire;

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live T of the size passed; the kernel copies it before returning.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (val as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    cvt(rc).map(drop)
}

/// Sets SO_PRIORITY (the skb priority a qdisc or a VLAN egress map turns into a traffic class).
pub(crate) fn set_priority(fd: RawFd, prio: u32) -> io::Result<()> {
    setsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_PRIORITY,
        &(prio as libc::c_int),
    )
}

/// Asks for kernel software receive timestamps (SCM_TIMESTAMPING, CLOCK_REALTIME).
pub(crate) fn enable_rx_timestamps(fd: RawFd) -> io::Result<()> {
    let flags = libc::SOF_TIMESTAMPING_RX_SOFTWARE | libc::SOF_TIMESTAMPING_SOFTWARE;
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPING, &flags)
}

/// Grows the receive buffer so a stalled reader loses no frame at 1 kHz.
pub(crate) fn set_rcvbuf(fd: RawFd, bytes: i32) -> io::Result<()> {
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &bytes)
}

/// Waits until `fd` is readable or `timeout_ms` passes; false on timeout or a signal.
pub(crate) fn wait_readable(fd: RawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1.
    let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(rc > 0)
}

/// A datagram or frame with its kernel receive timestamp.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) len: usize,
    /// Kernel software receive time converted to CLOCK_TAI; `None` when the kernel gave none.
    pub(crate) kernel_tai: Option<i64>,
    /// Sender (UDP sockets).
    pub(crate) from: Option<SocketAddr>,
    /// Packet type (AF_PACKET sockets): PACKET_OUTGOING for our own frames.
    pub(crate) pkttype: Option<u8>,
    /// The 802.1Q tag the kernel moved out of the frame (AF_PACKET, PACKET_AUXDATA): (VID, PCP).
    pub(crate) aux_vlan: Option<(u16, u8)>,
}

/// `recvmsg` on a non-blocking read: the payload into `buf`, the timestamp from the cmsgs.
/// `tai_offset` is TAI − UTC in ns. Returns `Ok(None)` when nothing is queued.
pub(crate) fn recv_timestamped(
    fd: RawFd,
    buf: &mut [u8],
    tai_offset: i64,
) -> io::Result<Option<Received>> {
    // sockaddr_storage holds both sockaddr_in and sockaddr_ll.
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut name: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 64]; // 512 bytes, 8-aligned for cmsghdr
                                  // SAFETY: all-zero is a valid msghdr; the pointers are filled in below.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = mem::size_of_val(&control);
    // SAFETY: msg points to live buffers of the sizes it states, for the duration of the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT | libc::MSG_TRUNC) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted {
            return Ok(None);
        }
        return Err(e);
    }
    let mut r = Received {
        len: (n as usize).min(buf.len()),
        kernel_tai: None,
        from: None,
        pkttype: None,
        aux_vlan: None,
    };
    // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR walk the control buffer the kernel filled, bounded by
    // msg_controllen; each header's data is read with read_unaligned at its stated type.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let h = &*c;
            let data = libc::CMSG_DATA(c);
            if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_TIMESTAMPING {
                // struct scm_timestamping { struct timespec ts[3]; }: [0] is the software stamp.
                let ts: libc::timespec = std::ptr::read_unaligned(data.cast());
                if ts.tv_sec != 0 || ts.tv_nsec != 0 {
                    r.kernel_tai = Some(clock::ts_to_ns(&ts) + tai_offset);
                }
            } else if h.cmsg_level == libc::SOL_PACKET && h.cmsg_type == libc::PACKET_AUXDATA {
                let aux: libc::tpacket_auxdata = std::ptr::read_unaligned(data.cast());
                if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                    r.aux_vlan = Some((aux.tp_vlan_tci & 0x0fff, (aux.tp_vlan_tci >> 13) as u8));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    match i32::from(name.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET) into the storage.
            let sin: libc::sockaddr_in = unsafe { std::ptr::read(std::ptr::addr_of!(name).cast()) };
            r.from = Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )));
        }
        libc::AF_PACKET => {
            // SAFETY: the kernel wrote a sockaddr_ll (family AF_PACKET) into the storage.
            let sll: libc::sockaddr_ll = unsafe { std::ptr::read(std::ptr::addr_of!(name).cast()) };
            r.pkttype = Some(sll.sll_pkttype);
        }
        _ => {}
    }
    Ok(Some(r))
}

/// A UDP socket bound to `bind`, with receive timestamps on.
pub(crate) fn udp_rx(bind: SocketAddr) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind(bind)?;
    enable_rx_timestamps(s.as_raw_fd())?;
    let _ = set_rcvbuf(s.as_raw_fd(), 4 << 20);
    Ok(s)
}

/// An interface's index, MAC and first IPv4 address, asked of the kernel (works in any network
/// namespace, no sysfs needed).
#[derive(Clone, Copy, Debug)]
pub(crate) struct IfInfo {
    pub(crate) index: i32,
    pub(crate) mac: [u8; 6],
    pub(crate) ipv4: Option<Ipv4Addr>,
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    let c = CString::new(name).map_err(|_| io::Error::other("interface name has a NUL"))?;
    let bytes = c.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(io::Error::other(format!(
            "interface name {name} is too long"
        )));
    }
    // SAFETY: all-zero is a valid ifreq.
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    for (d, &s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

pub(crate) fn if_info(name: &str) -> io::Result<IfInfo> {
    // SAFETY: plain socket(2) call; the fd is owned right away.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = ifreq_for(name)?;
    // SAFETY: SIOCGIFINDEX reads ifr_name and writes ifr_ifindex of the live ifreq.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFINDEX, &mut req) })
        .map_err(|e| io::Error::new(e.kind(), format!("interface {name}: {e}")))?;
    // SAFETY: the kernel filled the ifindex member of the union.
    let index = unsafe { req.ifr_ifru.ifru_ifindex };
    let mut req = ifreq_for(name)?;
    // SAFETY: SIOCGIFHWADDR writes ifr_hwaddr of the live ifreq.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) })?;
    // SAFETY: the kernel filled the hwaddr member of the union.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (m, &b) in mac.iter_mut().zip(&hw.sa_data[..6]) {
        *m = b as u8;
    }
    let mut req = ifreq_for(name)?;
    // SAFETY: SIOCGIFADDR writes ifr_addr of the live ifreq (fails if it has no IPv4 address).
    let ipv4 = match cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFADDR, &mut req) }) {
        Ok(_) => {
            // SAFETY: the kernel wrote a sockaddr_in into ifr_addr.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read(std::ptr::addr_of!(req.ifr_ifru.ifru_addr).cast()) };
            Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
        }
        Err(_) => None,
    };
    Ok(IfInfo { index, mac, ipv4 })
}

/// A raw AF_PACKET socket bound to one interface. `rx` receives every frame (ETH_P_ALL) with
/// timestamps and PACKET_AUXDATA; a send-only socket (protocol 0) receives nothing.
pub(crate) fn packet_socket(ifindex: i32, rx: bool) -> io::Result<OwnedFd> {
    let proto = if rx {
        (libc::ETH_P_ALL as u16).to_be()
    } else {
        0
    };
    // SAFETY: plain socket(2) call; the fd is owned right away.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    })?;
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid sockaddr_ll; the fields that matter are set below.
    let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex;
    // SAFETY: sll is a live sockaddr_ll of the size passed.
    cvt(unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    if rx {
        setsockopt(
            sock.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_AUXDATA,
            &1i32,
        )?;
        enable_rx_timestamps(sock.as_raw_fd())?;
        let _ = set_rcvbuf(sock.as_raw_fd(), 4 << 20);
    }
    Ok(sock)
}

/// Sends `buf` on a connected UDP socket or a bound packet socket.
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is a live slice of the length passed.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// A probe found in a raw frame, if it is UDP to `port` and not our own outgoing copy.
pub(crate) fn probe_in_frame(
    frame: &[u8],
    r: &Received,
    port: u16,
) -> Option<std::ops::Range<usize>> {
    if r.pkttype == Some(libc::PACKET_OUTGOING) {
        return None;
    }
    let v = wire::parse_udp(frame)?;
    if v.dst_port != port || v.payload.len() < wire::HEADER_LEN {
        return None;
    }
    let start = v.payload.as_ptr() as usize - frame.as_ptr() as usize;
    Some(start..start + v.payload.len())
}
