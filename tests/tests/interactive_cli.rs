//! Processes joined to a terminal or to each other, end to end through berthctl, as root:
//! `exec` (attached, detached, -i, -t, -e/-w/-u, failures), `run -i` with piped stdin,
//! `run -t` and `exec -t` on a real pseudo-terminal (raw mode, size, exit codes), the
//! detach keys, `attach`, `start -a -i`, `pause`/`unpause`, `top`, `stats`, `restart`,
//! and exec into containers that survived an engine SIGKILL. After every test nothing of
//! its containers is left on the host (`berth_tests::leftovers`).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_tests::image::{self, File};
use berth_tests::world::{stderr, stdout, World};
use berth_tests::{need_root, wait_until};
use serde_json::Value;

const IMG: &str = "ia-bb:latest";

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";

/// A new engine with the test image (no entrypoint: the applets are on PATH).
async fn world() -> World {
    let rootfs = image::busybox_applets_rootfs(&[File::new("etc/passwd", PASSWD)]);
    World::new(&rootfs, IMG, &[r#"CMD ["sh"]"#]).await
}

/// berthctl on a new pseudo-terminal, as a person at a terminal runs it.
fn on_pty(w: &World, args: &[&str]) -> Pty {
    Pty::spawn(w.engine().ctl_command(args))
}

/// A process on the slave side of a new pseudo-terminal (its controlling terminal, as in
/// an interactive shell); the test holds the master.
struct Pty {
    child: Child,
    master: std::fs::File,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    fn spawn(mut cmd: std::process::Command) -> Pty {
        let pty = nix::pty::openpty(
            Some(&nix::pty::Winsize {
                ws_row: 33,
                ws_col: 111,
                ws_xpixel: 0,
                ws_ypixel: 0,
            }),
            None,
        )
        .expect("openpty");
        let slave: OwnedFd = pty.slave;
        let slave_fd = slave.as_raw_fd();
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::setsid()?;
                if nix::libc::ioctl(slave_fd, nix::libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on the pty");
        drop(slave);
        let master = std::fs::File::from(pty.master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the last slave holder is gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            child,
            master,
            output,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "{needle:?} never appeared on the terminal; it shows:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_in(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    /// Waits for berthctl to exit; its exit code.
    fn exit_code(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Let the reader drain what is left.
                std::thread::sleep(Duration::from_millis(100));
                return s.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "berthctl still running; the terminal shows:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_runs_in_the_container_with_its_options() {
    if !need_root() {
        return;
    }
    let w = world().await;
    let id = w.run_detached(&["--name", "ex1", "--hostname", "inner", IMG, "sleep", "1000"]);
    assert_eq!(w.ok(&["exec", "ex1", "echo", "hi"]), "hi\n");
    assert_eq!(w.ok(&["exec", "ex1", "hostname"]), "inner\n");
    // Same pid namespace: its pid 1 is the container's sleep, and the exec is not pid 1.
    assert_eq!(
        w.ok(&["exec", "ex1", "cat", "/proc/1/cmdline"]),
        "sleep\u{0}1000\u{0}"
    );
    assert_ne!(w.ok(&["exec", "ex1", "sh", "-c", "echo $$"]).trim(), "1");
    // Same cgroup as the init.
    assert_eq!(
        w.ok(&["exec", "ex1", "cat", "/proc/self/cgroup"]),
        w.ok(&["exec", "ex1", "cat", "/proc/1/cgroup"])
    );
    // -e, -w, -u.
    assert_eq!(
        w.ok(&["exec", "-e", "FOO=bar", "ex1", "sh", "-c", "echo $FOO"]),
        "bar\n"
    );
    assert_eq!(w.ok(&["exec", "-w", "/etc", "ex1", "pwd"]), "/etc\n");
    assert_eq!(
        w.ok(&["exec", "-u", "nobody", "ex1", "id", "-u"]),
        "65534\n"
    );
    assert_eq!(w.ok(&["exec", "-u", "7:8", "ex1", "id", "-g"]), "8\n");
    // Same hardening as the init: capability sets and no_new_privs.
    let caps = |who: &str| {
        w.ok(&[
            "exec",
            "ex1",
            "grep",
            "-E",
            "^(CapEff|CapBnd|NoNewPrivs)",
            who,
        ])
    };
    assert_eq!(caps("/proc/self/status"), caps("/proc/1/status"));
    // Only stdio is open.
    let fds = w.ok(&["exec", "ex1", "ls", "/proc/self/fd"]);
    let fds: Vec<&str> = fds.split_whitespace().collect();
    assert!(fds.len() <= 4 && fds[..3] == ["0", "1", "2"], "{fds:?}");
    // Exit codes propagate; stderr stays stderr.
    let out = w.ctl(&["exec", "ex1", "sh", "-c", "echo oops >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stderr(&out), "oops\n");
    assert_eq!(stdout(&out), "");
    // A missing command: 126, as Docker, with the reason.
    let out = w.ctl(&["exec", "ex1", "no-such-command"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    // So is a user the image does not know.
    let out = w.ctl(&["exec", "-u", "nosuchuser", "ex1", "id"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unable to find user nosuchuser"),
        "{}",
        stderr(&out)
    );
    // Detached: runs on; the next exec sees its effect.
    w.ok(&["exec", "-d", "ex1", "sh", "-c", "echo done > /tmp/d"]);
    wait_until("the detached exec", Duration::from_secs(10), || {
        w.ctl(&["exec", "ex1", "cat", "/tmp/d"]).status.success()
    });
    // Piped stdin with -i.
    let out = w.ctl_in(&["exec", "-i", "ex1", "sh", "-c", "tr a-z A-Z"], b"piped\n");
    assert_eq!(stdout(&out), "PIPED\n", "{}", stderr(&out));
    // The events say so.
    let events = w.ok(&[
        "system",
        "events",
        "--since",
        "0",
        "--until",
        "0s",
        "--filter",
        "type=container",
        "--format",
        "json",
    ]);
    assert!(events.contains("exec_create"), "{events}");
    assert!(events.contains("exec_die"), "{events}");
    // Not into a stopped container.
    w.ok(&["stop", "-t", "1", &id]);
    let out = w.ctl(&["exec", "ex1", "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is not running"), "{}", stderr(&out));
    let out = w.ctl(&["exec", "nope-no-such", "true"]);
    assert!(
        stderr(&out).contains("No such container"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn run_interactive_takes_piped_stdin() {
    if !need_root() {
        return;
    }
    let w = world().await;
    let out = w.ctl_in(&["run", "--rm", "-i", IMG, "cat"], b"one\ntwo\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "one\ntwo\n");
    let out = w.ctl_in(
        &["run", "--rm", "-i", IMG, "sh", "-c", "read x; exit $x"],
        b"7\n",
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    // Without a log to follow, output still comes (through Attach), streams kept apart.
    let out = w.ctl(&[
        "run",
        "--rm",
        "--log-driver",
        "none",
        IMG,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(
        (stdout(&out).as_str(), stderr(&out).as_str()),
        ("out\n", "err\n")
    );
    // A TTY asked for on a pipe is refused, as Docker refuses it.
    let out = w.ctl_in(&["run", "--rm", "-it", IMG, "true"], b"");
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("not a TTY"), "{}", stderr(&out));
    // start -a -i of a created container.
    w.create(&["-i", "--name", "later", IMG, "cat"]);
    let out = w.ctl_in(&["start", "-a", "-i", "later"], b"via start\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "via start\n");
    w.ok(&["rm", "later"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_with_a_terminal() {
    if !need_root() {
        return;
    }
    let w = world().await;
    // A terminal of the caller's size; output through it (\r\n).
    let mut p = on_pty(
        &w,
        &[
            "run",
            "--rm",
            "-t",
            IMG,
            "sh",
            "-c",
            "test -t 0 && test -t 1 && echo IS-A-TTY; stty size; exit 5",
        ],
    );
    assert_eq!(p.exit_code(), 5, "{}", p.text());
    let text = p.text();
    // The container's terminal turns \n into \r\n; this one, not in raw mode without -i,
    // adds its own \r (as with Docker).
    assert!(text.contains("IS-A-TTY\r"), "{text:?}");
    assert!(text.contains("33 111"), "{text:?}");
    // Interactive: typed input reaches the shell, its output comes back; exit ends it.
    let mut p = on_pty(&w, &["run", "--rm", "-it", "--name", "shell", IMG, "sh"]);
    p.wait_for("# ");
    p.type_in(b"echo $((6*7))\r");
    p.wait_for("42");
    p.type_in(b"exit 3\r");
    assert_eq!(p.exit_code(), 3, "{}", p.text());
    // The terminal was given back as it was (cooked mode: echo on).
    let termios = nix::sys::termios::tcgetattr(&p.master).unwrap();
    assert!(termios
        .local_flags
        .contains(nix::sys::termios::LocalFlags::ECHO));
}

#[tokio::test(flavor = "multi_thread")]
async fn detach_keys_leave_the_container_running_and_attach_rejoins() {
    if !need_root() {
        return;
    }
    let w = world().await;
    let mut p = on_pty(&w, &["run", "-it", "--name", "det", IMG, "sh"]);
    p.wait_for("# ");
    p.type_in(b"echo before\r");
    p.wait_for("before");
    p.type_in(b"\x10\x11");
    assert_eq!(p.exit_code(), 0, "{}", p.text());
    assert!(p.text().contains("read escape sequence"), "{}", p.text());
    assert_eq!(w.status("det"), "running");
    // exec -t into it, with its own terminal.
    let mut e = on_pty(&w, &["exec", "-it", "det", "sh", "-c", "tty; stty size"]);
    assert_eq!(e.exit_code(), 0, "{}", e.text());
    assert!(e.text().contains("/dev/pts/"), "{}", e.text());
    assert!(e.text().contains("33 111"), "{}", e.text());
    // attach again, with custom keys this time.
    let mut a = on_pty(&w, &["attach", "--detach-keys", "ctrl-x,x", "det"]);
    std::thread::sleep(Duration::from_millis(300));
    a.type_in(b"echo again\r");
    a.wait_for("again");
    a.type_in(b"\x18x");
    assert_eq!(a.exit_code(), 0, "{}", a.text());
    assert_eq!(w.status("det"), "running");
    // attach, then the shell exits: attach ends with its code.
    let mut a = on_pty(&w, &["attach", "det"]);
    std::thread::sleep(Duration::from_millis(300));
    a.type_in(b"exit 4\r");
    assert_eq!(a.exit_code(), 4, "{}", a.text());
    wait_until("the container to stop", Duration::from_secs(10), || {
        w.status("det") == "exited"
    });
    let out = w.ctl(&["attach", "det"]);
    assert!(stderr(&out).contains("start it first"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_top_stats_restart() {
    if !need_root() {
        return;
    }
    let w = world().await;
    let id = w.run_detached(&[
        "--name",
        "pt",
        IMG,
        "sh",
        "-c",
        "echo started; exec sleep 1000",
    ]);
    // top: the container's processes only, ps's columns.
    let top = w.ok(&["top", "pt"]);
    assert!(top.starts_with("UID"), "{top}");
    assert!(top.contains("sleep 1000"), "{top}");
    assert_eq!(top.lines().count(), 2, "{top}");
    let top = w.ok(&["top", "pt", "-o", "pid,comm"]);
    assert!(top.contains("sleep"), "{top}");
    // stats, once.
    let stats = w.ok(&["stats", "--no-stream", "pt"]);
    assert!(stats.contains("pt") && stats.contains('%'), "{stats}");
    assert!(
        stats.contains("NET I/O") && stats.contains("BLOCK I/O"),
        "{stats}"
    );
    let json = w.ok(&["stats", "--no-stream", "--format", "json", "pt"]);
    let v: Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["PIDs"], "1");
    assert!(v["NetIO"].is_string() && v["BlockIO"].is_string(), "{v}");
    // pause: frozen, listed as paused, exec refused; unpause.
    w.ok(&["pause", "pt"]);
    assert_eq!(w.status("pt"), "paused");
    assert_eq!(w.inspect("pt")["State"]["Paused"], true);
    let ps = w.ok(&["ps", "--filter", "status=paused", "-q"]);
    assert_eq!(ps.trim(), &id[..12]);
    let out = w.ctl(&["exec", "pt", "true"]);
    assert!(stderr(&out).contains("paused"), "{}", stderr(&out));
    let out = w.ctl(&["pause", "pt"]);
    assert!(stderr(&out).contains("already paused"), "{}", stderr(&out));
    w.ok(&["unpause", "pt"]);
    assert_eq!(w.status("pt"), "running");
    let out = w.ctl(&["unpause", "pt"]);
    assert!(stderr(&out).contains("not paused"), "{}", stderr(&out));
    // restart: a new run of the same container.
    let started = w.inspect("pt")["State"]["StartedAt"].clone();
    w.ok(&["restart", "-t", "1", "pt"]);
    assert_eq!(w.status("pt"), "running");
    assert_ne!(w.inspect("pt")["State"]["StartedAt"], started);
    wait_until("the second run's output", Duration::from_secs(10), || {
        w.ok(&["logs", "pt"]).matches("started").count() == 2
    });
    // A paused container still stops.
    w.ok(&["pause", "pt"]);
    w.ok(&["stop", "-t", "1", "pt"]);
    assert_eq!(w.status("pt"), "exited");
    // rename: the new name finds it, the old one is free; names stay unique and valid.
    w.ok(&["rename", "pt", "pt2"]);
    assert_eq!(w.status("pt2"), "exited");
    assert!(!w.ctl(&["inspect", "pt"]).status.success());
    w.create(&["--name", "other", IMG, "true"]);
    let out = w.ctl(&["rename", "pt2", "other"]);
    assert!(!out.status.success(), "a name in use was taken");
    let out = w.ctl(&["rename", "pt2", "bad name"]);
    assert!(
        stderr(&out).contains("Invalid container name"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_and_logs_follow_after_an_engine_sigkill() {
    if !need_root() {
        return;
    }
    let mut w = world().await;
    w.run_detached(&[
        "--name",
        "surv",
        IMG,
        "sh",
        "-c",
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
    ]);
    w.kill_engine().await;
    w.restart_engine().await;
    assert_eq!(w.status("surv"), "running");
    assert_eq!(
        w.ok(&["exec", "surv", "echo", "still here"]),
        "still here\n"
    );
    // logs -f follows new output of the surviving container.
    let mut follow = w
        .engine()
        .ctl_command(&["logs", "-f", "--tail", "0", "surv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = follow.stdout.take().unwrap();
    let mut buf = [0u8; 64];
    let n = out.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("tick"));
    w.ok(&["stop", "-t", "1", "surv"]);
    let status = follow.wait().unwrap();
    assert!(status.success());
}
