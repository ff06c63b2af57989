//! Words the engine and berthctl both use to show API values as Docker does: the
//! engine's `ps` status ("Up 3 seconds") and berthctl's CREATED columns must say the same.

use std::time::Duration;

/// A duration as Docker says it ("About an hour", "3 weeks").
pub fn duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let minutes = seconds / 60;
    let hours = ((d.as_secs_f64() / 3600.0) + 0.5) as u64;
    if seconds < 1 {
        "Less than a second".into()
    } else if seconds == 1 {
        "1 second".into()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", seconds / 3600 / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker() {
        let s = Duration::from_secs;
        assert_eq!(duration(Duration::from_millis(300)), "Less than a second");
        assert_eq!(duration(s(1)), "1 second");
        assert_eq!(duration(s(45)), "45 seconds");
        assert_eq!(duration(s(90)), "About a minute");
        assert_eq!(duration(s(10 * 60)), "10 minutes");
        assert_eq!(duration(s(3600)), "About an hour");
        assert_eq!(duration(s(2 * 3600)), "2 hours");
        assert_eq!(duration(s(3 * 86400)), "3 days");
        assert_eq!(duration(s(21 * 86400)), "3 weeks");
        assert_eq!(duration(s(90 * 86400)), "3 months");
        assert_eq!(duration(s(3 * 365 * 86400)), "3 years");
    }
}
