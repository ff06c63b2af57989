//! Filters of image listing and pruning, as Docker reads them: `key=value` strings where
//! values of the same key are alternatives and different keys must all match.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use berth_registry_client::Reference;
use prost_types::Timestamp;

use crate::error::{Error, Result};

/// Parsed `key=value` filters.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    by_key: BTreeMap<String, Vec<String>>,
}

impl Filters {
    /// Parses `filters`, allowing only the keys in `allowed`. "label!=x" is key "label!".
    pub fn parse(filters: &[String], allowed: &[&str]) -> Result<Self> {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in filters {
            let (k, v) = f.split_once('=').ok_or_else(|| {
                Error::InvalidArgument(format!("bad filter {f:?}: expected key=value"))
            })?;
            if !allowed.contains(&k) {
                return Err(Error::InvalidArgument(format!(
                    "invalid filter {k:?}: use one of {}",
                    allowed.join(", ")
                )));
            }
            by_key.entry(k.to_string()).or_default().push(v.to_string());
        }
        Ok(Filters { by_key })
    }

    /// The values given for `key` (empty when the key was not given).
    pub fn get(&self, key: &str) -> &[String] {
        self.by_key.get(key).map(Vec::as_slice).unwrap_or_default()
    }

    /// The value of a boolean key ("true"/"false", "1"/"0"), `None` when not given.
    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        let mut out = None;
        for v in self.get(key) {
            let b = match v.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "invalid filter '{key}={v}': use true or false"
                    )))
                }
            };
            if out.is_some_and(|o| o != b) {
                return Err(Error::InvalidArgument(format!(
                    "conflicting values for filter {key:?}"
                )));
            }
            out = Some(b);
        }
        Ok(out)
    }

    /// True when `labels` pass the "label" (any of) and "label!" (none of) keys.
    pub fn labels_match(&self, labels: &HashMap<String, String>) -> bool {
        let has = |want: &String| match want.split_once('=') {
            Some((k, v)) => labels.get(k) == Some(&v.to_string()),
            None => labels.contains_key(want),
        };
        let include = self.get("label");
        (include.is_empty() || include.iter().all(has)) && !self.get("label!").iter().any(has)
    }
}

/// True when `reference` matches a `reference=` pattern, as Docker's `FamiliarMatch`: the
/// pattern is matched against the short name with tag ("busybox:latest"), then against the
/// short repository ("busybox").
pub fn reference_matches(pattern: &str, reference: &Reference) -> bool {
    glob(pattern, &reference.familiar()) || glob(pattern, &reference.familiar_repository())
}

/// Shell-style matching as Go's `path.Match`: `*` is any run of characters but `/`, `?` one
/// character but `/`, `[a-z]` / `[^a-z]` a class; `\` escapes.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_at(&p, &t)
}

fn glob_at(p: &[char], t: &[char]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some('*') => {
            let rest = &p[1..];
            for i in 0..=t.len() {
                if glob_at(rest, &t[i..]) {
                    return true;
                }
                if i < t.len() && t[i] == '/' {
                    return false;
                }
            }
            false
        }
        Some('?') => matches!(t.first(), Some(c) if *c != '/') && glob_at(&p[1..], &t[1..]),
        Some('[') => {
            let Some(c) = t.first() else { return false };
            match class(&p[1..], *c) {
                Some((ok, used)) => ok && glob_at(&p[1 + used..], &t[1..]),
                None => false,
            }
        }
        Some('\\') if p.len() > 1 => t.first() == Some(&p[1]) && glob_at(&p[2..], &t[1..]),
        Some(c) => t.first() == Some(c) && glob_at(&p[1..], &t[1..]),
    }
}

/// Matches `c` against the class starting after `[`; returns (matched, chars used incl. `]`).
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 0;
    let negate = p.first() == Some(&'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let lo = p[i];
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            let hi = p[i + 2];
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
    None
}

/// Parses an `until` value: an RFC 3339 time, Unix seconds, or a duration before now
/// ("24h", "90m").
pub fn parse_until(v: &str) -> Result<Timestamp> {
    if let Some(t) = super::config::parse_time(v) {
        return Ok(t);
    }
    if let Ok(secs) = v.parse::<i64>() {
        return Ok(Timestamp {
            seconds: secs,
            nanos: 0,
        });
    }
    let d: Duration = humantime::parse_duration(v).map_err(|_| {
        Error::InvalidArgument(format!(
            "invalid until {v:?}: use an RFC 3339 time, Unix seconds or a duration like 24h"
        ))
    })?;
    let at = SystemTime::now()
        .checked_sub(d)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(Timestamp::from(at))
}

/// True when `a` is strictly earlier than `b`.
pub fn earlier(a: &Timestamp, b: &Timestamp) -> bool {
    (a.seconds, a.nanos) < (b.seconds, b.nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_is_go_path_match() {
        assert!(glob("busybox*", "busybox"));
        assert!(glob("busybox*", "busybox:latest"));
        assert!(glob("*/app:1.*", "team/app:1.2"));
        assert!(!glob("*", "team/app"));
        assert!(glob("b?sybox", "busybox"));
        assert!(glob("[a-c]usybox", "busybox"));
        assert!(!glob("[^a-c]usybox", "busybox"));
        assert!(glob("a\\*", "a*"));
        assert!(!glob("a\\*", "ab"));
        assert!(!glob("[abc", "a"));
    }

    #[test]
    fn references_match_with_or_without_tag() {
        let r = Reference::parse("busybox:1.36").unwrap();
        assert!(reference_matches("busybox", &r));
        assert!(reference_matches("busybox:1.*", &r));
        assert!(reference_matches("busy*", &r));
        assert!(!reference_matches("busybox:latest", &r));
        let r = Reference::parse("localhost:5000/team/app:v1").unwrap();
        assert!(reference_matches("localhost:5000/team/*", &r));
        assert!(!reference_matches("app*", &r));
    }

    #[test]
    fn filters_parse_and_match_labels() {
        let f = |v: &[&str]| {
            Filters::parse(
                &v.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                &["dangling", "label", "label!"],
            )
        };
        assert!(f(&["nope=1"]).is_err());
        assert!(f(&["dangling"]).is_err());
        assert_eq!(
            f(&["dangling=true"]).unwrap().bool("dangling").unwrap(),
            Some(true)
        );
        assert!(f(&["dangling=maybe"]).unwrap().bool("dangling").is_err());
        let labels = HashMap::from([("a".to_string(), "1".to_string())]);
        assert!(f(&["label=a"]).unwrap().labels_match(&labels));
        assert!(f(&["label=a=1"]).unwrap().labels_match(&labels));
        assert!(!f(&["label=a=2"]).unwrap().labels_match(&labels));
        assert!(!f(&["label!=a"]).unwrap().labels_match(&labels));
        assert!(f(&["label!=b"]).unwrap().labels_match(&labels));
    }

    #[test]
    fn until_takes_times_seconds_and_durations() {
        assert_eq!(
            parse_until("2024-01-02T00:00:00Z").unwrap().seconds,
            1704153600
        );
        assert_eq!(parse_until("1704153600").unwrap().seconds, 1704153600);
        let ago = parse_until("1h").unwrap();
        let now = Timestamp::from(SystemTime::now());
        assert!(earlier(&ago, &now));
        assert!(parse_until("soon").is_err());
    }
}
