//! `tsn-latency sub`: receives probes on a UDP socket (or raw frames on an interface), stamps
//! each with the kernel's software receive timestamp converted to CLOCK_TAI, and measures.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cli::SubArgs;
use crate::clock;
use crate::error::Error;
use crate::measure::Measure;
use crate::net;
use crate::stats::{Mode, Params, Summary};
use crate::wire::Probe;

enum Rx {
    Udp(std::net::UdpSocket),
    /// A packet socket and the UDP port that marks probes.
    Raw(OwnedFd, u16),
}

fn open_rx(a: &SubArgs) -> Result<Rx, Error> {
    if let SocketAddr::V6(_) = a.listen {
        return Err(Error::NotIpv4(a.listen));
    }
    match &a.iface {
        Some(iface) => {
            let ie = |source| Error::Iface {
                iface: iface.clone(),
                source,
            };
            let info = net::if_info(iface).map_err(ie)?;
            let fd = net::packet_socket(info.index, true).map_err(ie)?;
            Ok(Rx::Raw(fd, a.listen.port()))
        }
        None => net::udp_rx(a.listen)
            .map(Rx::Udp)
            .map_err(|source| Error::UdpBind {
                addr: a.listen,
                source,
            }),
    }
}

pub(crate) fn run(a: &SubArgs, stop: &AtomicBool) -> Result<Summary, Error> {
    let rx = open_rx(a)?;
    let fd = match &rx {
        Rx::Udp(s) => s.as_fd().as_raw_fd(),
        Rx::Raw(f, _) => f.as_raw_fd(),
    };
    let params = Params {
        mode: Mode::OneWay,
        deadline: a.report.deadline.as_i64(),
        cycle: a.cycle.cycle_time.as_i64(),
        base: a.cycle.base_time.as_i64(),
        window: a.report.window,
        expected: a.count,
    };
    let mut m = Measure::new(params, &a.report)?;
    let mut buf = vec![0u8; 65536];
    let started = Instant::now();
    let mut last_probe: Option<Instant> = None;
    let mut offset = clock::tai_minus_utc();
    let mut offset_at = Instant::now();
    let idle = a.idle_timeout.to_std();
    loop {
        if stop.load(Ordering::Relaxed)
            || a.count.is_some_and(|n| m.received() >= n)
            || a.duration.is_some_and(|d| started.elapsed() >= d.to_std())
            || last_probe.is_some_and(|t| t.elapsed() >= idle)
        {
            break;
        }
        if offset_at.elapsed() >= Duration::from_secs(1) {
            offset = clock::tai_minus_utc();
            offset_at = Instant::now();
        }
        let cap = m.tick(Duration::from_millis(100));
        if !net::wait_readable(fd, cap.as_millis().max(1) as i32).map_err(Error::Recv)? {
            continue;
        }
        while let Some(r) = net::recv_timestamped(fd, &mut buf, offset).map_err(Error::Recv)? {
            let payload = match &rx {
                Rx::Udp(_) => 0..r.len,
                Rx::Raw(_, port) => match net::probe_in_frame(&buf[..r.len], &r, *port) {
                    Some(range) => range,
                    None => continue,
                },
            };
            let Some(p) = Probe::read(&buf[payload]) else {
                continue;
            };
            let arrival = r.kernel_tai.unwrap_or_else(|| {
                m.no_kernel_ts += 1;
                clock::tai_now()
            });
            last_probe = Some(Instant::now());
            m.push(p, arrival)?;
        }
    }
    m.finish()
}
