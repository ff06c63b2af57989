//! The bundle berth writes runs under Debian's runc unchanged.

mod common;

use std::process::Command;

use common::{need_root, TestBundle};

#[test]
fn runc_runs_the_same_bundle() {
    if !need_root() {
        return;
    }
    if Command::new("runc").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but runc is not installed"
        );
        eprintln!("skipped: runc is not installed");
        return;
    }
    let b = TestBundle::new();
    // runc refuses an rlimit above the caller's hard limit when it lacks
    // CAP_SYS_RESOURCE (as on the test machines), where berth clamps with a warning:
    // stay within the hard limit so both run the same file.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let spec = b.spec_with_nofile(
        &[
            "sh",
            "-c",
            "echo hello from $(hostname); id -u; cat /etc/hosts | tail -n1; ulimit -n; exit 7",
        ],
        lim.rlim_max.min(1_048_576),
    );
    b.write(&spec);
    let state = tempfile::tempdir().unwrap();
    let out = Command::new("runc")
        .arg("--root")
        .arg(state.path())
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg(&b.id)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(7),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let want = format!(
        "hello from berth-test\n0\n10.0.0.5 berth-test\n{}\n",
        lim.rlim_max.min(1_048_576)
    );
    assert_eq!(stdout, want, "stderr: {stderr}");

    // And the same bundle under berth gives the same answer.
    let o = common::run(&b, &spec).unwrap();
    assert_eq!(o.status.code, 7);
    assert_eq!(o.stdout, stdout);
}
