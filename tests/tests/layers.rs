//! Snapshots.Diff and Snapshots.Apply through gRPC: a container's changes become a layer
//! blob, and a layer blob becomes a committed snapshot named by its chain ID.

use std::collections::HashMap;

use berth_proto::images::v1::images_client::ImagesClient;
use berth_proto::images::v1::{InspectRequest, LoadRequest};
use berth_proto::snapshots::v1::snapshots_client::SnapshotsClient;
use berth_proto::snapshots::v1::{
    ApplyRequest, Compression, DiffRequest, PrepareRequest, RemoveRequest, ViewRequest,
};
use berth_rpc::Address;
use berth_snapshotter::mount::{Mount, Mounted};
use berth_tests::image::{self, File, TestImage};
use berth_tests::{need_root, Engine};

#[tokio::test]
async fn changes_become_a_layer_and_the_layer_becomes_a_snapshot() {
    if !need_root() {
        return;
    }
    let engine = Engine::start(&[]).await;
    let addr = Address::Unix(engine.state.path().join("snapshotter.sock"));
    let channel = berth_rpc::connect::connect(&addr, None).await.unwrap();
    let mut images = ImagesClient::new(channel.clone());
    let mut snaps = SnapshotsClient::new(channel);
    let (archive, _) = image::oci_archive(&[TestImage {
        names: vec!["docker.io/library/base:1".into()],
        layers: vec![image::layer_tar(&[File::new("etc/os", "base")])],
        config: serde_json::json!({}),
    }]);
    images
        .load(tokio_stream::iter(vec![LoadRequest { data: archive }]))
        .await
        .unwrap();
    let parent = images
        .inspect(InspectRequest {
            name: "base:1".into(),
            platform: None,
        })
        .await
        .unwrap()
        .into_inner()
        .chain_id;

    // A "container": an active snapshot on the image, changed through its mount.
    let mounts: Vec<Mount> = snaps
        .prepare(PrepareRequest {
            key: "ctr".into(),
            parent: parent.clone(),
            labels: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .mounts
        .into_iter()
        .map(Mount::from)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    {
        let m = Mounted::new(&mounts, dir.path()).unwrap();
        std::fs::write(dir.path().join("added"), "new file").unwrap();
        std::fs::remove_file(dir.path().join("etc/os")).unwrap();
        m.unmount().unwrap();
    }
    let diff = snaps
        .diff(DiffRequest {
            key: "ctr".into(),
            compression: Compression::Gzip as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let layer = diff.layer.unwrap();
    assert_eq!(
        layer.media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert!(diff.diff_id.starts_with("sha256:"));

    // A mismatched media type is refused.
    let err = snaps
        .diff(DiffRequest {
            key: "ctr".into(),
            compression: Compression::Zstd as i32,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let applied = snaps
        .apply(ApplyRequest {
            layer: Some(layer.clone()),
            parent: parent.clone(),
            diff_id: diff.diff_id.clone(),
            labels: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let expected_chain = image::digest(format!("{parent} {}", diff.diff_id).as_bytes());
    assert_eq!(applied.chain_id, expected_chain);
    assert!(!applied.existed);
    // Applying it again finds the snapshot without unpacking.
    let again = snaps
        .apply(ApplyRequest {
            layer: Some(layer.clone()),
            parent: parent.clone(),
            diff_id: diff.diff_id.clone(),
            labels: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.existed);

    // The new snapshot shows the change: the file added, the deleted one gone.
    let view: Vec<Mount> = snaps
        .view(ViewRequest {
            key: "check".into(),
            parent: applied.chain_id.clone(),
            labels: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .mounts
        .into_iter()
        .map(Mount::from)
        .collect();
    let dir2 = tempfile::tempdir().unwrap();
    let m = Mounted::new(&view, dir2.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir2.path().join("added")).unwrap(),
        "new file"
    );
    assert!(!dir2.path().join("etc/os").exists());
    m.unmount().unwrap();
    for key in ["check", "ctr"] {
        snaps
            .remove(RemoveRequest { key: key.into() })
            .await
            .unwrap();
    }

    // A wrong diff ID is refused and leaves nothing behind.
    let err = snaps
        .apply(ApplyRequest {
            layer: Some(layer),
            parent,
            diff_id: format!("sha256:{}", "0".repeat(64)),
            labels: HashMap::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::DataLoss, "{}", err.message());
}
