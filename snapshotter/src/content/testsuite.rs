//! The conformance suite of [`ContentStore`], as containerd's `core/content/testsuite`:
//! every implementation (the local store, the gRPC client through the service) must pass
//! it. Test support: the checks panic on failure.
//!
//! The checks share one store; each uses its own refs (prefix `testsuite-<check>-`) and its
//! own data, so they do not see each other's blobs and may run in any order.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{read_blob, write_bytes, ContentStore, ContentWriter, Filters, Labels};
use crate::digest::Digest;
use crate::error::Error;

/// Runs every check against `store`.
pub async fn run<S: ContentStore>(store: &S) {
    write_commit_read(store).await;
    info_list_and_labels(store).await;
    delete(store).await;
    digest_mismatch(store).await;
    size_mismatch(store).await;
    resume(store).await;
    concurrent_writer(store).await;
    abort(store).await;
    commit_existing(store).await;
    read_at_offset(store).await;
    restart_at_zero(store).await;
    statuses(store).await;
    invalid_input(store).await;
}

/// `len` bytes that differ per `seed` (xorshift), so every check has its own digests.
pub fn data(seed: &str, len: usize) -> Bytes {
    let mut x = Digest::of(seed.as_bytes())
        .hex()
        .bytes()
        .fold(0x9e37_79b9_7f4a_7c15_u64, |a, b| {
            a.rotate_left(5) ^ u64::from(b)
        })
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn labels(kv: &[(&str, &str)]) -> Labels {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[track_caller]
fn assert_err<T: std::fmt::Debug>(r: Result<T, Error>, want: impl Fn(&Error) -> bool, what: &str) {
    match r {
        Err(e) if want(&e) => {}
        other => panic!("{what}: unexpected result {other:?}"),
    }
}

fn not_found(e: &Error) -> bool {
    matches!(e, Error::NotFound(_))
}

fn locked(e: &Error) -> bool {
    matches!(e, Error::FailedPrecondition(m) if m.contains("locked"))
}

/// Opens a writer, waiting out a lock still held by a writer just dropped: dropping a
/// remote writer ends its call, but the server learns of it a moment later.
async fn reopen<S: ContentStore>(store: &S, reference: &str) -> S::Writer {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match store.writer(reference, None, None).await {
            Ok(w) => return w,
            Err(e) if locked(&e) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("reopen {reference}: {e}"),
        }
    }
}

/// Writes, commits, reads back; the ingest is gone afterwards.
pub async fn write_commit_read<S: ContentStore>(store: &S) {
    let r = "testsuite-write-1";
    let blob = data(r, 3 * 1024 * 1024 + 17);
    let d = Digest::of(&blob);
    let mut w = store
        .writer(r, Some(blob.len() as u64), Some(d.clone()))
        .await
        .unwrap();
    let st = w.status().await.unwrap();
    assert_eq!((st.offset, st.total), (0, Some(blob.len() as u64)));
    assert_eq!(st.expected.as_ref(), Some(&d));
    assert_eq!(st.reference, r);
    let mut off = 0;
    for piece in blob.chunks(700 * 1024) {
        w.write_at(off, Bytes::copy_from_slice(piece))
            .await
            .unwrap();
        off += piece.len() as u64;
    }
    assert_eq!(w.status().await.unwrap().offset, blob.len() as u64);
    let got = w
        .commit(None, None, labels(&[("berth.test/check", "write")]))
        .await
        .unwrap();
    assert_eq!(got, d);
    let info = store.info(&d).await.unwrap();
    assert_eq!(info.size, blob.len() as u64);
    assert_eq!(info.labels, labels(&[("berth.test/check", "write")]));
    assert!(info.updated_at >= info.created_at);
    assert_eq!(read_blob(store, &d).await.unwrap(), blob);
    assert_err(store.status(r).await, not_found, "status after commit");
}

/// Info, list with filters, and label updates by field path.
pub async fn info_list_and_labels<S: ContentStore>(store: &S) {
    let (a, b) = (data("testsuite-list-a", 100), data("testsuite-list-b", 200));
    let (da, db) = (Digest::of(&a), Digest::of(&b));
    let check = ("berth.test/check", "list");
    write_bytes(
        store,
        "testsuite-list-a",
        a,
        &da,
        labels(&[check, ("k", "a")]),
    )
    .await
    .unwrap();
    write_bytes(
        store,
        "testsuite-list-b",
        b,
        &db,
        labels(&[check, ("k", "b")]),
    )
    .await
    .unwrap();

    let ours = Filters::all().with_label(check.0, Some(check.1));
    let listed = store.list(&ours).await.unwrap();
    let mut want = vec![da.clone(), db.clone()];
    want.sort();
    assert_eq!(
        listed.iter().map(|i| i.digest.clone()).collect::<Vec<_>>(),
        want
    );
    assert!(store.list(&Filters::all()).await.unwrap().len() >= 2);
    let only_a = Filters::parse([
        format!("labels.{}={}", check.0, check.1),
        "labels.k=a".into(),
    ])
    .unwrap();
    let listed = store.list(&only_a).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].digest, da);
    assert_eq!(listed[0].size, 100);
    let by_digest = Filters::all().with_digest(db.as_str());
    assert_eq!(store.list(&by_digest).await.unwrap()[0].digest, db);
    let either = Filters::all()
        .with_label("k", Some("a"))
        .with_label("k", Some("b"))
        .with_label(check.0, None);
    assert_eq!(store.list(&either).await.unwrap().len(), 2);

    // Set one label, remove another, leave the rest.
    let before = store.info(&da).await.unwrap();
    let paths = ["labels.new".to_string(), "labels.k".to_string()];
    let info = store
        .update(&da, labels(&[("new", "1")]), &paths)
        .await
        .unwrap();
    assert_eq!(info.labels, labels(&[check, ("new", "1")]));
    assert_eq!(info.created_at, before.created_at);
    assert!(info.updated_at >= before.updated_at);
    assert_eq!(store.info(&da).await.unwrap().labels, info.labels);
    // No paths: replace them all.
    let info = store
        .update(&da, labels(&[("only", "x")]), &[])
        .await
        .unwrap();
    assert_eq!(info.labels, labels(&[("only", "x")]));
    assert_err(
        store.update(&da, Labels::new(), &["size".into()]).await,
        |e| matches!(e, Error::InvalidArgument(_)),
        "update of a field other than labels",
    );
    let absent = Digest::of(b"testsuite-list-absent");
    assert_err(
        store.update(&absent, Labels::new(), &[]).await,
        not_found,
        "update of a missing blob",
    );
    assert_err(
        store.info(&absent).await,
        not_found,
        "info of a missing blob",
    );
}

/// Delete removes the blob from info, read and list.
pub async fn delete<S: ContentStore>(store: &S) {
    let blob = data("testsuite-delete", 1000);
    let d = Digest::of(&blob);
    write_bytes(store, "testsuite-delete", blob, &d, labels(&[("x", "y")]))
        .await
        .unwrap();
    store.delete(&d).await.unwrap();
    assert_err(store.info(&d).await, not_found, "info after delete");
    assert_err(
        store.read(&d, 0, None).await.map(|_| ()),
        not_found,
        "read after delete",
    );
    assert_err(store.delete(&d).await, not_found, "second delete");
    let listed = store
        .list(&Filters::all().with_digest(d.as_str()))
        .await
        .unwrap();
    assert!(listed.is_empty());
}

/// A wrong digest commits nothing and keeps the ingest, which can then be committed under
/// the right digest.
pub async fn digest_mismatch<S: ContentStore>(store: &S) {
    let r = "testsuite-digest-mismatch";
    let blob = data(r, 5000);
    let right = Digest::of(&blob);
    let wrong = Digest::of(b"testsuite-something-else");
    let mut w = store.writer(r, None, Some(wrong.clone())).await.unwrap();
    w.write_at(0, blob.clone()).await.unwrap();
    assert_err(
        w.commit(None, None, Labels::new()).await,
        |e| matches!(e, Error::DigestMismatch { expected, actual, .. } if *expected == wrong.to_string() && *actual == right.to_string()),
        "commit with a wrong digest",
    );
    assert_err(
        store.info(&right).await,
        not_found,
        "info of the refused blob",
    );
    assert_err(
        store.info(&wrong).await,
        not_found,
        "info of the expected digest",
    );
    let st = store.status(r).await.unwrap();
    assert_eq!(st.offset, blob.len() as u64, "the ingest is kept");
    let w = reopen(store, r).await;
    assert_eq!(
        w.commit(None, Some(right.clone()), Labels::new())
            .await
            .unwrap(),
        right
    );
    assert_eq!(read_blob(store, &right).await.unwrap(), blob);
}

/// A wrong size commits nothing.
pub async fn size_mismatch<S: ContentStore>(store: &S) {
    let r = "testsuite-size-mismatch";
    let blob = data(r, 4096);
    let d = Digest::of(&blob);
    let mut w = store.writer(r, None, None).await.unwrap();
    w.write_at(0, blob.clone()).await.unwrap();
    assert_err(
        w.commit(Some(4097), Some(d.clone()), Labels::new()).await,
        |e| {
            matches!(
                e,
                Error::SizeMismatch {
                    expected: 4097,
                    actual: 4096,
                    ..
                }
            )
        },
        "commit with a wrong size",
    );
    assert_err(store.info(&d).await, not_found, "info of the refused blob");
    assert_eq!(store.status(r).await.unwrap().total, Some(4097));
    let mut w = reopen(store, r).await;
    w.set_expected(Some(4096), None).await.unwrap();
    assert_eq!(
        w.commit(None, Some(d.clone()), Labels::new())
            .await
            .unwrap(),
        d
    );
}

/// A writer dropped midway leaves its bytes; the next one resumes at their end, and a
/// write at another offset than the current one (or 0) is refused.
pub async fn resume<S: ContentStore>(store: &S) {
    let r = "testsuite-resume";
    let blob = data(r, 2 * 1024 * 1024 + 5);
    let d = Digest::of(&blob);
    let half = blob.len() / 2;
    let mut w = store
        .writer(r, Some(blob.len() as u64), Some(d.clone()))
        .await
        .unwrap();
    w.write_at(0, blob.slice(..half)).await.unwrap();
    drop(w);

    let mut w = reopen(store, r).await;
    let st = w.status().await.unwrap();
    assert_eq!(st.offset, half as u64);
    assert_eq!(st.expected.as_ref(), Some(&d));
    assert_eq!(st.total, Some(blob.len() as u64));
    assert_eq!(store.status(r).await.unwrap().offset, half as u64);
    // A remote writer learns of a refused write on its next call.
    let wrong_offset = async {
        w.write_at(half as u64 + 1, Bytes::from_static(b"x"))
            .await?;
        w.status().await
    };
    assert_err(
        wrong_offset.await,
        |e| matches!(e, Error::FailedPrecondition(_)),
        "write past the current offset",
    );
    drop(w);

    // Close releases the ref at once: the next writer needs no waiting.
    let mut w = reopen(store, r).await;
    w.write_at(half as u64, blob.slice(half..half + 10))
        .await
        .unwrap();
    w.close().await.unwrap();
    let mut w = store.writer(r, None, None).await.unwrap();
    assert_eq!(w.status().await.unwrap().offset, half as u64 + 10);
    w.write_at(half as u64 + 10, blob.slice(half + 10..))
        .await
        .unwrap();
    assert_eq!(w.commit(None, None, Labels::new()).await.unwrap(), d);
    assert_eq!(read_blob(store, &d).await.unwrap(), blob);
}

/// One writer per ref: a second one, and an abort, are refused while the first holds it.
pub async fn concurrent_writer<S: ContentStore>(store: &S) {
    let r = "testsuite-concurrent";
    let mut w = store.writer(r, None, None).await.unwrap();
    w.write_at(0, Bytes::from_static(b"first")).await.unwrap();
    assert_err(
        store.writer(r, None, None).await.map(|_| ()),
        locked,
        "second writer",
    );
    assert_err(
        store.abort(r).await,
        |e| matches!(e, Error::FailedPrecondition(_)),
        "abort of a held ingest",
    );
    // Status may look at a held ingest.
    assert_eq!(store.status(r).await.unwrap().offset, 5);
    w.close().await.unwrap();
    let w = store.writer(r, None, None).await.unwrap();
    w.close().await.unwrap();
    store.abort(r).await.unwrap();
}

/// Abort deletes the ingest.
pub async fn abort<S: ContentStore>(store: &S) {
    let r = "testsuite-abort";
    let mut w = store.writer(r, None, None).await.unwrap();
    w.write_at(0, data(r, 300)).await.unwrap();
    w.close().await.unwrap();
    store.abort(r).await.unwrap();
    assert_err(store.status(r).await, not_found, "status after abort");
    assert_err(store.abort(r).await, not_found, "second abort");
    assert!(store.list_statuses(r).await.unwrap().is_empty());
    // The ref is free and starts from nothing.
    let mut w = store.writer(r, None, None).await.unwrap();
    assert_eq!(w.status().await.unwrap().offset, 0);
    w.close().await.unwrap();
    store.abort(r).await.unwrap();
}

/// Committing a stored digest is AlreadyExists and removes the ingest.
pub async fn commit_existing<S: ContentStore>(store: &S) {
    let blob = data("testsuite-existing", 777);
    let d = Digest::of(&blob);
    write_bytes(
        store,
        "testsuite-existing-1",
        blob.clone(),
        &d,
        labels(&[("first", "1")]),
    )
    .await
    .unwrap();
    let r = "testsuite-existing-2";
    let mut w = store.writer(r, None, None).await.unwrap();
    w.write_at(0, blob.clone()).await.unwrap();
    assert_err(
        w.commit(None, Some(d.clone()), labels(&[("second", "2")]))
            .await,
        |e| matches!(e, Error::AlreadyExists(_)),
        "commit of a stored digest",
    );
    assert_err(
        store.status(r).await,
        not_found,
        "ingest after AlreadyExists",
    );
    // The stored blob is unchanged, labels included.
    assert_eq!(
        store.info(&d).await.unwrap().labels,
        labels(&[("first", "1")])
    );
    // write_bytes treats it as done.
    write_bytes(store, "testsuite-existing-3", blob, &d, Labels::new())
        .await
        .unwrap();
}

async fn read_range<S: ContentStore>(
    store: &S,
    d: &Digest,
    offset: u64,
    len: Option<u64>,
) -> Vec<u8> {
    use futures::TryStreamExt;
    let chunks: Vec<Bytes> = store
        .read(d, offset, len)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    chunks.concat()
}

/// Reads from an offset, of a length, cut at the end; past the end is OutOfRange.
pub async fn read_at_offset<S: ContentStore>(store: &S) {
    let blob = data("testsuite-read", 2 * 1024 * 1024 + 512 * 1024);
    let d = Digest::of(&blob);
    write_bytes(store, "testsuite-read", blob.clone(), &d, Labels::new())
        .await
        .unwrap();
    let size = blob.len() as u64;
    assert_eq!(read_range(store, &d, 1000, None).await, blob[1000..]);
    assert_eq!(
        read_range(store, &d, 1_500_000, Some(10)).await,
        blob[1_500_000..1_500_010]
    );
    assert_eq!(
        read_range(store, &d, size - 3, Some(100)).await,
        blob[blob.len() - 3..]
    );
    assert!(read_range(store, &d, size, None).await.is_empty());
    assert!(read_range(store, &d, 5, Some(0)).await.is_empty());
    assert_err(
        store.read(&d, size + 1, None).await.map(|_| ()),
        |e| matches!(e, Error::OutOfRange(_)),
        "read past the end",
    );
}

/// A write at offset 0 starts the ingest over.
pub async fn restart_at_zero<S: ContentStore>(store: &S) {
    let r = "testsuite-restart";
    let blob = data(r, 10_000);
    let d = Digest::of(&blob);
    let mut w = store.writer(r, None, Some(d.clone())).await.unwrap();
    w.write_at(0, data("garbage", 20_000)).await.unwrap();
    w.write_at(0, blob.slice(..4000)).await.unwrap();
    w.write_at(4000, blob.slice(4000..)).await.unwrap();
    assert_eq!(w.commit(None, None, Labels::new()).await.unwrap(), d);
    assert_eq!(read_blob(store, &d).await.unwrap(), blob);
}

/// Statuses by prefix, sorted by ref, with what the writers said.
pub async fn statuses<S: ContentStore>(store: &S) {
    let d = Digest::of(b"testsuite-status");
    for (r, n) in [("testsuite-status-b", 2), ("testsuite-status-a", 1)] {
        let mut w = store.writer(r, Some(99), None).await.unwrap();
        w.set_expected(None, Some(d.clone())).await.unwrap();
        w.write_at(0, data(r, n)).await.unwrap();
        w.close().await.unwrap();
    }
    let st = store.list_statuses("testsuite-status-").await.unwrap();
    let refs: Vec<_> = st
        .iter()
        .map(|s| (s.reference.as_str(), s.offset))
        .collect();
    assert_eq!(refs, [("testsuite-status-a", 1), ("testsuite-status-b", 2)]);
    assert!(st
        .iter()
        .all(|s| s.total == Some(99) && s.expected.as_ref() == Some(&d)));
    // File times are kept at the kernel's coarse clock resolution: allow for it.
    let slack = std::time::Duration::from_millis(20);
    assert!(st.iter().all(|s| s.updated_at + slack >= s.started_at));
    store.abort("testsuite-status-a").await.unwrap();
    store.abort("testsuite-status-b").await.unwrap();
    assert!(store
        .list_statuses("testsuite-status-")
        .await
        .unwrap()
        .is_empty());
}

/// Malformed input is InvalidArgument, with nothing stored.
pub async fn invalid_input<S: ContentStore>(store: &S) {
    let invalid = |e: &Error| matches!(e, Error::InvalidArgument(_));
    assert_err(
        store.writer("", None, None).await.map(|_| ()),
        invalid,
        "empty ref",
    );
    assert_err(store.status("").await, invalid, "status of an empty ref");
    let r = "testsuite-invalid";
    let mut w = store.writer(r, None, None).await.unwrap();
    w.write_at(0, Bytes::from_static(b"abc")).await.unwrap();
    assert_err(
        w.commit(None, None, Labels::new()).await,
        invalid,
        "commit without a digest",
    );
    let d = Digest::of(b"abc");
    let w = reopen(store, r).await;
    let big = labels(&[("k", &"v".repeat(5000))]);
    assert_err(
        w.commit(None, Some(d.clone()), big).await,
        invalid,
        "oversized label",
    );
    assert_err(
        store.info(&d).await,
        not_found,
        "info after refused commits",
    );
    let w = reopen(store, r).await;
    w.close().await.unwrap();
    store.abort(r).await.unwrap();
}
