//! List filters: `name=…`, `parent=…`, `kind=…`, `labels.<key>=…` and `labels.<key>`.
//! Values given for the same key are alternatives; different keys must all match.

use std::collections::BTreeMap;

use super::Info;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    Name,
    Parent,
    Kind,
    Label(String),
}

/// Parsed list filters. Keeps the strings it was parsed from so a client can send them on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    raw: Vec<String>,
    /// Field → accepted values (`None`: the label only has to be present).
    by_field: BTreeMap<Field, Vec<Option<String>>>,
}

impl Filters {
    /// No filter: everything matches.
    pub fn all() -> Self {
        Self::default()
    }

    /// Parses filters as the proto describes them.
    pub fn parse<S: AsRef<str>>(filters: &[S]) -> Result<Self> {
        let mut out = Filters::default();
        for f in filters {
            let f = f.as_ref();
            let (key, value) = match f.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (f, None),
            };
            let field = match key {
                "name" => Field::Name,
                "parent" => Field::Parent,
                "kind" => Field::Kind,
                _ => match key.strip_prefix("labels.") {
                    Some(label) if !label.is_empty() => Field::Label(label.to_string()),
                    _ => {
                        return Err(Error::InvalidArgument(format!(
                            "filter {f:?}: unknown key {key:?} (use name, parent, kind or \
                             labels.<key>)"
                        )))
                    }
                },
            };
            if value.is_none() && !matches!(field, Field::Label(_)) {
                return Err(Error::InvalidArgument(format!(
                    "filter {f:?}: expected {key}=<value>"
                )));
            }
            if field == Field::Kind {
                let v = value.as_deref().unwrap_or_default();
                if !["active", "view", "committed"].contains(&v) {
                    return Err(Error::InvalidArgument(format!(
                        "filter {f:?}: kind is one of active, view, committed"
                    )));
                }
            }
            out.by_field.entry(field).or_default().push(value);
            out.raw.push(f.to_string());
        }
        Ok(out)
    }

    /// The filter strings, as given to [`Filters::parse`].
    pub fn as_strings(&self) -> &[String] {
        &self.raw
    }

    /// True when `info` passes every filter.
    pub fn matches(&self, info: &Info) -> bool {
        self.by_field.iter().all(|(field, values)| {
            values.iter().any(|v| {
                let v = v.as_deref();
                match field {
                    Field::Name => v == Some(info.name.as_str()),
                    Field::Parent => v == Some(info.parent.as_str()),
                    Field::Kind => v == Some(info.kind.as_str()),
                    Field::Label(k) => match (info.labels.get(k), v) {
                        (Some(_), None) => true,
                        (Some(have), Some(want)) => have == want,
                        (None, _) => false,
                    },
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::snapshots::Kind;

    fn info(name: &str, parent: &str, kind: Kind, labels: &[(&str, &str)]) -> Info {
        Info {
            name: name.into(),
            parent: parent.into(),
            kind,
            created: SystemTime::UNIX_EPOCH,
            updated: SystemTime::UNIX_EPOCH,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn same_key_is_or_different_keys_are_and() {
        let a = info("a", "", Kind::Committed, &[("x", "1")]);
        let b = info("b", "a", Kind::Active, &[("x", "2")]);
        let c = info("c", "a", Kind::View, &[]);
        let f = Filters::parse(&["kind=active", "kind=view"]).unwrap();
        assert!(!f.matches(&a) && f.matches(&b) && f.matches(&c));
        let f = Filters::parse(&["parent=a", "labels.x"]).unwrap();
        assert!(!f.matches(&a) && f.matches(&b) && !f.matches(&c));
        let f = Filters::parse(&["labels.x=1"]).unwrap();
        assert!(f.matches(&a) && !f.matches(&b));
        let f = Filters::parse(&["parent="]).unwrap();
        assert!(f.matches(&a) && !f.matches(&b));
        let f = Filters::parse(&["name=c"]).unwrap();
        assert!(f.matches(&c) && !f.matches(&a));
        assert!(Filters::all().matches(&a));
        assert_eq!(f.as_strings(), ["name=c"]);
    }

    #[test]
    fn malformed_filters_are_refused() {
        for bad in ["size=1", "kind", "kind=frozen", "labels.", "name", ""] {
            let err = Filters::parse(&[bad]).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad}: {err}");
        }
    }
}
