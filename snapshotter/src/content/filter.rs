//! Filters of `List`: `digest=<d>`, `labels.<key>=<value>`, `labels.<key>` (present).
//! Values for the same key are alternatives (OR); different keys must all match (AND).

use std::collections::BTreeMap;

use super::Info;
use crate::error::{Error, Result};

/// What a filter clause looks at.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    Digest,
    Label(String),
}

/// Parsed list filters; the default selects every blob.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Per field, its alternatives; `None` means "present" (labels only).
    clauses: BTreeMap<Field, Vec<Option<String>>>,
}

impl Filters {
    /// Filters that select every blob.
    pub fn all() -> Self {
        Self::default()
    }

    /// Parses filter strings as the proto's `ListRequest.filters` writes them.
    pub fn parse<I, S>(filters: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Filters::default();
        for f in filters {
            let f = f.as_ref();
            let (key, value) = match f.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (f, None),
            };
            let field = if key == "digest" {
                if value.is_none() {
                    return Err(invalid(f, "digest needs a value"));
                }
                Field::Digest
            } else if let Some(label) = key.strip_prefix("labels.").filter(|l| !l.is_empty()) {
                Field::Label(label.to_string())
            } else {
                return Err(invalid(f, "keys are \"digest\" and \"labels.<key>\""));
            };
            out.clauses.entry(field).or_default().push(value);
        }
        Ok(out)
    }

    /// Adds the alternative "digest=`digest`".
    pub fn with_digest(mut self, digest: &str) -> Self {
        self.clauses
            .entry(Field::Digest)
            .or_default()
            .push(Some(digest.to_string()));
        self
    }

    /// Adds the alternative "labels.`key`=`value`", or "labels.`key`" (present) for None.
    pub fn with_label(mut self, key: &str, value: Option<&str>) -> Self {
        self.clauses
            .entry(Field::Label(key.to_string()))
            .or_default()
            .push(value.map(str::to_string));
        self
    }

    /// True when every blob matches.
    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// Whether `info` is selected.
    pub fn matches(&self, info: &Info) -> bool {
        self.clauses.iter().all(|(field, alternatives)| {
            alternatives.iter().any(|want| match field {
                Field::Digest => want.as_deref() == Some(info.digest.as_str()),
                Field::Label(key) => match (info.labels.get(key), want) {
                    (Some(have), Some(want)) => have == want,
                    (Some(_), None) => true,
                    (None, _) => false,
                },
            })
        })
    }

    /// The filters as strings again, for sending them over gRPC.
    pub fn to_strings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (field, alternatives) in &self.clauses {
            let key = match field {
                Field::Digest => "digest".to_string(),
                Field::Label(k) => format!("labels.{k}"),
            };
            for value in alternatives {
                out.push(match value {
                    Some(v) => format!("{key}={v}"),
                    None => key.clone(),
                });
            }
        }
        out
    }
}

fn invalid(filter: &str, why: &str) -> Error {
    Error::InvalidArgument(format!("invalid filter {filter:?}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use std::time::SystemTime;

    fn info(labels: &[(&str, &str)]) -> Info {
        Info {
            digest: Digest::of(b"x"),
            size: 1,
            created_at: SystemTime::UNIX_EPOCH,
            updated_at: SystemTime::UNIX_EPOCH,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn or_within_a_key_and_across_keys() {
        let i = info(&[("a", "1"), ("b", "2")]);
        let f = Filters::parse(["labels.a=0", "labels.a=1", "labels.b"]).unwrap();
        assert!(f.matches(&i));
        let f = Filters::parse(["labels.a=1", "labels.c"]).unwrap();
        assert!(!f.matches(&i));
        let f = Filters::parse([format!("digest={}", Digest::of(b"x"))]).unwrap();
        assert!(f.matches(&i));
        assert!(Filters::all().matches(&i));
        assert_eq!(Filters::parse(f.to_strings()).unwrap(), f);
    }

    #[test]
    fn refuses_unknown_keys() {
        for bad in ["size=1", "labels.", "digest", ""] {
            assert!(
                matches!(Filters::parse([bad]), Err(Error::InvalidArgument(_))),
                "{bad}"
            );
        }
    }
}
