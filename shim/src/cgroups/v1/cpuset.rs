//! v1 cpuset controller. A new v1 cpuset cgroup starts with empty `cpuset.cpus` and
//! `cpuset.mems` (unless `clone_children` is set), and no task can join it then: copy the
//! parent's values down every level the shim created.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use crate::cgroups::fs;
use crate::error::Result;

pub fn inherit_down(mount_point: &Path, path: &Path) -> Result<()> {
    let mut parent = mount_point.to_path_buf();
    for comp in path.components() {
        let dir = parent.join(comp);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if fs::read(&dir, file)?.is_empty() {
                let v = fs::read(&parent, file)?;
                fs::write(&dir, file, v)?;
            }
        }
        parent = dir;
    }
    Ok(())
}

pub fn apply(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(cpus) = c.cpus() {
        fs::write(dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = c.mems() {
        fs::write(dir, "cpuset.mems", mems)?;
    }
    Ok(())
}
