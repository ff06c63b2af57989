//! Seccomp end to end through berthctl, as root: the default profile (filter mode, what it
//! denies, what `--cap-add` gives back), `--security-opt seccomp=unconfined`, a custom
//! profile file, a malformed one (a clear error, nothing created), `--privileged` (no
//! filter, every capability, the host's devices, a writable /sys), and the engine's bundle
//! with its profile under Debian's runc. After every test nothing of its containers is
//! left on the host: `berth_tests::leftovers`.

use std::path::Path;

use berth_tests::image::{self, File};
use berth_tests::need_root;
use berth_tests::world::{runc_installed, stderr, stdout, World, BUSYBOX_ENTRYPOINT};

/// Busybox as the entrypoint, so `IMG sh -c …` runs busybox's sh.
const IMG: &str = "scbox:latest";

/// A new engine with the test image.
async fn world() -> World {
    let rootfs = image::busybox_rootfs(&[File::new("mnt/.keep", "")]);
    World::new(&rootfs, IMG, &BUSYBOX_ENTRYPOINT).await
}

/// The capability bits this test process holds: what a privileged container can get
/// from a shim started by root here (the machine may lack some, e.g. CAP_SYS_RESOURCE).
fn own_bounding_set() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

/// The 41 capabilities berth knows (CAP_CHOWN … CAP_CHECKPOINT_RESTORE).
const ALL_CAPS: u64 = (1 << 41) - 1;

#[tokio::test]
async fn the_default_profile_filters_and_unconfined_does_not() {
    if !need_root() {
        return;
    }
    let w = world().await;
    assert_eq!(w.status_field(&[], "Seccomp"), "2");
    // Creating a user namespace needs no capability, so only seccomp refuses it.
    let out = w.sh(&[], "unshare -U true");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    let out = w.sh(&[], "mount -t tmpfs none /mnt");
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out).to_lowercase();
    assert!(
        err.contains("operation not permitted") || err.contains("permission denied"),
        "{err}"
    );
    // clone without namespace flags is allowed: pipes and subshells work.
    assert_eq!(w.sh_ok(&[], "echo $(echo nested) | cat"), "nested\n");

    // Without no_new_privs the filter goes in before the capabilities are dropped (it
    // needs CAP_SYS_ADMIN then), and the rest of the setup runs under it.
    let privs = [
        "--security-opt",
        "no-new-privileges=false",
        "-u",
        "65534:65534",
    ];
    assert_eq!(w.status_field(&privs, "Seccomp"), "2");
    assert_eq!(w.status_field(&privs, "NoNewPrivs"), "0");
    assert_eq!(
        w.sh_ok(&privs, "id -u; unshare -U true || echo refused"),
        "65534\nrefused\n"
    );

    let unconfined = ["--security-opt", "seccomp=unconfined"];
    assert_eq!(w.status_field(&unconfined, "Seccomp"), "0");
    assert_eq!(w.sh_ok(&unconfined, "unshare -U true && echo ok"), "ok\n");

    // `builtin` names the default profile.
    assert_eq!(
        w.status_field(&["--security-opt", "seccomp=builtin"], "Seccomp"),
        "2"
    );
    w.clean_up();
}

#[tokio::test]
async fn cap_add_sys_admin_allows_the_syscalls_it_guards() {
    if !need_root() {
        return;
    }
    let w = world().await;
    let admin = ["--cap-add", "SYS_ADMIN"];
    assert_eq!(w.status_field(&admin, "Seccomp"), "2");
    assert_eq!(
        w.sh_ok(
            &admin,
            "unshare -U true && mount -t tmpfs none /mnt && grep -c ' /mnt tmpfs ' /proc/mounts \
             && umount /mnt && echo done"
        ),
        "1\ndone\n"
    );
    w.clean_up();
}

#[tokio::test]
async fn exec_processes_get_the_containers_filter() {
    if !need_root() {
        return;
    }
    let w = world().await;
    for (opts, mode) in [
        (&[][..], "2"),
        (&["--security-opt", "seccomp=unconfined"][..], "0"),
    ] {
        let mut args = opts.to_vec();
        args.extend([IMG, "sleep", "100"]);
        let id = w.run_detached(&args);
        let out = w.ok(&[
            "exec",
            &id,
            "/bin/busybox",
            "grep",
            "^Seccomp:",
            "/proc/self/status",
        ]);
        assert_eq!(out, format!("Seccomp:\t{mode}\n"), "{opts:?}");
        let out = w.ctl(&["exec", &id, "/bin/busybox", "unshare", "-U", "true"]);
        assert_eq!(
            out.status.code() == Some(0),
            mode == "0",
            "{opts:?}: {}",
            stderr(&out)
        );
        w.ok(&["rm", "-f", &id]);
    }
    w.clean_up();
}

#[tokio::test]
async fn privileged_containers_are_unfiltered_with_every_capability_and_device() {
    if !need_root() {
        return;
    }
    let w = world().await;
    let p = ["--privileged"];
    assert_eq!(w.status_field(&p, "Seccomp"), "0");
    let want = format!("{:016x}", own_bounding_set() & ALL_CAPS);
    assert_eq!(w.status_field(&p, "CapEff"), want);
    // Even a profile named with --privileged is not applied (docker's rule).
    assert_eq!(
        w.status_field(
            &["--privileged", "--security-opt", "seccomp=builtin"],
            "Seccomp"
        ),
        "0"
    );
    // The host's device nodes are there, with their numbers.
    for dev in ["kmsg", "loop0", "tty1", "vda"] {
        let host = Path::new("/dev").join(dev);
        let Ok(meta) = std::fs::metadata(&host) else {
            continue;
        };
        use std::os::unix::fs::MetadataExt;
        let (major, minor) = (
            nix::sys::stat::major(meta.rdev()),
            nix::sys::stat::minor(meta.rdev()),
        );
        let out = w.sh_ok(&p, &format!("stat -c '%t %T' /dev/{dev}"));
        assert_eq!(out, format!("{major:x} {minor:x}\n"), "/dev/{dev}");
        // Not without --privileged.
        assert_ne!(
            w.sh(&[], &format!("test -e /dev/{dev}")).status.code(),
            Some(0)
        );
    }
    // /sys is writable; the masked paths are not masked.
    let sys = w.sh_ok(&p, "grep ' /sys sysfs ' /proc/mounts");
    assert!(sys.contains(" rw,"), "{sys}");
    let kcore = w.sh_ok(&p, "grep -c ' /proc/kcore ' /proc/mounts || true");
    assert_eq!(kcore.trim(), "0");
    w.clean_up();
}

#[tokio::test]
async fn a_custom_profile_file_is_applied() {
    if !need_root() {
        return;
    }
    let w = world().await;
    let file = w.scratch_file(
        "nomkdir.json",
        r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "comment": "no new directories", "includes": {}, "excludes": {}}
            ]
        }"#,
    );
    let opt = format!("seccomp={}", file.display());
    let out = w.sh(&["--security-opt", &opt], "mkdir /x");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    // The rest of the profile allows everything, user namespaces included.
    assert_eq!(
        w.sh_ok(&["--security-opt", &opt], "unshare -U true && echo ok"),
        "ok\n"
    );
    assert_eq!(w.sh_ok(&[], "mkdir /x && echo made"), "made\n");
    // Inspect shows the profile as docker does: inline.
    let id = w.ok(&["create", "--security-opt", &opt, IMG, "true"]);
    let inspect = w.ok(&["inspect", id.trim()]);
    assert!(inspect.contains("SCMP_ACT_ERRNO"), "{inspect}");
    w.clean_up();
}

#[tokio::test]
async fn a_malformed_profile_is_refused_and_creates_nothing() {
    if !need_root() {
        return;
    }
    let w = world().await;
    let containers_dirs = || {
        let e = w.engine();
        [e.root.path(), e.state.path()]
            .iter()
            .map(|d| d.join("containers"))
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flat_map(|rd| rd.flatten().map(|e| e.path()).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    let before = containers_dirs();
    let cases = [
        (
            "broken.json",
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": ["#,
            "not valid JSON",
        ),
        (
            "action.json",
            r#"{"defaultAction": "SCMP_ACT_SOMETIMES"}"#,
            "SCMP_ACT_SOMETIMES",
        ),
        (
            "notify.json",
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}"#,
            "SCMP_ACT_NOTIFY",
        ),
        (
            "index.json",
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
            "index 9",
        ),
    ];
    for (name, json, says) in cases {
        let file = w.scratch_file(name, json);
        let opt = format!("seccomp={}", file.display());
        let out = w.ctl(&[
            "run",
            "--rm",
            "--name",
            "never",
            "--security-opt",
            &opt,
            IMG,
            "true",
        ]);
        assert_ne!(out.status.code(), Some(0), "{name}");
        assert!(stderr(&out).contains(says), "{name}: {}", stderr(&out));
        assert!(w.all_ids().is_empty(), "{name} created a container");
    }
    let out = w.ctl(&[
        "create",
        "--security-opt",
        "seccomp=/nonexistent/p.json",
        IMG,
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("/nonexistent/p.json"),
        "{}",
        stderr(&out)
    );
    assert!(w.all_ids().is_empty());
    assert_eq!(containers_dirs(), before);
    // The name was never taken.
    assert_eq!(w.sh_ok(&["--name", "never"], "echo fine"), "fine\n");
    w.clean_up();
}

#[tokio::test]
async fn runc_applies_the_profile_the_engine_writes() {
    if !need_root() {
        return;
    }
    if !runc_installed() {
        return;
    }
    let w = world().await;
    let script = "grep '^Seccomp:' /proc/self/status; unshare -U true || echo refused; \
                  echo $(echo nested)";
    let id = w.create(&[IMG, "sh", "-c", script]);
    let bundle = w.container_dir(&id);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO",
        "{config}"
    );
    let out = w.run_under_runc(&id, &format!("sc-{}", &id[..12])).await;
    let expected = "Seccomp:\t2\nrefused\nnested\n";
    assert_eq!(stdout(&out), expected, "runc stderr: {}", stderr(&out));
    // berth says the same of the same bundle.
    let out = w.ctl(&["start", "-a", &id]);
    assert_eq!(stdout(&out), expected, "{}", stderr(&out));
    w.clean_up();
}
