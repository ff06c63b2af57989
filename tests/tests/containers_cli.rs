//! berthctl's container commands end to end, as root, with real containers: run (attached,
//! detached, --rm, exit codes, -e/-w/--hostname/-u), ps, logs, stop, kill, wait, rm,
//! inspect, `--format` Go templates, restart policies, name conflicts, live restore across an engine SIGKILL, a shim SIGKILL, and the
//! engine's bundle under Debian's runc. After every test no container mount, cgroup or shim
//! process is left.

use std::process::Command;
use std::time::Duration;

use berth_tests::image::{self, File};
use berth_tests::world::{runc_installed, stderr, stdout, World, BUSYBOX_ENTRYPOINT};
use berth_tests::{alive, need_root, wait_until, Engine};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// The test image: a static busybox as the entrypoint, so `IMG sh -c …` runs busybox's sh.
const IMG: &str = "bbtest:latest";

/// A new engine with the test image.
async fn world() -> World {
    let rootfs = image::busybox_rootfs(&[File::new("etc/marker", "x")]);
    World::new(&rootfs, IMG, &BUSYBOX_ENTRYPOINT).await
}

#[tokio::test]
async fn run_prints_output_and_propagates_exit_codes() {
    if !need_root() {
        return;
    }
    let w = world().await;

    let out = w.ctl(&["run", "--rm", IMG, "echo", "hello"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello\n");
    assert!(w.all_ids().is_empty(), "--rm left a container");

    let out = w.ctl(&["run", "--rm", IMG, "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(w.all_ids().is_empty());

    // stdout and stderr stay apart; pid 1 inside; the environment, working directory,
    // host name and user are applied.
    let out = w.ctl(&[
        "run",
        "--rm",
        "-e",
        "FOO=bar",
        "-w",
        "/work/dir",
        "--hostname",
        "boxy",
        "-u",
        "1000",
        IMG,
        "sh",
        "-c",
        "echo $FOO; pwd; hostname; id -u; echo $$; echo oops >&2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "bar\n/work/dir\nboxy\n1000\n1\n");
    assert_eq!(stderr(&out), "oops\n");
    // As Docker: the primary group is also a supplementary one, and `/` is 0755 whatever
    // the mode of the directory the image was tarred from.
    let out = w.ctl(&[
        "run",
        "--rm",
        "-u",
        "1000:7",
        IMG,
        "sh",
        "-c",
        "id -G; stat -c %a /",
    ]);
    assert_eq!(stdout(&out), "7\n755\n", "{}", stderr(&out));

    // Without --rm the container stays, exited, with its exit code.
    let out = w.ctl(&[
        "run",
        "--name",
        "kept",
        IMG,
        "sh",
        "-c",
        "echo kept; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(stdout(&out), "kept\n");
    let state = &w.inspect("kept")["State"];
    assert_eq!(state["Status"], "exited");
    assert_eq!(state["ExitCode"], 5);
    assert_eq!(state["Running"], false);
    assert_eq!(w.ok(&["logs", "kept"]), "kept\n");
    assert_eq!(w.ok(&["wait", "kept"]), "5\n");

    // A command that does not exist: 127, as Docker.
    let out = w.ctl(&["run", "--rm", "--entrypoint", "/nonexistent", IMG]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(!stderr(&out).is_empty());

    // -t without -i needs no terminal here: the output comes through the container's.
    let out = w.ctl(&["run", "--rm", "-t", IMG, "echo", "hi"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hi\r\n");

    // An image from a registry that cannot be reached (a closed port on loopback): 125,
    // and the registry is blamed, not the engine.
    let before = w.all_ids();
    let out = w.ctl(&["run", "--rm", "127.0.0.1:1/nothing:1"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("127.0.0.1:1"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("engine"), "{}", stderr(&out));
    assert_eq!(w.all_ids(), before);

    // Docker's resource checks: refused before anything is made.
    for flags in [&["-m", "4m"][..], &["--cpus", "0.001"], &["--cpus", "99"]] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend([IMG, "true"]);
        let out = w.ctl(&args);
        assert_eq!(out.status.code(), Some(125), "{flags:?}: {}", stderr(&out));
    }
    assert_eq!(w.all_ids(), before);

    w.clean_up();
}

#[tokio::test]
async fn detached_containers_list_log_stop_and_remove() {
    if !need_root() {
        return;
    }
    let w = world().await;
    let id = w.run_detached(&[
        "--name",
        "web",
        "-l",
        "app=demo",
        IMG,
        "sh",
        "-c",
        "echo started; echo warn >&2; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done",
    ]);

    let ps = w.ok(&["ps"]);
    let lines: Vec<&str> = ps.lines().collect();
    assert!(lines[0].starts_with("CONTAINER ID"), "{ps}");
    for col in ["IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"] {
        assert!(lines[0].contains(col), "{ps}");
    }
    assert_eq!(lines.len(), 2, "{ps}");
    assert!(lines[1].starts_with(&id[..12]), "{ps}");
    assert!(lines[1].contains(" Up "), "{ps}");
    assert!(lines[1].trim_end().ends_with("web"), "{ps}");
    let json: Value = serde_json::from_str(w.ok(&["ps", "--format", "json"]).trim()).unwrap();
    assert_eq!(json["Names"], "web");
    assert_eq!(json["State"], "running");
    // Docker's Go templates, `\t` written as two characters, and `table` with a header.
    assert_eq!(
        w.ok(&["ps", "--format", "{{.Names}}\\t{{.State}}\\t{{.Labels}}"]),
        "web\trunning\tapp=demo\n"
    );
    let table = w.ok(&["ps", "--format", "table {{.ID}}\\t{{.Names}}"]);
    assert_eq!(
        table,
        format!("CONTAINER ID   NAMES\n{}   web\n", &id[..12])
    );
    assert_eq!(
        w.ok(&[
            "inspect",
            "-f",
            "{{.Name}} {{.State.Status}} {{.Config.Labels}}",
            "web"
        ]),
        "/web running map[app:demo]\n"
    );
    assert_eq!(
        w.ok(&[
            "container",
            "inspect",
            "--format",
            "{{json .Config.Labels}}",
            &id
        ]),
        "{\"app\":\"demo\"}\n"
    );
    assert_eq!(
        w.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        format!("{IMG}\n")
    );
    assert_eq!(
        w.ok(&["image", "inspect", "-f", "{{.RepoTags}}", IMG]),
        format!("[{IMG}]\n")
    );
    // A bad template fails before anything is asked; a missing field is an error.
    let out = w.ctl(&["ps", "--format", "{{.Names"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("template parsing error"),
        "{}",
        stderr(&out)
    );
    let out = w.ctl(&["inspect", "-f", "{{.Nope}}", "web"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("map has no entry for key \"Nope\""),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        w.ok(&["ps", "-q", "--filter", "label=app=demo"]).trim(),
        &id[..12]
    );
    assert_eq!(w.ok(&["ps", "-q", "--filter", "status=exited"]), "");

    wait_until("the container's output", Duration::from_secs(10), || {
        w.ok(&["logs", "web"]) == "started\n"
    });
    let out = w.ctl(&["logs", "--tail", "1", "-t", &id[..8]]);
    assert!(stderr(&out).ends_with(" warn\n"), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");

    let state = &w.inspect("web")["State"];
    assert_eq!(state["Status"], "running");
    assert!(state["Pid"].as_i64().unwrap() > 0);

    // A name in use.
    let out = w.ctl(&["run", "-d", "--name", "web", IMG, "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("Conflict. The container name \"/web\" is already in use"),
        "{}",
        stderr(&out)
    );
    let out = w.ctl(&["create", "--name", "web", IMG, "true"]);
    assert!(!out.status.success());

    // rm refuses a running container without -f.
    let out = w.ctl(&["rm", "web"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot remove a running container"),
        "{}",
        stderr(&out)
    );

    // `ps` answers while the container is being stopped.
    let slow = w.run_detached(&["--stop-timeout", "3", IMG, "sleep", "1000"]);
    let host = w.engine().host();
    let stopper = std::thread::spawn(move || {
        Command::new(berth_tests::bin("berthctl"))
            .args(["-H", &host, "stop", &slow])
            .output()
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    w.ok(&["ps"]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "ps waited for stop"
    );
    let stopped = stopper.join().unwrap();
    assert!(stopped.status.success(), "{}", stderr(&stopped));

    assert_eq!(w.ok(&["stop", "web"]), "web\n");
    let ps = w.ok(&["ps", "-a", "--filter", "name=web"]);
    assert!(ps.contains("Exited (0)"), "{ps}");
    assert_eq!(w.ok(&["logs", "web"]), "started\nbye\n");
    let state = &w.inspect(&id)["State"];
    assert_eq!(state["Status"], "exited");
    assert_eq!(state["ExitCode"], 0);

    // Started again, then killed: wait reports 137.
    w.ok(&["start", "web"]);
    assert_eq!(w.inspect("web")["State"]["Status"], "running");
    assert_eq!(w.ok(&["kill", "web"]), "web\n");
    assert_eq!(w.ok(&["wait", "web"]), "137\n");

    assert_eq!(w.ok(&["rm", "web"]), "web\n");
    let out = w.ctl(&["inspect", "--type", "container", "web"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("No such container: web"),
        "{}",
        stderr(&out)
    );
    // The name is free again.
    w.ok(&["create", "--name", "web", IMG, "true"]);
    // `inspect` falls back to images.
    let img = w.ok(&["inspect", IMG]);
    assert!(img.contains("\"RepoTags\""), "{img}");

    w.clean_up();
}

#[tokio::test]
async fn restart_policies_as_docker() {
    if !need_root() {
        return;
    }
    let mut w = world().await;
    let field = |w: &World, c: &str, f: &str| w.ok(&["inspect", "-f", f, c]).trim().to_string();
    // on-failure:2 gives up after two restarts, keeping the last exit code.
    w.run_detached(&[
        "--name",
        "fails",
        "--restart",
        "on-failure:2",
        IMG,
        "sh",
        "-c",
        "exit 3",
    ]);
    wait_until("two restarts", Duration::from_secs(15), || {
        field(&w, "fails", "{{.RestartCount}} {{.State.Status}}") == "2 exited"
    });
    assert_eq!(field(&w, "fails", "{{.State.ExitCode}}"), "3");
    assert_eq!(
        field(&w, "fails", "{{json .HostConfig.RestartPolicy}}"),
        r#"{"MaximumRetryCount":2,"Name":"on-failure"}"#
    );
    // on-failure does not restart a success.
    w.run_detached(&["--name", "succeeds", "--restart", "on-failure", IMG, "true"]);
    // always restarts a success, again and again; stop ends it for good.
    w.run_detached(&[
        "--name",
        "always",
        "--restart",
        "always",
        IMG,
        "sh",
        "-c",
        "sleep 0.2",
    ]);
    wait_until("restarts", Duration::from_secs(15), || {
        field(&w, "always", "{{.RestartCount}}")
            .parse::<u32>()
            .unwrap_or(0)
            >= 2
    });
    assert!(w.ok(&["ps", "--format", "{{.Names}}"]).contains("always"));
    w.ok(&["stop", "always"]);
    assert_eq!(field(&w, "always", "{{.State.Status}}"), "exited");
    let count = field(&w, "always", "{{.RestartCount}}");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        field(&w, "always", "{{.RestartCount}} {{.State.Status}}"),
        format!("{count} exited")
    );
    assert_eq!(
        field(&w, "succeeds", "{{.RestartCount}} {{.State.Status}}"),
        "0 exited"
    );
    // A kill (any signal, as Docker) puts unless-stopped to rest; start wakes it.
    w.run_detached(&[
        "--name",
        "unless",
        "--restart",
        "unless-stopped",
        IMG,
        "sleep",
        "1000",
    ]);
    w.ok(&["kill", "unless"]);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(field(&w, "unless", "{{.State.Status}}"), "exited");
    w.ok(&["start", "unless"]);
    assert_eq!(field(&w, "unless", "{{.State.Status}}"), "running");
    w.ok(&["stop", "-t", "0", "unless"]);
    // Docker's refusals.
    for (policy, says) in [
        ("always:3", "cannot be used with restart policy 'always'"),
        ("bogus", "invalid restart policy 'bogus'"),
        ("on-failure:-1", "cannot be negative"),
    ] {
        let out = w.ctl(&["create", "--restart", policy, IMG, "true"]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(says), "{policy}: {}", stderr(&out));
    }
    let out = w.ctl(&["run", "--rm", "--restart", "always", IMG, "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("--restart and --rm"),
        "{}",
        stderr(&out)
    );

    // At engine start: always comes back even when stopped by hand, unless-stopped not.
    w.run_detached(&[
        "--name",
        "boot",
        "--restart",
        "always",
        IMG,
        "sleep",
        "1000",
    ]);
    w.ok(&["stop", "-t", "0", "boot"]);
    assert_eq!(field(&w, "boot", "{{.State.Status}}"), "exited");
    w.kill_engine().await;
    w.restart_engine().await;
    wait_until("always back", Duration::from_secs(15), || {
        field(&w, "boot", "{{.State.Status}}") == "running"
    });
    assert_eq!(field(&w, "unless", "{{.State.Status}}"), "exited");
    assert_eq!(field(&w, "fails", "{{.State.Status}}"), "exited");
    // A container between restarts is refused by rm, and removed at once with -f.
    w.ok(&["start", "always"]);
    let out = w.ctl(&["rm", "always"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("You cannot remove a"),
        "{}",
        stderr(&out)
    );
    w.ok(&["rm", "-f", "always", "boot", "fails", "succeeds", "unless"]);
    assert!(w.all_ids().is_empty());

    w.clean_up();
}

#[tokio::test]
async fn containers_survive_an_engine_kill() {
    if !need_root() {
        return;
    }
    let w = world().await;
    let id = w.run_detached(&[
        "--name",
        "survivor",
        IMG,
        "sh",
        "-c",
        "trap 'exit 0' TERM; i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.1; done",
    ]);
    wait_until("output", Duration::from_secs(10), || {
        w.ok(&["logs", "survivor"]).contains("tick2")
    });
    let mut w = w;
    w.kill_engine().await;
    let shim = w.shim_pid(&id);
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(shim), "the shim died with the engine");
    let lines_before = engine_logs_len(w.engine(), &id);

    w.restart_engine().await;
    let ps = w.ok(&["ps", "-a"]);
    assert!(
        ps.contains("survivor") && ps.contains(" Up "),
        "{ps}\nengine log:\n{}",
        w.engine().log_text()
    );
    // Logging went on while the engine was down, and goes on now.
    wait_until("more output", Duration::from_secs(10), || {
        engine_logs_len(w.engine(), &id) > lines_before + 2
    });
    assert_eq!(w.ok(&["stop", "survivor"]), "survivor\n");
    assert_eq!(w.inspect("survivor")["State"]["ExitCode"], 0);
    w.clean_up();
}

fn engine_logs_len(engine: &Engine, id: &str) -> usize {
    engine
        .ctl(&["logs", id])
        .stdout
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

#[tokio::test]
async fn a_dead_shim_marks_the_container_exited() {
    if !need_root() {
        return;
    }
    let w = world().await;
    let id = w.run_detached(&["--name", "victim", IMG, "sleep", "1000"]);
    let shim = w.shim_pid(&id);
    kill(Pid::from_raw(shim), Signal::SIGKILL).unwrap();
    wait_until(
        "the container marked exited",
        Duration::from_secs(10),
        || w.inspect("victim")["State"]["Status"] == "exited",
    );
    assert_eq!(w.inspect("victim")["State"]["ExitCode"], 255);
    w.ok(&["rm", "victim"]);
    assert_eq!(
        w.ok(&["run", "--rm", "--name", "victim", IMG, "echo", "again"]),
        "again\n"
    );
    w.clean_up();
}

#[tokio::test]
async fn runc_runs_the_bundle_the_engine_writes() {
    if !need_root() {
        return;
    }
    if !runc_installed() {
        return;
    }
    let w = world().await;
    let id = w.create(&[
        "--hostname",
        "runcbox",
        "-e",
        "X=42",
        "-w",
        "/srv",
        IMG,
        "sh",
        "-c",
        "echo hi from $(hostname) $X $(pwd); id -u; exit 7",
    ]);
    let out = w.run_under_runc(&id, &format!("test-{}", &id[..12])).await;
    assert_eq!(
        out.status.code(),
        Some(7),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(stdout(&out), "hi from runcbox 42 /srv\n0\n");

    // The same container under berth says the same.
    let out = w.ctl(&["start", "-a", &id]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hi from runcbox 42 /srv\n0\n");
    w.clean_up();
}

#[tokio::test]
async fn many_containers_start_and_go_at_once() {
    if !need_root() {
        return;
    }
    const N: usize = 64;
    let w = world().await;
    // Started in parallel, removed with one `rm -f` (which works on all at once): dozens of
    // concurrent record updates and flushes must not stall the engine (they did, once:
    // concurrent sled flushes starved sled's I/O pool).
    let mut starters: Vec<std::process::Child> = (0..N)
        .map(|_| {
            w.engine()
                .ctl_command(&["run", "-d", IMG, "sleep", "1000"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for s in &mut starters {
        loop {
            if let Some(status) = s.try_wait().unwrap() {
                assert!(status.success());
                break;
            }
            if std::time::Instant::now() > deadline {
                for s in &mut starters {
                    let _ = s.kill();
                    let _ = s.wait();
                }
                panic!("starting {N} containers at once stalled");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let running = w.ok(&["ps", "-q"]);
    assert_eq!(running.lines().count(), N, "{running}");
    let mut rm = w.engine().ctl_command(&["rm", "-f"]);
    rm.args(w.all_ids()).stdout(std::process::Stdio::null());
    let mut rm = rm.spawn().unwrap();
    let started = std::time::Instant::now();
    wait_until("rm -f of every container", Duration::from_secs(30), || {
        rm.try_wait().unwrap().is_some()
    });
    assert!(rm.wait().unwrap().success());
    eprintln!("rm -f of {N} containers: {:?}", started.elapsed());
    w.clean_up();
}

#[tokio::test]
async fn ctrl_c_on_an_attached_run_reaches_the_container() {
    if !need_root() {
        return;
    }
    let w = world().await;
    let mut run = w
        .engine()
        .ctl_command(&[
            "run",
            "--rm",
            "--name",
            "interrupted",
            IMG,
            "sh",
            "-c",
            "trap 'echo got INT; exit 4' INT; echo ready; while true; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the container to be ready", Duration::from_secs(10), || {
        w.ctl(&["logs", "interrupted"]).stdout == b"ready\n"
    });
    kill(Pid::from_raw(run.id() as i32), Signal::SIGINT).unwrap();
    wait_until("berthctl to exit", Duration::from_secs(10), || {
        run.try_wait().unwrap().is_some()
    });
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ready\ngot INT\n");
    assert!(w.all_ids().is_empty(), "--rm left the container");
    w.clean_up();
}
