//! Signals as users name them: "SIGTERM", "TERM", "term", "15", and real-time signals
//! "SIGRTMIN+3".

use nix::sys::signal::Signal;

use crate::error::{Error, Result};

/// Parses a signal; `None` for an empty string.
pub fn parse(s: &str) -> Result<Option<u32>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let bad = || Error::InvalidArgument(format!("invalid signal: {s}"));
    if let Ok(n) = s.parse::<u32>() {
        if n == 0 || n > rtmax() {
            return Err(bad());
        }
        return Ok(Some(n));
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off = rt_offset(rest).ok_or_else(bad)?;
        let n = rtmin() + off;
        return if n <= rtmax() {
            Ok(Some(n))
        } else {
            Err(bad())
        };
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let off = match rest {
            "" => 0,
            r => r
                .strip_prefix('-')
                .and_then(|n| n.parse::<u32>().ok())
                .ok_or_else(bad)?,
        };
        return rtmax()
            .checked_sub(off)
            .filter(|n| *n >= rtmin())
            .map(Some)
            .ok_or_else(bad);
    }
    format!("SIG{name}")
        .parse::<Signal>()
        .map(|sig| Some(sig as u32))
        .map_err(|_| bad())
}

fn rt_offset(rest: &str) -> Option<u32> {
    match rest {
        "" => Some(0),
        r => r.strip_prefix('+')?.parse().ok(),
    }
}

fn rtmin() -> u32 {
    libc::SIGRTMIN() as u32
}

fn rtmax() -> u32 {
    libc::SIGRTMAX() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("SIGTERM").unwrap(), Some(15));
        assert_eq!(parse("term").unwrap(), Some(15));
        assert_eq!(parse("KILL").unwrap(), Some(9));
        assert_eq!(parse("9").unwrap(), Some(9));
        assert_eq!(parse("SIGRTMIN+1").unwrap(), Some(rtmin() + 1));
        assert_eq!(parse("RTMAX-1").unwrap(), Some(rtmax() - 1));
        for bad in ["0", "NOPE", "SIGRTMIN+99", "1000", "-1"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
