//! Detach keys: the key sequence that leaves an attached stream without stopping the
//! container (`ctrl-p,ctrl-q` by default), in Docker's notation, and the matcher that
//! watches a client's stdin for it.

use crate::error::{Error, Result};

/// Docker's default sequence.
pub const DEFAULT: &str = "ctrl-p,ctrl-q";

/// A parsed key sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachKeys(Vec<u8>);

impl DetachKeys {
    /// Parses Docker's notation: comma-separated keys, each a single character or
    /// `ctrl-X` with X one of a–z, `@`, `[`, `\`, `]`, `^`, `_`. Empty: the default.
    pub fn parse(spec: &str) -> Result<DetachKeys> {
        let spec = if spec.trim().is_empty() {
            DEFAULT
        } else {
            spec
        };
        let bad = |k: &str| {
            Error::InvalidArgument(format!(
                "invalid detach key {k:?} in {spec:?}: use single characters or ctrl-<a-z|@|[|\\|]|^|_>, separated by commas"
            ))
        };
        let mut keys = Vec::new();
        for k in spec.split(',') {
            let b = k.as_bytes();
            let key = match b {
                [c] => *c,
                _ => match k
                    .to_ascii_lowercase()
                    .strip_prefix("ctrl-")
                    .map(str::as_bytes)
                {
                    Some([c @ b'a'..=b'z']) => c - b'a' + 1,
                    Some([b'@']) => 0,
                    Some([c @ (b'[' | b'\\' | b']' | b'^' | b'_')]) => c - b'@',
                    _ => return Err(bad(k)),
                },
            };
            keys.push(key);
        }
        Ok(DetachKeys(keys))
    }

    /// A matcher over a stream of stdin chunks.
    pub fn matcher(&self) -> Matcher<'_> {
        Matcher {
            keys: &self.0,
            held: 0,
        }
    }
}

/// Finds the sequence in a stream. Bytes that may start the sequence are held back until
/// it is clear they do not; then they are passed on, in order, as if never held.
pub struct Matcher<'a> {
    keys: &'a [u8],
    /// How many keys of the sequence the last bytes matched.
    held: usize,
}

/// What a chunk of stdin amounts to.
#[derive(Debug, PartialEq, Eq)]
pub enum Fed {
    /// Bytes to pass on (possibly none).
    Pass(Vec<u8>),
    /// The sequence was typed; the bytes before it are to be passed on first.
    Detach(Vec<u8>),
}

impl Matcher<'_> {
    /// Feeds a chunk of stdin.
    pub fn feed(&mut self, data: &[u8]) -> Fed {
        let mut out = Vec::with_capacity(data.len());
        for &b in data {
            if self.keys.get(self.held) == Some(&b) {
                self.held += 1;
                if self.held == self.keys.len() {
                    self.held = 0;
                    return Fed::Detach(out);
                }
                continue;
            }
            // Not the next key: what was held was ordinary input. The byte itself may
            // start the sequence afresh.
            out.extend_from_slice(&self.keys[..self.held]);
            self.held = 0;
            if self.keys.first() == Some(&b) {
                self.held = 1;
                if self.keys.len() == 1 {
                    self.held = 0;
                    return Fed::Detach(out);
                }
            } else {
                out.push(b);
            }
        }
        Fed::Pass(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_notation_parses() {
        assert_eq!(DetachKeys::parse("").unwrap().0, vec![16, 17]);
        assert_eq!(DetachKeys::parse("ctrl-a,x").unwrap().0, vec![1, b'x']);
        assert_eq!(
            DetachKeys::parse("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_")
                .unwrap()
                .0,
            vec![0, 27, 28, 29, 30, 31]
        );
        assert_eq!(DetachKeys::parse("CTRL-Q").unwrap().0, vec![17]);
        for bad in ["ctrl-", "ctrl-1", "ab", "ctrl-p,,ctrl-q", "ctrl-pq"] {
            assert!(DetachKeys::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_sequence_detaches_and_is_not_passed_on() {
        let k = DetachKeys::parse("").unwrap();
        let mut m = k.matcher();
        assert_eq!(m.feed(b"ls\n\x10"), Fed::Pass(b"ls\n".to_vec()));
        assert_eq!(m.feed(b"\x11rest"), Fed::Detach(vec![]));
    }

    #[test]
    fn a_partial_sequence_is_passed_on_once_broken() {
        let k = DetachKeys::parse("").unwrap();
        let mut m = k.matcher();
        assert_eq!(m.feed(b"\x10"), Fed::Pass(vec![]));
        assert_eq!(m.feed(b"a"), Fed::Pass(b"\x10a".to_vec()));
        // A repeated first key: the first is input, the second may start the sequence.
        assert_eq!(m.feed(b"\x10\x10"), Fed::Pass(b"\x10".to_vec()));
        assert_eq!(m.feed(b"\x11"), Fed::Detach(vec![]));
        let single = DetachKeys::parse("ctrl-x").unwrap();
        assert_eq!(
            single.matcher().feed(b"ab\x18c"),
            Fed::Detach(b"ab".to_vec())
        );
    }
}
