//! Chain IDs: the name of the committed snapshot holding layers 0..=n applied in order, as the
//! OCI image spec defines them (`ChainID(L0) = DiffID(L0)`,
//! `ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln))`). Two images sharing a base
//! layer share its chain ID, so it is unpacked once.

use crate::digest::Digest;

/// The chain ID of `diff_id` on top of the chain `parent` (empty for the bottom layer).
pub fn chain_on(parent: &str, diff_id: &str) -> String {
    if parent.is_empty() {
        diff_id.to_string()
    } else {
        Digest::of(format!("{parent} {diff_id}").as_bytes()).to_string()
    }
}

/// The chain IDs of every prefix of `diff_ids`, bottom first.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = chain_on(out.last().map(String::as_str).unwrap_or(""), d);
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_image_spec() {
        let a =
            "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4".to_string();
        let b =
            "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef".to_string();
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(
            ids[1],
            Digest::of(format!("{a} {b}").as_bytes()).to_string()
        );
        assert!(chain_ids(&[]).is_empty());
    }
}
