//! Real containers from a busybox rootfs, as root: what the process inside sees.

mod common;

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use berth_shim::spec::MAX_ID;
use common::{need_root, run, run_ok, run_with, TestBundle};
use oci_spec::runtime::{LinuxMemoryBuilder, LinuxPidsBuilder, UserBuilder};

fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}

#[test]
fn exit_codes_propagate() {
    if !need_root() {
        return;
    }
    let b = TestBundle::new();
    assert_eq!(run(&b, &b.spec(&sh("exit 3"))).unwrap().status.code, 3);
    let b = TestBundle::new();
    assert_eq!(run(&b, &b.spec(&["true"])).unwrap().status.code, 0);
    // A child killed by a signal: the shell reports 128 + signal, as Docker shows it.
    let b = TestBundle::new();
    let o = run(&b, &b.spec(&sh("sleep 10 & kill -TERM $!; wait $!"))).unwrap();
    assert_eq!((o.status.code, o.status.signal), (143, None));
}

#[test]
fn init_killed_from_outside_reports_the_signal() {
    if !need_root() {
        return;
    }
    let b = TestBundle::new();
    b.write(&b.spec(&["sleep", "30"]));
    let mut c =
        berth_shim::run_container(b.path(), berth_shim::CreateOptions::new(b.id.clone())).unwrap();
    // pid 1 of a pid namespace ignores signals it has no handler for, except SIGKILL.
    c.kill(nix::sys::signal::Signal::SIGKILL, false).unwrap();
    let s = c.wait().unwrap();
    assert_eq!((s.code, s.signal, s.oom_killed), (137, Some(9), false));
    common::assert_clean(&b);
}

#[test]
fn init_is_pid_1_and_host_processes_are_invisible() {
    if !need_root() {
        return;
    }
    let b = TestBundle::new();
    let out = run_ok(&b, &b.spec(&sh("echo $$; ls /proc | grep -c '^[0-9]'")));
    // Only sh itself (1), and the ls and grep of the pipeline.
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1");
    assert!(lines[1].parse::<u32>().unwrap() <= 3, "{out}");
}

#[test]
fn hostname_env_and_workdir_are_applied() {
    if !need_root() {
        return;
    }
    let b = TestBundle::new();
    let mut spec = b.spec(&sh(
        "hostname; cat /etc/hostname; echo $FOO; pwd; cat /etc/resolv.conf",
    ));
    let process = spec.process_mut().as_mut().unwrap();
    process.set_env(Some(vec!["PATH=/bin".into(), "FOO=bar baz".into()]));
    process.set_cwd(PathBuf::from("/work/dir"));
    let out = run_ok(&b, &spec);
    assert_eq!(
        out,
        "berth-test\nberth-test\nbar baz\n/work/dir\nnameserver 192.0.2.53\n"
    );
}

#[test]
fn user_and_groups_are_applied() {
    if !need_root() {
        return;
    }
    let b = TestBundle::new();
    let mut spec = b.spec(&sh(
        "id -u; id -g; id -G; grep -E '^(Cap|NoNewPrivs)' /proc/self/status",
    ));
    spec.process_mut().as_mut().unwrap().set_user(
        UserBuilder::default()
            .uid(1000u32)
            .gid(1000u32)
            .additional_gids(vec![10u32, 20])
            .build()
            .unwrap(),
    );
    let out = run_ok(&b, &spec);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..3], ["1000", "1000", "1000 10 20"]);
    // A non-root process keeps no capability after exec: inheritable and ambient are empty.
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("CapPrm:\t0000000000000000"), "{out}");
    assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
}

#[test]
fn ids_above_i32_max_are_refused() {
    if !need_root() {
        return;
    }
    let b = TestBundle::new();
    let mut spec = b.spec(&["id"]);
    spec.process_mut().as_mut().unwrap().set_user(
        UserBuilder::default()
            .uid(MAX_ID + 1)
            .gid(0u32)
            .build()
            .unwrap(),
    );
    b.write(&spec);
    let e = berth_shim::run_container(b.path(), berth_shim::CreateOptions::new(b.id.clone()))
        .unwrap_err();
    assert!(e.to_string().contains("2147483648"), "{e}");
}

#[test]
fn capabilities_are_dockers_default_set() {
    if !need_root() {
        return;
    }
    let b = TestBundle::new();
    let out = run_ok(&b, &b.spec(&["grep", "^Cap", "/proc/self/status"]));
    // Docker's 14 default capabilities.
    for line in [
        "CapInh:\t0000000000000000",
        "CapPrm:\t00000000a80425fb",
        "CapEff:\t00000000a80425fb",
        "CapBnd:\t00000000a80425fb",
        "CapAmb:\t0000000000000000",
    ] {
        assert!(out.contains(line), "{line} missing in\n{out}");
    }
}

#[test]
fn masked_and_readonly_paths() {
    if !need_root() {
        return;
    }
    let b = TestBundle::new();
    let script = "
        cat /proc/kcore 2>/dev/null | wc -c; cat /proc/keys /proc/timer_list /proc/interrupts | wc -c
        ls -A /sys/firmware | wc -l
        echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo WROTE-SYSCTL
        echo x > /proc/sysrq-trigger 2>/dev/null && echo WROTE-SYSRQ
        touch /sys/fs/cgroup/x 2>/dev/null && echo WROTE-CGROUP
        touch /sys/x 2>/dev/null && echo WROTE-SYS
        echo done";
    let out = run_ok(&b, &b.spec(&sh(script)));
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "0", "done"],
        "{out}"
    );
    // The host has these files with content; the container sees them empty.
    assert!(!std::fs::read_to_string("/proc/interrupts")
        .unwrap()
        .is_empty());
}

#[test]
fn only_stdio_fds_reach_the_container() {
    if !need_root() {
        return;
    }
    // A descriptor the test process leaks on purpose (not close-on-exec).
    // SAFETY: plain open of a path; the fd is closed below.
    let leaked = unsafe { libc::open(c"/etc/hostname".as_ptr(), libc::O_RDONLY) };
    assert!(leaked > 2);
    let b = TestBundle::new();
    let out = run_ok(&b, &b.spec(&sh("ls /proc/$$/fd; true")));
    // SAFETY: closes the fd opened above.
    unsafe { libc::close(leaked) };
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2"],
        "{out}"
    );
}

#[test]
fn dev_null_symlink_to_a_host_file_redirects_nothing() {
    if !need_root() {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    let canary = host.path().join("canary");
    let canary2 = host.path().join("canary2");
    std::fs::write(&canary, "untouched").unwrap();
    std::fs::write(&canary2, "untouched").unwrap();
    let b = TestBundle::new();
    let root = b.rootfs();
    std::os::unix::fs::symlink(&canary, root.join("dev/null")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::os::unix::fs::symlink(&canary2, root.join("etc/hosts")).unwrap();
    let out = run_ok(
        &b,
        &b.spec(&sh("echo pwned > /dev/null; echo pwned > /etc/hosts 2>&1; ls -l /dev/null | cut -c1; cat /proc/kcore | wc -c")),
    );
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["c", "0"],
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "untouched");
    assert_eq!(std::fs::read_to_string(&canary2).unwrap(), "untouched");
}

#[test]
fn proc_symlink_in_the_image_is_refused() {
    if !need_root() {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    let b = TestBundle::new();
    std::fs::remove_dir(b.rootfs().join("proc")).unwrap();
    std::os::unix::fs::symlink(host.path(), b.rootfs().join("proc")).unwrap();
    let e = run(&b, &b.spec(&["true"])).unwrap_err().to_string();
    assert!(e.contains("/proc") && e.contains("symlink"), "{e}");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(&*host.path().to_string_lossy()));
}

#[test]
fn workdir_through_proc_self_fd_does_not_escape() {
    if !need_root() {
        return;
    }
    let b = TestBundle::new();
    let mut spec = b.spec(&["pwd"]);
    spec.process_mut()
        .as_mut()
        .unwrap()
        .set_cwd(PathBuf::from("/proc/self/fd/3"));
    // /proc/self/fd/N is a magic link: in-root resolution refuses it, so the container
    // cannot start in a directory the shim happened to have open (CVE-2024-21626).
    let e = run(&b, &spec).unwrap_err().to_string();
    assert!(e.contains("/proc/self/fd/3"), "{e}");
}

#[test]
fn exec_errors_are_reported_before_start_completes() {
    if !need_root() {
        return;
    }
    let b = TestBundle::new();
    let e = run(&b, &b.spec(&["no-such-binary", "x"]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("exec: \"no-such-binary\": executable file not found in $PATH"),
        "{e}"
    );
    let b = TestBundle::new();
    let e = run(&b, &b.spec(&["/etc/passwd"])).unwrap_err().to_string();
    assert!(e.contains("permission denied"), "{e}");
}

#[test]
fn memory_limit_kills_with_137_and_reports_oom() {
    if !need_root() {
        return;
    }
    let b = TestBundle::new();
    let mut spec = b.spec(&sh("tail /dev/zero"));
    let mem = LinuxMemoryBuilder::default()
        .limit(32i64 << 20)
        .swap(32i64 << 20)
        .build()
        .unwrap();
    spec.linux_mut()
        .as_mut()
        .unwrap()
        .resources_mut()
        .as_mut()
        .unwrap()
        .set_memory(Some(mem));
    let o = run(&b, &spec).unwrap();
    assert_eq!(o.status.code, 137, "{o:?}");
    assert!(o.status.oom_killed, "{o:?}");
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    if !need_root() {
        return;
    }
    let b = TestBundle::new();
    let mut spec = b.spec(&sh(
        "i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done; echo all-forked",
    ));
    spec.linux_mut()
        .as_mut()
        .unwrap()
        .resources_mut()
        .as_mut()
        .unwrap()
        .set_pids(Some(
            LinuxPidsBuilder::default().limit(10i64).build().unwrap(),
        ));
    let o = run(&b, &spec).unwrap();
    assert!(!o.stdout.contains("all-forked"), "{o:?}");
    assert!(
        o.stderr.contains("can't fork") || o.stderr.contains("Resource temporarily unavailable"),
        "{o:?}"
    );
}

#[test]
fn rlimits_are_clamped_to_the_hard_limit() {
    if !need_root() {
        return;
    }
    let mut hard = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) },
        0
    );
    let b = TestBundle::new();
    let out = run_ok(&b, &b.spec(&sh("ulimit -n; ulimit -Hn")));
    let want = hard.rlim_max.min(1_048_576).to_string();
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        [want.as_str(), want.as_str()]
    );
}

#[test]
fn namespaces_network_and_cgroup_view() {
    if !need_root() {
        return;
    }
    let b = TestBundle::new();
    let out = run_ok(&b, &b.spec(&sh("ls /sys/class/net; grep -c :/$ /proc/self/cgroup; grep -vc :/$ /proc/self/cgroup; ls /sys/fs/cgroup | grep -c memory")));
    let lines: Vec<&str> = out.lines().collect();
    // A new, empty network namespace: loopback only.
    assert_eq!(lines[0], "lo");
    // The cgroup namespace roots every hierarchy at the container's cgroup.
    assert!(lines[1].parse::<u32>().unwrap() >= 1);
    assert_eq!(lines[2], "0", "{out}");
    assert_eq!(lines[3], "1", "{out}");
}

#[test]
fn readonly_root() {
    if !need_root() {
        return;
    }
    let b = TestBundle::new();
    let mut spec = b.spec(&sh("touch /x 2>/dev/null && echo WROTE; touch /tmp/y 2>/dev/null && echo WROTE-TMP; touch /dev/shm/z && echo shm-ok"));
    spec.root_mut().as_mut().unwrap().set_readonly(Some(true));
    assert_eq!(run_ok(&b, &spec), "shm-ok\n");
    assert!(!b.rootfs().join("x").exists());
}

#[test]
fn overlay_rootfs_is_mounted_by_the_shim_and_gone_after() {
    if !need_root() {
        return;
    }
    let b = TestBundle::new();
    // The busybox tree becomes the lower layer; the bundle's rootfs starts empty.
    let lower = b.path().join("lower");
    std::fs::rename(b.rootfs(), &lower).unwrap();
    std::fs::create_dir(b.rootfs()).unwrap();
    let (upper, work) = (b.path().join("upper"), b.path().join("work"));
    std::fs::create_dir(&upper).unwrap();
    std::fs::create_dir(&work).unwrap();
    let mounts = vec![berth_shim::MountSpec {
        fs_type: "overlay".into(),
        source: "overlay".into(),
        options: vec![
            format!("lowerdir={}", lower.display()),
            format!("upperdir={}", upper.display()),
            format!("workdir={}", work.display()),
        ],
    }];
    let o = run_with(
        &b,
        &b.spec(&sh("echo hi > /written; cat /written; ls /bin/busybox")),
        mounts,
    )
    .unwrap();
    assert_eq!(o.stdout, "hi\n/bin/busybox\n", "{o:?}");
    assert_eq!(
        std::fs::read_to_string(upper.join("written")).unwrap(),
        "hi\n"
    );
    assert!(!lower.join("written").exists());
    assert!(std::fs::read_dir(b.rootfs()).unwrap().next().is_none());
}

#[test]
fn created_container_can_be_dropped_without_start() {
    if !need_root() {
        return;
    }
    let b = TestBundle::new();
    b.write(&b.spec(&["true"]));
    let bundle = berth_shim::Bundle::load(b.path()).unwrap();
    let c = berth_shim::Container::create(&bundle, berth_shim::CreateOptions::new(b.id.clone()))
        .unwrap();
    let pid = c.pid();
    drop(c);
    assert!(
        nix::sys::signal::kill(pid, None).is_err(),
        "init still alive"
    );
    common::assert_clean(&b);
}

#[test]
fn stdin_is_redirected() {
    if !need_root() {
        return;
    }
    let b = TestBundle::new();
    b.write(&b.spec(&["cat"]));
    let input = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut &input, b"from stdin\n").unwrap();
    std::io::Seek::rewind(&mut &input).unwrap();
    let out = tempfile::tempfile().unwrap();
    let mut opts = berth_shim::CreateOptions::new(b.id.clone());
    opts.stdio.stdin = Some(input.into());
    opts.stdio.stdout = Some(out.try_clone().unwrap().into());
    let mut c = berth_shim::run_container(b.path(), opts).unwrap();
    assert_eq!(c.wait().unwrap().code, 0);
    let mut s = String::new();
    std::io::Seek::rewind(&mut &out).unwrap();
    std::io::Read::read_to_string(&mut &out, &mut s).unwrap();
    assert_eq!(s, "from stdin\n");
    let _ = out.as_raw_fd();
}

#[test]
fn joins_a_given_network_namespace() {
    if !need_root() {
        return;
    }
    // A first container holds a network namespace...
    let a = TestBundle::new();
    a.write(&a.spec(&["sleep", "30"]));
    let mut first =
        berth_shim::run_container(a.path(), berth_shim::CreateOptions::new(a.id.clone())).unwrap();
    let netns = PathBuf::from(format!("/proc/{}/ns/net", first.pid()));
    let want = std::fs::read_link(&netns).unwrap();
    assert_ne!(want, std::fs::read_link("/proc/self/ns/net").unwrap());
    // ...and a second one is told to join it by path.
    let b = TestBundle::new();
    let mut spec = b.spec(&["readlink", "/proc/self/ns/net"]);
    let linux = spec.linux_mut().as_mut().unwrap();
    let namespaces = linux
        .namespaces()
        .clone()
        .unwrap()
        .into_iter()
        .map(|mut ns| {
            if ns.typ() == oci_spec::runtime::LinuxNamespaceType::Network {
                ns.set_path(Some(netns.clone()));
            }
            ns
        })
        .collect();
    linux.set_namespaces(Some(namespaces));
    let out = run_ok(&b, &spec);
    assert_eq!(out.trim(), want.to_string_lossy());
    first
        .kill(nix::sys::signal::Signal::SIGKILL, false)
        .unwrap();
    assert_eq!(first.wait().unwrap().code, 137);
}
