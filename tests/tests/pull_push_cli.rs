//! berthctl's registry commands end to end, as a person types them: push, pull, login and
//! logout, through the engine and the snapshotter to a real registry (Debian's
//! `docker-registry`, started by the fixture on 127.0.0.1). berthctl runs with `BERTH_CONFIG`
//! and `DOCKER_CONFIG` naming temporary directories, so the tests never read or write the
//! credentials of the user running them.

use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_proto::engine::v1::images_client::ImagesClient;
use berth_proto::engine::v1::ImagesInspectRequest;
use berth_proto::types::v1::Platform;
use berth_tests::image::{self, File, TestImage};
use berth_tests::registry::{need_registry, CuttingProxy, ProxyMode, Registry};
use berth_tests::{need_root, Engine};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

const USER: &str = "berth";
const PASSWORD: &str = "s3cret-pw";

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// berthctl against one engine, with its own empty credential directories.
struct Ctl<'a> {
    engine: &'a Engine,
    /// `BERTH_CONFIG`: where `login` stores credentials.
    config: tempfile::TempDir,
    /// `DOCKER_CONFIG`: Docker's directory, which berthctl also reads.
    docker: tempfile::TempDir,
    /// Scratch space for archives.
    work: tempfile::TempDir,
}

impl<'a> Ctl<'a> {
    fn new(engine: &'a Engine) -> Self {
        Ctl {
            engine,
            config: tempfile::tempdir().unwrap(),
            docker: tempfile::tempdir().unwrap(),
            work: tempfile::tempdir().unwrap(),
        }
    }

    fn run_with(&self, args: &[&str], input: &[u8]) -> Output {
        self.engine.ctl_env(
            args,
            &[
                ("BERTH_CONFIG", self.config.path()),
                ("DOCKER_CONFIG", self.docker.path()),
            ],
            input,
        )
    }

    /// A berthctl command with this context's environment, for a test to spawn.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.engine.ctl_command(args);
        cmd.env("BERTH_CONFIG", self.config.path())
            .env("DOCKER_CONFIG", self.docker.path());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, b"")
    }

    /// Runs berthctl, asserts it succeeded, returns its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "berthctl {args:?} failed: {}\nengine log:\n{}",
            stderr(&out),
            self.engine.log_text()
        );
        stdout(&out)
    }

    /// Runs berthctl, asserts it failed with status 1 and one line on standard error, which
    /// it returns.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_one_line_failure(args, &out);
        stderr(&out)
    }

    /// The credentials file `login` writes.
    fn config_file(&self) -> PathBuf {
        self.config.path().join("config.json")
    }

    /// Loads an image named `app:1` and returns its blobs.
    fn load_app(&self, marker: &str) -> image::Built {
        let img = TestImage {
            names: vec!["docker.io/library/app:1".into()],
            layers: vec![
                image::busybox_rootfs(&[]),
                image::layer_tar(&[File::new("etc/marker", marker)]),
            ],
            config: json!({"Cmd": ["/bin/busybox", "sh"]}),
        };
        let (tar, mut built) = image::oci_archive(&[img]);
        let path = self.work.path().join("app.tar");
        std::fs::write(&path, tar).unwrap();
        self.ok(&["load", "-q", "-i", path.to_str().unwrap()]);
        built.remove(0)
    }

    fn image_id(&self, name: &str) -> String {
        let out = self.ok(&["image", "inspect", name]);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        v[0]["Id"].as_str().unwrap().to_string()
    }

    fn inspect(&self, name: &str) -> Value {
        let out = self.ok(&["image", "inspect", name]);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        v[0].clone()
    }

    fn images(&self) -> Vec<String> {
        self.ok(&["images", "-q", "--no-trunc"])
            .lines()
            .map(String::from)
            .collect()
    }
}

fn assert_one_line_failure(args: &[&str], out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "berthctl {args:?}: stdout {} stderr {}",
        stdout(out),
        stderr(out)
    );
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "berthctl {args:?}: {err}");
}

/// The twelve hex characters Docker names a layer by.
fn short(digest: &str) -> &str {
    &digest[7..19]
}

/// Pushes `name` and checks Docker's output; returns the pushed manifest digest.
fn push(ctl: &Ctl<'_>, name: &str, built: &image::Built) -> String {
    let out = ctl.ok(&["push", name]);
    let (repo, tag) = name.rsplit_once(':').unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!("The push refers to repository [{repo}]"),
        "{out}"
    );
    for layer in &built.layers {
        let l = short(layer);
        assert!(
            lines.contains(&format!("{l}: Pushed").as_str())
                || lines.contains(&format!("{l}: Layer already exists").as_str()),
            "{out}"
        );
    }
    let last = *lines.last().unwrap();
    let expected = format!(
        "{tag}: digest: {} size: {}",
        built.manifest, built.manifest_size
    );
    assert_eq!(last, expected, "{out}");
    built.manifest.clone()
}

#[tokio::test]
async fn a_pushed_image_pulls_back_with_the_same_id() {
    if !need_root() || !need_registry() {
        return;
    }
    let registry = Registry::start().await;
    let engine = Engine::start(&[]).await;
    let ctl = Ctl::new(&engine);
    let built = ctl.load_app("round trip");
    let host = registry.host();
    let name = format!("{host}/team/app:1");

    ctl.ok(&["tag", "app:1", &name]);
    let digest = push(&ctl, &name, &built);

    // A second push finds every layer there.
    let out = ctl.ok(&["push", &name]);
    for layer in &built.layers {
        assert!(
            out.contains(&format!("{}: Layer already exists", short(layer))),
            "{out}"
        );
    }
    assert_eq!(ctl.ok(&["push", "-q", &name]), format!("{name}\n"));

    ctl.ok(&["rmi", "app:1", &name]);
    assert!(ctl.images().is_empty(), "{:?}", ctl.images());

    // Not a terminal: plain lines, one per change of a layer's status.
    let out = ctl.ok(&["pull", &name]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1: Pulling from team/app", "{out}");
    for layer in &built.layers {
        let done = format!("{}: Pull complete", short(layer));
        assert!(lines.contains(&done.as_str()), "{out}");
    }
    assert!(
        lines
            .iter()
            .all(|l| !l.contains('\r') && !l.contains('\x1b')),
        "{out:?}"
    );
    let n = lines.len();
    assert_eq!(lines[n - 3], format!("Digest: {digest}"), "{out}");
    assert_eq!(
        lines[n - 2],
        format!("Status: Downloaded newer image for {name}"),
        "{out}"
    );
    assert_eq!(lines[n - 1], name, "{out}");
    assert_eq!(ctl.image_id(&name), built.config);

    // Again: nothing new.
    let out = ctl.ok(&["pull", &name]);
    assert!(
        out.contains(&format!("Status: Image is up to date for {name}")),
        "{out}"
    );
    assert_eq!(ctl.ok(&["pull", "-q", &name]), format!("{name}\n"));

    // By digest.
    let by_digest = format!("{host}/team/app@{digest}");
    let out = ctl.ok(&["pull", &by_digest]);
    assert_eq!(out.lines().last(), Some(by_digest.as_str()), "{out}");

    // The engine published what happened.
    let events = ctl.ok(&[
        "system",
        "events",
        "--since",
        "0",
        "--until",
        "1s",
        "--filter",
        "type=image",
        "--format",
        "json",
    ]);
    let events: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    // `run` of an image that is not here pulls it first, as Docker: the progress on
    // standard error, the container's output alone on standard output.
    ctl.ok(&["rmi", &name]);
    let out = ctl.run(&["run", "--rm", &name, "/bin/busybox", "cat", "/etc/marker"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "round trip");
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "Unable to find image '{name}' locally\n1: Pulling from team/app\n"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("Status: Downloaded newer image for {name}")),
        "{err}"
    );
    // Present now: no pull, nothing on standard error.
    let out = ctl.run(&["run", "--rm", &name, "/bin/busybox", "true"]);
    assert_eq!(stderr(&out), "");
    let of =
        |action: &str| -> Vec<&Value> { events.iter().filter(|e| e["action"] == action).collect() };
    assert_eq!(of("push").len(), 3, "{events:?}");
    assert_eq!(of("push")[0]["id"], built.config.as_str(), "{events:?}");
    assert_eq!(
        of("push")[0]["attributes"]["name"],
        name.as_str(),
        "{events:?}"
    );
    assert_eq!(of("pull").len(), 4, "{events:?}");
    assert_eq!(of("pull")[0]["id"], built.config.as_str(), "{events:?}");
}

#[tokio::test]
async fn unknown_images_fail_in_one_line() {
    if !need_root() || !need_registry() {
        return;
    }
    let registry = Registry::start().await;
    let engine = Engine::start(&[]).await;
    let ctl = Ctl::new(&engine);
    let host = registry.host();

    let name = format!("{host}/nosuch:1");
    let out = ctl.run(&["pull", &name]);
    assert_one_line_failure(&["pull", &name], &out);
    assert!(
        stderr(&out).starts_with(&format!("berthctl: pull {name}: ")),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));

    // A known repository, an unknown tag.
    let built = ctl.load_app("tags");
    let app = format!("{host}/app:1");
    ctl.ok(&["tag", "app:1", &app]);
    push(&ctl, &app, &built);
    let missing = format!("{host}/app:nosuch");
    let err = ctl.fails(&["pull", &missing]);
    assert!(
        err.starts_with(&format!("berthctl: pull {missing}: ")),
        "{err}"
    );
    let err = ctl.fails(&["pull", "-q", &missing]);
    assert!(err.contains(&missing), "{err}");

    // Pushing what is not here.
    let err = ctl.fails(&["push", &format!("{host}/app:2")]);
    assert!(
        err.contains("An image does not exist locally with the tag"),
        "{err}"
    );
    let err = ctl.fails(&["pull", "Not A Reference"]);
    assert!(err.starts_with("berthctl: pull Not A Reference: "), "{err}");
    let err = ctl.fails(&["pull", "--platform", "linux", &app]);
    assert!(err.contains("os/arch"), "{err}");
}

#[tokio::test]
async fn login_checks_stores_and_logout_forgets() {
    if !need_root() || !need_registry() {
        return;
    }
    let registry = Registry::start_basic(USER, PASSWORD).await;
    let engine = Engine::start(&[]).await;
    let ctl = Ctl::new(&engine);
    let host = registry.host();
    let name = format!("{host}/private:1");
    let built = ctl.load_app("private");
    ctl.ok(&["tag", "app:1", &name]);

    // Anonymous: refused.
    let err = ctl.fails(&["push", &name]);
    assert!(
        err.starts_with(&format!("berthctl: push {name}: ")),
        "{err}"
    );

    // A wrong password: one clear line, nothing stored.
    let args = ["login", "-u", USER, "--password-stdin", host.as_str()];
    let out = ctl.run_with(&args, b"wrong\n");
    assert_one_line_failure(&args, &out);
    assert!(
        stderr(&out).starts_with(&format!("berthctl: login {host}: ")),
        "{}",
        stderr(&out)
    );
    assert!(
        !ctl.config_file().exists(),
        "a failed login stored something"
    );

    // No password and no terminal: no prompt, a clear error.
    let err = ctl.fails(&["login", "-u", USER, &host]);
    assert!(err.contains("non TTY"), "{err}");
    let err = ctl.fails(&["login", "--password-stdin", &host]);
    assert!(err.contains("--username"), "{err}");

    // The right one, from STDIN (trailing newline dropped, as Docker does).
    let pw = format!("{PASSWORD}\n");
    let out = ctl.run_with(&args, pw.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Login Succeeded\n");
    let file = ctl.config_file();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", file.display());
    let config: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(config["auths"].get(host.as_str()).is_some(), "{config}");
    assert!(
        !ctl.docker.path().join("config.json").exists(),
        "login wrote Docker's config"
    );

    // Push and pull now carry the credentials.
    let digest = push(&ctl, &name, &built);
    ctl.ok(&["rmi", "app:1", &name]);
    let out = ctl.ok(&["pull", &name]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert_eq!(ctl.image_id(&name), built.config);

    // -p works too, with Docker's warning.
    let out = ctl.run(&["login", "-u", USER, "-p", PASSWORD, &host]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("WARNING! Using --password via the CLI is insecure. Use --password-stdin."),
        "{}",
        stderr(&out)
    );

    // Logout forgets them: the registry refuses again.
    assert_eq!(
        ctl.ok(&["logout", &host]),
        format!("Removing login credentials for {host}\n")
    );
    ctl.ok(&["rmi", &name]);
    let err = ctl.fails(&["pull", &name]);
    assert!(
        err.starts_with(&format!("berthctl: pull {name}: ")),
        "{err}"
    );
    assert_eq!(
        ctl.ok(&["logout", &host]),
        format!("Not logged in to {host}\n")
    );
}

#[tokio::test]
async fn token_auth_logs_in_and_pulls() {
    if !need_root() || !need_registry() {
        return;
    }
    let registry = Registry::start_token(USER, PASSWORD).await;
    let engine = Engine::start(&[]).await;
    let ctl = Ctl::new(&engine);
    let host = registry.host();
    let name = format!("{host}/team/tok:1");
    let built = ctl.load_app("token");
    ctl.ok(&["tag", "app:1", &name]);

    let args = ["login", "-u", USER, "--password-stdin", host.as_str()];
    let out = ctl.run_with(&args, b"wrong");
    assert_one_line_failure(&args, &out);
    assert!(!ctl.config_file().exists());
    let out = ctl.run_with(&args, PASSWORD.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Login Succeeded\n");

    push(&ctl, &name, &built);
    ctl.ok(&["rmi", "app:1", &name]);
    ctl.ok(&["pull", "-q", &name]);
    assert_eq!(ctl.image_id(&name), built.config);
}

/// One platform's image of a multi-platform index: (config, manifest) blobs and its layer.
struct PlatformImage {
    arch: &'static str,
    blobs: Vec<(String, Vec<u8>)>,
    config: String,
    manifest: String,
    manifest_size: usize,
}

fn platform_image(arch: &'static str) -> PlatformImage {
    let layer = image::layer_tar(&[File::new("etc/arch", arch)]);
    let diff_id = image::digest(&layer);
    let blob = image::gzip(&layer);
    let config = serde_json::to_vec(&json!({
        "created": "2026-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": format!("layer for {arch}")}],
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": image::digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": image::digest(&blob), "size": blob.len()}],
    }))
    .unwrap();
    PlatformImage {
        arch,
        config: image::digest(&config),
        manifest: image::digest(&manifest),
        manifest_size: manifest.len(),
        blobs: vec![
            (image::digest(&blob), blob),
            (image::digest(&config), config),
            (image::digest(&manifest), manifest),
        ],
    }
}

/// Writes an OCI image layout at `dir` whose tag `multi` is an index of `images`.
fn index_layout(dir: &Path, images: &[PlatformImage]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let mut manifests = Vec::new();
    for img in images {
        for (d, data) in &img.blobs {
            std::fs::write(blobs.join(&d[7..]), data).unwrap();
        }
        manifests.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": img.manifest, "size": img.manifest_size,
            "platform": {"os": "linux", "architecture": img.arch},
        }));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap();
    let index_digest = image::digest(&index);
    std::fs::write(blobs.join(&index_digest[7..]), &index).unwrap();
    let top = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": index_digest, "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }],
    });
    std::fs::write(dir.join("index.json"), top.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

#[tokio::test]
async fn platform_picks_a_manifest_of_an_index() {
    if !need_root() || !need_registry() {
        return;
    }
    let registry = Registry::start().await;
    let engine = Engine::start(&[]).await;
    let ctl = Ctl::new(&engine);
    let host = registry.host();

    let other = if image::host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let images = [platform_image(image::host_arch()), platform_image(other)];
    let layout = ctl.work.path().join("layout");
    index_layout(&layout, &images);
    let name = format!("{host}/multi:1");
    let copy = std::process::Command::new("skopeo")
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:multi", layout.display()))
        .arg(format!("docker://{name}"))
        .output()
        .expect("run skopeo (apt-get install skopeo)");
    assert!(copy.status.success(), "skopeo: {}", stderr(&copy));

    // The host's platform by default.
    ctl.ok(&["pull", "-q", &name]);
    let info = ctl.inspect(&name);
    assert_eq!(info["Id"], images[0].config.as_str(), "{info}");
    assert_eq!(info["Architecture"], image::host_arch(), "{info}");

    // Another one when asked.
    ctl.ok(&["rmi", &name]);
    let platform = format!("linux/{other}");
    let out = ctl.ok(&["pull", "--platform", &platform, &name]);
    assert_eq!(out.lines().last(), Some(name.as_str()), "{out}");
    let layer = &images[1].blobs[0].0;
    assert!(
        out.contains(&format!("{}: Pull complete", short(layer))),
        "{out}"
    );
    let mut images_api = ImagesClient::new(engine.channel().await);
    let info = images_api
        .inspect(ImagesInspectRequest {
            reference: name.clone(),
            platform: Some(Platform {
                os: "linux".into(),
                architecture: other.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap();
    assert_eq!(info.id, images[1].config);
    assert_eq!(info.architecture, other);
}

/// `len` bytes that gzip cannot shrink.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Waits for `child` to exit, at most `timeout`; kills it and fails the test after that.
fn wait_output(mut child: std::process::Child, timeout: Duration, what: &str) -> Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} still running after {timeout:?}: {}{}",
                stdout(&out),
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn interrupting_a_pull_cancels_it() {
    if !need_root() || !need_registry() {
        return;
    }
    let registry = Registry::start().await;
    let engine = Engine::start(&[]).await;
    let ctl = Ctl::new(&engine);
    let img = TestImage {
        names: vec!["docker.io/library/big:1".into()],
        layers: vec![image::layer_tar(&[File::new("data", noise(8 << 20))])],
        config: json!({}),
    };
    let (tar, built) = image::oci_archive(&[img]);
    let path = ctl.work.path().join("big.tar");
    std::fs::write(&path, tar).unwrap();
    ctl.ok(&["load", "-q", "-i", path.to_str().unwrap()]);
    let direct = format!("{}/big:1", registry.host());
    ctl.ok(&["tag", "big:1", &direct]);
    ctl.ok(&["push", "-q", &direct]);
    ctl.ok(&["rmi", "big:1", &direct]);

    // Through a proxy that stops sending 1 MiB into the layer: the pull hangs there.
    let proxy = CuttingProxy::start(&registry.host(), ProxyMode::Stall(1 << 20));
    let name = format!("{}/big:1", proxy.host());
    let mut child = ctl
        .command(&["pull", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let layer = format!("{}: Downloading", short(&built[0].layers[0]));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the pull never started downloading the layer");
        if line == layer {
            break;
        }
    }
    // Ctrl-C.
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());

    // Cancelled, the pull is gone for good: once the registry answers again, nothing
    // finishes it behind the user's back.
    proxy.set_mode(ProxyMode::Pass);
    std::thread::sleep(Duration::from_secs(3));
    assert!(ctl.images().is_empty(), "{:?}", ctl.images());

    // And it holds nothing up: the next pull goes through well before the stall deadline
    // (30 s) would have ended the first.
    let started = Instant::now();
    let child = ctl
        .command(&["pull", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, Duration::from_secs(25), "the second pull");
    assert!(
        out.status.success(),
        "{}\nengine log:\n{}",
        stderr(&out),
        engine.log_text()
    );
    assert!(
        stdout(&out).contains(&format!("Status: Downloaded newer image for {name}")),
        "{}",
        stdout(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(ctl.image_id(&name), built[0].config);
}
