//! Typed command-line values, parsed once by clap: durations and instants in nanoseconds (as
//! isochron and taprio users write them: a bare integer is nanoseconds), MAC addresses, and a
//! window inside the cycle.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Why a command-line value was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum ParseError {
    #[error("`{0}` is not a duration: write nanoseconds (`250000`) or a number with ns, us, ms or s (`250us`, `1.5ms`)")]
    Duration(String),
    #[error("`{0}` is too large a time to hold in 64-bit nanoseconds")]
    Overflow(String),
    #[error(
        "`{0}` is not a MAC address: write six hex bytes separated by colons, as 02:00:00:00:00:01"
    )]
    Mac(String),
    #[error("`{0}` is not a window: write START,END inside the cycle, as 100us,300us")]
    Window(String),
    #[error("the window {0} ends before it starts")]
    WindowOrder(String),
}

/// A non-negative span of time in nanoseconds: `250000`, `250us`, `1ms`, `1.5ms`, `2s`, `0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Nanos(pub(crate) u64);

impl Nanos {
    #[cfg(test)]
    pub(crate) const fn from_us(us: u64) -> Nanos {
        Nanos(us * 1_000)
    }
    #[cfg(test)]
    pub(crate) const fn from_ms(ms: u64) -> Nanos {
        Nanos(ms * 1_000_000)
    }
    pub(crate) fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }
    pub(crate) fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.0)
    }
}

impl FromStr for Nanos {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let scale: u64 = match unit.trim() {
            "" | "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            _ => return Err(ParseError::Duration(s.to_string())),
        };
        let (int, frac) = match num.split_once('.') {
            Some((i, f)) => (i, f),
            None => (num, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(ParseError::Duration(s.to_string()));
        }
        let int_v: u64 = if int.is_empty() {
            0
        } else {
            int.parse()
                .map_err(|_| ParseError::Overflow(s.to_string()))?
        };
        // Fractional part: digits beyond the unit's nanosecond resolution must be zero.
        let mut frac_ns: u64 = 0;
        let mut place = scale;
        for c in frac.chars() {
            let d = u64::from(c.to_digit(10).ok_or(ParseError::Duration(s.to_string()))?);
            place /= 10;
            if place == 0 {
                if d != 0 {
                    return Err(ParseError::Duration(s.to_string()));
                }
                continue;
            }
            frac_ns += d * place;
        }
        int_v
            .checked_mul(scale)
            .and_then(|v| v.checked_add(frac_ns))
            .filter(|v| i64::try_from(*v).is_ok())
            .map(Nanos)
            .ok_or(ParseError::Overflow(s.to_string()))
    }
}

impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v == 0 {
            write!(f, "0")
        } else if v % 1_000_000_000 == 0 {
            write!(f, "{}s", v / 1_000_000_000)
        } else if v % 1_000_000 == 0 {
            write!(f, "{}ms", v / 1_000_000)
        } else if v % 1_000 == 0 {
            write!(f, "{}us", v / 1_000)
        } else {
            write!(f, "{v}ns")
        }
    }
}

/// A MAC address, `02:00:00:00:00:01`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mac(pub(crate) [u8; 6]);

impl FromStr for Mac {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in out.iter_mut() {
            let p = parts.next().ok_or(ParseError::Mac(s.to_string()))?;
            if p.is_empty() || p.len() > 2 {
                return Err(ParseError::Mac(s.to_string()));
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| ParseError::Mac(s.to_string()))?;
        }
        if parts.next().is_some() {
            return Err(ParseError::Mac(s.to_string()));
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// A window of the cycle, `START,END`, offsets from the cycle's start (a gate's open interval).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) start: Nanos,
    pub(crate) end: Nanos,
}

impl Window {
    /// Whether a phase (offset in the cycle) lies in `[start, end)`.
    pub(crate) fn contains(&self, phase_ns: i64) -> bool {
        phase_ns >= self.start.as_i64() && phase_ns < self.end.as_i64()
    }
}

impl FromStr for Window {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s.split_once(',').ok_or(ParseError::Window(s.to_string()))?;
        let w = Window {
            start: a.parse()?,
            end: b.parse()?,
        };
        if w.end < w.start {
            return Err(ParseError::WindowOrder(s.to_string()));
        }
        Ok(w)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!("0".parse(), Ok(Nanos(0)));
        assert_eq!("250000".parse(), Ok(Nanos(250_000)));
        assert_eq!("250us".parse(), Ok(Nanos(250_000)));
        assert_eq!("250µs".parse(), Ok(Nanos(250_000)));
        assert_eq!("1ms".parse(), Ok(Nanos(1_000_000)));
        assert_eq!("1.5ms".parse(), Ok(Nanos(1_500_000)));
        assert_eq!(".5s".parse(), Ok(Nanos(500_000_000)));
        assert_eq!("2s".parse(), Ok(Nanos(2_000_000_000)));
        assert_eq!("7ns".parse(), Ok(Nanos(7)));
        assert_eq!("1.0ns".parse(), Ok(Nanos(1)));
        assert!("1.5ns".parse::<Nanos>().is_err());
        assert!("1m".parse::<Nanos>().is_err());
        assert!("ms".parse::<Nanos>().is_err());
        assert!("-1ms".parse::<Nanos>().is_err());
        assert!("99999999999s".parse::<Nanos>().is_err());
        for v in ["0", "1ms", "250us", "3s", "17ns"] {
            assert_eq!(v.parse::<Nanos>().unwrap().to_string(), v);
        }
    }

    #[test]
    fn macs_and_windows() {
        assert_eq!("02:00:00:00:00:0a".parse(), Ok(Mac([2, 0, 0, 0, 0, 0x0a])));
        assert!("02:00:00:00:00".parse::<Mac>().is_err());
        assert!("02:00:00:00:00:00:00".parse::<Mac>().is_err());
        assert!("02:00:00:00:00:zz".parse::<Mac>().is_err());
        let w: Window = "100us,300us".parse().unwrap();
        assert!(w.contains(100_000) && w.contains(299_999) && !w.contains(300_000));
        assert!("300us,100us".parse::<Window>().is_err());
        assert!("300us".parse::<Window>().is_err());
    }
}
