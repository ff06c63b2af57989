//! The Task API end to end, as root: a real `berth-shim` spawned through the client half,
//! real containers from a busybox rootfs. Every shim is shut down at the end of its test
//! (and SIGKILLed by a guard if a test fails first).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use berth_proto::shim::v1 as pb;
use berth_proto::types::v1 as types;
use berth_shim::client;
use common::shim::{
    alive, close_stdin, create_and_start, create_req, delete_exec, exec_state, hex_id, kill_exec,
    log_records, pids, setup, start, state, try_shutdown, wait, wait_exec, wait_gone, Shim,
};
use common::{need_root, TestBundle};
use oci_spec::runtime::LinuxNamespaceType;
use tonic::Code;

fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}

/// Fields of /proc/PID/stat after the command name: (ppid, session id).
fn ppid_and_sid(pid: u32) -> (i32, i32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    (f[1].parse().unwrap(), f[3].parse().unwrap())
}

/// The bundle's busybox tree moved to a lower layer; the shim mounts it as overlay, as
/// the engine hands over a snapshot.
fn overlay_rootfs(b: &TestBundle) -> Vec<types::Mount> {
    let lower = b.path().join("lower");
    std::fs::rename(b.rootfs(), &lower).unwrap();
    std::fs::create_dir(b.rootfs()).unwrap();
    let (upper, work) = (b.path().join("upper"), b.path().join("work"));
    std::fs::create_dir(&upper).unwrap();
    std::fs::create_dir(&work).unwrap();
    vec![types::Mount {
        r#type: "overlay".into(),
        source: "overlay".into(),
        target: String::new(),
        options: vec![
            format!("lowerdir={}", lower.display()),
            format!("upperdir={}", upper.display()),
            format!("workdir={}", work.display()),
        ],
    }]
}

#[tokio::test]
async fn run_to_exit_with_logs_exit_file_delete_and_shutdown() {
    let Some((b, shim)) = setup().await else {
        return;
    };
    b.write(&b.spec(&sh("echo out; echo err >&2; exit 7")));

    // The socket is private to root, and the pid file names the shim.
    let sock = shim.dir().join("shim.sock");
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pid_file = std::fs::read_to_string(shim.dir().join("shim.pid")).unwrap();
    assert_eq!(pid_file.trim(), shim.pid.to_string());

    let mut req = create_req(&b, None);
    req.rootfs = overlay_rootfs(&b);
    let pid = create_and_start(&shim, req).await;
    let exit = wait(&shim).await;
    assert_eq!((exit.exit_status, exit.oom_killed), (7, false));

    // On disk before Wait answered.
    let rec = client::read_exit(shim.dir()).unwrap().expect("exit.json");
    assert_eq!((rec.pid, rec.exit_status, rec.signal), (pid, 7, None));
    assert_eq!(
        prost_types::Timestamp::from(rec.exited_at),
        exit.exited_at.unwrap()
    );

    // Docker's json-file format, one record per line, complete when Wait answers.
    let records = log_records(&shim.dir().join("container.log"));
    assert_eq!(records.len(), 2, "{records:?}");
    let find = |stream: &str| {
        records
            .iter()
            .find(|r| r["stream"] == stream)
            .unwrap_or_else(|| panic!("no {stream} record in {records:?}"))
    };
    assert_eq!(find("stdout")["log"], "out\n");
    assert_eq!(find("stderr")["log"], "err\n");
    for r in &records {
        humantime::parse_rfc3339(r["time"].as_str().unwrap()).unwrap();
    }

    let st = state(&shim).await;
    assert_eq!(st.status, pb::ProcessStatus::Stopped as i32);
    assert_eq!((st.pid, st.exit_status), (pid, 7));
    assert!(st.started_at.is_some() && st.exited_at.is_some());

    // Shutdown is refused while the container exists.
    let e = try_shutdown(&shim, false).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    let del = delete_exec(&shim, "").await.unwrap();
    assert_eq!((del.pid, del.exit_status), (pid, 7));
    common::assert_clean(&b);
    assert!(std::fs::read_dir(b.rootfs()).unwrap().next().is_none());
    let e = exec_state(&shim, "").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    try_shutdown(&shim, false).await.unwrap();
    assert!(wait_gone(shim.pid).await, "the shim outlived Shutdown");
    assert!(!sock.exists() && !shim.dir().join("shim.pid").exists());
    let gone = client::connect(shim.dir()).await.unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
}

#[tokio::test]
async fn kill_reports_128_plus_signal() {
    // Outside a pid namespace `sleep` is no init and SIGTERM kills it: the signal
    // itself is reported, 128 + 15.
    let Some((b, shim)) = setup().await else {
        return;
    };
    let mut spec = b.spec(&["sleep", "100"]);
    let linux = spec.linux_mut().as_mut().unwrap();
    let namespaces = linux
        .namespaces()
        .clone()
        .unwrap()
        .into_iter()
        .filter(|n| n.typ() != LinuxNamespaceType::Pid)
        .collect();
    linux.set_namespaces(Some(namespaces));
    b.write(&spec);
    create_and_start(&shim, create_req(&b, None)).await;
    assert_eq!(state(&shim).await.status, pb::ProcessStatus::Running as i32);
    kill_exec(&shim, "", 15, false).await.unwrap();
    let exit = wait(&shim).await;
    assert_eq!(exit.exit_status, 143);
    assert_eq!(
        client::read_exit(shim.dir()).unwrap().unwrap().signal,
        Some(15)
    );
    shim.shutdown().await;
    common::assert_clean(&b);

    // As pid 1 of its namespace, sh ignores SIGTERM (no handler: the kernel's rule, and
    // why Docker's stop needs SIGKILL); with `all` its child sleep gets it too, dies,
    // and sh exits with the child's 143.
    let mut b = TestBundle::new();
    let shim = Shim::spawn(&mut b).await;
    b.write(&b.spec(&sh("sleep 100; exit $?")));
    let pid = create_and_start(&shim, create_req(&b, None)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = pids(&shim).await;
        if pids.len() == 2 {
            assert_eq!(pids[0].pid, pid, "sorted, init first: {pids:?}");
            break;
        }
        assert!(Instant::now() < deadline, "sleep did not start: {pids:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    kill_exec(&shim, "", 15, true).await.unwrap();
    assert_eq!(wait(&shim).await.exit_status, 143);
    let e = kill_exec(&shim, "", 9, false).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    shim.shutdown().await;
    common::assert_clean(&b);
}

#[tokio::test]
async fn shim_is_detached_and_reachable_again() {
    let Some((b, shim)) = setup().await else {
        return;
    };
    b.write(&b.spec(&["sleep", "100"]));
    let pid = create_and_start(&shim, create_req(&b, None)).await;

    // Reparented away from its spawner, in a session of its own making.
    let (ppid, sid) = ppid_and_sid(shim.pid);
    let me = std::process::id() as i32;
    assert_ne!(ppid, me);
    assert_ne!(sid, ppid_and_sid(me as u32).1);

    // The engine restarts: the old client is gone, a fresh one finds the shim.
    let dir = shim.dir().to_path_buf();
    let mut shim = shim;
    drop(shim.client.take());
    let mut again = client::connect(&dir).await.unwrap();
    shim.client = Some(again.clone());
    assert_eq!(again.pid, shim.pid);
    let info = again
        .task
        .info(pb::InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((info.shim_pid, info.task_pid), (shim.pid, pid));
    assert_eq!(info.id, b.id);
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(state(&shim).await.status, pb::ProcessStatus::Running as i32);

    // Refused while it runs.
    let e = delete_exec(&shim, "").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let e = try_shutdown(&shim, false).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // Pause and resume; stats from the cgroup.
    again.task.pause(pb::PauseRequest {}).await.unwrap();
    assert_eq!(state(&shim).await.status, pb::ProcessStatus::Paused as i32);
    again.task.resume(pb::ResumeRequest {}).await.unwrap();
    assert_eq!(state(&shim).await.status, pb::ProcessStatus::Running as i32);
    let stats = again
        .task
        .stats(pb::StatsRequest {})
        .await
        .unwrap()
        .into_inner()
        .metrics
        .unwrap();
    assert_eq!(stats.pids.unwrap().current, 1);
    assert!(stats.memory.unwrap().limit_bytes > 0);

    // Shutdown with `now` kills the container and removes everything.
    try_shutdown(&shim, true).await.unwrap();
    assert!(wait_gone(shim.pid).await);
    assert!(!alive(pid), "the container outlived its shim");
    assert_eq!(
        client::read_exit(&dir).unwrap().unwrap().exit_status,
        137,
        "SIGKILLed"
    );
    common::assert_clean(&b);
}

#[tokio::test]
async fn refusals_map_to_grpc_codes() {
    let Some((b, shim)) = setup().await else {
        return;
    };
    let mut t = shim.task();

    // Before Create.
    let e = wait_exec(&shim, "").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = start(&shim, "").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    let mut wrong = create_req(&b, None);
    wrong.id = hex_id();
    assert_eq!(
        t.create(wrong).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    // The binary is looked up during Create, as runc does: Docker's message.
    b.write(&b.spec(&["nosuch"]));
    // A terminal must be asked for by the request and the spec alike.
    let mut tty = create_req(&b, None);
    tty.terminal = true;
    let e = t.create(tty).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("disagree"), "{e:?}");
    let e = t.create(create_req(&b, None)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message()
            .contains("exec: \"nosuch\": executable file not found in $PATH"),
        "{e:?}"
    );
    common::assert_clean(&b);

    // A created container: Start twice, Create twice, exec ids, Delete kills it.
    b.write(&b.spec(&["true"]));
    let pid = t
        .create(create_req(&b, None))
        .await
        .unwrap()
        .into_inner()
        .pid;
    assert_eq!(state(&shim).await.status, pb::ProcessStatus::Created as i32);
    assert_eq!(
        t.create(create_req(&b, None)).await.unwrap_err().code(),
        Code::AlreadyExists
    );
    let e = start(&shim, "x").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = t
        .exec(pb::ExecRequest {
            exec_id: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "not running: {e:?}");
    let e = kill_exec(&shim, "", 99, false).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let del = delete_exec(&shim, "").await.unwrap();
    assert_eq!((del.pid, del.exit_status), (pid, 137));
    common::assert_clean(&b);

    // After a Delete the shim takes a new container.
    b.write(&b.spec(&sh("exit 3")));
    create_and_start(&shim, create_req(&b, None)).await;
    assert_eq!(wait(&shim).await.exit_status, 3);
    let e = start(&shim, "").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    shim.shutdown().await;
    common::assert_clean(&b);
}

#[tokio::test]
async fn logs_rotate_at_the_configured_size() {
    let Some((b, shim)) = setup().await else {
        return;
    };
    b.write(&b.spec(&sh("seq 1 300")));
    let log = shim.dir().join("logs/ctr.log");
    let stdio = pb::StdioOptions {
        log: Some(pb::LogOptions {
            path: log.to_string_lossy().into_owned(),
            max_size_bytes: 2000,
            max_files: 3,
        }),
        ..Default::default()
    };
    create_and_start(&shim, create_req(&b, Some(stdio))).await;
    assert_eq!(wait(&shim).await.exit_status, 0);
    let numbered = |n: u32| shim.dir().join(format!("logs/ctr.log.{n}"));
    assert!(numbered(1).exists() && numbered(2).exists());
    assert!(!numbered(3).exists());
    for p in [log.clone(), numbered(1), numbered(2)] {
        assert!(std::fs::metadata(&p).unwrap().len() <= 2000);
    }
    let current = log_records(&log);
    assert_eq!(current.last().unwrap()["log"], "300\n");
    assert!(!shim.dir().join("container.log").exists());
    shim.shutdown().await;
}

#[tokio::test]
async fn stdin_attach_and_close_io() {
    let Some((b, shim)) = setup().await else {
        return;
    };
    b.write(&b.spec(&sh("read x; echo got $x; cat; echo eof")));
    let stdio = pb::StdioOptions {
        stdin: true,
        ..Default::default()
    };
    shim.task()
        .create(create_req(&b, Some(stdio)))
        .await
        .unwrap();
    assert!(state(&shim).await.stdin_open);

    // Attached before Start: all output arrives.
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(pb::AttachRequest {
        msg: Some(pb::attach_request::Msg::Options(pb::AttachOptions {
            stdin: true,
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut output = shim
        .task()
        .attach(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    start(&shim, "").await.unwrap();
    tx.send(pb::AttachRequest {
        msg: Some(pb::attach_request::Msg::Stdin(b"hello\nmore\n".to_vec())),
    })
    .await
    .unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("more\n") {
        let frame = tokio::time::timeout(Duration::from_secs(10), output.message())
            .await
            .expect("output in time")
            .unwrap()
            .expect("stream open")
            .output
            .unwrap();
        assert_eq!(frame.stream, types::StdioStream::Stdout as i32);
        seen.extend(frame.data);
    }
    assert_eq!(String::from_utf8_lossy(&seen), "got hello\nmore\n");

    // CloseIO: cat reads EOF, the script ends.
    close_stdin(&shim, "").await.unwrap();
    assert_eq!(wait(&shim).await.exit_status, 0);
    // The attach stream ends with the output.
    let mut rest = Vec::new();
    while let Some(m) = output.message().await.unwrap() {
        rest.extend(m.output.unwrap().data);
    }
    assert_eq!(String::from_utf8_lossy(&rest), "eof\n");
    let logged: Vec<String> = log_records(&shim.dir().join("container.log"))
        .iter()
        .map(|r| r["log"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(logged, ["got hello\n", "more\n", "eof\n"]);
    drop(tx);
    shim.shutdown().await;
    common::assert_clean(&b);
}

#[tokio::test]
async fn sigterm_stops_container_and_shim() {
    let Some((b, shim)) = setup().await else {
        return;
    };
    b.write(&b.spec(&["sleep", "100"]));
    let pid = create_and_start(&shim, create_req(&b, None)).await;
    // The shim this test spawned (its pid, checked by the guard's rule).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim.pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(wait_gone(shim.pid).await, "the shim ignored SIGTERM");
    assert!(!alive(pid), "the container outlived its shim");
    common::assert_clean(&b);
    assert!(!shim.dir().join("shim.sock").exists());
}

#[tokio::test]
async fn state_dirs_longer_than_a_socket_path_work() {
    if !need_root() {
        return;
    }
    // Like <state>/containers/<64 hex>/ under a long temporary directory: the socket
    // path is over the 108 bytes sockaddr_un holds.
    let mut b = TestBundle::new();
    let sub = format!("state/containers/{}", "f".repeat(64));
    let shim = Shim::spawn_in(&mut b, &sub).await;
    assert!(shim.dir().join("shim.sock").as_os_str().len() > 108);
    let again = client::connect(shim.dir()).await.unwrap();
    assert_eq!(again.pid, shim.pid);
    b.write(&b.spec(&["true"]));
    create_and_start(&shim, create_req(&b, None)).await;
    assert_eq!(wait(&shim).await.exit_status, 0);
    shim.shutdown().await;
    common::assert_clean(&b);
}
