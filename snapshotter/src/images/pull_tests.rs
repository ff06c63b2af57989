//! Pull and push pipeline tests against an in-memory registry (`Fake`). The parts that
//! unpack layers need root (ownership, devices), as the layer tests do.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use berth_proto::types::v1::TransferProgress;
use serde_json::json;

use super::*;
use crate::content::ContentStore;
use crate::images::push::{self, PushOptions, Sink};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// An in-memory registry: manifests by repository and tag, blobs by digest (shared by all
/// repositories, as far as mounts go), with request counters.
#[derive(Default)]
struct Fake {
    tags: Mutex<HashMap<String, String>>,
    manifests: Mutex<HashMap<String, (String, Bytes)>>,
    blobs: Mutex<HashMap<String, Bytes>>,
    /// Blobs by repository path (for HEAD and mounts).
    repos: Mutex<HashMap<String, Vec<String>>>,
    /// Blob GETs by digest, with their offsets.
    fetches: Mutex<Vec<(String, u64)>>,
    /// Push calls, in order: ("head"|"mount"|"upload"|"manifest", digest or tag).
    calls: Mutex<Vec<(String, String)>>,
    /// Pause between chunks of a blob download.
    delay: Mutex<Duration>,
    chunk: usize,
}

impl Fake {
    fn new() -> Arc<Self> {
        Arc::new(Fake {
            chunk: 64 * 1024,
            ..Default::default()
        })
    }

    fn add_blob(&self, data: &[u8]) -> Descriptor {
        let digest = Digest::of(data).to_string();
        self.blobs
            .lock()
            .unwrap()
            .insert(digest.clone(), Bytes::copy_from_slice(data));
        Descriptor {
            media_type: String::new(),
            digest,
            size: data.len() as i64,
            annotations: BTreeMap::new(),
        }
    }

    fn add_manifest(&self, media_type: &str, doc: serde_json::Value) -> Descriptor {
        let bytes = serde_json::to_vec(&doc).unwrap();
        let digest = Digest::of(&bytes).to_string();
        self.manifests.lock().unwrap().insert(
            digest.clone(),
            (media_type.into(), Bytes::from(bytes.clone())),
        );
        Descriptor {
            media_type: media_type.into(),
            digest,
            size: bytes.len() as i64,
            annotations: BTreeMap::new(),
        }
    }

    fn tag(&self, reference: &str, digest: &str) {
        self.tags
            .lock()
            .unwrap()
            .insert(reference.into(), digest.into());
    }

    fn fetches_of(&self, digest: &str) -> Vec<u64> {
        self.fetches
            .lock()
            .unwrap()
            .iter()
            .filter(|(d, _)| d == digest)
            .map(|(_, o)| *o)
            .collect()
    }

    fn source(self: &Arc<Self>, reference: &str) -> Arc<FakeRepo> {
        Arc::new(FakeRepo {
            reference: Reference::parse(reference).unwrap(),
            registry: self.clone(),
        })
    }

    fn manifest(&self, digest: &str) -> Result<Fetched> {
        let (media_type, bytes) = self
            .manifests
            .lock()
            .unwrap()
            .get(digest)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("manifest {digest}")))?;
        Ok(Fetched {
            descriptor: Descriptor {
                media_type,
                digest: digest.into(),
                size: bytes.len() as i64,
                annotations: BTreeMap::new(),
            },
            bytes,
        })
    }
}

struct FakeRepo {
    reference: Reference,
    registry: Arc<Fake>,
}

impl Source for FakeRepo {
    fn reference(&self) -> &Reference {
        &self.reference
    }

    async fn resolve(&self) -> Result<Fetched> {
        let digest = self
            .registry
            .tags
            .lock()
            .unwrap()
            .get(&self.reference.to_string())
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("manifest unknown: {}", self.reference)))?;
        self.registry.manifest(&digest)
    }

    async fn fetch_manifest(&self, digest: &str) -> Result<Fetched> {
        self.registry.manifest(digest)
    }

    async fn fetch_blob(&self, digest: &str, size: u64, offset: u64) -> Result<ByteStream> {
        let data = self
            .registry
            .blobs
            .lock()
            .unwrap()
            .get(digest)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("blob {digest}")))?;
        assert_eq!(data.len() as u64, size, "size of {digest}");
        self.registry
            .fetches
            .lock()
            .unwrap()
            .push((digest.to_string(), offset));
        let delay = *self.registry.delay.lock().unwrap();
        let chunk = self.registry.chunk;
        let start = offset as usize;
        Ok(Box::pin(futures::stream::unfold(start, move |pos| {
            let data = data.clone();
            async move {
                if pos >= data.len() {
                    return None;
                }
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let end = (pos + chunk).min(data.len());
                Some((Ok(data.slice(pos..end)), end))
            }
        })))
    }
}

impl Sink for FakeRepo {
    fn reference(&self) -> &Reference {
        &self.reference
    }

    async fn blob_exists(&self, digest: &str) -> Result<Option<u64>> {
        let r = &self.registry;
        r.calls.lock().unwrap().push(("head".into(), digest.into()));
        let has = r
            .repos
            .lock()
            .unwrap()
            .get(self.reference.path())
            .is_some_and(|b| b.iter().any(|d| d == digest));
        Ok(has.then_some(0))
    }

    async fn mount_blob(&self, digest: &str, from: &str) -> Result<bool> {
        let r = &self.registry;
        r.calls
            .lock()
            .unwrap()
            .push(("mount".into(), format!("{digest} from {from}")));
        let mut repos = r.repos.lock().unwrap();
        if !repos
            .get(from)
            .is_some_and(|b| b.iter().any(|d| d == digest))
        {
            return Ok(false);
        }
        repos
            .entry(self.reference.path().to_string())
            .or_default()
            .push(digest.into());
        Ok(true)
    }

    async fn push_blob(&self, digest: &str, size: u64, mut data: ByteStream) -> Result<()> {
        let mut all = Vec::new();
        while let Some(chunk) = data.next().await {
            all.extend_from_slice(&chunk?);
        }
        assert_eq!(all.len() as u64, size);
        assert_eq!(Digest::of(&all).as_str(), digest);
        let r = &self.registry;
        r.calls
            .lock()
            .unwrap()
            .push(("upload".into(), digest.into()));
        r.blobs
            .lock()
            .unwrap()
            .insert(digest.into(), Bytes::from(all));
        r.repos
            .lock()
            .unwrap()
            .entry(self.reference.path().to_string())
            .or_default()
            .push(digest.into());
        Ok(())
    }

    async fn push_manifest(
        &self,
        tag_or_digest: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<String> {
        let digest = Digest::of(&bytes).to_string();
        let r = &self.registry;
        r.calls
            .lock()
            .unwrap()
            .push(("manifest".into(), tag_or_digest.into()));
        r.manifests
            .lock()
            .unwrap()
            .insert(digest.clone(), (media_type.into(), bytes));
        if !tag_or_digest.starts_with("sha256:") {
            let tagged = self
                .reference
                .with_tag(tag_or_digest)
                .map_err(Error::from)?;
            r.tag(&tagged.to_string(), &digest);
        }
        Ok(digest)
    }
}

/// A gzipped layer of `files` (name, contents) and its diff ID.
fn layer(files: &[(&str, &[u8])]) -> (Vec<u8>, String) {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let diff_id = Digest::of(&tar).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

/// Some bytes that do not compress, so downloads take several chunks.
fn noise(seed: u8, len: usize) -> Vec<u8> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Publishes an image of `layers` for `platform` ("os/arch"); returns its manifest.
fn publish(reg: &Fake, layers: &[(Vec<u8>, String)], platform: &Platform) -> Descriptor {
    publish_with(reg, layers, platform, None)
}

fn publish_with(
    reg: &Fake,
    layers: &[(Vec<u8>, String)],
    platform: &Platform,
    diff_ids: Option<Vec<String>>,
) -> Descriptor {
    let diff_ids = diff_ids.unwrap_or_else(|| layers.iter().map(|(_, d)| d.clone()).collect());
    let config = serde_json::to_vec(&json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {"Cmd": ["/bin/sh"]},
    }))
    .unwrap();
    let config = reg.add_blob(&config);
    let layer_descs: Vec<_> = layers
        .iter()
        .map(|(blob, _)| {
            let d = reg.add_blob(blob);
            json!({"mediaType": media::OCI_LAYER_GZIP, "digest": d.digest, "size": d.size})
        })
        .collect();
    reg.add_manifest(
        media::OCI_MANIFEST,
        json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "digest": config.digest, "size": config.size},
            "layers": layer_descs,
        }),
    )
}

fn other_platform() -> Platform {
    let host = Platform::host();
    Platform {
        os: "linux".into(),
        architecture: if host.architecture == "s390x" {
            "riscv64"
        } else {
            "s390x"
        }
        .into(),
        variant: String::new(),
    }
}

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    downloads: Arc<Downloads>,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    Env {
        _dir: dir,
        store,
        downloads: Arc::new(Downloads::new()),
    }
}

impl Env {
    async fn pull(&self, source: Arc<FakeRepo>, opts: PullOptions) -> Result<Pulled> {
        pull(
            self.store.clone(),
            self.downloads.clone(),
            source,
            opts,
            Progress::discard(),
        )
        .await
    }

    async fn pull_with_progress(
        &self,
        source: Arc<FakeRepo>,
    ) -> (Result<Pulled>, Vec<TransferProgress>) {
        let (progress, mut rx) = Progress::channel();
        let collect = tokio::spawn(async move {
            let mut all = Vec::new();
            while let Some(p) = rx.recv().await {
                all.push(p);
            }
            all
        });
        let r = pull(
            self.store.clone(),
            self.downloads.clone(),
            source,
            PullOptions::default(),
            progress,
        )
        .await;
        (r, collect.await.unwrap())
    }

    fn read_file(&self, chain: &str, path: &str) -> Option<Vec<u8>> {
        let dir = self.store.snapshots.upper_dir(chain).ok()?;
        std::fs::read(dir.join(path)).ok()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_stores_unpacks_records_and_then_is_up_to_date() {
    if !is_root() {
        return;
    }
    let reg = Fake::new();
    let layers = vec![
        layer(&[("base", b"base layer"), ("big", &noise(1, 300_000))]),
        layer(&[("mid", b"middle")]),
        layer(&[("top", b"top layer")]),
    ];
    let m = publish(&reg, &layers, &Platform::host());
    reg.tag("localhost:5000/app:1", &m.digest);
    let env = env().await;
    let (pulled, progress) = env
        .pull_with_progress(reg.source("localhost:5000/app:1"))
        .await;
    let pulled = pulled.unwrap();
    assert_eq!(pulled.record.name, "localhost:5000/app:1");
    assert_eq!(pulled.record.target.digest, m.digest);
    assert_eq!(pulled.record.target.media_type, media::OCI_MANIFEST);
    assert!(!pulled.up_to_date);
    assert_eq!(pulled.platform, Platform::host());
    assert_eq!(pulled.image.chain_ids.len(), 3);
    for chain in &pulled.image.chain_ids {
        assert!(env.store.snapshots.is_committed(chain).await.unwrap());
    }
    assert_eq!(
        env.read_file(&pulled.image.chain_ids[0], "base").as_deref(),
        Some(&b"base layer"[..])
    );
    assert_eq!(
        env.read_file(pulled.image.top_chain_id(), "top").as_deref(),
        Some(&b"top layer"[..])
    );
    // Progress: resolving first, every layer complete, nothing failed.
    assert_eq!(progress[0].status, TransferStatus::Resolving as i32);
    for l in &pulled.image.layers {
        assert!(progress.iter().any(|p| p.digest == l.digest
            && p.status == TransferStatus::Complete as i32
            && p.kind == BlobKind::Layer as i32));
    }
    assert!(!progress
        .iter()
        .any(|p| p.status == TransferStatus::Failed as i32));
    // Blobs carry where they came from; no ingest is left.
    let info = env
        .store
        .content
        .info(&Digest::parse(&pulled.image.layers[0].digest).unwrap())
        .await
        .unwrap();
    assert_eq!(
        info.labels
            .get("berth.distribution.source.localhost:5000")
            .map(String::as_str),
        Some("app")
    );
    assert!(env
        .store
        .content
        .list_statuses(INGEST_PREFIX)
        .await
        .unwrap()
        .is_empty());

    // Again: nothing fetched, nothing unpacked.
    let again = env
        .pull(reg.source("localhost:5000/app:1"), PullOptions::default())
        .await
        .unwrap();
    assert!(again.up_to_date);
    for l in &pulled.image.layers {
        assert_eq!(reg.fetches_of(&l.digest).len(), 1, "{}", l.digest);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_of_images_sharing_layers_fetch_each_blob_once() {
    if !is_root() {
        return;
    }
    let reg = Fake::new();
    *reg.delay.lock().unwrap() = Duration::from_millis(2);
    let base = layer(&[("base", &noise(2, 1_000_000))]);
    let a = publish(
        &reg,
        &[base.clone(), layer(&[("a", b"a")])],
        &Platform::host(),
    );
    let b = publish(
        &reg,
        &[base.clone(), layer(&[("b", b"b")])],
        &Platform::host(),
    );
    reg.tag("localhost:5000/a:1", &a.digest);
    reg.tag("localhost:5000/b:1", &b.digest);
    let env = env().await;
    let (ra, rb) = tokio::join!(
        env.pull(reg.source("localhost:5000/a:1"), PullOptions::default()),
        env.pull(reg.source("localhost:5000/b:1"), PullOptions::default()),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let base_digest = &ra.image.layers[0].digest;
    assert_eq!(base_digest, &rb.image.layers[0].digest);
    assert_eq!(
        reg.fetches_of(base_digest),
        [0],
        "the shared layer is fetched once"
    );
    assert_eq!(ra.image.chain_ids[0], rb.image.chain_ids[0]);
    assert!(env.read_file(ra.image.top_chain_id(), "a").is_some());
    assert!(env.read_file(rb.image.top_chain_id(), "b").is_some());
    assert!(env.downloads.is_empty());
    // The shared layer's snapshot is one snapshot, labelled with both repositories.
    let info = env
        .store
        .content
        .info(&Digest::parse(base_digest).unwrap())
        .await
        .unwrap();
    let sources = &info.labels["berth.distribution.source.localhost:5000"];
    assert!(sources.contains('a') && sources.contains('b'), "{sources}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_fails_the_pull_naming_it_and_records_nothing() {
    if !is_root() {
        return;
    }
    let reg = Fake::new();
    let good = layer(&[("good", b"good")]);
    let bad = layer(&[("bad", &noise(3, 200_000))]);
    let first = publish(&reg, std::slice::from_ref(&good), &Platform::host());
    reg.tag("localhost:5000/good:1", &first.digest);
    let m = publish(&reg, &[good.clone(), bad.clone()], &Platform::host());
    reg.tag("localhost:5000/bad:1", &m.digest);
    let env = env().await;
    env.pull(reg.source("localhost:5000/good:1"), PullOptions::default())
        .await
        .unwrap();
    // The registry's copy of the second layer is altered (same size).
    let bad_digest = Digest::of(&bad.0);
    {
        let mut blobs = reg.blobs.lock().unwrap();
        let mut altered = bad.0.clone();
        let n = altered.len();
        altered[n / 2] ^= 0xff;
        blobs.insert(bad_digest.to_string(), Bytes::from(altered));
    }
    let (r, progress) = env
        .pull_with_progress(reg.source("localhost:5000/bad:1"))
        .await;
    let err = r.unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(bad_digest.as_str()), "{msg}");
    assert!(
        progress.iter().any(|p| p.digest == bad_digest.as_str()
            && p.status == TransferStatus::Failed as i32
            && p.message.contains(bad_digest.as_str())),
        "{progress:?}"
    );
    assert!(matches!(
        env.store.images.get("localhost:5000/bad:1"),
        Err(Error::NotFound(_))
    ));
    assert!(!env.store.has_blob(&bad_digest));
    assert!(env.store.has_blob(&Digest::of(&good.0)));
    env.store.content.verify(&Digest::of(&good.0)).unwrap();
    assert!(env
        .store
        .content
        .list_statuses(INGEST_PREFIX)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_diff_id_fails_the_pull() {
    if !is_root() {
        return;
    }
    let reg = Fake::new();
    let l = layer(&[("x", b"x")]);
    let wrong = Digest::of(b"not this layer").to_string();
    let m = publish_with(&reg, &[l], &Platform::host(), Some(vec![wrong.clone()]));
    reg.tag("localhost:5000/x:1", &m.digest);
    let env = env().await;
    let err = env
        .pull(reg.source("localhost:5000/x:1"), PullOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("uncompressed"), "{err}");
    assert!(err.to_string().contains(&wrong), "{err}");
    assert!(env.store.images.list().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_pulls_the_host_platform_or_keeps_them_all() {
    if !is_root() {
        return;
    }
    let reg = Fake::new();
    let here = publish(&reg, &[layer(&[("here", b"host")])], &Platform::host());
    let there_layer = layer(&[("there", b"other")]);
    let there = publish(&reg, std::slice::from_ref(&there_layer), &other_platform());
    let entry = |d: &Descriptor, p: &Platform| {
        json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size,
               "platform": {"os": p.os, "architecture": p.architecture}})
    };
    let index = reg.add_manifest(
        media::OCI_INDEX,
        json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX,
               "manifests": [entry(&there, &other_platform()), entry(&here, &Platform::host())]}),
    );
    reg.tag("localhost:5000/multi:1", &index.digest);
    let env = env().await;
    let pulled = env
        .pull(reg.source("localhost:5000/multi:1"), PullOptions::default())
        .await
        .unwrap();
    assert_eq!(pulled.record.target.digest, index.digest);
    assert_eq!(pulled.image.manifest.digest, here.digest);
    assert!(!env.store.has_blob(&Digest::parse(&there.digest).unwrap()));
    assert!(!env.store.has_blob(&Digest::of(&there_layer.0)));

    let all = PullOptions {
        all_platforms: true,
        ..Default::default()
    };
    let pulled = env
        .pull(reg.source("localhost:5000/multi:1"), all)
        .await
        .unwrap();
    assert_eq!(pulled.image.manifest.digest, here.digest);
    assert!(env.store.has_blob(&Digest::parse(&there.digest).unwrap()));
    assert!(env.store.has_blob(&Digest::of(&there_layer.0)));

    // Another platform on request.
    let other = PullOptions {
        platform: Some(other_platform()),
        ..Default::default()
    };
    let env2 = self::env().await;
    let pulled = env2
        .pull(reg.source("localhost:5000/multi:1"), other)
        .await
        .unwrap();
    assert_eq!(pulled.image.manifest.digest, there.digest);
    assert_eq!(pulled.platform, other_platform());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_image_is_not_found() {
    if !is_root() {
        return;
    }
    let reg = Fake::new();
    let env = env().await;
    let err = env
        .pull(reg.source("localhost:5000/nope:1"), PullOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_pull_resumes_its_download() {
    if !is_root() {
        return;
    }
    let reg = Fake::new();
    *reg.delay.lock().unwrap() = Duration::from_millis(5);
    let big = layer(&[("big", &noise(4, 4_000_000))]);
    let m = publish(&reg, std::slice::from_ref(&big), &Platform::host());
    reg.tag("localhost:5000/big:1", &m.digest);
    let env = env().await;
    let digest = Digest::of(&big.0);
    let cancelled = tokio::time::timeout(
        Duration::from_millis(400),
        env.pull(reg.source("localhost:5000/big:1"), PullOptions::default()),
    )
    .await;
    assert!(cancelled.is_err(), "the pull should still be running");
    assert!(env.store.images.list().unwrap().is_empty());
    *reg.delay.lock().unwrap() = Duration::ZERO;
    let pulled = env
        .pull(reg.source("localhost:5000/big:1"), PullOptions::default())
        .await
        .unwrap();
    let offsets = reg.fetches_of(digest.as_str());
    assert_eq!(offsets.len(), 2, "{offsets:?}");
    assert!(offsets[1] > 0, "the second download resumes: {offsets:?}");
    assert!(env.read_file(pulled.image.top_chain_id(), "big").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_uploads_then_skips_then_mounts() {
    if !is_root() {
        return;
    }
    let reg = Fake::new();
    let m = publish(
        &reg,
        &[layer(&[("one", b"1")]), layer(&[("two", b"2")])],
        &Platform::host(),
    );
    reg.tag("localhost:5000/src:1", &m.digest);
    let env = env().await;
    let pulled = env
        .pull(reg.source("localhost:5000/src:1"), PullOptions::default())
        .await
        .unwrap();
    // A second registry receives the pushes.
    let dst = Fake::new();
    let push_to = |reference: &str| {
        push::push(
            env.store.clone(),
            dst.source(reference),
            &pulled.record,
            PushOptions::default(),
            Progress::discard(),
        )
    };
    let pushed = push_to("localhost:6000/one:1").await.unwrap();
    assert_eq!(pushed.descriptor.digest, m.digest);
    assert_eq!(pushed.reference, "localhost:6000/one:1");
    let calls = std::mem::take(&mut *dst.calls.lock().unwrap());
    let uploads = calls.iter().filter(|(c, _)| c == "upload").count();
    assert_eq!(uploads, 3, "two layers and the config: {calls:?}");
    assert_eq!(
        calls.last().unwrap(),
        &("manifest".to_string(), "1".to_string())
    );
    assert_eq!(
        dst.tags.lock().unwrap().get("localhost:6000/one:1"),
        Some(&m.digest)
    );
    // Again: every blob is there.
    push_to("localhost:6000/one:1").await.unwrap();
    let calls = std::mem::take(&mut *dst.calls.lock().unwrap());
    assert!(
        !calls.iter().any(|(c, _)| c == "upload" || c == "mount"),
        "{calls:?}"
    );
    // Another repository of the same registry: mounted from the first.
    push_to("localhost:6000/two:1").await.unwrap();
    let calls = std::mem::take(&mut *dst.calls.lock().unwrap());
    let mounts = calls.iter().filter(|(c, _)| c == "mount").count();
    assert_eq!(mounts, 3, "{calls:?}");
    assert!(!calls.iter().any(|(c, _)| c == "upload"), "{calls:?}");
}

#[test]
fn platform_selection_on_an_index() {
    let e = |digest: u8, os: &str, arch: &str, variant: &str| Entry {
        media_type: media::OCI_MANIFEST.into(),
        digest: format!("sha256:{}", format!("{digest:02x}").repeat(32)),
        size: 1,
        platform: Some(Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.into(),
        }),
        annotations: BTreeMap::new(),
    };
    let entries = vec![
        e(1, "unknown", "unknown", ""),
        e(2, "linux", "arm", "v7"),
        e(3, "linux", "arm64", "v8"),
        e(4, "linux", "amd64", ""),
        Entry {
            platform: None,
            ..e(5, "", "", "")
        },
    ];
    let pick = |p: &str| {
        select_platform(&entries, &Platform::parse(p).unwrap(), "sha256:idx")
            .map(|e| e.digest[7..9].to_string())
    };
    assert_eq!(pick("linux/amd64").unwrap(), "04");
    assert_eq!(pick("linux/arm64").unwrap(), "03");
    assert_eq!(pick("linux/arm/v7").unwrap(), "02");
    assert!(pick("linux/arm/v6").is_err());
    let err = pick("windows/amd64").unwrap_err().to_string();
    assert!(
        err.contains("windows/amd64") && err.contains("linux/arm64/v8") && !err.contains("unknown"),
        "{err}"
    );
}

#[test]
fn descriptors_are_checked() {
    let d = |media_type: &str, digest: &str, size: i64| Descriptor {
        media_type: media_type.into(),
        digest: digest.into(),
        size,
        annotations: BTreeMap::new(),
    };
    let ok = format!("sha256:{}", "a".repeat(64));
    assert!(check_descriptor(&d(media::OCI_LAYER_GZIP, &ok, 10), Role::Layer).is_ok());
    assert!(check_descriptor(&d(media::OCI_LAYER_GZIP, "md5:abc", 10), Role::Layer).is_err());
    assert!(check_descriptor(&d(media::OCI_LAYER_GZIP, &ok, -1), Role::Layer).is_err());
    assert!(check_descriptor(&d("application/json", &ok, 1), Role::Layer).is_err());
    assert!(check_descriptor(&d("application/json", &ok, 1), Role::Blob).is_ok());
    assert!(check_descriptor(&d(media::OCI_MANIFEST, &ok, 5 << 20), Role::Manifest).is_err());
    assert!(check_descriptor(&d(media::OCI_CONFIG, &ok, 9 << 20), Role::Config).is_err());
    assert!(check_descriptor(&d(media::OCI_LAYER, &ok, 1 << 40), Role::Layer).is_ok());
}

#[test]
fn documents_are_told_apart() {
    let both = br#"{"schemaVersion":2,"manifests":[],"layers":[]}"#;
    assert!(Doc::parse(both, "d").is_err());
    let index = Doc::parse(br#"{"schemaVersion":2,"manifests":[]}"#, "d").unwrap();
    assert!(index.is_index(""));
    assert_eq!(index.media_type(""), media::OCI_INDEX);
    assert!(index.image_parts("d").is_err());
    let m = Doc::parse(
        br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"digest":"sha256:x","size":1},"layers":[]}"#,
        "d",
    )
    .unwrap();
    assert!(!m.is_index(""));
    assert_eq!(m.media_type(""), media::DOCKER_MANIFEST);
    assert_eq!(m.image_parts("d").unwrap().0.digest, "sha256:x");
}

#[test]
fn source_labels_keep_a_few_repositories() {
    assert_eq!(add_source(None, "a").as_deref(), Some("a"));
    assert_eq!(add_source(Some("a"), "a"), None);
    assert_eq!(add_source(Some("a,b"), "c").as_deref(), Some("c,a,b"));
    let many = (0..20)
        .map(|i| format!("r{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let kept = add_source(Some(&many), "new").unwrap();
    assert_eq!(kept.split(',').count(), MAX_SOURCES);
    assert!(kept.starts_with("new,"));
}

#[test]
fn shared_errors_keep_their_class() {
    let e = Error::DigestMismatch {
        what: "blob x".into(),
        expected: "a".into(),
        actual: "b".into(),
    };
    assert_eq!(relay(&e).to_string(), e.to_string());
    let r = Error::Registry(berth_registry_client::Error::Unauthorized("no".into()));
    assert_eq!(
        tonic::Status::from(relay(&r)).code(),
        tonic::Code::Unauthenticated
    );
}
