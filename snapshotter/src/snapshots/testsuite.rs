//! The conformance suite of the [`Snapshotter`] trait (containerd's
//! `core/snapshots/testsuite`): one set of cases, run against the local overlay snapshotter
//! and through the gRPC client alike, so both behave the same.
//!
//! The cases mount what the snapshotter returns and look at the files, so they need root.
//! Like a test, the suite panics on the first failure; every mount it makes is undone on the
//! way out (also when panicking), and it checks that nothing stays mounted.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use super::{Filters, Info, Kind, Labels, Mount, Snapshotter};
use crate::error::{Error, Result};
use crate::mount::{mount_points_under, Mounted};

/// True when running as root. Otherwise the caller should skip: with `CI` unset this says so
/// on stderr and returns false; with `CI` set it panics, so a CI run cannot skip silently.
pub fn need_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("these tests mount filesystems and must run as root (CI is set, so not skipping)");
    }
    eprintln!("skipping: mounting needs root (set CI to make this a failure)");
    false
}

/// Runs every case against `sn`, mounting under `scratch` (an empty directory). Keys are
/// prefixed per case, so `sn` may hold other snapshots.
pub async fn run<S: Snapshotter>(sn: &S, scratch: &Path) {
    macro_rules! case {
        ($name:ident) => {{
            let dir = scratch.join(stringify!($name));
            mkdir(&dir);
            $name(sn, &dir).await;
            assert_no_mounts(scratch);
        }};
    }
    case!(chain_of_three_layers);
    case!(remove_refused_with_children);
    case!(errors_name_their_class);
    case!(stat_list_update);
    case!(usage_grows_with_files);
    case!(empty_view_is_read_only);
    case!(concurrent_creates_and_removes);
    case!(cleanup_keeps_live_snapshots);
}

/// Panics if anything is mounted at or below `dir`.
pub fn assert_no_mounts(dir: &Path) {
    let left = mount_points_under(dir).expect("read mountinfo");
    assert!(left.is_empty(), "mounts left behind: {left:?}");
}

/// The error class of a result, for assertions.
fn class<T: Debug>(r: &Result<T>) -> &'static str {
    match r {
        Ok(_) => "Ok",
        Err(Error::NotFound(_)) => "NotFound",
        Err(Error::AlreadyExists(_)) => "AlreadyExists",
        Err(Error::InvalidArgument(_)) => "InvalidArgument",
        Err(Error::FailedPrecondition(_)) => "FailedPrecondition",
        Err(_) => "other",
    }
}

#[track_caller]
fn assert_class<T: Debug>(r: Result<T>, want: &str) {
    assert_eq!(class(&r), want, "got {r:?}");
}

fn mkdir(p: &Path) -> PathBuf {
    std::fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
    p.to_path_buf()
}

#[track_caller]
fn mount(mounts: &[Mount], at: &Path) -> Mounted {
    mkdir(at);
    Mounted::new(mounts, at).unwrap_or_else(|e| panic!("mount {mounts:?}: {e}"))
}

fn labels(kv: &[(&str, &str)]) -> Labels {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[track_caller]
fn write(p: &Path, data: &str) {
    if let Some(dir) = p.parent() {
        mkdir(dir);
    }
    std::fs::write(p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

#[track_caller]
fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

#[track_caller]
fn assert_read_only(root: &Path) {
    let err = std::fs::write(root.join("not-allowed"), "x").expect_err("a view must be read-only");
    assert_eq!(
        err.raw_os_error(),
        Some(nix::errno::Errno::EROFS as i32),
        "{err}"
    );
}

/// Commits `key` as `name` after writing `files` into it (a one-shot layer).
async fn layer<S: Snapshotter>(
    sn: &S,
    dir: &Path,
    key: &str,
    name: &str,
    parent: &str,
    files: &[(&str, &str)],
) {
    let mounts = sn
        .prepare(key, parent, Labels::new())
        .await
        .expect("prepare");
    {
        let root = dir.join(key);
        let _m = mount(&mounts, &root);
        for (path, data) in files {
            write(&root.join(path), data);
        }
    }
    sn.commit(name, key, Labels::new()).await.expect("commit");
}

/// Three committed layers on top of each other; each mount shows the union of its chain,
/// deletions in a child hide the parent's files, and views are read-only.
async fn chain_of_three_layers<S: Snapshotter>(sn: &S, dir: &Path) {
    // Layer 1, from nothing.
    let mounts = sn
        .prepare("chain-a", "", labels(&[("step", "a")]))
        .await
        .expect("prepare on nothing");
    assert!(!mounts.is_empty());
    let info = sn.stat("chain-a").await.expect("stat");
    assert_eq!((info.kind, info.parent.as_str()), (Kind::Active, ""));
    assert_eq!(info.labels, labels(&[("step", "a")]));
    assert_eq!(sn.mounts("chain-a").await.expect("mounts"), mounts);
    {
        let root = dir.join("a");
        let _m = mount(&mounts, &root);
        write(&root.join("base.txt"), "base");
        write(&root.join("dir/x"), "1");
        write(&root.join("gone.txt"), "delete me in layer 2");
        write(&root.join("dir2/old"), "old");
        std::os::unix::fs::symlink("base.txt", root.join("link")).expect("symlink");
    }
    sn.commit("chain-L1", "chain-a", labels(&[("layer", "1")]))
        .await
        .expect("commit");
    assert_class(sn.stat("chain-a").await, "NotFound");
    let l1 = sn.stat("chain-L1").await.expect("stat committed");
    assert_eq!(l1.kind, Kind::Committed);
    assert_eq!(l1.parent, "");
    assert_eq!(l1.labels, labels(&[("layer", "1")]));
    assert!(sn.is_committed("chain-L1").await.expect("is_committed"));
    assert!(!sn.is_committed("chain-a").await.expect("is_committed"));

    // Layer 2: change, delete, and replace a directory (opaque in overlayfs terms).
    let mounts = sn
        .prepare("chain-b", "chain-L1", Labels::new())
        .await
        .expect("prepare on L1");
    assert!(!sn.is_committed("chain-b").await.expect("is_committed"));
    {
        let root = dir.join("b");
        let _m = mount(&mounts, &root);
        assert_eq!(read(&root.join("base.txt")), "base");
        assert_eq!(read(&root.join("dir/x")), "1");
        write(&root.join("b.txt"), "b");
        write(&root.join("dir/x"), "2");
        std::fs::remove_file(root.join("gone.txt")).expect("delete a parent's file");
        std::fs::remove_dir_all(root.join("dir2")).expect("delete a parent's dir");
        write(&root.join("dir2/new"), "new");
        assert!(!root.join("gone.txt").exists());
    }
    sn.commit("chain-L2", "chain-b", Labels::new())
        .await
        .expect("commit");
    assert_eq!(sn.stat("chain-L2").await.expect("stat").parent, "chain-L1");

    // Layer 3 sees the union of 1 and 2.
    let mounts = sn
        .prepare("chain-c", "chain-L2", Labels::new())
        .await
        .expect("prepare on L2");
    {
        let root = dir.join("c");
        let _m = mount(&mounts, &root);
        let check_union = |root: &Path| {
            assert_eq!(read(&root.join("base.txt")), "base");
            assert_eq!(read(&root.join("b.txt")), "b");
            assert_eq!(read(&root.join("dir/x")), "2");
            assert!(
                !root.join("gone.txt").exists(),
                "whiteout must hide gone.txt"
            );
            assert!(
                !root.join("dir2/old").exists(),
                "opaque dir must hide dir2/old"
            );
            assert_eq!(read(&root.join("dir2/new")), "new");
            assert_eq!(
                std::fs::read_link(root.join("link")).expect("readlink"),
                Path::new("base.txt")
            );
        };
        check_union(&root);
        write(&root.join("c.txt"), "c");
    }
    sn.commit("chain-L3", "chain-c", Labels::new())
        .await
        .expect("commit");

    // A view of the top: everything, read-only.
    let view = sn
        .view("chain-v3", "chain-L3", Labels::new())
        .await
        .expect("view of L3");
    assert_eq!(sn.stat("chain-v3").await.expect("stat").kind, Kind::View);
    assert_eq!(sn.mounts("chain-v3").await.expect("mounts"), view);
    {
        let root = dir.join("v3");
        let _m = mount(&view, &root);
        assert_eq!(read(&root.join("c.txt")), "c");
        assert_eq!(read(&root.join("b.txt")), "b");
        assert!(!root.join("gone.txt").exists());
        assert_read_only(&root);
    }
    // A view of the bottom layer alone: read-only too, and without later layers.
    let view = sn
        .view("chain-v1", "chain-L1", Labels::new())
        .await
        .expect("view of L1");
    {
        let root = dir.join("v1");
        let _m = mount(&view, &root);
        assert_eq!(read(&root.join("gone.txt")), "delete me in layer 2");
        assert!(!root.join("b.txt").exists());
        assert_read_only(&root);
    }
    // A second branch on L1 does not see layer 2's changes.
    let mounts = sn
        .prepare("chain-d", "chain-L1", Labels::new())
        .await
        .expect("second child of L1");
    {
        let root = dir.join("d");
        let _m = mount(&mounts, &root);
        assert!(root.join("gone.txt").exists());
        assert!(!root.join("b.txt").exists());
        assert_eq!(read(&root.join("dir/x")), "1");
    }

    // Committed snapshots are not mounted directly.
    assert_class(sn.mounts("chain-L3").await, "FailedPrecondition");

    // Teardown from the leaves; parents refuse while they have children.
    for key in ["chain-L1", "chain-L2", "chain-L3"] {
        assert_class(sn.remove(key).await, "FailedPrecondition");
    }
    for key in [
        "chain-d", "chain-v1", "chain-v3", "chain-L3", "chain-L2", "chain-L1",
    ] {
        sn.remove(key)
            .await
            .unwrap_or_else(|e| panic!("remove {key}: {e}"));
        assert_class(sn.stat(key).await, "NotFound");
    }
}

async fn remove_refused_with_children<S: Snapshotter>(sn: &S, dir: &Path) {
    layer(sn, dir, "rm-a", "rm-L", "", &[("f", "x")]).await;
    sn.prepare("rm-child", "rm-L", Labels::new())
        .await
        .expect("prepare");
    match sn.remove("rm-L").await {
        Err(Error::FailedPrecondition(msg)) => {
            assert!(
                msg.contains("1 child"),
                "message should count children: {msg}"
            )
        }
        other => panic!("remove of a parent: {other:?}"),
    }
    // Still there and usable.
    assert_eq!(sn.stat("rm-L").await.expect("stat").kind, Kind::Committed);
    sn.remove("rm-child").await.expect("remove the leaf");
    // The key is free at once.
    sn.prepare("rm-child", "rm-L", Labels::new())
        .await
        .expect("reuse a removed key");
    sn.remove("rm-child").await.expect("remove");
    sn.remove("rm-L").await.expect("remove a committed leaf");
    assert_class(sn.remove("rm-L").await, "NotFound");
}

async fn errors_name_their_class<S: Snapshotter>(sn: &S, dir: &Path) {
    layer(sn, dir, "err-a", "err-L", "", &[]).await;
    sn.prepare("err-active", "err-L", Labels::new())
        .await
        .expect("prepare");
    sn.view("err-view", "err-L", Labels::new())
        .await
        .expect("view");
    let before = sn.list(&Filters::all()).await.expect("list").len();

    // Taken keys.
    assert_class(
        sn.prepare("err-active", "", Labels::new()).await,
        "AlreadyExists",
    );
    assert_class(
        sn.prepare("err-L", "", Labels::new()).await,
        "AlreadyExists",
    );
    assert_class(
        sn.view("err-view", "err-L", Labels::new()).await,
        "AlreadyExists",
    );
    // Parents: unknown, or not committed.
    assert_class(
        sn.prepare("err-x", "err-nope", Labels::new()).await,
        "NotFound",
    );
    assert_class(
        sn.view("err-x", "err-nope", Labels::new()).await,
        "NotFound",
    );
    assert_class(
        sn.prepare("err-x", "err-active", Labels::new()).await,
        "InvalidArgument",
    );
    assert_class(
        sn.view("err-x", "err-view", Labels::new()).await,
        "InvalidArgument",
    );
    // Commit: only active snapshots, only to a free name.
    assert_class(
        sn.commit("err-c", "err-view", Labels::new()).await,
        "FailedPrecondition",
    );
    assert_class(
        sn.commit("err-c", "err-L", Labels::new()).await,
        "FailedPrecondition",
    );
    assert_class(
        sn.commit("err-c", "err-nope", Labels::new()).await,
        "NotFound",
    );
    assert_class(
        sn.commit("err-L", "err-active", Labels::new()).await,
        "AlreadyExists",
    );
    assert_eq!(
        sn.stat("err-active").await.expect("still active").kind,
        Kind::Active
    );
    // Malformed input.
    assert_class(sn.prepare("", "", Labels::new()).await, "InvalidArgument");
    assert_class(
        sn.prepare(&"k".repeat(5000), "", Labels::new()).await,
        "InvalidArgument",
    );
    assert_class(
        sn.prepare("err-x", "", labels(&[("big", &"v".repeat(5000))]))
            .await,
        "InvalidArgument",
    );
    assert_class(sn.list(&Filters::default()).await.map(|_| ()), "Ok");
    // Unknown keys everywhere.
    assert_class(sn.stat("err-nope").await, "NotFound");
    assert_class(sn.mounts("err-nope").await, "NotFound");
    assert_class(sn.usage("err-nope").await, "NotFound");
    assert_class(sn.remove("err-nope").await, "NotFound");
    let nope = Info {
        name: "err-nope".into(),
        ..sn.stat("err-L").await.expect("stat")
    };
    assert_class(sn.update(nope, &[]).await, "NotFound");

    // Nothing was created by the failures.
    assert_eq!(sn.list(&Filters::all()).await.expect("list").len(), before);
    assert_class(sn.stat("err-x").await, "NotFound");
    for key in ["err-active", "err-view", "err-L"] {
        sn.remove(key).await.expect("remove");
    }
}

async fn stat_list_update<S: Snapshotter>(sn: &S, dir: &Path) {
    layer(sn, dir, "lu-a", "lu-base", "", &[]).await;
    sn.update(
        Info {
            labels: labels(&[("a", "1")]),
            ..sn.stat("lu-base").await.expect("stat")
        },
        &["labels".into()],
    )
    .await
    .expect("update");
    sn.prepare("lu-active", "lu-base", labels(&[("role", "work")]))
        .await
        .expect("prepare");
    sn.view("lu-view", "lu-base", Labels::new())
        .await
        .expect("view");

    let names = |infos: Vec<Info>| -> Vec<String> {
        let mut v: Vec<String> = infos
            .into_iter()
            .map(|i| i.name)
            .filter(|n| n.starts_with("lu-"))
            .collect();
        v.sort();
        v
    };
    let list = |f: &[&str]| {
        let filters = Filters::parse(f).expect("filters");
        async move { names(sn.list(&filters).await.expect("list")) }
    };
    assert_eq!(list(&[]).await, ["lu-active", "lu-base", "lu-view"]);
    assert_eq!(list(&["kind=committed"]).await, ["lu-base"]);
    assert_eq!(list(&["parent=lu-base"]).await, ["lu-active", "lu-view"]);
    assert_eq!(list(&["kind=view", "parent=lu-base"]).await, ["lu-view"]);
    assert_eq!(
        list(&["kind=view", "kind=active"]).await,
        ["lu-active", "lu-view"]
    );
    assert_eq!(list(&["labels.role=work"]).await, ["lu-active"]);
    assert_eq!(list(&["labels.role"]).await, ["lu-active"]);
    assert_eq!(list(&["labels.role=play"]).await, Vec::<String>::new());
    assert_eq!(
        list(&["name=lu-view", "name=lu-base"]).await,
        ["lu-base", "lu-view"]
    );
    let full = sn
        .list(&Filters::parse(&["name=lu-active"]).expect("filters"))
        .await;
    let full = full.expect("list");
    assert_eq!(full.len(), 1);
    assert_eq!(full[0], sn.stat("lu-active").await.expect("stat"));

    // Labels: one key at a time, or all at once.
    let base = sn.stat("lu-base").await.expect("stat");
    assert_eq!(base.labels, labels(&[("a", "1")]));
    let set_b = Info {
        labels: labels(&[("b", "2")]),
        ..base.clone()
    };
    let info = sn
        .update(set_b.clone(), &["labels.b".into()])
        .await
        .expect("set one label");
    assert_eq!(info.labels, labels(&[("a", "1"), ("b", "2")]));
    assert!(info.updated >= base.updated);
    assert_eq!(info.created, base.created);
    let info = sn
        .update(set_b.clone(), &["labels.a".into()])
        .await
        .expect("remove one label");
    assert_eq!(info.labels, labels(&[("b", "2")]));
    let info = sn
        .update(
            Info {
                labels: labels(&[("c", "3")]),
                ..base.clone()
            },
            &[],
        )
        .await
        .expect("replace labels");
    assert_eq!(info.labels, labels(&[("c", "3")]));
    assert_eq!(sn.stat("lu-base").await.expect("stat"), info);
    // Only labels can change.
    assert_class(
        sn.update(set_b.clone(), &["parent".into()]).await,
        "InvalidArgument",
    );
    assert_class(sn.update(set_b, &["name".into()]).await, "InvalidArgument");
    assert_eq!(
        sn.stat("lu-base").await.expect("stat").labels,
        labels(&[("c", "3")])
    );

    for key in ["lu-active", "lu-view", "lu-base"] {
        sn.remove(key).await.expect("remove");
    }
}

async fn usage_grows_with_files<S: Snapshotter>(sn: &S, dir: &Path) {
    let mounts = sn
        .prepare("us-a", "", Labels::new())
        .await
        .expect("prepare");
    let before = sn.usage("us-a").await.expect("usage");
    let mib = 1 << 20;
    {
        let root = dir.join("a");
        let _m = mount(&mounts, &root);
        let data: Vec<u8> = (0..mib).map(|i| (i % 251) as u8).collect();
        std::fs::write(root.join("big"), &data).expect("write");
        write(&root.join("d/small"), "x");
        std::fs::hard_link(root.join("big"), root.join("big-again")).expect("link");
    }
    let after = sn.usage("us-a").await.expect("usage");
    assert!(
        after.size >= before.size + mib as u64,
        "size {before:?} -> {after:?}"
    );
    // big, d, d/small; the hard link is the same inode.
    assert_eq!(after.inodes, before.inodes + 3, "{before:?} -> {after:?}");
    sn.commit("us-L", "us-a", Labels::new())
        .await
        .expect("commit");
    assert_eq!(sn.usage("us-L").await.expect("usage"), after);
    // A child starts small: usage does not count parents.
    sn.prepare("us-b", "us-L", Labels::new())
        .await
        .expect("prepare");
    assert!(sn.usage("us-b").await.expect("usage").size < mib as u64);
    sn.remove("us-b").await.expect("remove");
    sn.remove("us-L").await.expect("remove");
}

async fn empty_view_is_read_only<S: Snapshotter>(sn: &S, dir: &Path) {
    let mounts = sn
        .view("ro-empty", "", Labels::new())
        .await
        .expect("view of nothing");
    {
        let root = dir.join("v");
        let _m = mount(&mounts, &root);
        let entries = std::fs::read_dir(&root).expect("readdir").count();
        assert_eq!(entries, 0);
        assert_read_only(&root);
    }
    sn.remove("ro-empty").await.expect("remove");
}

async fn concurrent_creates_and_removes<S: Snapshotter>(sn: &S, dir: &Path) {
    // Eight prepares of one key: exactly one wins.
    let results =
        futures::future::join_all((0..8).map(|_| sn.prepare("cc-key", "", Labels::new()))).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    for r in results.into_iter().filter(|r| r.is_err()) {
        assert_class(r, "AlreadyExists");
    }
    sn.remove("cc-key").await.expect("remove");

    // Removing a parent while a child is prepared on it: never both.
    for round in 0..4 {
        let parent = format!("cc-L{round}");
        layer(sn, dir, &format!("cc-a{round}"), &parent, "", &[]).await;
        let child = format!("cc-child{round}");
        let (removed, prepared) = futures::join!(
            sn.remove(&parent),
            sn.prepare(&child, &parent, Labels::new())
        );
        match (class(&removed), class(&prepared)) {
            ("Ok", "NotFound") | ("Ok", "InvalidArgument") => {}
            ("FailedPrecondition", "Ok") => {
                sn.remove(&child).await.expect("remove child");
                sn.remove(&parent).await.expect("remove parent");
            }
            other => panic!("remove {removed:?} / prepare {prepared:?}: {other:?}"),
        }
    }
}

async fn cleanup_keeps_live_snapshots<S: Snapshotter>(sn: &S, dir: &Path) {
    layer(sn, dir, "cl-a", "cl-L", "", &[("keep", "me")]).await;
    let mounts = sn
        .prepare("cl-b", "cl-L", Labels::new())
        .await
        .expect("prepare");
    sn.cleanup().await.expect("cleanup");
    {
        let root = dir.join("b");
        let _m = mount(&mounts, &root);
        assert_eq!(read(&root.join("keep")), "me");
    }
    sn.remove("cl-b").await.expect("remove");
    sn.remove("cl-L").await.expect("remove");
    // Whatever remove left for cleanup, one cleanup takes it all.
    sn.cleanup().await.expect("cleanup");
    let second = sn.cleanup().await.expect("cleanup");
    assert_eq!(second.removed, 0, "{second:?}");
    assert_class(sn.stat("cl-L").await, "NotFound");
}
