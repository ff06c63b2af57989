//! Entry names as written in a layer, cleaned into components relative to the layer root.
//!
//! Cleaning is lexical (as Docker's `filepath.Clean`): `.` and empty components go, a
//! `..` removes the component before it. A name that is absolute, or whose `..` would
//! climb above the root, is refused rather than clamped: a layer that says so is hostile
//! or broken, and guessing what it meant is how extraction bugs become CVEs.

/// A cleaned path inside the layer root. No component is empty, `.` or `..`, or holds a
/// `/` or a NUL byte; an empty list is the root itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RelPath {
    comps: Vec<Vec<u8>>,
}

impl RelPath {
    /// Cleans a name from an archive; the error is the reason it is refused.
    pub(crate) fn parse(raw: &[u8]) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("empty name".into());
        }
        if raw.contains(&0) {
            return Err("name contains a NUL byte".into());
        }
        if raw.starts_with(b"/") {
            return Err("absolute path".into());
        }
        let mut comps: Vec<Vec<u8>> = Vec::new();
        for comp in raw.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => {
                    if comps.pop().is_none() {
                        return Err("`..` climbs out of the root".into());
                    }
                }
                c => comps.push(c.to_vec()),
            }
        }
        Ok(RelPath { comps })
    }

    /// Whether this is the root itself (a `./` entry).
    pub(crate) fn is_root(&self) -> bool {
        self.comps.is_empty()
    }

    /// The components, outermost first.
    pub(crate) fn components(&self) -> &[Vec<u8>] {
        &self.comps
    }

    /// The parent's components and the final name; `None` for the root.
    pub(crate) fn split_last(&self) -> Option<(&[Vec<u8>], &[u8])> {
        self.comps
            .split_last()
            .map(|(last, parent)| (parent, last.as_slice()))
    }

    /// The path joined with `/` (`.` for the root), as the kernel takes it.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        if self.comps.is_empty() {
            return b".".to_vec();
        }
        self.comps.join(&b'/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(raw: &str) -> Vec<Vec<u8>> {
        RelPath::parse(raw.as_bytes())
            .unwrap()
            .components()
            .to_vec()
    }

    #[test]
    fn cleans_like_docker() {
        assert_eq!(
            comps("./a//b/./c/"),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(comps("a/../b"), vec![b"b".to_vec()]);
        assert!(RelPath::parse(b"./").unwrap().is_root());
        assert!(RelPath::parse(b".").unwrap().is_root());
        assert_eq!(RelPath::parse(b"a/b").unwrap().to_bytes(), b"a/b");
        assert_eq!(RelPath::parse(b"./").unwrap().to_bytes(), b".");
    }

    #[test]
    fn refuses_escapes() {
        for bad in ["../x", "a/../../x", "/etc/passwd", "..", "./..", "", "a\0b"] {
            assert!(RelPath::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
