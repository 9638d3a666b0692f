//! CLOCK_TAI: reading it, sleeping until an instant on it, and the TAI − UTC offset that turns
//! the kernel's CLOCK_REALTIME packet timestamps into TAI.

use std::io;

fn now(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clocks exist on every Linux since 3.10.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({clock}) failed");
    ts_to_ns(&ts)
}

pub(crate) fn ts_to_ns(ts: &libc::timespec) -> i64 {
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Now on CLOCK_TAI, ns.
pub(crate) fn tai_now() -> i64 {
    now(libc::CLOCK_TAI)
}

/// Sleeps until `t` (ns on CLOCK_TAI), absolute, so no drift accumulates over cycles. A signal
/// ends the sleep early with `ErrorKind::Interrupted`.
pub(crate) fn sleep_until_tai(t: i64) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: t.div_euclid(1_000_000_000),
        tv_nsec: t.rem_euclid(1_000_000_000),
    };
    // SAFETY: `ts` is a valid timespec; a null remainder is allowed with TIMER_ABSTIME.
    let rc = unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_TAI,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
    match rc {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// TAI − UTC in ns, a whole number of seconds (the kernel's offset, 0 unless set, e.g. 37 s by
/// ptp4l/phc2sys): two clock reads a few ns apart, rounded, never their raw difference.
pub(crate) fn tai_minus_utc() -> i64 {
    let tai = now(libc::CLOCK_TAI);
    let utc = now(libc::CLOCK_REALTIME);
    let d = tai - utc;
    (d as f64 / 1e9).round() as i64 * 1_000_000_000
}

/// The first scheduled time after `now + margin` on the grid base + shift + k·cycle (as isochron
/// picks its first cycle when `--base-time` is in the past), or base + shift when that is later.
pub(crate) fn first_slot(base: i64, shift: i64, cycle: i64, now: i64, margin: i64) -> i64 {
    let origin = base + shift;
    let earliest = now + margin;
    if origin >= earliest || cycle <= 0 {
        return origin.max(earliest);
    }
    let k = (earliest - origin + cycle - 1).div_euclid(cycle);
    origin + k * cycle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_slot_on_the_grid() {
        let ms = 1_000_000;
        // Base in the past: the next boundary after now + margin, plus the shift.
        assert_eq!(
            first_slot(0, 250_000, ms, 10 * ms + 1, 100 * ms),
            111 * ms + 250_000 - ms
        );
        assert_eq!(first_slot(0, 0, ms, 10 * ms, 0), 10 * ms);
        assert_eq!(first_slot(0, 0, ms, 10 * ms + 1, 0), 11 * ms);
        // Base in the future: base + shift itself.
        assert_eq!(first_slot(50 * ms, 7, ms, 10 * ms, ms), 50 * ms + 7);
        let t = first_slot(3, 0, ms, 123_456_789, 0);
        assert_eq!((t - 3) % ms, 0);
        assert!(t >= 123_456_789 && t < 123_456_789 + ms);
    }

    #[test]
    fn clocks_are_sane() {
        let off = tai_minus_utc();
        assert_eq!(off % 1_000_000_000, 0);
        let a = tai_now();
        sleep_until_tai(a + 2_000_000).unwrap();
        assert!(tai_now() >= a + 2_000_000);
    }
}
