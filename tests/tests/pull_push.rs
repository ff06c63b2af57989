//! Pull and push through the snapshotter's `berth.images.v1` API against a real registry
//! (Debian's `docker-registry` on 127.0.0.1): round trips between two engines, interop
//! with `skopeo` both ways, shared downloads, a tampered blob, unknown images, login, and
//! a client that goes away mid-pull.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use berth_proto::content::v1::content_client::ContentClient;
use berth_proto::content::v1::InfoRequest;
use berth_proto::images::v1::images_client::ImagesClient;
use berth_proto::images::v1::{
    pull_response, push_response, GetRequest, LoadRequest, LoginRequest, PullRequest, PullResult,
    PushRequest, PushResult,
};
use berth_proto::types::v1::{RegistryAuth, TransferProgress, TransferStatus};
use berth_rpc::Address;
use berth_tests::image::{self, Built, File, TestImage};
use berth_tests::registry::{need_registry, CuttingProxy, ProxyMode, Registry, PASSWORD, USER};
use berth_tests::{need_root, Engine};
use serde_json::json;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// One engine with clients of its snapshotter.
struct Side {
    engine: Engine,
    images: ImagesClient<Channel>,
    content: ContentClient<Channel>,
}

impl Side {
    async fn start() -> Side {
        Side::start_with(&[]).await
    }

    async fn start_with(args: &[&str]) -> Side {
        let engine = Engine::start(args).await;
        let addr = Address::Unix(engine.state.path().join("snapshotter.sock"));
        let channel = berth_rpc::connect::connect(&addr, None).await.unwrap();
        Side {
            engine,
            images: ImagesClient::new(channel.clone()),
            content: ContentClient::new(channel),
        }
    }

    async fn load(&mut self, archive: Vec<u8>) {
        let parts: Vec<LoadRequest> = archive
            .chunks(256 << 10)
            .map(|c| LoadRequest { data: c.to_vec() })
            .collect();
        self.images
            .load(tokio_stream::iter(parts))
            .await
            .unwrap_or_else(|s| panic!("load: {s}\n{}", self.engine.log_text()));
    }

    async fn pull(
        &mut self,
        reference: &str,
    ) -> Result<(PullResult, Vec<TransferProgress>), Status> {
        pull_on(self.images.clone(), reference).await
    }

    async fn push(&mut self, name: &str) -> Result<(PushResult, Vec<TransferProgress>), Status> {
        let mut stream = self
            .images
            .push(PushRequest {
                name: name.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let mut progress = Vec::new();
        while let Some(m) = stream.message().await? {
            match m.msg {
                Some(push_response::Msg::Progress(p)) => progress.push(p),
                Some(push_response::Msg::Result(r)) => return Ok((r, progress)),
                None => {}
            }
        }
        panic!("push of {name} ended without a result: {progress:?}");
    }

    async fn has_blob(&mut self, digest: &str) -> bool {
        match self
            .content
            .info(InfoRequest {
                digest: digest.into(),
            })
            .await
        {
            Ok(_) => true,
            Err(s) if s.code() == Code::NotFound => false,
            Err(s) => panic!("info {digest}: {s}"),
        }
    }

    async fn recorded(&mut self, name: &str) -> bool {
        match self.images.get(GetRequest { name: name.into() }).await {
            Ok(_) => true,
            Err(s) if s.code() == Code::NotFound => false,
            Err(s) => panic!("get {name}: {s}"),
        }
    }
}

/// Pulls `reference` with `images`; returns the result and the progress before it.
async fn pull_on(
    mut images: ImagesClient<Channel>,
    reference: &str,
) -> Result<(PullResult, Vec<TransferProgress>), Status> {
    let mut stream = images
        .pull(PullRequest {
            reference: reference.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut progress = Vec::new();
    while let Some(m) = stream.message().await? {
        match m.msg {
            Some(pull_response::Msg::Progress(p)) => progress.push(p),
            Some(pull_response::Msg::Result(r)) => return Ok((r, progress)),
            None => {}
        }
    }
    panic!("pull of {reference} ended without a result: {progress:?}");
}

fn app(name: &str, marker: &str) -> TestImage {
    TestImage {
        names: vec![name.into()],
        layers: vec![
            image::busybox_rootfs(&[]),
            image::layer_tar(&[File::new("etc/marker", marker)]),
        ],
        config: json!({"Cmd": ["/bin/busybox", "sh"]}),
    }
}

/// Loads `images` into `side` and pushes each under its name; returns their blobs.
async fn seed(side: &mut Side, images: &[TestImage]) -> Vec<Built> {
    let (archive, built) = image::oci_archive(images);
    side.load(archive).await;
    for img in images {
        let (r, _) = side.push(&img.names[0]).await.unwrap();
        assert_eq!(r.reference, img.names[0]);
    }
    built
}

fn status_of(progress: &[TransferProgress], digest: &str, status: TransferStatus) -> bool {
    progress
        .iter()
        .any(|p| p.digest == digest && p.status == status as i32)
}

/// Lines of the registry's access log that GET blob `digest`.
fn blob_gets(registry: &Registry, digest: &str) -> usize {
    registry
        .log_text()
        .lines()
        .filter(|l| l.contains("\"GET /v2/") && l.contains(&format!("/blobs/{digest} ")))
        .count()
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn need_skopeo() -> bool {
    if Path::new("/usr/bin/skopeo").exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "skopeo is missing and CI is set: apt-get install skopeo"
    );
    eprintln!("skipped: needs skopeo");
    false
}

#[tokio::test]
async fn an_image_pushed_by_one_engine_pulls_into_another_with_the_same_digests() {
    if !need_root() || !need_registry() {
        return;
    }
    let registry = Registry::start().await;
    let name = format!("{}/team/app:1", registry.host());
    let mut a = Side::start().await;
    let built = seed(&mut a, &[app(&name, "round trip")]).await.remove(0);

    let mut b = Side::start().await;
    let (r, progress) = b.pull(&name).await.unwrap();
    let image = r.image.unwrap();
    assert_eq!(image.name, name);
    assert_eq!(image.target.unwrap().digest, built.manifest);
    assert_eq!(r.manifest.unwrap().digest, built.manifest);
    assert_eq!(r.config.unwrap().digest, built.config);
    assert!(!r.up_to_date);
    assert!(!r.chain_id.is_empty());
    for l in &built.layers {
        assert!(
            status_of(&progress, l, TransferStatus::Complete),
            "{l}: {progress:?}"
        );
        assert!(b.has_blob(l).await);
    }
    // The same top snapshot as the engine that loaded it.
    let (again, _) = a.pull(&name).await.unwrap();
    assert_eq!(again.chain_id, r.chain_id);
    assert!(again.up_to_date);
    let (again, progress) = b.pull(&name).await.unwrap();
    assert!(again.up_to_date);
    for l in &built.layers {
        assert!(
            status_of(&progress, l, TransferStatus::Exists),
            "{progress:?}"
        );
    }
    // Pushed to another repository of the same registry: the layers are mounted.
    let other = format!("{}/team/copy:1", registry.host());
    let (pushed, progress) = {
        let mut stream = b
            .images
            .push(PushRequest {
                name: name.clone(),
                reference: other.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut progress = Vec::new();
        let mut result = None;
        while let Some(m) = stream.message().await.unwrap() {
            match m.msg {
                Some(push_response::Msg::Progress(p)) => progress.push(p),
                Some(push_response::Msg::Result(r)) => result = Some(r),
                None => {}
            }
        }
        (result.unwrap(), progress)
    };
    assert_eq!(pushed.reference, other);
    assert_eq!(pushed.pushed.unwrap().digest, built.manifest);
    for l in &built.layers {
        assert!(
            status_of(&progress, l, TransferStatus::Mounted),
            "{progress:?}"
        );
    }
}

#[tokio::test]
async fn skopeo_reads_what_berth_pushes_and_berth_pulls_what_skopeo_pushes() {
    if !need_root() || !need_registry() || !need_skopeo() {
        return;
    }
    let registry = Registry::start().await;
    let host = registry.host();
    let work = tempfile::tempdir().unwrap();

    // berth → skopeo.
    let name = format!("{host}/from-berth:1");
    let mut a = Side::start().await;
    let built = seed(&mut a, &[app(&name, "to skopeo")]).await.remove(0);
    let inspected: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{name}"),
    ]))
    .unwrap();
    assert_eq!(inspected["Digest"], built.manifest.as_str());
    let dir = work.path().join("copy");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{name}"),
        &format!("oci:{}:x", dir.display()),
    ]);
    for l in &built.layers {
        assert!(dir.join("blobs/sha256").join(&l[7..]).is_file(), "{l}");
    }

    // skopeo → berth.
    let img = app("docker.io/library/skopeo-src:1", "from skopeo");
    let (archive, built) = image::oci_archive(std::slice::from_ref(&img));
    let built = &built[0];
    let path = work.path().join("src.tar");
    std::fs::write(&path, archive).unwrap();
    let name = format!("{host}/from-skopeo:1");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci-archive:{}", path.display()),
        &format!("docker://{name}"),
    ]);
    let remote: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{name}"),
    ]))
    .unwrap();
    let mut b = Side::start().await;
    let (r, _) = b.pull(&name).await.unwrap();
    assert_eq!(r.image.unwrap().target.unwrap().digest, remote["Digest"]);
    assert_eq!(r.config.unwrap().digest, built.config);
    for l in &built.layers {
        assert!(b.has_blob(l).await, "{l}");
    }
}

#[tokio::test]
async fn concurrent_pulls_of_images_sharing_layers_fetch_each_blob_once() {
    if !need_root() || !need_registry() {
        return;
    }
    let registry = Registry::start().await;
    let host = registry.host();
    let (x, y) = (format!("{host}/x:1"), format!("{host}/y:1"));
    let mut a = Side::start().await;
    let built = seed(&mut a, &[app(&x, "x"), app(&y, "y")]).await;
    assert_eq!(built[0].layers[0], built[1].layers[0], "a shared base");

    let b = Side::start().await;
    let (rx, ry) = tokio::join!(pull_on(b.images.clone(), &x), pull_on(b.images.clone(), &y));
    let (rx, ry) = (rx.unwrap().0, ry.unwrap().0);
    assert_eq!(rx.config.unwrap().digest, built[0].config);
    assert_eq!(ry.config.unwrap().digest, built[1].config);
    let log = registry.log_text();
    let base = &built[0].layers[0];
    assert_eq!(
        blob_gets(&registry, base),
        1,
        "{base} fetched more than once:\n{log}"
    );
    for d in [&built[0].layers[1], &built[1].layers[1]] {
        assert_eq!(blob_gets(&registry, d), 1, "{d}:\n{log}");
    }
}

#[tokio::test]
async fn an_altered_layer_fails_the_pull_naming_it_and_keeps_the_good_blobs() {
    if !need_root() || !need_registry() {
        return;
    }
    let registry = Registry::start().await;
    let host = registry.host();
    let (good, bad) = (format!("{host}/good:1"), format!("{host}/bad:1"));
    let mut a = Side::start().await;
    let built = seed(&mut a, &[app(&good, "good"), app(&bad, "bad")]).await;
    let mut b = Side::start().await;
    b.pull(&good).await.unwrap();

    // The registry's copy of `bad`'s own layer is damaged, keeping its size.
    let victim = &built[1].layers[1];
    let path = registry.blob_path(victim);
    let mut data = std::fs::read(&path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    std::fs::write(&path, &data).unwrap();

    let err = b.pull(&bad).await.unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err}");
    assert!(err.message().contains(victim.as_str()), "{err}");
    assert_eq!(err.message().lines().count(), 1, "{err}");
    assert!(!b.recorded(&bad).await);
    assert!(!b.has_blob(victim).await);
    // What was there before is intact.
    assert!(b.recorded(&good).await);
    let base = &built[0].layers[0];
    assert!(b.has_blob(base).await);
    let (again, _) = b.pull(&good).await.unwrap();
    assert!(again.up_to_date);
}

#[tokio::test]
async fn an_unknown_image_is_not_found_in_one_line() {
    if !need_root() || !need_registry() {
        return;
    }
    let registry = Registry::start().await;
    let mut b = Side::start().await;
    let name = format!("{}/nothing/here:1", registry.host());
    let err = b.pull(&name).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert_eq!(err.message().lines().count(), 1, "{err}");
    assert!(err.message().contains("nothing/here"), "{err}");
    let err = b.pull("127.0.0.1:1/x:1").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    let err = b.pull("Not A Reference").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}

#[tokio::test]
async fn login_checks_the_password() {
    if !need_root() || !need_registry() {
        return;
    }
    let registry = Registry::start_basic(USER, PASSWORD).await;
    let mut b = Side::start().await;
    let login = |password: &str| LoginRequest {
        registry_auth: Some(RegistryAuth {
            server_address: registry.host(),
            username: USER.into(),
            password: password.into(),
            ..Default::default()
        }),
        insecure: false,
    };
    b.images.login(login(PASSWORD)).await.unwrap();
    let err = b.images.login(login("wrong")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    // Anonymous pulls are refused too.
    let err = b
        .pull(&format!("{}/app:1", registry.host()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_pull() {
    if !need_root() || !need_registry() {
        return;
    }
    let registry = Registry::start().await;
    let proxy = CuttingProxy::start(&registry.host(), ProxyMode::Pass);
    seed_big(&registry, 6).await;

    // Through the proxy, which stops sending after 2 MiB.
    proxy.set_mode(ProxyMode::Stall(2 << 20));
    let via = format!("{}/big:1", proxy.host());
    let mut b = Side::start().await;
    let mut stream = b
        .images
        .pull(PullRequest {
            reference: via.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // Wait until the big layer is on its way, then hang up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("no download progress")
            .unwrap()
            .expect("the pull ended");
        if let Some(pull_response::Msg::Progress(p)) = m.msg {
            if p.status == TransferStatus::Downloading as i32 && p.current > 0 {
                break;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(stream);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!b.recorded(&via).await);
    // The cancelled pull let go of everything: the next one completes.
    proxy.set_mode(ProxyMode::Pass);
    let (r, _) = tokio::time::timeout(Duration::from_secs(30), b.pull(&via))
        .await
        .expect("the second pull hangs")
        .unwrap();
    assert!(!r.chain_id.is_empty());
    assert!(b.recorded(&via).await);
}

#[tokio::test]
async fn the_snapshotter_reads_its_registry_settings() {
    if !need_root() || !need_registry() {
        return;
    }
    let registry = Registry::start().await;
    let host = registry.host();
    let mut a = Side::start().await;
    let built = seed(&mut a, &[app(&format!("{host}/library/app:1"), "mirrored")])
        .await
        .remove(0);

    // Docker Hub names resolve through the mirror.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[snapshotter]\nmirrors = {{ \"docker.io\" = [\"http://{host}\"] }}\n\
             max_concurrent_downloads = 2\nstall_timeout_secs = 5\n"
        ),
    )
    .unwrap();
    let mut b = Side::start_with(&["--config", config.to_str().unwrap()]).await;
    let (r, _) = b.pull("app:1").await.unwrap();
    assert_eq!(r.image.unwrap().name, "docker.io/library/app:1");
    assert_eq!(r.config.unwrap().digest, built.config);

    // A typo is refused, naming the key.
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[snapshotter]\nmax_concurent_downloads = 2\n").unwrap();
    let out = Command::new(berth_tests::bin("berth-snapshotter"))
        .arg("--config")
        .arg(&typo)
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--state")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_concurent_downloads"), "{err}");
}

/// Pushes an image with a layer of `mib` MiB of noise (which does not compress) as
/// `<registry>/big:1`.
async fn seed_big(registry: &Registry, mib: usize) {
    let name = format!("{}/big:1", registry.host());
    let mut big = app(&name, "big");
    let mut x = 0x9e37_79b9u32;
    let noise: Vec<u8> = (0..mib << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    big.layers.push(image::layer_tar(&[File {
        path: "noise",
        data: noise,
        mode: 0o644,
    }]));
    let mut a = Side::start().await;
    seed(&mut a, &[big]).await;
}

#[tokio::test]
async fn a_connection_cut_mid_layer_resumes_and_a_stalled_registry_fails_cleanly() {
    if !need_root() || !need_registry() {
        return;
    }
    let registry = Registry::start().await;
    seed_big(&registry, 6).await;
    let proxy = CuttingProxy::start(&registry.host(), ProxyMode::CutOnce(3 << 20));
    let via = format!("{}/big:1", proxy.host());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[snapshotter]\nstall_timeout_secs = 1\n").unwrap();
    let mut b = Side::start_with(&["--config", config.to_str().unwrap()]).await;
    let (r, _) = b.pull(&via).await.unwrap();
    assert_eq!(proxy.cuts(), 1, "the proxy cut a download");
    assert!(!r.chain_id.is_empty());

    let mut c = Side::start_with(&["--config", config.to_str().unwrap()]).await;
    proxy.set_mode(ProxyMode::Stall(2 << 20));
    // Each attempt gives up after a second without bytes; the retries (with backoff) end
    // well within a minute.
    let err = tokio::time::timeout(Duration::from_secs(90), c.pull(&via))
        .await
        .expect("the stall deadline did not end the pull")
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert_eq!(err.message().lines().count(), 1, "{err}");
    assert!(!c.recorded(&via).await);
}
