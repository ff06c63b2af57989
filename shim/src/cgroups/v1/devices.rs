//! v1 devices controller: the spec's allowlist, written rule by rule in order, so the
//! usual "deny all, then allow these" list ends as exactly that.

use std::path::Path;

use oci_spec::runtime::LinuxDeviceCgroup;

use crate::cgroups::fs;
use crate::error::{Error, Result};

/// `type major:minor access` as the kernel reads it.
pub fn rule(d: &LinuxDeviceCgroup) -> Result<String> {
    let access = d.access().as_deref().unwrap_or("rwm");
    if access.is_empty() || !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(Error::Cgroup(format!(
            "device rule access {access:?} is not a subset of rwm"
        )));
    }
    let num = |n: Option<i64>| {
        n.filter(|v| *v >= 0)
            .map_or("*".to_string(), |v| v.to_string())
    };
    Ok(format!(
        "{} {}:{} {access}",
        d.typ().unwrap_or_default().as_str(),
        num(d.major()),
        num(d.minor())
    ))
}

pub fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    for d in rules {
        let file = if d.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        fs::write(dir, file, rule(d)?)?;
    }
    Ok(())
}
