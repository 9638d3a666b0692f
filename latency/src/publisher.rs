//! `tsn-latency pub`: a probe every cycle at base-time + shift-time + k·cycle-time on CLOCK_TAI,
//! over a UDP socket or as raw Ethernet [802.1Q] / IPv4 / UDP frames on an interface; with
//! `--reflect`, the echoes come back to the same socket and give RTT/2.

use std::io::{self, Write};
use std::mem;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::PubArgs;
use crate::clock;
use crate::error::Error;
use crate::measure::Measure;
use crate::net;
use crate::stats::{us, Dist, Mode, Params};
use crate::wire::{self, FrameAddrs, Probe};

/// Source port of raw frames when --src gives none.
const RAW_SRC_PORT: u16 = 7789;

enum Tx {
    Udp(UdpSocket),
    Raw {
        fd: OwnedFd,
        addrs: FrameAddrs,
        frame: Vec<u8>,
    },
}

impl Tx {
    fn fd(&self) -> RawFd {
        match self {
            Tx::Udp(s) => s.as_raw_fd(),
            Tx::Raw { fd, .. } => fd.as_raw_fd(),
        }
    }

    fn send(&mut self, payload: &[u8]) -> io::Result<usize> {
        match self {
            Tx::Udp(s) => net::send(s.as_raw_fd(), payload),
            Tx::Raw { fd, addrs, frame } => {
                wire::build_frame(addrs, payload, frame);
                net::send(fd.as_raw_fd(), frame)
            }
        }
    }
}

fn v4(a: SocketAddr) -> Result<SocketAddrV4, Error> {
    match a {
        SocketAddr::V4(v) => Ok(v),
        SocketAddr::V6(_) => Err(Error::NotIpv4(a)),
    }
}

fn open_tx(a: &PubArgs) -> Result<Tx, Error> {
    let dst = v4(a.dst)?;
    let tx = match (&a.iface, a.dst_mac) {
        (Some(iface), Some(dst_mac)) => {
            let ie = |source| Error::Iface {
                iface: iface.clone(),
                source,
            };
            let info = net::if_info(iface).map_err(ie)?;
            let src = a.src.map(v4).transpose()?;
            let src_ip = match src {
                Some(s) if !s.ip().is_unspecified() => *s.ip(),
                _ => info.ipv4.ok_or_else(|| Error::NoSourceIp(iface.clone()))?,
            };
            let src_port = src.map_or(RAW_SRC_PORT, |s| s.port());
            let fd = net::packet_socket(info.index, false).map_err(ie)?;
            Tx::Raw {
                fd,
                addrs: FrameAddrs {
                    dst_mac: dst_mac.0,
                    src_mac: info.mac,
                    vlan: a.vlan.map(|v| (v, a.pcp)),
                    src_ip: src_ip.octets(),
                    dst_ip: dst.ip().octets(),
                    src_port,
                    dst_port: dst.port(),
                    tos: 0,
                },
                frame: Vec::with_capacity(usize::from(a.size) + 64),
            }
        }
        _ => {
            let bind = a.src.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
            let s =
                UdpSocket::bind(bind).map_err(|source| Error::UdpBind { addr: bind, source })?;
            s.connect(a.dst).map_err(|source| Error::UdpConnect {
                addr: a.dst,
                source,
            })?;
            if a.reflect {
                net::enable_rx_timestamps(s.as_raw_fd()).map_err(Error::Recv)?;
                let _ = net::set_rcvbuf(s.as_raw_fd(), 4 << 20);
            }
            Tx::Udp(s)
        }
    };
    if let Some(prio) = a.priority {
        net::set_priority(tx.fd(), prio).map_err(|source| Error::Priority { prio, source })?;
    }
    Ok(tx)
}

/// SCHED_FIFO and CPU pinning for the sending thread, as a real-time publisher runs.
fn realtime(a: &PubArgs) -> Result<(), Error> {
    // Timer slack (50 µs by default for normal threads) would delay every wake-up by up to that
    // much; cyclictest sets it to 1 ns for the same reason. Best effort: old kernels lack it.
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    if let Some(cpu) = a.cpu {
        // SAFETY: an all-zero cpu_set_t is empty; CPU_SET writes inside it; the call reads it.
        let rc = unsafe {
            let mut set: libc::cpu_set_t = mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &set)
        };
        if rc != 0 {
            return Err(Error::Cpu {
                cpu,
                source: io::Error::last_os_error(),
            });
        }
    }
    if let Some(prio) = a.fifo {
        let p = libc::sched_param {
            sched_priority: prio,
        };
        // SAFETY: p is a valid sched_param for the calling thread (pid 0).
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) } != 0 {
            return Err(Error::Fifo {
                prio,
                source: io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

/// Frames to send: --count, --duration in whole cycles, whichever is fewer; None is unbounded.
fn frames_to_send(a: &PubArgs) -> Option<u64> {
    let cycle = a.schedule.cycle_time.0.max(1);
    let by_duration = a.duration.map(|d| d.0.div_ceil(cycle));
    match (a.count, by_duration) {
        (Some(c), Some(d)) => Some(c.min(d)),
        (c, d) => c.or(d),
    }
}

pub(crate) fn run(a: &PubArgs, stop: &Arc<AtomicBool>) -> Result<(), Error> {
    let mut tx = open_tx(a)?;
    realtime(a)?;
    let total = frames_to_send(a);
    let echoes = if a.reflect {
        let Tx::Udp(s) = &tx else {
            unreachable!("--reflect conflicts with --iface")
        };
        let sock = s.try_clone().map_err(Error::Recv)?;
        let params = Params {
            mode: Mode::HalfRtt,
            deadline: a.report.deadline.as_i64(),
            cycle: a.schedule.cycle_time.as_i64(),
            base: a.schedule.base_time.as_i64(),
            window: a.report.window,
            expected: total,
        };
        let measure = Measure::new(params, &a.report)?;
        let done = Arc::new(AtomicBool::new(false));
        let (stop2, done2) = (stop.clone(), done.clone());
        let wait = a.echo_wait.to_std();
        let h = std::thread::spawn(move || receive_echoes(sock, measure, &stop2, &done2, wait));
        Some((h, done))
    } else {
        None
    };

    let mut buf = vec![0u8; usize::from(a.size)];
    let cycle = a.schedule.cycle_time.as_i64().max(1);
    let first = clock::first_slot(
        a.schedule.base_time.as_i64(),
        a.schedule.shift_time.as_i64(),
        cycle,
        clock::tai_now(),
        a.start_margin.as_i64(),
    );
    let mut delays = Vec::new();
    let mut send_errors = 0u64;
    let mut first_error: Option<io::Error> = None;
    let mut seq = 0u64;
    while total.map_or(true, |n| seq < n) && !stop.load(Ordering::Relaxed) {
        let sched = first + seq as i64 * cycle;
        match clock::sleep_until_tai(sched) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Sleep(e)),
        }
        let sent = clock::tai_now();
        Probe { seq, sched, sent }.write(&mut buf);
        match tx.send(&buf) {
            Ok(_) => delays.push(sent - sched),
            Err(e) => {
                send_errors += 1;
                first_error.get_or_insert(e);
            }
        }
        seq += 1;
    }

    let mut out: Box<dyn Write> = if a.report.json {
        Box::new(io::stderr())
    } else {
        Box::new(io::stdout())
    };
    let _ = writeln!(
        out,
        "tsn-latency pub: sent {} of {seq} frames of {} bytes every {} from TAI {first}",
        seq - send_errors,
        a.size,
        a.schedule.cycle_time
    );
    if let Some(e) = first_error {
        let _ = writeln!(out, "send errors: {send_errors} (first: {e})");
    }
    if let Some(d) = Dist::of(&delays) {
        let _ = writeln!(
            out,
            "send delay (actual - scheduled, us): min {} median {} p99 {} p99.9 {} max {}",
            us(d.min as f64),
            us(d.p50 as f64),
            us(d.p99 as f64),
            us(d.p999 as f64),
            us(d.max as f64)
        );
    }
    let _ = out.flush();
    if let Some((h, done)) = echoes {
        done.store(true, Ordering::Relaxed);
        h.join().expect("echo receiver panicked")?;
    }
    Ok(())
}

/// Reads echoes until all are back, or `wait` after the sender is done, or a signal.
fn receive_echoes(
    sock: UdpSocket,
    mut m: Measure,
    stop: &AtomicBool,
    done: &AtomicBool,
    wait: Duration,
) -> Result<(), Error> {
    let fd = sock.as_raw_fd();
    let mut buf = vec![0u8; 65536];
    let mut offset = clock::tai_minus_utc();
    let mut offset_at = Instant::now();
    let mut done_at: Option<Instant> = None;
    let expected = m.expected();
    loop {
        if stop.load(Ordering::Relaxed) || expected.is_some_and(|n| m.received() >= n) {
            break;
        }
        if done.load(Ordering::Relaxed) {
            let t = *done_at.get_or_insert_with(Instant::now);
            if t.elapsed() >= wait {
                break;
            }
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
            let Some(p) = Probe::read(&buf[..r.len]) else {
                continue;
            };
            let arrival = r.kernel_tai.unwrap_or_else(|| {
                m.no_kernel_ts += 1;
                clock::tai_now()
            });
            let rtt = arrival - p.sent;
            // The estimate of the arrival at the reflector: half the round trip after sending.
            m.push(p, p.sent + rtt / 2)?;
        }
    }
    m.finish().map(drop)
}
