//! Filters of `Images.List`: `name=`, `repository=`, `target.digest=`, `target.mediatype=`,
//! `labels.<key>[=value]`. Values of one key are alternatives; keys combine.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::images::record::ImageRecord;

/// A parsed filter set.
#[derive(Debug, Default)]
pub struct Filter {
    by_key: BTreeMap<String, Vec<Option<String>>>,
}

impl Filter {
    /// Parses the filter strings.
    pub fn parse(filters: &[String]) -> Result<Self> {
        let mut by_key: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
        for f in filters {
            let (k, v) = match f.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (f.as_str(), None),
            };
            let known = matches!(
                k,
                "name" | "repository" | "target.digest" | "target.mediatype"
            ) || k.starts_with("labels.");
            if !known || (v.is_none() && !k.starts_with("labels.")) {
                return Err(Error::InvalidArgument(format!(
                    "invalid filter {f:?}: use name=, repository=, target.digest=, \
                     target.mediatype= or labels.<key>[=value]"
                )));
            }
            by_key.entry(k.to_string()).or_default().push(v);
        }
        Ok(Filter { by_key })
    }

    /// True when `r` passes.
    pub fn matches(&self, r: &ImageRecord) -> bool {
        self.by_key.iter().all(|(k, values)| {
            values.iter().any(|v| {
                let v = v.as_deref();
                match k.as_str() {
                    "name" => Some(r.name.as_str()) == v,
                    "repository" => r.reference().map(|x| x.repository()).as_deref() == v,
                    "target.digest" => Some(r.target.digest.as_str()) == v,
                    "target.mediatype" => Some(r.target.media_type.as_str()) == v,
                    label => {
                        let key = &label["labels.".len()..];
                        match v {
                            None => r.labels.contains_key(key),
                            Some(v) => r.labels.get(key).map(String::as_str) == Some(v),
                        }
                    }
                }
            })
        })
    }
}
