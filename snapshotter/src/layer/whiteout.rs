//! Whiteouts in both of their spellings.
//!
//! In an OCI layer, `dir/.wh.name` says "`name` of the layers below is deleted" and
//! `dir/.wh..wh..opq` says "nothing of `dir` from the layers below shows through". In an
//! overlayfs upper directory the same facts are a character device 0/0 named `name` and
//! the xattr `trusted.overlay.opaque=y` on `dir`. Apply turns the first spelling into the
//! second, diff the second back into the first.

use rustix::fs::{FileType, Stat};

/// Prefix of a whiteout file in a layer.
pub(crate) const PREFIX: &[u8] = b".wh.";

/// The opaque-directory marker.
pub(crate) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Value of the opaque xattr that overlayfs reads as "opaque".
pub(crate) const OPAQUE_VALUE: &[u8] = b"y";

/// What a final path component from a layer means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Name<'a> {
    /// An ordinary name.
    Plain,
    /// `.wh..wh..opq`: the parent directory is opaque.
    Opaque,
    /// `.wh.<name>`: `<name>` is deleted.
    Remove(&'a [u8]),
}

/// Classifies the final component of an entry; `Err` is why a whiteout is malformed.
pub(crate) fn classify(name: &[u8]) -> Result<Name<'_>, String> {
    let Some(target) = name.strip_prefix(PREFIX) else {
        return Ok(Name::Plain);
    };
    if name == OPAQUE_MARKER {
        return Ok(Name::Opaque);
    }
    // `.wh..wh.*` is AUFS bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`); nothing of it
    // belongs in an OCI layer, and a whiteout of a name starting `.wh.` cannot be told
    // from it.
    if target.starts_with(PREFIX) {
        return Err(
            "malformed whiteout: `.wh..wh.` names other than the opaque marker are refused".into(),
        );
    }
    match target {
        b"" => Err("malformed whiteout: empty name".into()),
        b"." | b".." => Err("malformed whiteout: names `.` or `..`".into()),
        // Cannot happen for a final component, but the kernel must never see it.
        t if t.contains(&b'/') || t.contains(&0) => {
            Err("malformed whiteout: name contains `/` or NUL".into())
        }
        t => Ok(Name::Remove(t)),
    }
}

/// Whether a directory component (not the final one) is spelled like a whiteout. Such a
/// path cannot be represented in an upper directory and back, so it is refused.
pub(crate) fn is_whiteout_spelling(comp: &[u8]) -> bool {
    comp.starts_with(PREFIX)
}

/// Whether an inode of an upper directory is an overlay whiteout (char device 0/0).
pub(crate) fn is_overlay_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

/// The layer name of a whiteout for `name`.
pub(crate) fn layer_name(name: &[u8]) -> Vec<u8> {
    [PREFIX, name].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify(b"file").unwrap(), Name::Plain);
        assert_eq!(classify(b".whfile").unwrap(), Name::Plain);
        assert_eq!(classify(b".wh..wh..opq").unwrap(), Name::Opaque);
        assert_eq!(classify(b".wh.file").unwrap(), Name::Remove(b"file"));
        assert_eq!(classify(b".wh..hidden").unwrap(), Name::Remove(b".hidden"));
        for bad in [
            &b".wh."[..],
            b".wh..",
            b".wh...",
            b".wh..wh.",
            b".wh..wh.plnk",
            b".wh..wh..opqx",
        ] {
            assert!(classify(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
