//! Exec processes and terminals through the Task API, as root, for real: what an exec
//! sees (namespaces, cgroup, hardening), its stdio and terminal, its exit, and the
//! refusals. Each test spawns its own shim and leaves nothing behind.

mod common;

use std::time::{Duration, Instant};

use berth_proto::shim::v1 as pb;
use berth_proto::types::v1 as types;
use common::shim::{
    close_stdin, create_and_start, create_req, delete_exec, exec_state, kill_exec, log_records,
    pids, resize, setup, start, state, wait, wait_exec, Shim,
};
use common::TestBundle;
use oci_spec::runtime::{Process, Spec};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

const STDOUT: i32 = types::StdioStream::Stdout as i32;
const STDERR: i32 = types::StdioStream::Stderr as i32;

fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}

/// An exec's process object as the engine derives it: the container's own process (same
/// capabilities, limits, no_new_privs), other args, and whatever `edit` changes.
fn process_json(spec: &Spec, args: &[&str], edit: impl FnOnce(&mut Process)) -> Vec<u8> {
    let mut p = spec.process().clone().unwrap();
    p.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
    edit(&mut p);
    serde_json::to_vec(&p).unwrap()
}

fn exec_req(exec_id: &str, spec: Vec<u8>) -> pb::ExecRequest {
    pb::ExecRequest {
        exec_id: exec_id.into(),
        spec,
        ..Default::default()
    }
}

fn with_stdin(mut req: pb::ExecRequest) -> pb::ExecRequest {
    req.stdio = Some(pb::StdioOptions {
        stdin: true,
        ..Default::default()
    });
    req
}

fn with_terminal(mut req: pb::ExecRequest, width: u32, height: u32) -> pb::ExecRequest {
    req.terminal = true;
    req.console_size = Some(types::ConsoleSize { width, height });
    req
}

async fn exec_wait(shim: &Shim, exec_id: &str) -> pb::WaitResponse {
    tokio::time::timeout(Duration::from_secs(20), wait_exec(shim, exec_id))
        .await
        .expect("the exec exits in time")
        .unwrap()
}

/// An attached client: stdin in, output frames out.
struct Attached {
    tx: mpsc::Sender<pb::AttachRequest>,
    out: tonic::Streaming<pb::AttachResponse>,
    /// (stream, bytes) of every frame so far.
    frames: Vec<(i32, Vec<u8>)>,
}

impl Attached {
    async fn new(shim: &Shim, exec_id: &str, stdin: bool) -> Attached {
        let (tx, rx) = mpsc::channel(16);
        tx.send(pb::AttachRequest {
            msg: Some(pb::attach_request::Msg::Options(pb::AttachOptions {
                exec_id: exec_id.into(),
                stdin,
                ..Default::default()
            })),
        })
        .await
        .unwrap();
        let out = shim
            .task()
            .attach(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Attached {
            tx,
            out,
            frames: Vec::new(),
        }
    }

    async fn send(&self, data: &[u8]) {
        self.tx
            .send(pb::AttachRequest {
                msg: Some(pb::attach_request::Msg::Stdin(data.to_vec())),
            })
            .await
            .unwrap();
    }

    /// Everything received on `stream`, as text.
    fn text(&self, stream: i32) -> String {
        let bytes: Vec<u8> = self
            .frames
            .iter()
            .filter(|(s, _)| *s == stream)
            .flat_map(|(_, d)| d.clone())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Receives one frame; false at the end of the stream.
    async fn next(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, self.out.message())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no output in time; so far: {:?}",
                    self.text(STDOUT) + &self.text(STDERR)
                )
            })
            .unwrap();
        match msg {
            Some(m) => {
                let f = m.output.unwrap();
                self.frames.push((f.stream, f.data));
                true
            }
            None => false,
        }
    }

    /// Reads until stdout contains `needle` after byte `from`; returns the position
    /// right after it.
    async fn read_until(&mut self, from: usize, needle: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.text(STDOUT);
            if let Some(i) = out.get(from..).and_then(|rest| rest.find(needle)) {
                return from + i + needle.len();
            }
            assert!(
                self.next(deadline).await,
                "the stream ended without {needle:?}: {out:?}"
            );
        }
    }

    /// Reads to the end of the stream.
    async fn read_to_end(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.next(deadline).await {}
    }
}

/// Exec, attach, Start, read to the end, Wait: (stdout, stderr, exit status).
async fn run_exec(shim: &Shim, req: pb::ExecRequest) -> (String, String, u32) {
    let id = req.exec_id.clone();
    shim.task().exec(req).await.unwrap();
    let mut a = Attached::new(shim, &id, false).await;
    start(shim, &id).await.unwrap();
    a.read_to_end().await;
    let status = exec_wait(shim, &id).await.exit_status;
    (a.text(STDOUT), a.text(STDERR), status)
}

/// A running container whose init wrote /tmp/mark and sleeps; returns its pid.
async fn running(shim: &Shim, b: &TestBundle) -> u32 {
    b.write(&b.spec(&sh("echo from-init > /tmp/mark; exec sleep 1000")));
    let pid = create_and_start(shim, create_req(b, None)).await;
    let mark = format!("/proc/{pid}/root/tmp/mark");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&mark).unwrap_or_default() != "from-init\n" {
        assert!(Instant::now() < deadline, "the init did not write {mark}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pid
}

/// A shim with a [`running`] container, and the spec its execs derive from; None when
/// the test is skipped.
async fn running_shim() -> Option<(TestBundle, Shim, Spec)> {
    let (b, shim) = setup().await?;
    running(&shim, &b).await;
    let spec = b.spec(&["true"]);
    Some((b, shim, spec))
}

fn section<'a>(out: &'a str, name: &str) -> &'a str {
    let start = out.find(&format!("---{name}\n")).unwrap() + name.len() + 4;
    let end = out[start..].find("---").map_or(out.len(), |i| start + i);
    &out[start..end]
}

#[tokio::test]
async fn exec_joins_every_namespace_and_the_cgroup() {
    let Some((b, shim)) = setup().await else {
        return;
    };
    let init = running(&shim, &b).await;
    let spec = b.spec(&["true"]);

    let script = "echo host=$(hostname); echo mark=$(cat /tmp/mark); echo pid=$$; \
                  echo init=$(tr '\\0' ' ' < /proc/1/cmdline); \
                  echo ---self; cat /proc/self/cgroup; echo ---init; cat /proc/1/cgroup";
    let (out, err, status) = run_exec(
        &shim,
        exec_req("look", process_json(&spec, &sh(script), |_| {})),
    )
    .await;
    assert_eq!(status, 0, "{out}{err}");
    assert!(out.contains("host=berth-test\n"), "uts: {out}");
    assert!(out.contains("mark=from-init\n"), "mount: {out}");
    assert!(
        out.contains("init=sleep 1000\n"),
        "pid 1 is the init: {out}"
    );
    let pid: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("pid="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        pid > 1,
        "the exec's pid inside the container's pid namespace: {out}"
    );
    assert_eq!(
        section(&out, "self"),
        section(&out, "init"),
        "cgroups: {out}"
    );
    assert!(!section(&out, "self").is_empty());

    // A running exec: its pid is in the container's cgroup, marked with its exec id, and
    // its cgroups on the host are the init's.
    let req = exec_req("sleeper", process_json(&spec, &["sleep", "1000"], |_| {}));
    shim.task().exec(req).await.unwrap();
    assert_eq!(
        exec_state(&shim, "sleeper").await.unwrap().status,
        pb::ProcessStatus::Created as i32
    );
    let pid = start(&shim, "sleeper").await.unwrap();
    let st = exec_state(&shim, "sleeper").await.unwrap();
    assert_eq!(
        (st.status, st.pid, st.exec_id.as_str(), st.terminal),
        (pb::ProcessStatus::Running as i32, pid, "sleeper", false)
    );
    let pids = pids(&shim).await;
    assert!(
        pids.iter().any(|p| p.pid == pid && p.exec_id == "sleeper"),
        "{pids:?}"
    );
    assert!(pids.iter().any(|p| p.pid == init && p.exec_id.is_empty()));
    let cgroup = |p: u32| std::fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap();
    assert_eq!(cgroup(pid), cgroup(init));
    for ns in ["mnt", "pid", "net", "ipc", "uts", "cgroup"] {
        let link = |p: u32| std::fs::read_link(format!("/proc/{p}/ns/{ns}")).unwrap();
        assert_eq!(link(pid), link(init), "{ns} namespace");
    }
    kill_exec(&shim, "sleeper", 9, false).await.unwrap();
    assert_eq!(exec_wait(&shim, "sleeper").await.exit_status, 137);

    // Exec output goes to attached clients only, not to the container's log.
    let log = shim.dir().join("container.log");
    if log.exists() {
        assert!(log_records(&log).is_empty(), "exec output was logged");
    }
    assert_eq!(state(&shim).await.status, pb::ProcessStatus::Running as i32);
    shim.shutdown().await;
    common::assert_clean(&b);
}

#[tokio::test]
async fn exec_user_env_cwd_umask_and_exit_code() {
    let Some((b, shim, spec)) = running_shim().await else {
        return;
    };
    let json = process_json(
        &spec,
        &sh("echo $FOO; pwd; id -u; id -g; id -G; umask; echo oops >&2; exit 5"),
        |p| {
            let mut user = p.user().clone();
            user.set_uid(1000);
            user.set_gid(1000);
            user.set_additional_gids(Some(vec![10]));
            user.set_umask(Some(0o077));
            p.set_user(user);
            p.set_env(Some(vec!["PATH=/bin".into(), "FOO=bar".into()]));
            p.set_cwd("/tmp".into());
        },
    );
    let (out, err, status) = run_exec(&shim, exec_req("who", json)).await;
    assert_eq!(out, "bar\n/tmp\n1000\n1000\n1000 10\n0077\n");
    assert_eq!(err, "oops\n");
    assert_eq!(status, 5);

    let st = exec_state(&shim, "who").await.unwrap();
    assert_eq!(st.status, pb::ProcessStatus::Stopped as i32);
    assert_eq!(st.exit_status, 5);
    assert!(st.exited_at.is_some() && st.started_at.is_some());
    let del = delete_exec(&shim, "who").await.unwrap();
    assert_eq!((del.pid, del.exit_status), (st.pid, 5));
    let e = exec_state(&shim, "who").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // The id is free again.
    let (out, _, status) = run_exec(
        &shim,
        exec_req("who", process_json(&spec, &["id", "-u"], |_| {})),
    )
    .await;
    assert_eq!((out.as_str(), status), ("0\n", 0));
    shim.shutdown().await;
    common::assert_clean(&b);
}

#[tokio::test]
async fn exec_has_the_init_hardening() {
    let Some((b, shim, spec)) = running_shim().await else {
        return;
    };
    let script = "echo ---self; grep -E '^(CapEff|CapPrm|CapBnd|CapInh|CapAmb|NoNewPrivs)' /proc/self/status; \
                  echo ---init; grep -E '^(CapEff|CapPrm|CapBnd|CapInh|CapAmb|NoNewPrivs)' /proc/1/status; \
                  echo ---fds; ls /proc/$$/fd; \
                  echo ---limit; ulimit -n";
    let (out, err, status) = run_exec(
        &shim,
        exec_req("caps", process_json(&spec, &sh(script), |_| {})),
    )
    .await;
    assert_eq!(status, 0, "{out}{err}");
    assert_eq!(section(&out, "self"), section(&out, "init"), "{out}");
    assert!(section(&out, "self").contains("NoNewPrivs:\t1\n"), "{out}");
    assert!(
        section(&out, "self").contains("CapAmb:\t0000000000000000\n"),
        "{out}"
    );
    assert_eq!(
        section(&out, "fds").split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2"],
        "{out}"
    );
    // Docker's 1048576 is above this machine's hard limit: clamped like the init's.
    let limit: u64 = section(&out, "limit").trim().parse().unwrap();
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    assert_eq!(limit, hard.min(1_048_576), "{out}");
    shim.shutdown().await;
    common::assert_clean(&b);
}

#[tokio::test]
async fn exec_failures_and_refusals() {
    let Some((b, shim)) = setup().await else {
        return;
    };
    let mut t = shim.task();
    let spec = b.spec(&["true"]);
    let json = |args: &[&str]| process_json(&spec, args, |_| {});

    // Before the container runs.
    let e = t.exec(exec_req("a", json(&["true"]))).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "no container: {e:?}");
    b.write(&b.spec(&["sleep", "1000"]));
    t.create(create_req(&b, None)).await.unwrap();
    let e = t.exec(exec_req("a", json(&["true"]))).await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "created, not running: {e:?}"
    );
    start(&shim, "").await.unwrap();

    // A missing binary fails at Start with Docker's message, and the exec is stopped
    // with 127; a file that may not be executed, 126.
    t.exec(exec_req("missing", json(&["nosuch"])))
        .await
        .unwrap();
    let e = start(&shim, "missing").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message()
            .contains("exec: \"nosuch\": executable file not found in $PATH"),
        "{e:?}"
    );
    let st = exec_state(&shim, "missing").await.unwrap();
    assert_eq!(
        (st.status, st.exit_status),
        (pb::ProcessStatus::Stopped as i32, 127)
    );
    assert_eq!(exec_wait(&shim, "missing").await.exit_status, 127);
    t.exec(exec_req("noexec", json(&["/etc/passwd"])))
        .await
        .unwrap();
    let e = start(&shim, "noexec").await.unwrap_err();
    assert!(e.message().contains("permission denied"), "{e:?}");
    assert_eq!(exec_wait(&shim, "noexec").await.exit_status, 126);
    // A working directory that does not exist.
    let nocwd = process_json(&spec, &["true"], |p| {
        p.set_cwd("/nonexistent".into());
    });
    t.exec(exec_req("nocwd", nocwd)).await.unwrap();
    let e = start(&shim, "nocwd").await.unwrap_err();
    assert!(e.message().contains("/nonexistent"), "{e:?}");

    // Ids: unique, not empty, unknown ones not found.
    t.exec(exec_req("dup", json(&["sleep", "1000"])))
        .await
        .unwrap();
    let e = t.exec(exec_req("dup", json(&["true"]))).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let e = t.exec(exec_req("", json(&["true"]))).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = t
        .exec(exec_req("bad", b"{not json".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let tty_spec = process_json(&spec, &["true"], |p| {
        p.set_terminal(Some(true));
    });
    let e = t.exec(exec_req("tty", tty_spec)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "terminal disagrees: {e:?}");
    assert_eq!(
        start(&shim, "zzz").await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        exec_state(&shim, "zzz").await.unwrap_err().code(),
        Code::NotFound
    );
    let e = wait_exec(&shim, "zzz").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = kill_exec(&shim, "zzz", 9, false).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = delete_exec(&shim, "zzz").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = resize(&shim, "dup", 80, 24).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "no terminal: {e:?}");

    // Paused: no new exec, no Start; after Resume, Start works.
    t.pause(pb::PauseRequest {}).await.unwrap();
    let e = t.exec(exec_req("p", json(&["true"]))).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let e = start(&shim, "dup").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    t.resume(pb::ResumeRequest {}).await.unwrap();
    start(&shim, "dup").await.unwrap();
    let e = start(&shim, "dup").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "started twice: {e:?}");

    // A running exec cannot be deleted; `all` is for the init.
    let e = delete_exec(&shim, "dup").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = kill_exec(&shim, "dup", 9, true).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    kill_exec(&shim, "dup", 15, false).await.unwrap();
    assert_eq!(exec_wait(&shim, "dup").await.exit_status, 143);
    let e = kill_exec(&shim, "dup", 9, false).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "not running: {e:?}");

    // Stopped container: no exec.
    kill_exec(&shim, "", 9, false).await.unwrap();
    assert_eq!(wait(&shim).await.exit_status, 137);
    let e = t.exec(exec_req("late", json(&["true"]))).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    // Deleting the container forgets its execs.
    delete_exec(&shim, "").await.unwrap();
    assert_eq!(
        exec_state(&shim, "missing").await.unwrap_err().code(),
        Code::NotFound
    );
    shim.shutdown().await;
    common::assert_clean(&b);
}

#[tokio::test]
async fn exec_stdin_through_attach_and_close_io() {
    let Some((b, shim, spec)) = running_shim().await else {
        return;
    };
    let req = with_stdin(exec_req("cat", process_json(&spec, &["cat"], |_| {})));
    shim.task().exec(req).await.unwrap();
    assert!(exec_state(&shim, "cat").await.unwrap().stdin_open);
    let mut a = Attached::new(&shim, "cat", true).await;
    start(&shim, "cat").await.unwrap();
    a.send(b"hello\n").await;
    let at = a.read_until(0, "hello\n").await;
    a.send(b"again\n").await;
    a.read_until(at, "again\n").await;
    close_stdin(&shim, "cat").await.unwrap();
    assert_eq!(exec_wait(&shim, "cat").await.exit_status, 0);
    a.read_to_end().await;
    assert_eq!(a.text(STDOUT), "hello\nagain\n");
    assert!(!exec_state(&shim, "cat").await.unwrap().stdin_open);
    drop(a);
    shim.shutdown().await;
    common::assert_clean(&b);
}

#[tokio::test]
async fn exec_with_a_terminal() {
    let Some((b, shim, spec)) = running_shim().await else {
        return;
    };
    let tty = |args: &[&str]| {
        process_json(&spec, args, |p| {
            p.set_terminal(Some(true));
        })
    };

    // An interactive shell: a /dev/pts/N of the container, the initial size, then a
    // resize.
    let req = with_terminal(with_stdin(exec_req("sh", tty(&["sh"]))), 100, 30);
    shim.task().exec(req).await.unwrap();
    let mut a = Attached::new(&shim, "sh", true).await;
    start(&shim, "sh").await.unwrap();
    assert!(exec_state(&shim, "sh").await.unwrap().terminal);
    a.send(b"tty; stty size\n").await;
    let at = a.read_until(0, "30 100\r\n").await;
    let out = a.text(STDOUT);
    assert!(out.contains("\r\n/dev/pts/"), "{out:?}");
    resize(&shim, "sh", 120, 40).await.unwrap();
    a.send(b"stty size\n").await;
    let at = a.read_until(at, "40 120\r\n").await;
    a.send(b"exit 3\n").await;
    assert_eq!(exec_wait(&shim, "sh").await.exit_status, 3);
    a.read_to_end().await;
    assert!(a.text(STDERR).is_empty(), "a terminal has one stream");
    assert!(a.text(STDOUT)[at..].contains("exit 3"));

    drop(a);

    // A client leaving a terminal does not end it, even with stdin_once (as Docker's
    // detach keys); CloseIO is the terminal's EOF character: cat reads end of file.
    let mut req = with_terminal(with_stdin(exec_req("cat", tty(&["cat"]))), 80, 24);
    req.stdio.as_mut().unwrap().stdin_once = true;
    shim.task().exec(req).await.unwrap();
    let mut a = Attached::new(&shim, "cat", true).await;
    start(&shim, "cat").await.unwrap();
    a.send(b"line\n").await;
    // The terminal echoes, then cat repeats.
    a.read_until(0, "line\r\nline\r\n").await;
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let st = exec_state(&shim, "cat").await.unwrap();
    assert_eq!(st.status, pb::ProcessStatus::Running as i32);
    assert!(st.stdin_open);
    let mut a = Attached::new(&shim, "cat", true).await;
    a.send(b"more\n").await;
    a.read_until(0, "more\r\nmore\r\n").await;
    close_stdin(&shim, "cat").await.unwrap();
    assert_eq!(exec_wait(&shim, "cat").await.exit_status, 0);
    a.read_to_end().await;
    drop(a);
    shim.shutdown().await;
    common::assert_clean(&b);
}

#[tokio::test]
async fn init_with_a_terminal() {
    let Some((b, shim)) = setup().await else {
        return;
    };
    let mut spec = b.spec(&sh(
        "tty; stty size; test -c /dev/console && echo console; echo err >&2",
    ));
    let mut process = spec.process().clone().unwrap();
    process.set_terminal(Some(true));
    spec.set_process(Some(process));
    // /dev/console is made in /dev, which stays writable under a read-only root.
    let mut root = spec.root().clone().unwrap();
    root.set_readonly(Some(true));
    spec.set_root(Some(root));
    b.write(&spec);
    let mut req = create_req(&b, None);
    req.terminal = true;
    req.console_size = Some(types::ConsoleSize {
        width: 90,
        height: 25,
    });
    shim.task().create(req).await.unwrap();
    assert!(state(&shim).await.terminal);
    let mut a = Attached::new(&shim, "", false).await;
    start(&shim, "").await.unwrap();
    a.read_to_end().await;
    assert_eq!(wait(&shim).await.exit_status, 0);
    assert_eq!(
        a.text(STDOUT),
        "/dev/pts/0\r\n25 90\r\nconsole\r\nerr\r\n",
        "stderr goes to the terminal too"
    );
    assert!(a.text(STDERR).is_empty());
    // Logged as stdout, with the terminal's line ends.
    let records = log_records(&shim.dir().join("container.log"));
    let logged: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r["stream"].as_str().unwrap(), r["log"].as_str().unwrap()))
        .collect();
    assert_eq!(
        logged,
        [
            ("stdout", "/dev/pts/0\r\n"),
            ("stdout", "25 90\r\n"),
            ("stdout", "console\r\n"),
            ("stdout", "err\r\n")
        ]
    );
    drop(a);
    shim.shutdown().await;
    common::assert_clean(&b);
}

#[tokio::test]
async fn execs_die_with_the_init_and_their_waits_answer() {
    let Some((b, shim, spec)) = running_shim().await else {
        return;
    };
    let req = exec_req("bg", process_json(&spec, &["sleep", "1000"], |_| {}));
    shim.task().exec(req).await.unwrap();
    let pid = start(&shim, "bg").await.unwrap();
    let waiter = {
        let mut t = shim.task();
        tokio::spawn(async move {
            t.wait(pb::WaitRequest {
                exec_id: "bg".into(),
            })
            .await
        })
    };
    kill_exec(&shim, "", 9, false).await.unwrap();
    assert_eq!(wait(&shim).await.exit_status, 137);
    // The pid namespace's end SIGKILLs the exec.
    let exit = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("the exec's Wait answers")
        .unwrap()
        .unwrap()
        .into_inner();
    assert_eq!(exit.exit_status, 137);
    let st = exec_state(&shim, "bg").await.unwrap();
    assert_eq!(
        (st.status, st.pid),
        (pb::ProcessStatus::Stopped as i32, pid)
    );
    shim.shutdown().await;
    common::assert_clean(&b);
}

#[tokio::test]
async fn exec_is_confined_by_the_containers_seccomp_profile() {
    let Some((b, shim)) = setup().await else {
        return;
    };
    let mut spec = b.spec(&["sleep", "1000"]);
    let profile: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    }))
    .unwrap();
    spec.linux_mut()
        .as_mut()
        .unwrap()
        .set_seccomp(Some(profile));
    b.write(&spec);
    create_and_start(&shim, create_req(&b, None)).await;
    let json = process_json(&spec, &sh("mkdir /tmp/x; echo $?"), |_| {});
    let (out, err, status) = run_exec(&shim, exec_req("mkdir", json)).await;
    assert_eq!((out.as_str(), status), ("1\n", 0), "{err}");
    assert!(err.contains("Operation not permitted"), "{err}");
    // Without no_new_privs the filter goes in before the capabilities are dropped: the
    // same confinement.
    let json = process_json(&spec, &sh("mkdir /tmp/x; echo $?"), |p| {
        p.set_no_new_privileges(Some(false));
    });
    let (out, err, status) = run_exec(&shim, exec_req("mkdir2", json)).await;
    assert_eq!((out.as_str(), status), ("1\n", 0), "{err}");
    shim.shutdown().await;
    common::assert_clean(&b);
}

/// Whether a root thread without CAP_SYS_PTRACE in its effective set may read where
/// `/proc/<pid>/exe` points: the kernel allows it for a dumpable root process only.
fn exe_reachable(pid: u32) -> bool {
    std::thread::spawn(move || {
        caps::drop(
            None,
            caps::CapSet::Effective,
            caps::Capability::CAP_SYS_PTRACE,
        )
        .unwrap();
        std::fs::read_link(format!("/proc/{pid}/exe")).is_ok()
    })
    .join()
    .unwrap()
}

#[tokio::test]
async fn container_processes_are_not_dumpable_until_they_exec() {
    // A created init waits for Start still inside the shim's binary (an exec process
    // goes through the same start path): nothing of the container, root or not, may
    // reach that binary through /proc/<pid>/exe meanwhile.
    let Some((b, shim)) = setup().await else {
        return;
    };
    b.write(&b.spec(&["sleep", "1000"]));
    let pid = shim
        .task()
        .create(create_req(&b, None))
        .await
        .unwrap()
        .into_inner()
        .pid;
    assert!(!exe_reachable(pid), "dumpable before execve");
    start(&shim, "").await.unwrap();
    assert!(exe_reachable(pid), "execve makes it dumpable again");
    shim.shutdown().await;
    common::assert_clean(&b);
}
