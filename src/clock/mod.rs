//! Clocks the gate stage runs on: the reference clocks the schedule's times are written in
//! (CLOCK_TAI, a PTP hardware clock, a NIC's IEEE 1588 clock), a simulated clock for tests, and
//! the TSC interpolation that lets a PMD core read "reference time" once per loop iteration for
//! the price of an `rdtsc` ([`TscClock`]).
//!
//! Two traits, because the two sides have different needs:
//! - [`ReferenceClock`] (control thread): the authoritative time, possibly slow to read (a PHC read
//!   is a syscall, a NIC clock read is an MMIO round trip), possibly failing.
//! - [`Clock`] (PMD core): `now_ns()`, infallible and cheap. [`TscClock`] interpolates the TSC
//!   from a calibration the control thread publishes with [`Calibrator::calibrate`].
//!
//! Wiring (control thread, before launching the PMD cores):
//! ```ignore
//! let spec: ClockSpec = cli.clock.parse()?;                 // "tai" | "phc:/dev/ptp0" | "port:NAME"
//! let reference: Box<dyn ReferenceClock> = match &spec {
//!     ClockSpec::Port(name) => Box::new(PortClock::new(name, move || read_nic_clock_ns())),
//!     other => other.open()?,
//! };
//! let mut cal = Calibrator::new(reference, Tsc, dpdk::tsc_hz())?; // first calibration
//! let clock = cal.clock();                                  // TscClock: clone one per PMD core
//! // every ~100 ms .. 1 s on the control thread:
//! cal.calibrate()?;  cal.stats();                           // offset, drift, last calibration
//! ```

mod tsc;

pub use tsc::{Calibrator, Tsc, TscClock};

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// A clock a PMD core reads once per loop iteration: infallible, cheap, no syscall.
pub trait Clock: Send + Sync {
    /// Nanoseconds in the reference clock's timebase (TAI for `--clock tai`).
    fn now_ns(&self) -> u64;
}

/// An authoritative clock, read from the control thread (it may be slow or fail).
pub trait ReferenceClock: Send {
    /// Nanoseconds now, or `None` if the clock could not be read.
    fn read_ns(&self) -> Option<u64>;
    /// How the clock was named on the command line (`tai`, `phc:/dev/ptp0`, `port:uplink`).
    fn name(&self) -> String;
}

/// Why a clock could not be parsed, opened or read. Each message reads as a sentence.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("unknown clock '{0}' (expected tai, phc:/dev/ptpN or port:NAME)")]
    Unknown(String),
    #[error("clock 'phc:' needs the device path of a PTP hardware clock, e.g. phc:/dev/ptp0")]
    PhcNeedsPath,
    #[error("clock 'port:' needs the name of a port, e.g. port:uplink")]
    PortNeedsName,
    #[error("cannot open PTP hardware clock '{path}': {cause}")]
    PhcOpen {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("'{path}' is not a PTP hardware clock: reading it failed: {cause}")]
    NotPhc {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("clock 'port:{0}' is read through DPDK's timesync API: build it with PortClock::new")]
    PortNeedsReader(String),
    #[error("reading the reference clock '{0}' failed")]
    ReadFailed(String),
    #[error(
        "the list's clockid {list} is not the gates' clock (--clock {clock}, which keeps TAI): its \
         times would be read on the wrong clock; write clockid CLOCK_TAI or leave it out"
    )]
    ClockidMismatch { list: &'static str, clock: String },
}

/// A parsed `--clock` argument.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClockSpec {
    /// `tai`: CLOCK_TAI, as taprio uses (the default). Equal to CLOCK_REALTIME unless the kernel's
    /// TAI offset was set (ptp4l/phc2sys or chrony do that).
    #[default]
    Tai,
    /// `phc:/dev/ptpN`: a PTP hardware clock.
    Phc(PathBuf),
    /// `port:NAME`: the IEEE 1588 clock of a switch port's NIC, read through DPDK.
    Port(String),
}

impl std::str::FromStr for ClockSpec {
    type Err = ClockError;
    fn from_str(s: &str) -> Result<Self, ClockError> {
        if s == "tai" {
            return Ok(Self::Tai);
        }
        if let Some(path) = s.strip_prefix("phc:") {
            if path.is_empty() {
                return Err(ClockError::PhcNeedsPath);
            }
            return Ok(Self::Phc(PathBuf::from(path)));
        }
        if let Some(name) = s.strip_prefix("port:") {
            if name.is_empty() {
                return Err(ClockError::PortNeedsName);
            }
            return Ok(Self::Port(name.to_owned()));
        }
        Err(ClockError::Unknown(s.to_owned()))
    }
}

impl std::fmt::Display for ClockSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tai => f.write_str("tai"),
            Self::Phc(p) => write!(f, "phc:{}", p.display()),
            Self::Port(n) => write!(f, "port:{n}"),
        }
    }
}

impl ClockSpec {
    /// Checks a gate control list's `clockid` (taprio's) against this clock. Every clock the
    /// switch offers keeps TAI: CLOCK_TAI itself, and PTP hardware clocks, which carry the PTP
    /// timescale (TAI) when ptp4l disciplines them. So CLOCK_TAI matches them all and the other
    /// Linux clocks none; a list without a clockid is taken as written for the switch's clock.
    pub fn check_clockid(&self, clockid: Option<gcl::ClockId>) -> Result<(), ClockError> {
        match clockid {
            None | Some(gcl::ClockId::Tai) => Ok(()),
            Some(other) => Err(ClockError::ClockidMismatch {
                list: other.name(),
                clock: self.to_string(),
            }),
        }
    }

    /// Opens a `tai` or `phc:` clock (the PHC is opened and read once, so a wrong path fails
    /// here, naming it). `port:` clocks need DPDK: build them with [`PortClock::new`].
    pub fn open(&self) -> Result<Box<dyn ReferenceClock>, ClockError> {
        match self {
            Self::Tai => Ok(Box::new(SystemClock::tai())),
            Self::Phc(path) => Ok(Box::new(PhcClock::open(path)?)),
            Self::Port(name) => Err(ClockError::PortNeedsReader(name.clone())),
        }
    }
}

/// `clock_gettime` as u64 ns; `Err` with errno on failure. Negative times read as 0.
fn gettime(id: libc::clockid_t) -> std::io::Result<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes it.
    if unsafe { libc::clock_gettime(id, &mut ts) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nsec = u64::try_from(ts.tv_nsec).unwrap_or(0);
    Ok(secs.saturating_mul(1_000_000_000).saturating_add(nsec))
}

/// A POSIX clock read with `clock_gettime` (vDSO for TAI/REALTIME/MONOTONIC: ~20 ns, no syscall).
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    id: libc::clockid_t,
}

impl SystemClock {
    /// CLOCK_TAI.
    pub fn tai() -> Self {
        Self {
            id: libc::CLOCK_TAI,
        }
    }
    /// CLOCK_MONOTONIC (for tests that need a real, steady clock).
    #[cfg(test)]
    pub fn monotonic() -> Self {
        Self {
            id: libc::CLOCK_MONOTONIC,
        }
    }
}

impl ReferenceClock for SystemClock {
    fn read_ns(&self) -> Option<u64> {
        gettime(self.id).ok()
    }
    fn name(&self) -> String {
        match self.id {
            libc::CLOCK_TAI => "tai".into(),
            libc::CLOCK_MONOTONIC => "monotonic".into(),
            id => format!("clockid {id}"),
        }
    }
}

impl Clock for SystemClock {
    /// Direct read; 0 if the clock cannot be read (never, for the clocks built here).
    fn now_ns(&self) -> u64 {
        gettime(self.id).unwrap_or(0)
    }
}

/// A PTP hardware clock (`/dev/ptpN`), read with `clock_gettime` on its dynamic clock id.
/// Each read is a syscall: read it from the control thread and let PMD cores use a [`TscClock`].
#[derive(Debug)]
pub struct PhcClock {
    /// Keeps the descriptor (and so the clock id) alive.
    _file: File,
    id: libc::clockid_t,
    path: PathBuf,
}

impl PhcClock {
    /// Opens the device read-only (enough to read; adjusting is ptp4l's business) and reads it
    /// once, so a path that is not a PHC fails here. Non-blocking: a FIFO given by mistake is
    /// then refused at once instead of waiting for a writer.
    pub fn open(path: &Path) -> Result<Self, ClockError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path);
        let file = file.map_err(|cause| ClockError::PhcOpen {
            path: path.to_owned(),
            cause,
        })?;
        // FD_TO_CLOCKID from the kernel's posix-clock documentation.
        let id: libc::clockid_t = ((!file.as_raw_fd()) << 3) | 3;
        gettime(id).map_err(|cause| ClockError::NotPhc {
            path: path.to_owned(),
            cause,
        })?;
        Ok(Self {
            _file: file,
            id,
            path: path.to_owned(),
        })
    }
}

impl ReferenceClock for PhcClock {
    fn read_ns(&self) -> Option<u64> {
        gettime(self.id).ok()
    }
    fn name(&self) -> String {
        format!("phc:{}", self.path.display())
    }
}

/// A NIC's IEEE 1588 clock, read through a closure the switch builds around DPDK's
/// `rte_eth_timesync_read_time` (the FFI lives in `crate::dpdk`). `None` = read failed.
pub struct PortClock {
    name: String,
    reader: Box<dyn Fn() -> Option<u64> + Send>,
}

impl PortClock {
    pub fn new(name: &str, reader: impl Fn() -> Option<u64> + Send + 'static) -> Self {
        Self {
            name: name.to_owned(),
            reader: Box::new(reader),
        }
    }
}

impl ReferenceClock for PortClock {
    fn read_ns(&self) -> Option<u64> {
        (self.reader)()
    }
    fn name(&self) -> String {
        format!("port:{}", self.name)
    }
}

#[cfg(test)]
pub use sim::SimClock;

#[cfg(test)]
mod sim {
    use super::{Clock, ReferenceClock};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// A settable, advanceable clock for tests; clones share the same time across threads.
    #[derive(Debug, Clone, Default)]
    pub struct SimClock(Arc<AtomicU64>);

    impl SimClock {
        pub fn new(start_ns: u64) -> Self {
            Self(Arc::new(AtomicU64::new(start_ns)))
        }
        pub fn set(&self, ns: u64) {
            self.0.store(ns, Ordering::Release);
        }
        /// Moves time forward by `ns` (saturating); returns the new time.
        pub fn advance(&self, ns: u64) -> u64 {
            let mut cur = self.0.load(Ordering::Acquire);
            loop {
                let new = cur.saturating_add(ns);
                match self
                    .0
                    .compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return new,
                    Err(c) => cur = c,
                }
            }
        }
    }

    impl Clock for SimClock {
        fn now_ns(&self) -> u64 {
            self.0.load(Ordering::Acquire)
        }
    }

    impl ReferenceClock for SimClock {
        fn read_ns(&self) -> Option<u64> {
            Some(self.now_ns())
        }
        fn name(&self) -> String {
            "sim".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_clock_argument() {
        assert_eq!("tai".parse::<ClockSpec>().unwrap(), ClockSpec::Tai);
        assert_eq!(
            "phc:/dev/ptp1".parse::<ClockSpec>().unwrap(),
            ClockSpec::Phc("/dev/ptp1".into())
        );
        assert_eq!(
            "port:uplink".parse::<ClockSpec>().unwrap(),
            ClockSpec::Port("uplink".into())
        );
        assert_eq!(
            "bogus".parse::<ClockSpec>().unwrap_err().to_string(),
            "unknown clock 'bogus' (expected tai, phc:/dev/ptpN or port:NAME)"
        );
        assert!(matches!(
            "phc:".parse::<ClockSpec>(),
            Err(ClockError::PhcNeedsPath)
        ));
        assert!(matches!(
            "port:".parse::<ClockSpec>(),
            Err(ClockError::PortNeedsName)
        ));
        for s in ["tai", "phc:/dev/ptp0", "port:vm1"] {
            assert_eq!(s.parse::<ClockSpec>().unwrap().to_string(), s);
        }
        assert_eq!(ClockSpec::default(), ClockSpec::Tai);
    }

    #[test]
    fn a_list_for_clock_tai_fits_every_clock_and_no_other_does() {
        use gcl::ClockId;
        for spec in ["tai", "phc:/dev/ptp0", "port:nic"] {
            let spec: ClockSpec = spec.parse().unwrap();
            assert!(spec.check_clockid(None).is_ok());
            assert!(spec.check_clockid(Some(ClockId::Tai)).is_ok());
            for other in [ClockId::Realtime, ClockId::Monotonic, ClockId::Boottime] {
                let e = spec.check_clockid(Some(other)).unwrap_err().to_string();
                assert!(
                    e.starts_with(&format!(
                        "the list's clockid {} is not the gates' clock (--clock {spec}",
                        other.name()
                    )),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn phc_errors_name_the_path() {
        let spec: ClockSpec = "phc:/nonexistent/ptp9".parse().unwrap();
        let e = spec.open().err().expect("no such device").to_string();
        assert!(
            e.starts_with("cannot open PTP hardware clock '/nonexistent/ptp9': "),
            "{e}"
        );
        let e = PhcClock::open(Path::new("/dev/null"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("'/dev/null' is not a PTP hardware clock: reading it failed: "),
            "{e}"
        );
        let e = ClockSpec::Port("x".into())
            .open()
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("PortClock::new"), "{e}");
    }

    #[test]
    fn phc_reads_when_present() {
        // Only where the machine has one; the error paths are covered above.
        if let Ok(c) = PhcClock::open(Path::new("/dev/ptp0")) {
            assert!(c.read_ns().is_some());
            assert_eq!(c.name(), "phc:/dev/ptp0");
        }
    }

    #[test]
    fn tai_is_not_far_from_realtime() {
        let tai = ClockSpec::Tai.open().unwrap();
        let t = tai.read_ns().unwrap();
        let rt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        // TAI = UTC + 37 s once the offset is set, UTC otherwise.
        assert!(
            t + 1_000_000_000 >= rt && t <= rt + 40_000_000_000,
            "{t} {rt}"
        );
        assert_eq!(tai.name(), "tai");
    }

    #[test]
    fn sim_clock_is_shared_and_settable() {
        let c = SimClock::new(5);
        let d = c.clone();
        assert_eq!(d.advance(10), 15);
        assert_eq!(c.now_ns(), 15);
        let h = std::thread::spawn(move || d.set(1_000));
        h.join().unwrap();
        assert_eq!(c.now_ns(), 1_000);
        assert_eq!(c.advance(u64::MAX), u64::MAX);
        assert_eq!(ReferenceClock::read_ns(&c), Some(u64::MAX));
    }

    #[test]
    fn port_clock_uses_its_reader() {
        let p = PortClock::new("uplink", || Some(42));
        assert_eq!((p.read_ns(), p.name()), (Some(42), "port:uplink".into()));
        let p = PortClock::new("down", || None);
        assert_eq!(p.read_ns(), None);
    }
}
