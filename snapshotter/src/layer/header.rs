//! What a tar header and the PAX records before it say about an entry's metadata.
//!
//! `tar` itself applies the PAX `path`, `linkpath`, `size`, `uid` and `gid` records; this
//! module reads the rest (times, `SCHILY.xattr.*`) and refuses records that different
//! tar readers would understand differently.

use std::io::{self, Read};

use rustix::fs::{Gid, Timespec, Timestamps, Uid};

use super::apply::{lossy, Fail};
use super::xattr;

/// The metadata of one entry, from its header and PAX records.
pub(super) struct Meta {
    pub mode: u32,
    pub uid: Uid,
    pub gid: Gid,
    pub mtime: Timespec,
    pub atime: Timespec,
    pub xattrs: xattr::Xattrs,
}

impl Meta {
    pub fn times(&self) -> Timestamps {
        Timestamps {
            last_access: self.atime,
            last_modification: self.mtime,
        }
    }
}

/// What the PAX records of an entry say beyond what `tar` applies itself (path,
/// linkpath, size, uid, gid).
#[derive(Default)]
pub(super) struct Pax {
    mtime: Option<Timespec>,
    atime: Option<Timespec>,
    xattrs: xattr::Xattrs,
}

impl Pax {
    pub fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Pax, Fail> {
        let mut pax = Pax::default();
        let Some(records) = entry.pax_extensions().map_err(Fail::Stream)? else {
            return Ok(pax);
        };
        let mut seen: Vec<&[u8]> = Vec::new();
        for record in records {
            let record = record.map_err(|e| Fail::Refused(format!("malformed PAX record: {e}")))?;
            let (key, value) = (record.key_bytes(), record.value_bytes());
            match key {
                b"path" | b"linkpath" | b"size" | b"uid" | b"gid" | b"mtime" | b"atime" => {
                    // Parsers disagree on which of two records wins (tar takes the first,
                    // Go the last): an archive that says both is built to be read two ways.
                    if seen.contains(&key) {
                        return Err(Fail::Refused(format!(
                            "duplicate PAX record {:?}",
                            lossy(key)
                        )));
                    }
                    seen.push(key);
                }
                _ => {}
            }
            match key {
                // `tar` quietly falls back to the header when these do not parse; refuse
                // instead, so no reader can see a different size or owner.
                b"size" | b"uid" | b"gid" => {
                    let ok = std::str::from_utf8(value).is_ok_and(|v| v.parse::<u64>().is_ok());
                    if !ok {
                        return Err(Fail::Refused(format!("invalid PAX {}", lossy(key))));
                    }
                }
                b"mtime" => pax.mtime = Some(parse_pax_time(value)?),
                b"atime" => pax.atime = Some(parse_pax_time(value)?),
                _ if key.starts_with(b"GNU.sparse.") => {
                    return Err(Fail::Refused("PAX sparse files are not supported".into()));
                }
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        pax.xattrs.push((name.to_vec(), value.to_vec()));
                    }
                    // Anything else (ctime, uname, gname, comment, charset, LIBARCHIVE.*)
                    // has nothing to apply.
                }
            }
        }
        Ok(pax)
    }
}

/// A PAX time: `[-]seconds[.fraction]`.
fn parse_pax_time(value: &[u8]) -> Result<Timespec, Fail> {
    let bad = || Fail::Refused(format!("invalid PAX time {:?}", lossy(value)));
    let s = std::str::from_utf8(value).map_err(|_| bad())?;
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if secs.is_empty() || !all_digits(secs) || !all_digits(frac) {
        return Err(bad());
    }
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    // Nanoseconds from the first nine fraction digits, right-padded.
    let nsec = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
    Ok(match (neg, nsec) {
        (false, _) => Timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        },
        (true, 0) => Timespec {
            tv_sec: -secs,
            tv_nsec: 0,
        },
        (true, _) => Timespec {
            tv_sec: -secs - 1,
            tv_nsec: 1_000_000_000 - nsec,
        },
    })
}

pub(super) fn read_meta(header: &tar::Header, pax: Pax, entry: &str) -> Result<Meta, Fail> {
    let bad = |what: &str, e: io::Error| Fail::Refused(format!("invalid {what} in header: {e}"));
    let mode = header.mode().map_err(|e| bad("mode", e))? & 0o7777;
    // `tar` has already put a PAX uid/gid into the header. u32::MAX is chown's "leave
    // unchanged", not an owner.
    let id = |v: u64, what: &str| {
        u32::try_from(v)
            .ok()
            .filter(|&v| v != u32::MAX)
            .ok_or_else(|| Fail::Refused(format!("{what} {v} out of range")))
    };
    let uid = id(header.uid().map_err(|e| bad("uid", e))?, "uid")?;
    let gid = id(header.gid().map_err(|e| bad("gid", e))?, "gid")?;
    let mtime = match pax.mtime {
        Some(t) => t,
        None => {
            let secs = header.mtime().map_err(|e| bad("mtime", e))?;
            Timespec {
                tv_sec: i64::try_from(secs)
                    .map_err(|_| Fail::Refused("mtime out of range".into()))?,
                tv_nsec: 0,
            }
        }
    };
    let gnu_atime = header
        .as_gnu()
        .and_then(|g| g.atime().ok())
        .filter(|&t| t != 0)
        .and_then(|t| i64::try_from(t).ok())
        .map(|tv_sec| Timespec { tv_sec, tv_nsec: 0 });
    let atime = pax.atime.or(gnu_atime).unwrap_or(mtime);
    let mut xattrs = Vec::with_capacity(pax.xattrs.len());
    for (name, value) in pax.xattrs {
        if xattr::wanted_from_archive(&name).map_err(Fail::Refused)? {
            xattrs.push((name, value));
        } else {
            tracing::warn!(entry, xattr = %lossy(&name), "dropping xattr from layer");
        }
    }
    Ok(Meta {
        mode,
        uid: Uid::from_raw(uid),
        gid: Gid::from_raw(gid),
        mtime,
        atime,
        xattrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pax_times() {
        let t = |s: &str| {
            parse_pax_time(s.as_bytes())
                .map(|t| (t.tv_sec, t.tv_nsec))
                .ok()
        };
        assert_eq!(t("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(t("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(t("1.1234567891"), Some((1, 123_456_789)));
        assert_eq!(t("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(t("-3"), Some((-3, 0)));
        for bad in ["", ".5", "1e9", "1.2.3", "--1", "99999999999999999999"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }
}
