//! Images on one machine, through the snapshotter's `berth.images.v1` API: load, save,
//! import, inspect, garbage collection; archives in the OCI and `docker save` formats.

use std::time::Duration;

use berth_proto::images::v1::images_client::ImagesClient;
use berth_proto::images::v1::{
    import_request, DeleteRequest, ImportOptions, ImportRequest, InspectRequest, InspectResponse,
    ListRequest, LoadRequest, SaveRequest,
};
use berth_rpc::Address;
use berth_tests::image::{self, File, TestImage};
use berth_tests::{need_root, Engine};
use serde_json::json;
use tonic::transport::Channel;

async fn images(engine: &Engine) -> ImagesClient<Channel> {
    let addr = Address::Unix(engine.state.path().join("snapshotter.sock"));
    ImagesClient::new(berth_rpc::connect::connect(&addr, None).await.unwrap())
}

fn chunks(data: Vec<u8>) -> impl futures::Stream<Item = LoadRequest> {
    let parts: Vec<LoadRequest> = data
        .chunks(64 << 10)
        .map(|c| LoadRequest { data: c.to_vec() })
        .collect();
    tokio_stream::iter(parts)
}

async fn load(c: &mut ImagesClient<Channel>, data: Vec<u8>) -> Result<Vec<String>, tonic::Status> {
    let resp = c.load(chunks(data)).await?.into_inner();
    Ok(resp.images.into_iter().map(|i| i.name).collect())
}

async fn save(c: &mut ImagesClient<Channel>, names: &[&str]) -> Vec<u8> {
    let mut stream = c
        .save(SaveRequest {
            names: names.iter().map(|s| s.to_string()).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        out.extend(m.data);
    }
    out
}

async fn inspect(c: &mut ImagesClient<Channel>, name: impl Into<String>) -> InspectResponse {
    c.inspect(InspectRequest {
        name: name.into(),
        platform: None,
    })
    .await
    .unwrap()
    .into_inner()
}

async fn names(c: &mut ImagesClient<Channel>) -> Vec<String> {
    c.list(ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images
        .into_iter()
        .map(|i| i.name)
        .collect()
}

fn two_images_sharing_a_base() -> Vec<TestImage> {
    let base = image::busybox_rootfs(&[]);
    vec![
        TestImage {
            names: vec!["docker.io/library/app:v1".into()],
            layers: vec![base.clone(), image::layer_tar(&[File::new("app/one", "1")])],
            config: json!({"Cmd": ["/bin/busybox", "true"]}),
        },
        TestImage {
            names: vec!["localhost:5000/team/other:latest".into()],
            layers: vec![base, image::layer_tar(&[File::new("app/two", "2")])],
            config: json!({"Env": ["A=1"]}),
        },
    ]
}

fn snapshot_dirs(engine: &Engine) -> usize {
    std::fs::read_dir(engine.root.path().join("snapshots"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn load_unpacks_shared_layers_once_and_inspect_describes_the_image() {
    if !need_root() {
        return;
    }
    let engine = Engine::start(&[]).await;
    let mut c = images(&engine).await;
    let (archive, built) = image::oci_archive(&two_images_sharing_a_base());
    let loaded = load(&mut c, archive).await.unwrap();
    assert_eq!(
        loaded,
        [
            "docker.io/library/app:v1",
            "localhost:5000/team/other:latest"
        ]
    );
    // Base, app layer, other layer: three snapshots, not four.
    assert_eq!(snapshot_dirs(&engine), 3);
    let info = inspect(&mut c, "app:v1").await;
    assert_eq!(info.config.unwrap().digest, built[0].config);
    assert!(
        info.unpacked && info.size > 0,
        "{} {}",
        info.unpacked,
        info.size
    );
    assert_eq!(info.layers.len(), 2);
    let config: serde_json::Value = serde_json::from_slice(&info.config_json).unwrap();
    assert_eq!(config["config"]["Cmd"], json!(["/bin/busybox", "true"]));
    // By id and by id prefix too.
    let by_id = inspect(&mut c, built[0].config[7..19].to_string()).await;
    assert_eq!(by_id.image.unwrap().name, "docker.io/library/app:v1");
}

#[tokio::test]
async fn save_then_load_elsewhere_keeps_every_digest() {
    if !need_root() {
        return;
    }
    let first = Engine::start(&[]).await;
    let mut c = images(&first).await;
    let (archive, built) = image::oci_archive(&two_images_sharing_a_base());
    load(&mut c, archive).await.unwrap();
    let saved = save(&mut c, &["app:v1", "localhost:5000/team/other"]).await;

    let second = Engine::start(&[]).await;
    let mut c2 = images(&second).await;
    load(&mut c2, saved.clone()).await.unwrap();
    assert_eq!(names(&mut c2).await, names(&mut c).await);
    for (name, b) in [
        ("app:v1", &built[0]),
        ("localhost:5000/team/other", &built[1]),
    ] {
        let i = inspect(&mut c2, name).await;
        assert_eq!(i.manifest.unwrap().digest, b.manifest);
        assert_eq!(i.config.unwrap().digest, b.config);
        assert!(i.unpacked);
    }
    // Saving again from the second engine gives the same bytes: the archive is deterministic.
    let again = save(&mut c2, &["app:v1", "localhost:5000/team/other"]).await;
    assert_eq!(image::digest(&again), image::digest(&saved));
}

#[tokio::test]
async fn saved_archives_are_read_by_skopeo_in_both_formats() {
    if !need_root() {
        return;
    }
    if std::process::Command::new("skopeo")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "skopeo missing under CI: deploy/test.sh installs it"
        );
        eprintln!("skipped: skopeo is not installed");
        return;
    }
    let engine = Engine::start(&[]).await;
    let mut c = images(&engine).await;
    let (archive, built) = image::oci_archive(&two_images_sharing_a_base()[..1]);
    load(&mut c, archive).await.unwrap();
    let saved = save(&mut c, &["app:v1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.tar");
    std::fs::write(&path, saved).unwrap();
    for transport in ["oci-archive", "docker-archive"] {
        let out = std::process::Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("{transport}:{}", path.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{transport}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = std::process::Command::new("skopeo")
            .args(["inspect", "--config", "--raw"])
            .arg(format!("{transport}:{}", path.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{transport}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(image::digest(&out.stdout), built[0].config, "{transport}");
    }
}

#[tokio::test]
async fn old_docker_save_archives_and_gzipped_archives_load() {
    if !need_root() {
        return;
    }
    let engine = Engine::start(&[]).await;
    let mut c = images(&engine).await;
    let base = image::busybox_rootfs(&[]);
    let img = TestImage {
        names: vec![],
        // The same layer twice: the archive links the second to the first.
        layers: vec![base.clone(), image::layer_tar(&[File::new("x", "y")]), base],
        config: json!({}),
    };
    let legacy = image::legacy_docker_archive(&img, "legacy:1");
    assert_eq!(
        load(&mut c, image::gzip(&legacy)).await.unwrap(),
        ["docker.io/library/legacy:1"]
    );
    let i = inspect(&mut c, "legacy:1").await;
    assert_eq!(i.layers.len(), 3);
    assert!(i.unpacked);
}

#[tokio::test]
async fn a_tampered_blob_fails_the_load_and_records_nothing() {
    if !need_root() {
        return;
    }
    let engine = Engine::start(&[]).await;
    let mut c = images(&engine).await;
    let imgs = two_images_sharing_a_base();
    let built = image::build(&imgs[0]);
    // An archive whose layer file does not hash to the name it is stored under.
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    for (d, data) in &built.blobs {
        let mut data = data.clone();
        if *d == built.layers[1] {
            let n = data.len() - 10;
            data[n] ^= 0xff;
        }
        add(&format!("blobs/sha256/{}", &d[7..]), &data);
    }
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": built.manifest, "size": built.manifest_size,
        "annotations": {"io.containerd.image.name": "docker.io/library/evil:1"}}]});
    add("index.json", &serde_json::to_vec(&index).unwrap());
    let archive = b.into_inner().unwrap();
    let err = load(&mut c, archive).await.unwrap_err();
    assert!(
        err.message().contains(&built.layers[1]),
        "{}",
        err.message()
    );
    assert!(names(&mut c).await.is_empty());
}

#[tokio::test]
async fn hostile_archive_paths_are_refused() {
    if !need_root() {
        return;
    }
    let engine = Engine::start(&[]).await;
    let mut c = images(&engine).await;
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(4);
    // Written raw: tar::Builder refuses `..` in paths.
    h.as_old_mut().name[..15].copy_from_slice(b"../../evil.json");
    h.set_cksum();
    b.append(&h, &b"evil"[..]).unwrap();
    let err = load(&mut c, b.into_inner().unwrap()).await.unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::InvalidArgument,
        "{}",
        err.message()
    );
    assert!(!engine.root.path().join("../evil.json").exists());
}

#[tokio::test]
async fn deleting_an_image_keeps_layers_another_image_shares() {
    if !need_root() {
        return;
    }
    let engine = Engine::start(&[]).await;
    let mut c = images(&engine).await;
    let (archive, built) = image::oci_archive(&two_images_sharing_a_base());
    load(&mut c, archive).await.unwrap();
    let reclaimed = c
        .delete(DeleteRequest {
            name: "app:v1".into(),
            sync: true,
        })
        .await
        .unwrap()
        .into_inner()
        .reclaimed_bytes;
    assert!(reclaimed > 0);
    assert_eq!(snapshot_dirs(&engine), 2);
    let blobs = engine.root.path().join("content/blobs/sha256");
    assert!(
        !blobs.join(&built[0].layers[1][7..]).exists(),
        "unique layer kept"
    );
    assert!(
        blobs.join(&built[1].layers[0][7..]).exists(),
        "shared layer removed"
    );
    let other = inspect(&mut c, "localhost:5000/team/other").await;
    assert!(other.unpacked);
}

#[tokio::test]
async fn import_makes_a_one_layer_image_with_changes() {
    if !need_root() {
        return;
    }
    let engine = Engine::start(&[]).await;
    let mut c = images(&engine).await;
    let rootfs = image::busybox_rootfs(&[File::new("hello", "world")]);
    let mut msgs = vec![ImportRequest {
        msg: Some(import_request::Msg::Options(ImportOptions {
            name: "imported:1".into(),
            changes: vec![r#"CMD ["/bin/busybox","sh"]"#.into(), "WORKDIR /srv".into()],
            message: "from a test".into(),
            platform: None,
        })),
    }];
    for chunk in image::gzip(&rootfs).chunks(10_000) {
        msgs.push(ImportRequest {
            msg: Some(import_request::Msg::Data(chunk.to_vec())),
        });
    }
    let resp = c
        .import(tokio_stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.image.unwrap().name, "docker.io/library/imported:1");
    let i = inspect(&mut c, resp.image_id.clone()).await;
    // The layer is stored uncompressed: its digest is its diff ID.
    assert_eq!(i.diff_ids, [image::digest(&rootfs)]);
    let config: serde_json::Value = serde_json::from_slice(&i.config_json).unwrap();
    assert_eq!(config["config"]["WorkingDir"], "/srv");
    assert_eq!(config["history"][0]["comment"], "from a test");
    // A bad change is refused before anything is stored.
    let bad = vec![ImportRequest {
        msg: Some(import_request::Msg::Options(ImportOptions {
            name: "bad:1".into(),
            changes: vec!["RUN rm -rf /".into()],
            ..Default::default()
        })),
    }];
    let err = c.import(tokio_stream::iter(bad)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn a_load_killed_midway_lists_nothing_and_can_be_repeated() {
    if !need_root() {
        return;
    }
    let engine = Engine::start(&[]).await;
    let mut c = images(&engine).await;
    let (archive, _) = image::oci_archive(&two_images_sharing_a_base());
    // Send half the archive, then kill the snapshotter while it waits for the rest.
    let half = archive[..archive.len() / 2].to_vec();
    let (tx, rx) = tokio::sync::mpsc::channel::<LoadRequest>(4);
    tx.send(LoadRequest { data: half }).await.unwrap();
    let mut c_kill = c.clone();
    let call = tokio::spawn(async move {
        c_kill
            .load(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = engine.service_pid("snapshotter").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(call.await.unwrap().is_err());
    drop(tx);
    // The engine restarts it; once back, nothing half-loaded is listed.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let addr = Address::Unix(engine.state.path().join("snapshotter.sock"));
    let listed = loop {
        if let Ok(channel) = berth_rpc::connect::connect(&addr, None).await {
            let mut fresh = ImagesClient::new(channel);
            if let Ok(r) = fresh.list(ListRequest::default()).await {
                c = fresh;
                break r.into_inner().images;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "snapshotter did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(listed.is_empty(), "{listed:?}");
    let ingest = engine.root.path().join("content/ingest");
    let leftovers = std::fs::read_dir(&ingest).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leftovers, 0, "stale ingests were not swept");
    let loaded = load(&mut c, archive).await.unwrap();
    assert_eq!(loaded.len(), 2);
}
