//! Label validation and the field-mask semantics of `Update`.

use super::Labels;
use crate::error::{Error, Result};

/// Largest key + value of one label, as containerd allows: labels ride in every listing,
/// so one must not be able to carry a blob's worth of data.
const MAX_LABEL_SIZE: usize = 4096;

/// Refuses empty keys and oversized labels.
pub(super) fn validate(labels: &Labels) -> Result<()> {
    for (k, v) in labels {
        if k.is_empty() {
            return Err(Error::InvalidArgument("label with an empty key".into()));
        }
        if k.len() + v.len() > MAX_LABEL_SIZE {
            return Err(Error::InvalidArgument(format!(
                "label {k:?}: key and value are {} bytes, more than {MAX_LABEL_SIZE}",
                k.len() + v.len()
            )));
        }
    }
    Ok(())
}

/// The labels after applying `new` under `fieldpaths` to `current`.
pub(super) fn apply(current: &Labels, mut new: Labels, fieldpaths: &[String]) -> Result<Labels> {
    if fieldpaths.is_empty() {
        validate(&new)?;
        return Ok(new);
    }
    let mut out = current.clone();
    for path in fieldpaths {
        if path == "labels" {
            out = std::mem::take(&mut new);
        } else if let Some(key) = path.strip_prefix("labels.").filter(|k| !k.is_empty()) {
            match new.remove(key) {
                Some(v) => out.insert(key.to_string(), v),
                None => out.remove(key),
            };
        } else {
            return Err(Error::InvalidArgument(format!(
                "cannot update field {path:?} of a blob: only \"labels\" and \"labels.<key>\""
            )));
        }
    }
    validate(&out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn field_paths() {
        let cur = labels(&[("a", "1"), ("b", "2")]);
        let new = labels(&[("a", "9"), ("c", "3")]);
        assert_eq!(apply(&cur, new.clone(), &[]).unwrap(), new);
        assert_eq!(
            apply(&cur, new.clone(), &["labels.a".into(), "labels.b".into()]).unwrap(),
            labels(&[("a", "9")])
        );
        assert!(apply(&cur, new, &["size".into()]).is_err());
        let big = labels(&[("k", &"v".repeat(MAX_LABEL_SIZE))]);
        assert!(apply(&cur, big, &[]).is_err());
    }
}
