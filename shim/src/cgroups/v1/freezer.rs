//! v1 freezer: `freezer.state` goes FREEZING → FROZEN; wait for the final state.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::cgroups::fs;
use crate::error::{Error, Result};

pub fn set(dir: &Path, frozen: bool) -> Result<()> {
    let want = if frozen { "FROZEN" } else { "THAWED" };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        fs::write(dir, "freezer.state", want)?;
        if fs::read(dir, "freezer.state")? == want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Cgroup(format!(
                "{} did not reach {want}",
                dir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
