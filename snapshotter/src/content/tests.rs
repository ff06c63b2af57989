//! The conformance suite against the local store and through gRPC, and the local store's
//! own guarantees (layout, modes, tampering, sweep, crash leftovers).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::content::v1 as pb;
use berth_proto::content::v1::content_client::ContentClient;
use berth_proto::content::v1::WriteAction;
use tempfile::TempDir;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Channel;
use tonic::Code;

use super::*;

fn local() -> (TempDir, LocalStore) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::metadata::open(dir.path()).unwrap();
    let store = LocalStore::open(dir.path(), &db).unwrap();
    (dir, store)
}

/// Serves the content service of `store` on a unix socket in `dir`; the server stops when
/// the test's runtime does.
async fn serve(dir: &Path, store: LocalStore) -> Channel {
    let path = dir.join("content.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service(Arc::new(store)))
            .serve_with_incoming(UnixListenerStream::new(listener)),
    );
    berth_rpc::connect::connect(&berth_rpc::Address::Unix(path), None)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_local() {
    let (_dir, store) = local();
    testsuite::run(&store).await;
    // Everything the suite started, it finished.
    assert!(store.list_statuses("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_grpc() {
    let (dir, store) = local();
    let channel = serve(dir.path(), store.clone()).await;
    testsuite::run(&RemoteContentStore::new(channel)).await;
    assert!(store.list_statuses("").await.unwrap().is_empty());
}

#[tokio::test]
async fn layout_and_modes() {
    let (dir, store) = local();
    let content = dir.path().join("content");
    for d in ["", "blobs", "blobs/sha256", "ingest"] {
        let mode = std::fs::metadata(content.join(d))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{d}");
    }
    let blob = testsuite::data("layout", 1234);
    let d = Digest::of(&blob);
    write_bytes(&store, "../../escape", blob, &d, Labels::new())
        .await
        .unwrap();
    let path = store.path(&d);
    assert_eq!(path, content.join("blobs/sha256").join(d.hex()));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o444
    );
    assert_eq!(
        std::fs::read(store.open_blob(&d).map(|_| path).unwrap())
            .unwrap()
            .len(),
        1234
    );

    // An ingest's dir is named by the hash of its ref, whatever the ref holds.
    let r = "../../escape/\n";
    let mut w = store.writer(r, None, None).await.unwrap();
    w.write_at(0, Bytes::from_static(b"x")).await.unwrap();
    let ingest = content.join("ingest").join(Digest::of(r.as_bytes()).hex());
    assert_eq!(std::fs::read(ingest.join("data")).unwrap(), b"x");
    assert_eq!(store.status(r).await.unwrap().reference, r);
    drop(w);
    store.abort(r).await.unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2); // content, metadata
}

#[tokio::test]
async fn verify_detects_tampering() {
    let (_dir, store) = local();
    let blob = testsuite::data("tamper", 100_000);
    let d = Digest::of(&blob);
    write_bytes(&store, "tamper", blob, &d, Labels::new())
        .await
        .unwrap();
    store.verify(&d).unwrap();
    let path = store.path(&d);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[50_000] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(
        store.verify(&d),
        Err(Error::DigestMismatch { expected, .. }) if expected == d.to_string()
    ));
    assert!(matches!(
        store.verify(&Digest::of(b"absent")),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn write_blob_in_process() {
    let (dir, store) = local();
    let blob = testsuite::data("write_blob", 3 * 1024 * 1024);
    let d = Digest::of(&blob);
    assert_eq!(
        store.write_blob(&blob[..], None).unwrap(),
        (d.clone(), blob.len() as u64)
    );
    // Stored already: the reader is not touched.
    struct Untouchable;
    impl std::io::Read for Untouchable {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            panic!("read although the blob is stored")
        }
    }
    let size = blob.len() as u64;
    assert_eq!(
        store
            .write_blob(Untouchable, Some((d.clone(), size)))
            .unwrap(),
        (d.clone(), size)
    );
    assert!(matches!(
        store.write_blob(Untouchable, Some((d.clone(), size + 1))),
        Err(Error::SizeMismatch { .. })
    ));

    let other = testsuite::data("write_blob-2", 1000);
    let od = Digest::of(&other);
    assert!(matches!(
        store.write_blob(&other[..], Some((Digest::of(b"no"), 1000))),
        Err(Error::DigestMismatch { .. })
    ));
    // A reader longer than announced is cut at size + 1 and refused.
    assert!(matches!(
        store.write_blob(std::io::repeat(7), Some((od.clone(), 1000))),
        Err(Error::SizeMismatch { actual: 1001, .. })
    ));
    assert_eq!(
        store
            .write_blob(&other[..], Some((od.clone(), 1000)))
            .unwrap(),
        (od, 1000)
    );
    // Failed writes leave no ingest behind.
    let ingests = dir.path().join("content/ingest");
    assert_eq!(std::fs::read_dir(ingests).unwrap().count(), 0);
}

#[test]
fn sweep_removes_stale_and_temp() {
    let (dir, store) = local();
    let ingests = dir.path().join("content/ingest");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for r in ["stale", "fresh"] {
            let mut w = store.writer(r, None, None).await.unwrap();
            w.write_at(0, Bytes::from_static(b"data")).await.unwrap();
        }
    });
    let stale = ingests.join(Digest::of(b"stale").hex()).join("data");
    let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    std::fs::create_dir(ingests.join(".tmp-ingest-crashed")).unwrap();
    std::fs::write(
        ingests.join(Digest::of(b"fresh").hex()).join(".tmp-meta-x"),
        b"{",
    )
    .unwrap();
    std::fs::create_dir(ingests.join("0000-no-meta")).unwrap();

    let report = store.sweep(DEFAULT_INGEST_MAX_AGE).unwrap();
    assert_eq!(
        report,
        SweepReport {
            ingests_removed: 2,
            temp_removed: 2
        }
    );
    rt.block_on(async {
        assert!(matches!(
            store.status("stale").await,
            Err(Error::NotFound(_))
        ));
        assert_eq!(store.status("fresh").await.unwrap().offset, 4);
    });
    assert_eq!(
        store.sweep(DEFAULT_INGEST_MAX_AGE).unwrap(),
        SweepReport::default()
    );
}

#[tokio::test]
async fn survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let blob = testsuite::data("restart", 5000);
    let d = Digest::of(&blob);
    {
        let db = crate::metadata::open(dir.path()).unwrap();
        let store = LocalStore::open(dir.path(), &db).unwrap();
        write_bytes(
            &store,
            "restart-1",
            blob.clone(),
            &d,
            [("a".to_string(), "b".to_string())].into(),
        )
        .await
        .unwrap();
        let mut w = store
            .writer("restart-2", Some(5000), Some(d.clone()))
            .await
            .unwrap();
        w.write_at(0, blob.slice(..1000)).await.unwrap();
    }
    let db = crate::metadata::open(dir.path()).unwrap();
    let store = LocalStore::open(dir.path(), &db).unwrap();
    assert_eq!(store.info(&d).await.unwrap().labels["a"], "b");
    let st = store.status("restart-2").await.unwrap();
    assert_eq!(
        (st.offset, st.total, st.expected),
        (1000, Some(5000), Some(d.clone()))
    );
    store.abort("restart-2").await.unwrap();
}

fn code<T>(r: Result<T, tonic::Status>) -> Option<Code> {
    r.err().map(|s| s.code())
}

/// The wire contract of `content.proto` that the domain trait cannot express.
#[tokio::test(flavor = "multi_thread")]
async fn grpc_wire_contract() {
    let (dir, store) = local();
    let mut client = ContentClient::new(serve(dir.path(), store.clone()).await);

    for bad in ["", "sha256:xyz", "md5:abc", "sha256:../../etc/passwd"] {
        let info = client.info(pb::InfoRequest { digest: bad.into() }).await;
        assert_eq!(code(info), Some(Code::InvalidArgument), "info {bad:?}");
        let read = client
            .read(pb::ReadRequest {
                digest: bad.into(),
                ..Default::default()
            })
            .await;
        assert_eq!(code(read), Some(Code::InvalidArgument), "read {bad:?}");
        let del = client
            .delete(pb::DeleteRequest { digest: bad.into() })
            .await;
        assert_eq!(code(del), Some(Code::InvalidArgument), "delete {bad:?}");
    }
    let filters = pb::ListRequest {
        filters: vec!["size=1".into()],
    };
    assert_eq!(
        client.list(filters).await.err().map(|s| s.code()),
        Some(Code::InvalidArgument)
    );

    // One call: STAT, WRITE, COMMIT carrying the last chunk; mismatches are InvalidArgument.
    let write = |msgs: Vec<pb::WriteRequest>| {
        let mut client = client.clone();
        async move {
            let mut out = Vec::new();
            let mut stream = client
                .write(futures::stream::iter(msgs))
                .await?
                .into_inner();
            while let Some(m) = stream.message().await? {
                out.push(m);
            }
            Ok::<_, tonic::Status>(out)
        }
    };
    let msg = |action: WriteAction, offset: i64, data: &[u8]| pb::WriteRequest {
        action: action.into(),
        offset,
        data: data.to_vec(),
        ..Default::default()
    };
    let d = Digest::of(b"hello world");
    let first = pb::WriteRequest {
        r#ref: "wire".into(),
        total: 11,
        ..msg(WriteAction::Stat, 0, b"")
    };
    let commit = pb::WriteRequest {
        expected: d.to_string(),
        ..msg(WriteAction::Commit, 6, b"world")
    };
    let answers = write(vec![
        first.clone(),
        msg(WriteAction::Write, 0, b"hello "),
        commit,
    ])
    .await
    .unwrap();
    assert_eq!(answers.len(), 2);
    assert_eq!(
        (answers[0].action, answers[0].offset, answers[0].total),
        (WriteAction::Stat.into(), 0, 11)
    );
    assert_eq!(
        (answers[1].offset, answers[1].digest.as_str()),
        (11, d.as_str())
    );

    let wrong = pb::WriteRequest {
        expected: Digest::of(b"x").to_string(),
        ..msg(WriteAction::Commit, 0, b"other")
    };
    let err = write(vec![pb::WriteRequest {
        r#ref: "wire-2".into(),
        ..wrong
    }])
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(
        store.status("wire-2").await.unwrap().offset,
        5,
        "kept after a mismatch"
    );

    let cases = [
        (vec![msg(WriteAction::Stat, 0, b"")], "no ref"),
        (
            vec![pb::WriteRequest {
                r#ref: "wire-3".into(),
                ..msg(WriteAction::Stat, 0, b"data")
            }],
            "STAT with data",
        ),
        (
            vec![pb::WriteRequest {
                r#ref: "wire-3".into(),
                ..msg(WriteAction::Unspecified, 0, b"")
            }],
            "no action",
        ),
        (
            vec![
                first,
                pb::WriteRequest {
                    r#ref: "other".into(),
                    ..msg(WriteAction::Stat, 0, b"")
                },
            ],
            "another ref",
        ),
        (
            vec![pb::WriteRequest {
                r#ref: "wire-3".into(),
                ..msg(WriteAction::Commit, 0, b"x")
            }],
            "no digest",
        ),
    ];
    for (msgs, what) in cases {
        let err = write(msgs).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    }
    let past = pb::ReadRequest {
        digest: d.to_string(),
        offset: 12,
        size: 0,
    };
    assert_eq!(
        client.read(past).await.err().map(|s| s.code()),
        Some(Code::OutOfRange)
    );
}
