//! `tsn-latency reflect`: sends every datagram back to where it came from, unchanged, so a
//! publisher without a clock shared with this host measures the round trip.

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::cli::ReflectArgs;
use crate::error::Error;
use crate::net;

pub(crate) fn run(a: &ReflectArgs, stop: &AtomicBool) -> Result<u64, Error> {
    let s = UdpSocket::bind(a.listen).map_err(|source| Error::UdpBind {
        addr: a.listen,
        source,
    })?;
    s.set_nonblocking(true).map_err(Error::Recv)?;
    if let Some(prio) = a.priority {
        net::set_priority(s.as_raw_fd(), prio)
            .map_err(|source| Error::Priority { prio, source })?;
    }
    let started = Instant::now();
    let mut buf = vec![0u8; 65536];
    let mut echoed = 0u64;
    while !stop.load(Ordering::Relaxed)
        && a.count.map_or(true, |n| echoed < n)
        && a.duration.map_or(true, |d| started.elapsed() < d.to_std())
    {
        if !net::wait_readable(s.as_raw_fd(), 100).map_err(Error::Recv)? {
            continue;
        }
        loop {
            let (n, from) = match s.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => break,
                Err(e) => return Err(Error::Recv(e)),
            };
            match s.send_to(&buf[..n], from) {
                Ok(_) => echoed += 1,
                // A full socket buffer loses this echo as a network would; the sender counts it.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(source) => return Err(Error::Echo { to: from, source }),
            }
        }
    }
    println!("tsn-latency reflect: echoed {echoed} frames");
    Ok(echoed)
}
