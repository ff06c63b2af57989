//! OCI capability names → the `caps` crate's sets, limited to what the shim itself holds.

use oci_spec::runtime::{Capabilities, LinuxCapabilities};

/// The capability sets the init applies. Inheritable and ambient are always empty: with
/// them empty, a non-root process ends up with no capabilities after `execve`, and root
/// gets exactly its bounding set (Docker's behaviour).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapsPlan {
    /// Bounding set.
    pub bounding: caps::CapsHashSet,
    /// Effective set (always a subset of permitted).
    pub effective: caps::CapsHashSet,
    /// Permitted set.
    pub permitted: caps::CapsHashSet,
}

fn convert(set: Option<&Capabilities>, unknown: &mut Vec<String>) -> caps::CapsHashSet {
    let mut out = caps::CapsHashSet::new();
    for c in set.into_iter().flatten() {
        // oci-spec prints `AUDIT_WRITE`; `caps` parses `CAP_AUDIT_WRITE`.
        let name = format!("CAP_{c}");
        match name.parse::<caps::Capability>() {
            Ok(cap) => {
                out.insert(cap);
            }
            Err(_) => unknown.push(name),
        }
    }
    out
}

impl CapsPlan {
    /// Converts the spec's sets; `held` is what the shim itself has in its permitted and
    /// bounding sets (a process can only keep capabilities it holds). Returns the plan
    /// and the names of requested capabilities that had to be left out.
    pub fn new(
        spec: Option<&LinuxCapabilities>,
        held: &caps::CapsHashSet,
    ) -> (CapsPlan, Vec<String>) {
        let mut dropped = Vec::new();
        let Some(spec) = spec else {
            // No capabilities in the spec: the process gets none.
            return (CapsPlan::default(), dropped);
        };
        let bounding = convert(spec.bounding().as_ref(), &mut dropped);
        let permitted = convert(spec.permitted().as_ref(), &mut dropped);
        let effective = convert(spec.effective().as_ref(), &mut dropped);
        let mut missing: Vec<String> = bounding
            .iter()
            .chain(&permitted)
            .chain(&effective)
            .filter(|c| !held.contains(c))
            .map(|c| c.to_string())
            .collect();
        missing.sort();
        missing.dedup();
        dropped.extend(missing);
        let permitted: caps::CapsHashSet = permitted.intersection(held).copied().collect();
        let effective = effective.intersection(&permitted).copied().collect();
        (
            CapsPlan {
                bounding: bounding.intersection(held).copied().collect(),
                effective,
                permitted,
            },
            dropped,
        )
    }
}

/// What the calling thread may hand on: its permitted set within its bounding set.
pub fn held_by_self() -> caps::CapsHashSet {
    let permitted = caps::read(None, caps::CapSet::Permitted).unwrap_or_default();
    let bounding = caps::read(None, caps::CapSet::Bounding).unwrap_or_default();
    permitted.intersection(&bounding).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Capability, LinuxCapabilitiesBuilder};

    #[test]
    fn names_convert_and_unheld_caps_are_reported() {
        let set: Capabilities = [Capability::Chown, Capability::SysResource, Capability::Kill]
            .into_iter()
            .collect();
        let spec = LinuxCapabilitiesBuilder::default()
            .bounding(set.clone())
            .permitted(set.clone())
            .effective(set)
            .build()
            .unwrap();
        let held: caps::CapsHashSet = [caps::Capability::CAP_CHOWN, caps::Capability::CAP_KILL]
            .into_iter()
            .collect();
        let (plan, dropped) = CapsPlan::new(Some(&spec), &held);
        assert_eq!(plan.bounding, held);
        assert_eq!(plan.effective, held);
        assert_eq!(dropped, vec!["CAP_SYS_RESOURCE".to_string()]);
    }

    #[test]
    fn missing_capabilities_mean_none() {
        let (plan, _) = CapsPlan::new(None, &caps::all());
        assert!(plan.bounding.is_empty() && plan.permitted.is_empty());
    }
}
