//! The conformance suite against the overlay snapshotter, directly and through gRPC, and
//! the overlay-specific behaviour (layout on disk, crash leftovers, reopening).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_rpc::Address;
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::UnixListenerStream;

use super::testsuite::{self, assert_no_mounts, need_root};
use super::*;
use crate::mount::Mounted;

/// A fresh overlay snapshotter in a temporary root.
struct Local {
    sn: OverlaySnapshotter,
    root: PathBuf,
    // Dropped last: the directory goes after everything in it is unmounted.
    tmp: tempfile::TempDir,
}

async fn local() -> Local {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    let db = crate::metadata::open(&root).expect("open metadata");
    let sn = OverlaySnapshotter::open(&root, &db)
        .await
        .expect("open snapshotter");
    Local { sn, root, tmp }
}

impl Local {
    fn scratch(&self) -> PathBuf {
        let p = self.tmp.path().join("scratch");
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    }
}

/// Serves `sn` on a unix socket under `dir`; the server stops when the sender is dropped.
async fn serve(sn: OverlaySnapshotter, dir: &Path) -> (RemoteSnapshotter, oneshot::Sender<()>) {
    let sock = dir.join("snapshots.sock");
    let listener = UnixListener::bind(&sock).expect("bind");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service(Arc::new(sn)))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                let _ = stopped.await;
            }),
    );
    let channel = berth_rpc::connect::connect(&Address::Unix(sock), None)
        .await
        .expect("connect");
    (RemoteSnapshotter::new(channel), stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_local() {
    if !need_root() {
        return;
    }
    let l = local().await;
    testsuite::run(&l.sn, &l.scratch()).await;
    assert_no_mounts(l.tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_grpc() {
    if !need_root() {
        return;
    }
    let l = local().await;
    let (remote, _stop) = serve(l.sn.clone(), l.tmp.path()).await;
    testsuite::run(&remote, &l.scratch()).await;
    assert_no_mounts(l.tmp.path());
}

/// Leftovers of a crash: a half-built snapshot, a half-removed one, and a renamed
/// directory whose metadata never got written.
fn make_leftovers(root: &Path) -> Vec<PathBuf> {
    let dir = root.join("snapshots");
    let paths = vec![dir.join("tmp-1-2-3"), dir.join("rm-7"), dir.join("987654")];
    for p in &paths {
        std::fs::create_dir_all(p.join("fs/sub")).expect("mkdir");
        std::fs::write(p.join("fs/sub/file"), vec![7u8; 64 << 10]).expect("write");
    }
    paths
}

async fn leftovers_are_swept<S: Snapshotter>(sn: &S, root: &Path, scratch: &Path) {
    sn.prepare("keep-a", "", Labels::new())
        .await
        .expect("prepare");
    sn.commit("keep", "keep-a", Labels::new())
        .await
        .expect("commit");
    let live: Vec<PathBuf> = std::fs::read_dir(root.join("snapshots"))
        .expect("readdir")
        .map(|e| e.expect("entry").path())
        .collect();
    let leftovers = make_leftovers(root);
    let cleaned = sn.cleanup().await.expect("cleanup");
    assert_eq!(cleaned.removed, 3, "{cleaned:?}");
    assert!(cleaned.reclaimed_bytes >= 3 * (64 << 10), "{cleaned:?}");
    for p in &leftovers {
        assert!(!p.exists(), "{} survived cleanup", p.display());
    }
    for p in &live {
        assert!(p.exists(), "{} was removed by cleanup", p.display());
    }
    let view = sn
        .view("keep-v", "keep", Labels::new())
        .await
        .expect("view");
    let at = scratch.join("v");
    std::fs::create_dir_all(&at).expect("mkdir");
    Mounted::new(&view, &at)
        .expect("mount")
        .unmount()
        .expect("unmount");
    assert_eq!(sn.cleanup().await.expect("cleanup").removed, 0);
}

#[tokio::test]
async fn cleanup_removes_leftovers_local() {
    if !need_root() {
        return;
    }
    let l = local().await;
    leftovers_are_swept(&l.sn, &l.root, &l.scratch()).await;
    assert_no_mounts(l.tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_leftovers_grpc() {
    if !need_root() {
        return;
    }
    let l = local().await;
    let (remote, _stop) = serve(l.sn.clone(), l.tmp.path()).await;
    leftovers_are_swept(&remote, &l.root, &l.scratch()).await;
    assert_no_mounts(l.tmp.path());
}

/// What Apply does: write a layer straight into the upper directory of an unmounted active
/// snapshot, commit it, and find it through a mount. Also checks the documented layout.
#[tokio::test]
async fn upper_dir_is_the_layer() {
    if !need_root() {
        return;
    }
    let l = local().await;
    let sn = &l.sn;
    let scratch = l.scratch();

    sn.prepare("ex-1", "", Labels::new())
        .await
        .expect("prepare");
    let upper = sn.upper_dir("ex-1").expect("upper dir");
    assert!(upper.starts_with(l.root.join("snapshots")));
    assert_eq!(upper.file_name().and_then(|n| n.to_str()), Some("fs"));
    let id: u64 = upper
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .expect("a numeric snapshot directory");
    assert!(l.root.join(format!("snapshots/{id}/work")).is_dir());
    std::fs::write(upper.join("from-tar"), "unpacked").expect("write upper");
    assert_eq!(
        sn.lower_dirs("ex-1").expect("lowers"),
        Vec::<PathBuf>::new()
    );
    sn.commit("sha256:chain1", "ex-1", Labels::new())
        .await
        .expect("commit");
    // Committing keeps the directory: the layer is where it was written.
    assert_eq!(sn.upper_dir("sha256:chain1").expect("upper"), upper);

    // The child's upper dir records a deletion as an overlay whiteout (0/0 char device).
    let mounts = sn
        .prepare("ex-2", "sha256:chain1", Labels::new())
        .await
        .expect("prepare");
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].fs_type, "overlay");
    assert!(mounts[0]
        .options
        .contains(&format!("lowerdir={}", upper.display())));
    assert_eq!(sn.lower_dirs("ex-2").expect("lowers"), vec![upper.clone()]);
    {
        let at = scratch.join("m");
        std::fs::create_dir_all(&at).expect("mkdir");
        let _m = Mounted::new(&mounts, &at).expect("mount");
        assert_eq!(
            std::fs::read_to_string(at.join("from-tar")).expect("read"),
            "unpacked"
        );
        std::fs::remove_file(at.join("from-tar")).expect("delete");
    }
    let wh = std::fs::symlink_metadata(sn.upper_dir("ex-2").expect("upper").join("from-tar"))
        .expect("whiteout");
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "{wh:?}");

    // Views have no upper directory of their own.
    sn.view("ex-v", "sha256:chain1", Labels::new())
        .await
        .expect("view");
    assert!(matches!(
        sn.upper_dir("ex-v"),
        Err(crate::Error::FailedPrecondition(_))
    ));
    assert!(matches!(
        sn.upper_dir("nope"),
        Err(crate::Error::NotFound(_))
    ));
    assert_no_mounts(l.tmp.path());
}

/// Reopening after a crash: records survive, leftovers are swept at start.
#[tokio::test]
async fn reopen_keeps_snapshots_and_sweeps() {
    if !need_root() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    {
        let db = crate::metadata::open(&root).expect("open metadata");
        let sn = OverlaySnapshotter::open(&root, &db).await.expect("open");
        sn.prepare("re-a", "", labels_of("x", "1"))
            .await
            .expect("prepare");
        std::fs::write(sn.upper_dir("re-a").expect("upper").join("f"), "kept").expect("write");
        sn.commit("re-L", "re-a", labels_of("y", "2"))
            .await
            .expect("commit");
        sn.prepare("re-b", "re-L", Labels::new())
            .await
            .expect("prepare");
    }
    let leftovers = make_leftovers(&root);
    let db = crate::metadata::open(&root).expect("reopen metadata");
    let sn = OverlaySnapshotter::open(&root, &db).await.expect("reopen");
    for p in &leftovers {
        assert!(!p.exists(), "{} survived the start-up sweep", p.display());
    }
    let l = sn.stat("re-L").await.expect("stat");
    assert_eq!((l.kind, l.labels), (Kind::Committed, labels_of("y", "2")));
    assert_eq!(sn.stat("re-b").await.expect("stat").kind, Kind::Active);
    let mounts = sn.mounts("re-b").await.expect("mounts");
    let at = tmp.path().join("m");
    std::fs::create_dir_all(&at).expect("mkdir");
    {
        let _m = Mounted::new(&mounts, &at).expect("mount");
        assert_eq!(std::fs::read_to_string(at.join("f")).expect("read"), "kept");
    }
    // Ids are never reused after a restart.
    sn.prepare("re-c", "", Labels::new())
        .await
        .expect("prepare");
    assert_ne!(
        sn.upper_dir("re-c").expect("upper"),
        sn.upper_dir("re-L").expect("upper")
    );
    assert_no_mounts(tmp.path());
}

fn labels_of(k: &str, v: &str) -> Labels {
    [(k.to_string(), v.to_string())].into()
}

/// Removing deletes the directory right away (metadata first).
#[tokio::test]
async fn remove_deletes_the_directory() {
    let l = local().await;
    l.sn.prepare("rd", "", Labels::new())
        .await
        .expect("prepare");
    let dir = l.sn.upper_dir("rd").expect("upper");
    let snapshot_dir = dir.parent().expect("parent").to_path_buf();
    l.sn.remove("rd").await.expect("remove");
    assert!(!snapshot_dir.exists());
    let names: Vec<String> = std::fs::read_dir(l.root.join("snapshots"))
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.is_empty(), "{names:?}");
}
