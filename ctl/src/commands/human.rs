//! Output for people, as Docker's command line writes it: aligned tables, sizes such as
//! "4.26MB", ages such as "2 hours ago".

use std::time::SystemTime;

use prost_types::Timestamp;

/// Docker's table layout (Go tabwriter: minimum width 10, padding 3); the last column is not
/// padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max((cell.chars().count() + 3).max(10));
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `v` with `precision` significant digits, without trailing zeros (Go's `%.*g` for the
/// values sizes take).
fn significant(v: f64, precision: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let exp = v.abs().log10().floor() as i64;
    let decimals = (precision as i64 - 1 - exp).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A size in decimal units with `precision` significant digits: "4.26MB", "512B".
pub fn size_with_precision(bytes: f64, precision: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut v = bytes;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{}{}", significant(v, precision), UNITS[unit])
}

/// A size in binary units with four significant digits, as Docker's `BytesSize` writes
/// memory: "412KiB", "23.47GiB".
pub fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{}{}", significant(v, 4), UNITS[unit])
}

/// Image and layer sizes in lists ("4.26MB").
pub fn size(bytes: i64) -> String {
    size_with_precision(bytes as f64, 3)
}

/// Totals, as `system df` and `prune` show them ("4.261MB").
pub fn total(bytes: u64) -> String {
    size_with_precision(bytes as f64, 4)
}

/// A duration as Docker says it ("About an hour", "3 weeks").
pub use berth_proto::words::duration;

/// The time of a timestamp, if it is one.
pub fn time(t: Option<&Timestamp>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(*t).ok())
}

/// "2 hours ago"; "N/A" without a time.
pub fn ago(t: Option<&Timestamp>) -> String {
    match time(t) {
        Some(t) => {
            let d = SystemTime::now().duration_since(t).unwrap_or_default();
            format!("{} ago", duration(d))
        }
        None => "N/A".into(),
    }
}

/// "2024-05-06 07:08:09 +0000 UTC", Docker's `CreatedAt`; empty without a time.
pub fn created_at(t: Option<&Timestamp>) -> String {
    match time(t) {
        Some(t) => humantime::format_rfc3339_seconds(t)
            .to_string()
            .replacen('T', " ", 1)
            .replace('Z', " +0000 UTC"),
        None => String::new(),
    }
}

/// Twelve hex characters of an image id ("sha256:" dropped), or the whole id with `no_trunc`.
pub fn image_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        return id.to_string();
    }
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// `s` cut to `max` characters, the last one an ellipsis, as Docker truncates columns.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(size(0), "0B");
        assert_eq!(size(512), "512B");
        assert_eq!(size(4_261_000), "4.26MB");
        assert_eq!(size(4_000_000), "4MB");
        assert_eq!(size(123_456_789), "123MB");
        assert_eq!(size(1_500), "1.5kB");
        assert_eq!(total(4_261_234), "4.261MB");
        assert_eq!(total(16_430_000), "16.43MB");
        assert_eq!(binary_size(412 * 1024), "412KiB");
        assert_eq!(binary_size(25_232_932_864), "23.5GiB");
        assert_eq!(binary_size(1023), "1023B");
    }

    #[test]
    fn tables_align_like_tabwriter() {
        let rows = vec![
            vec!["REPOSITORY".into(), "TAG".into(), "SIZE".into()],
            vec!["busybox".into(), "latest".into(), "4.26MB".into()],
        ];
        assert_eq!(
            table(&rows),
            "REPOSITORY   TAG       SIZE\nbusybox      latest    4.26MB\n"
        );
    }

    #[test]
    fn ids_times_and_ellipses() {
        let id = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(image_id(&id, false), "abababababab");
        assert_eq!(image_id(&id, true), id);
        assert_eq!(ellipsis("abcdef", 4), "abc…");
        assert_eq!(ellipsis("abc", 4), "abc");
        let t = Timestamp {
            seconds: 1704153600,
            nanos: 0,
        };
        assert_eq!(created_at(Some(&t)), "2024-01-02 00:00:00 +0000 UTC");
        assert_eq!(ago(None), "N/A");
        assert!(ago(Some(&t)).ends_with(" ago"));
    }
}
