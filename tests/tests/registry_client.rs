//! The registry client (`berth-registry-client`) against a real registry (Debian's
//! `docker-registry`, started on 127.0.0.1 by the fixture), a cutting proxy, skopeo, and a
//! few fake servers for what a real registry will not serve (schema 1, redirects to
//! storage, a server that ignores `Range`).

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_registry_client::{
    credentials, media_type, BlobStream, Client, ClientConfig, Credentials, Error, Reference,
    Repository,
};
use berth_tests::image::{self, busybox_rootfs, File, TestImage};
use berth_tests::registry::{
    need_registry, CuttingProxy, ProxyMode, Registry, RegistryTls, PASSWORD, REFRESH_TOKEN, USER,
};
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::json;

fn config() -> ClientConfig {
    ClientConfig {
        stall_timeout: Duration::from_secs(10),
        retries: 3,
        ..Default::default()
    }
}

fn client() -> Client {
    Client::new(config()).unwrap()
}

fn repo_on(client: &Client, reference: &str, creds: Option<Credentials>) -> Repository {
    client
        .repository(&Reference::parse(reference).unwrap(), creds, false)
        .unwrap()
}

fn basic() -> Option<Credentials> {
    Some(Credentials::basic(USER, PASSWORD))
}

/// `data` as a blob stream of 1 MiB chunks.
fn stream_of(data: &[u8]) -> BlobStream {
    let chunks: Vec<berth_registry_client::Result<Bytes>> = data
        .chunks(1 << 20)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

async fn collect(mut s: BlobStream) -> berth_registry_client::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Incompressible bytes (xorshift), so that sizes on the wire are what they seem.
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

fn test_image(marker: &str) -> image::Built {
    image::build(&TestImage {
        names: vec![],
        layers: vec![
            busybox_rootfs(&[]),
            image::layer_tar(&[File::new("etc/marker", marker)]),
        ],
        config: json!({"Cmd": ["/bin/sh"]}),
    })
}

/// The manifest bytes of a built image (its last blob).
fn manifest_bytes(built: &image::Built) -> Bytes {
    let (d, bytes) = built.blobs.last().unwrap();
    assert_eq!(d, &built.manifest);
    Bytes::from(bytes.clone())
}

/// Pushes the blobs of `built` that the registry lacks, then its manifest as `tag`.
async fn push_image(repo: &Repository, built: &image::Built, tag: &str) -> String {
    for (digest, data) in &built.blobs[..built.blobs.len() - 1] {
        if repo.blob_exists(digest).await.unwrap().is_none() {
            repo.push_blob(digest, data.len() as u64, stream_of(data))
                .await
                .unwrap();
        }
        assert_eq!(
            repo.blob_exists(digest).await.unwrap(),
            Some(data.len() as u64)
        );
    }
    repo.push_manifest(tag, media_type::OCI_MANIFEST, manifest_bytes(built))
        .await
        .unwrap()
}

fn one_line(e: &Error) -> String {
    let s = e.to_string();
    eprintln!("error as the user sees it: {s}");
    assert!(!s.contains('\n'), "error is not one line: {s:?}");
    s
}

#[tokio::test]
async fn push_then_pull_round_trip_anonymous() {
    if !need_registry() {
        return;
    }
    let registry = Registry::start().await;
    let c = client();
    let reference = format!("{}/team/app:v1", registry.host());
    let repo = repo_on(&c, &reference, None);
    repo.ping().await.unwrap();
    let built = test_image("round trip");
    for (digest, _) in &built.blobs {
        assert_eq!(repo.blob_exists(digest).await.unwrap(), None);
    }
    let digest = push_image(&repo, &built, "v1").await;
    assert_eq!(digest, built.manifest);

    let m = repo.resolve().await.unwrap();
    assert_eq!(m.descriptor.digest, built.manifest);
    assert_eq!(m.descriptor.media_type, media_type::OCI_MANIFEST);
    assert_eq!(m.descriptor.size, built.manifest_size as u64);
    assert_eq!(m.bytes, manifest_bytes(&built));
    assert!(!m.is_index());

    // By digest, through a digest reference and fetch_manifest.
    let by_digest = repo_on(
        &c,
        &format!("{}/team/app@{}", registry.host(), digest),
        None,
    );
    assert_eq!(by_digest.resolve().await.unwrap().bytes, m.bytes);
    assert_eq!(repo.fetch_manifest(&digest).await.unwrap().bytes, m.bytes);

    // Every blob streams back with its digest, also from an offset.
    for (d, data) in &built.blobs[..built.blobs.len() - 1] {
        let got = collect(repo.fetch_blob(d, data.len() as u64, 0).await.unwrap())
            .await
            .unwrap();
        assert_eq!(&image::digest(&got), d);
        let tail = collect(repo.fetch_blob(d, data.len() as u64, 10).await.unwrap())
            .await
            .unwrap();
        assert_eq!(tail, data[10..]);
        let none = collect(
            repo.fetch_blob(d, data.len() as u64, data.len() as u64)
                .await
                .unwrap(),
        )
        .await
        .unwrap();
        assert!(none.is_empty());
    }

    // The same manifest under a second tag, and by digest.
    repo.push_manifest("v2", media_type::OCI_MANIFEST, m.bytes.clone())
        .await
        .unwrap();
    repo.push_manifest(&digest, media_type::OCI_MANIFEST, m.bytes.clone())
        .await
        .unwrap();
    let v2 = repo_on(&c, &format!("{}/team/app:v2", registry.host()), None);
    assert_eq!(v2.resolve().await.unwrap().descriptor.digest, digest);
    // A digest that is not the content's is refused before sending.
    let wrong = image::digest(b"other");
    assert!(matches!(
        repo.push_manifest(&wrong, media_type::OCI_MANIFEST, m.bytes.clone())
            .await,
        Err(Error::DigestMismatch { .. })
    ));
}

#[tokio::test]
async fn skopeo_reads_what_berth_pushed_and_berth_pulls_what_skopeo_pushed() {
    if !need_registry() || !std::path::Path::new("/usr/bin/skopeo").exists() {
        assert!(
            std::env::var_os("CI").is_none() || std::path::Path::new("/usr/bin/skopeo").exists(),
            "skopeo is missing and CI is set"
        );
        return;
    }
    let registry = Registry::start().await;
    let c = client();
    let host = registry.host();
    let built = test_image("skopeo");
    let repo = repo_on(&c, &format!("{host}/berth/pushed:v1"), None);
    let digest = push_image(&repo, &built, "v1").await;

    let skopeo = |args: &[&str]| {
        let out = std::process::Command::new("skopeo")
            .args(args)
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{host}/berth/pushed:v1"),
    ]);
    assert_eq!(image::digest(&raw), digest);

    // skopeo copies an OCI layout into the registry; berth resolves and fetches it.
    let (archive, built) = image::oci_archive(&[TestImage {
        names: vec![],
        layers: vec![image::layer_tar(&[File::new("hello", "from skopeo")])],
        config: json!({}),
    }]);
    let layout = tempfile::tempdir().unwrap();
    tar::Archive::new(archive.as_slice())
        .unpack(layout.path())
        .unwrap();
    skopeo(&[
        "--insecure-policy",
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}", layout.path().display()),
        &format!("docker://{host}/skopeo/pushed:v1"),
    ]);
    let theirs = repo_on(&c, &format!("{host}/skopeo/pushed:v1"), None);
    let m = theirs.resolve().await.unwrap();
    assert_eq!(m.descriptor.digest, built[0].manifest);
    for (d, data) in &built[0].blobs[..built[0].blobs.len() - 1] {
        let got = collect(theirs.fetch_blob(d, data.len() as u64, 0).await.unwrap())
            .await
            .unwrap();
        assert_eq!(&image::digest(&got), d);
    }
}

#[tokio::test]
async fn basic_auth_with_good_and_wrong_passwords() {
    if !need_registry() {
        return;
    }
    let registry = Registry::start_basic(USER, PASSWORD).await;
    let c = client();
    let reference = format!("{}/private/app:v1", registry.host());

    // Anonymous: told to log in.
    let anon = repo_on(&c, &reference, None);
    let e = anon.resolve().await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized(_)), "{e:?}");
    let msg = one_line(&e);
    assert!(
        msg.contains("authentication required") && msg.contains("login"),
        "{msg}"
    );

    // A wrong password: a clear refusal from ping (what `login` runs).
    let wrong = repo_on(&c, &reference, Some(Credentials::basic(USER, "nope")));
    let e = wrong.ping().await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized(_)), "{e:?}");
    let msg = one_line(&e);
    assert!(msg.contains("wrong username or password"), "{msg}");
    assert!(msg.contains(&registry.host()), "{msg}");

    // The right one works for everything.
    let repo = repo_on(&c, &reference, basic());
    repo.ping().await.unwrap();
    let built = test_image("basic");
    let digest = push_image(&repo, &built, "v1").await;
    assert_eq!(repo.resolve().await.unwrap().descriptor.digest, digest);
    let (d, data) = &built.blobs[1];
    let got = collect(repo.fetch_blob(d, data.len() as u64, 0).await.unwrap())
        .await
        .unwrap();
    assert_eq!(&got, data);
}

#[tokio::test]
async fn bearer_token_auth_round_trip() {
    if !need_registry() {
        return;
    }
    let registry = Registry::start_token(USER, PASSWORD).await;
    let issuer = registry.issuer.as_ref().unwrap();
    let c = client();
    let host = registry.host();
    let reference = format!("{host}/team/tok:v1");

    let repo = repo_on(&c, &reference, basic());
    repo.ping().await.unwrap();
    let built = test_image("token");
    let digest = push_image(&repo, &built, "v1").await;
    assert_eq!(repo.resolve().await.unwrap().descriptor.digest, digest);

    let asked: Vec<_> = issuer.requests();
    assert!(
        asked.iter().all(|r| r.granted && r.user == USER),
        "{asked:?}"
    );
    assert!(
        asked
            .iter()
            .any(|r| r.scopes == ["repository:team/tok:pull,push"]),
        "{asked:?}"
    );
    assert!(
        asked
            .iter()
            .any(|r| r.scopes == ["repository:team/tok:pull"]),
        "{asked:?}"
    );
    // Tokens are cached: one per scope, not one per request (ping's, push's, pull's).
    assert!(
        asked.len() <= 3,
        "{} token requests: {asked:?}",
        asked.len()
    );

    // Anonymous clients may pull (the issuer grants pull) but not push.
    let anon = repo_on(&c, &reference, None);
    assert_eq!(anon.resolve().await.unwrap().descriptor.digest, digest);
    let blob = random_bytes(1000, 7);
    let e = anon
        .push_blob(&image::digest(&blob), 1000, stream_of(&blob))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Unauthorized(_) | Error::Denied(_)),
        "{e:?}"
    );
    one_line(&e);

    // A wrong password is refused by the token server.
    let wrong = repo_on(&c, &reference, Some(Credentials::basic(USER, "nope")));
    let e = wrong.ping().await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized(_)), "{e:?}");
    assert!(one_line(&e).contains("wrong username or password"), "{e}");

    // An identity token is exchanged with a POST (OAuth2 refresh-token grant).
    let refresh = Credentials {
        identity_token: REFRESH_TOKEN.to_string(),
        ..Default::default()
    };
    let fresh = client();
    let r = repo_on(&fresh, &reference, Some(refresh));
    assert_eq!(r.resolve().await.unwrap().descriptor.digest, digest);
    assert!(issuer
        .requests()
        .iter()
        .any(|r| r.method == "POST" && r.granted));

    // A registry token is sent as is: a bad one is refused.
    let bad = Credentials {
        registry_token: "not-a-jwt".to_string(),
        ..Default::default()
    };
    let r = repo_on(&client(), &reference, Some(bad));
    assert!(matches!(
        r.resolve().await.unwrap_err(),
        Error::Unauthorized(_)
    ));
}

#[tokio::test]
async fn a_tampered_manifest_fails_its_digest() {
    if !need_registry() {
        return;
    }
    let registry = Registry::start().await;
    let c = client();
    let host = registry.host();
    let built = test_image("tamper");
    let repo = repo_on(&c, &format!("{host}/team/app:v1"), None);
    let digest = push_image(&repo, &built, "v1").await;

    // Same JSON, one more space: the registry serves it under the old digest.
    let path = registry.blob_path(&digest);
    let mut data = std::fs::read(&path).unwrap();
    assert_eq!(data.pop(), Some(b'}'));
    data.extend_from_slice(b" }");
    std::fs::write(&path, &data).unwrap();

    let by_digest = repo_on(&c, &format!("{host}/team/app@{digest}"), None);
    for e in [
        by_digest.resolve().await.unwrap_err(),
        repo.fetch_manifest(&digest).await.unwrap_err(),
        // By tag: the registry's Docker-Content-Digest no longer matches the bytes.
        repo.resolve().await.unwrap_err(),
    ] {
        match &e {
            Error::DigestMismatch {
                expected, actual, ..
            } => {
                assert_eq!(expected, &digest);
                assert_eq!(actual, &image::digest(&data));
            }
            other => panic!("expected a digest mismatch, got {other:?}"),
        }
        assert!(one_line(&e).contains(&digest), "{e}");
    }
}

/// Pushes one random blob of `size` bytes to `repo`; returns (digest, data).
async fn push_random_blob(repo: &Repository, size: usize, seed: u64) -> (String, Vec<u8>) {
    let data = random_bytes(size, seed);
    let digest = image::digest(&data);
    repo.push_blob(&digest, size as u64, stream_of(&data))
        .await
        .unwrap();
    (digest, data)
}

#[tokio::test]
async fn fetch_blob_resumes_after_a_cut_connection() {
    if !need_registry() {
        return;
    }
    let registry = Registry::start().await;
    let c = client();
    let direct = repo_on(&c, &format!("{}/team/big:v1", registry.host()), None);
    let (digest, data) = push_random_blob(&direct, 6 << 20, 1).await;

    let proxy = CuttingProxy::start(&registry.host(), ProxyMode::CutOnce(2 << 20));
    let via = repo_on(&c, &format!("{}/team/big:v1", proxy.host()), None);
    let got = collect(via.fetch_blob(&digest, data.len() as u64, 0).await.unwrap())
        .await
        .unwrap();
    assert_eq!(proxy.cuts(), 1);
    assert_eq!(got.len(), data.len());
    assert_eq!(image::digest(&got), digest);

    // From an offset, cut again (a new client: a new connection, counted from zero).
    proxy.set_mode(ProxyMode::CutOnce(1 << 20));
    let via = repo_on(&client(), &format!("{}/team/big:v1", proxy.host()), None);
    let offset = 123_457u64;
    let got = collect(
        via.fetch_blob(&digest, data.len() as u64, offset)
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(proxy.cuts(), 2);
    assert_eq!(got, data[offset as usize..]);
}

#[tokio::test]
async fn a_registry_that_stops_sending_fails_with_stalled() {
    if !need_registry() {
        return;
    }
    let registry = Registry::start().await;
    let c = client();
    let direct = repo_on(&c, &format!("{}/team/big:v1", registry.host()), None);
    let (digest, data) = push_random_blob(&direct, 4 << 20, 2).await;

    let proxy = CuttingProxy::start(&registry.host(), ProxyMode::Stall(256 << 10));
    let impatient = Client::new(ClientConfig {
        stall_timeout: Duration::from_millis(800),
        retries: 2,
        ..Default::default()
    })
    .unwrap();
    let via = repo_on(&impatient, &format!("{}/team/big:v1", proxy.host()), None);
    let started = Instant::now();
    let result = match via.fetch_blob(&digest, data.len() as u64, 0).await {
        Ok(stream) => collect(stream).await,
        Err(e) => Err(e),
    };
    let e = result.unwrap_err();
    assert!(matches!(e, Error::Stalled(_)), "{e:?}");
    assert!(e.is_retryable());
    let msg = one_line(&e);
    assert!(msg.contains(&proxy.host()), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(proxy.connections() >= 2, "no retry after the stall");
}

#[tokio::test]
async fn unknown_images_and_blobs_are_not_found() {
    if !need_registry() {
        return;
    }
    let registry = Registry::start().await;
    let c = client();
    let host = registry.host();

    let reference = format!("{host}/nothing/here:v1");
    let e = repo_on(&c, &reference, None).resolve().await.unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");
    let msg = one_line(&e);
    assert!(msg.ends_with(&reference), "{msg}");

    // An existing repository without the tag: "manifest unknown: <reference>".
    let repo = repo_on(&c, &format!("{host}/team/app:v1"), None);
    push_image(&repo, &test_image("x"), "v1").await;
    let reference = format!("{host}/team/app:nope");
    let e = repo_on(&c, &reference, None).resolve().await.unwrap_err();
    assert_eq!(one_line(&e), format!("manifest unknown: {reference}"));

    let missing = image::digest(b"missing");
    assert_eq!(repo.blob_exists(&missing).await.unwrap(), None);
    let e = match repo.fetch_blob(&missing, 7, 0).await {
        Err(e) => e,
        Ok(_) => panic!("fetching a missing blob succeeded"),
    };
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");
    assert!(one_line(&e).contains(&missing), "{e}");
    assert!(matches!(
        repo.fetch_manifest(&missing).await.unwrap_err(),
        Error::NotFound(_)
    ));
}

#[tokio::test]
async fn mount_blob_between_repositories() {
    if !need_registry() {
        return;
    }
    let registry = Registry::start_token(USER, PASSWORD).await;
    let c = client();
    let host = registry.host();
    let a = repo_on(&c, &format!("{host}/team/a:v1"), basic());
    let b = repo_on(&c, &format!("{host}/team/b:v1"), basic());
    let (digest, data) = push_random_blob(&a, 100_000, 3).await;

    assert_eq!(b.blob_exists(&digest).await.unwrap(), None);
    assert!(b.mount_blob(&digest, "team/a").await.unwrap());
    assert_eq!(
        b.blob_exists(&digest).await.unwrap(),
        Some(data.len() as u64)
    );
    // The token asked for both repositories.
    let requests = registry.issuer.as_ref().unwrap().requests();
    assert!(
        requests.iter().any(|r| r.scopes
            == [
                "repository:team/b:pull,push".to_string(),
                "repository:team/a:pull".to_string()
            ]),
        "{requests:?}"
    );

    // A blob the source does not have: the registry starts an upload, which is cancelled.
    let missing = image::digest(b"nowhere");
    assert!(!b.mount_blob(&missing, "team/a").await.unwrap());
    assert_eq!(b.blob_exists(&missing).await.unwrap(), None);
}

#[tokio::test]
async fn chunked_push_of_a_large_blob() {
    if !need_registry() {
        return;
    }
    let registry = Registry::start().await;
    let c = client();
    let repo = repo_on(&c, &format!("{}/team/large:v1", registry.host()), None);
    // 8 MiB and more goes in 16 MiB PATCHes: 20 MiB is two of them and a closing PUT.
    let (digest, data) = push_random_blob(&repo, 20 << 20, 4).await;
    assert_eq!(repo.blob_exists(&digest).await.unwrap(), Some(20 << 20));
    let got = collect(
        repo.fetch_blob(&digest, data.len() as u64, 0)
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(image::digest(&got), digest);
    let log = registry.log_text();
    let patches = log
        .lines()
        .filter(|l| l.contains("\"PATCH /v2/team/large/blobs/uploads/"))
        .count();
    assert_eq!(patches, 2, "registry log:\n{log}");

    // A stream shorter than announced is refused, not committed.
    let short = random_bytes(9 << 20, 5);
    let e = repo
        .push_blob(&image::digest(&short), (10 << 20) as u64, stream_of(&short))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::SizeMismatch { .. }), "{e:?}");
    // A monolithic push with the wrong digest is refused by the registry.
    let small = random_bytes(1000, 6);
    let e = repo
        .push_blob(&image::digest(b"not it"), 1000, stream_of(&small))
        .await
        .unwrap_err();
    one_line(&e);
}

#[tokio::test]
async fn mirrors_are_tried_first_then_the_origin() {
    if !need_registry() {
        return;
    }
    let origin = Registry::start().await;
    let mirror = Registry::start().await;
    let built = test_image("mirror");
    // The origin's reference; the mirror holds the same repository path.
    let in_mirror = repo_on(&client(), &format!("{}/team/app:v1", mirror.host()), None);
    push_image(&in_mirror, &built, "v1").await;

    let dead = format!("http://127.0.0.1:{}", berth_tests::registry::free_port());
    let mirrors: HashMap<String, Vec<String>> = [(
        origin.host(),
        vec![dead.clone(), format!("http://{}", mirror.host())],
    )]
    .into();
    let c = Client::new(ClientConfig {
        mirrors,
        retries: 1,
        ..config()
    })
    .unwrap();
    let repo = repo_on(&c, &format!("{}/team/app:v1", origin.host()), None);
    // The origin has nothing: the answer can only come from the mirror.
    let m = repo.resolve().await.unwrap();
    assert_eq!(m.descriptor.digest, built.manifest);
    let (d, data) = &built.blobs[1];
    let got = collect(repo.fetch_blob(d, data.len() as u64, 0).await.unwrap())
        .await
        .unwrap();
    assert_eq!(&got, data);

    // Something only the origin has: every mirror fails, the origin answers.
    let other = test_image("origin only");
    let at_origin = repo_on(&client(), &format!("{}/team/app:v2", origin.host()), None);
    push_image(&at_origin, &other, "v2").await;
    let repo = repo_on(&c, &format!("{}/team/app:v2", origin.host()), None);
    assert_eq!(
        repo.resolve().await.unwrap().descriptor.digest,
        other.manifest
    );
    // Pushes go to the origin only.
    assert_eq!(
        repo.blob_exists(&built.config).await.unwrap(),
        None,
        "blob_exists asked a mirror"
    );
}

/// A test CA, and (cert, key) PEMs of a leaf it signs.
fn test_ca() -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "berth registry CA");
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    sans: &[&str],
    usage: rcgen::ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn https_mirror_with_a_client_certificate_from_certs_d() {
    if !need_registry() {
        return;
    }
    let ca = test_ca();
    let (cert_pem, key_pem) = leaf(
        &ca,
        &["127.0.0.1", "localhost"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(&ca, &[], rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    // Push over plain HTTP; a second registry serves the same storage over mutual TLS.
    let plain = Registry::start().await;
    let built = test_image("tls");
    push_image(
        &repo_on(&client(), &format!("{}/team/app:v1", plain.host()), None),
        &built,
        "v1",
    )
    .await;
    let tls = Registry::start_tls(
        &RegistryTls {
            cert_pem,
            key_pem,
            client_ca_pem: Some(ca.pem()),
        },
        Some(&plain),
    )
    .await;
    let origin = Registry::start().await;
    let certs = tempfile::tempdir().unwrap();
    let host_dir = certs.path().join(tls.host());
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("ca.crt"), ca.pem()).unwrap();
    std::fs::write(host_dir.join("client.cert"), client_cert).unwrap();
    std::fs::write(host_dir.join("client.key"), client_key).unwrap();
    let mirrors: HashMap<String, Vec<String>> =
        [(origin.host(), vec![format!("https://{}", tls.host())])].into();

    // The origin has nothing: the image comes from the TLS mirror, which demands the client
    // certificate found in certs.d.
    let c = Client::new(ClientConfig {
        mirrors: mirrors.clone(),
        certs_dir: Some(certs.path().to_path_buf()),
        retries: 1,
        ..config()
    })
    .unwrap();
    let repo = repo_on(&c, &format!("{}/team/app:v1", origin.host()), None);
    assert_eq!(
        repo.resolve().await.unwrap().descriptor.digest,
        built.manifest
    );
    let (d, data) = &built.blobs[1];
    let got = collect(repo.fetch_blob(d, data.len() as u64, 0).await.unwrap())
        .await
        .unwrap();
    assert_eq!(&got, data);

    // Without the certificate the mirror refuses the handshake; the origin says not found.
    let c = Client::new(ClientConfig {
        mirrors,
        retries: 1,
        ..config()
    })
    .unwrap();
    let repo = repo_on(&c, &format!("{}/team/app:v1", origin.host()), None);
    let e = repo.resolve().await.unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");
}

// ---------------------------------------------------------------------------------------
// Fake servers, for what docker-registry will not do.

/// A request a fake server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
}

/// What a fake server answers.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send only this many body bytes (with the full Content-Length), then close.
    cut_at: Option<usize>,
}

impl Answer {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: body.into(),
            cut_at: None,
        }
    }
    fn header(mut self, k: &str, v: &str) -> Answer {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
}

type Handler = dyn Fn(&Seen, usize) -> Answer + Send + Sync;

/// An HTTP/1.1 server on 127.0.0.1 answering with `handler(request, index)`; one
/// request per connection.
fn fake_server(handler: Arc<Handler>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_string();
            let path = parts.next().unwrap_or_default().to_string();
            let mut headers = HashMap::new();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let req = Seen {
                method,
                path,
                headers,
            };
            let index = {
                let mut l = log.lock().unwrap();
                l.push(req.clone());
                l.len() - 1
            };
            let a = handler(&req, index);
            let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", a.status);
            for (k, v) in &a.headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str(&format!("Content-Length: {}\r\n\r\n", a.body.len()));
            let _ = conn.write_all(head.as_bytes());
            if req.method != "HEAD" {
                let n = a.cut_at.unwrap_or(a.body.len()).min(a.body.len());
                let _ = conn.write_all(&a.body[..n]);
            }
            let _ = conn.flush();
        }
    });
    (host, seen)
}

#[tokio::test]
async fn refuses_schema1_ambiguous_and_disagreeing_manifests() {
    let schema1 = json!({
        "schemaVersion": 1, "name": "old/app", "tag": "v1", "architecture": "amd64",
        "fsLayers": [{"blobSum": image::digest(b"")}],
        "history": [{"v1Compatibility": "{}"}],
        "signatures": [],
    })
    .to_string();
    let ambiguous = json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_INDEX,
        "manifests": [], "layers": [], "config": {},
    })
    .to_string();
    let oci = json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST, "config": {}, "layers": [],
    })
    .to_string();
    let docs: Arc<HashMap<&'static str, (String, &'static str)>> = Arc::new(
        [
            ("old", (schema1, media_type::DOCKER_SCHEMA1_SIGNED)),
            ("both", (ambiguous, media_type::OCI_INDEX)),
            ("liar", (oci, media_type::DOCKER_MANIFEST)),
        ]
        .into(),
    );
    let docs2 = docs.clone();
    let (host, _) = fake_server(Arc::new(move |req: &Seen, _| {
        let tag = req.path.rsplit('/').next().unwrap_or_default();
        match docs2.get(tag) {
            Some((body, mt)) => Answer::new(200, body.clone()).header("Content-Type", mt),
            None => Answer::new(
                404,
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            ),
        }
    }));
    let c = client();
    let resolve = |tag: &str| {
        let r = repo_on(&c, &format!("{host}/some/app:{tag}"), None);
        async move { r.resolve().await.unwrap_err() }
    };
    let e = resolve("old").await;
    assert!(matches!(e, Error::Unsupported(_)), "{e:?}");
    assert!(one_line(&e).contains("schema 1"), "{e}");
    let e = resolve("both").await;
    assert!(one_line(&e).contains("ambiguous"), "{e}");
    let e = resolve("liar").await;
    assert!(matches!(e, Error::Unsupported(_)), "{e:?}");
    assert!(one_line(&e).contains(media_type::DOCKER_MANIFEST), "{e}");
    let e = resolve("none").await;
    assert_eq!(
        one_line(&e),
        format!("manifest unknown: {host}/some/app:none")
    );
}

#[tokio::test]
async fn manifests_over_4_mib_are_refused() {
    let big = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{}},"layers":[],"pad":"{}"}}"#,
        media_type::OCI_MANIFEST,
        "x".repeat(5 << 20)
    );
    let (host, _) = fake_server(Arc::new(move |_: &Seen, _| {
        Answer::new(200, big.clone()).header("Content-Type", media_type::OCI_MANIFEST)
    }));
    let e = repo_on(&client(), &format!("{host}/big/app:v1"), None)
        .resolve()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::TooLarge(_)), "{e:?}");
    one_line(&e);
}

#[tokio::test]
async fn blob_redirects_drop_authorization_and_resume_without_range_support() {
    let data = random_bytes(300_000, 9);
    let digest = image::digest(&data);
    // "Storage": ignores Range (always 200 with everything) and cuts its first answer.
    let stored = data.clone();
    let (storage, storage_seen) = fake_server(Arc::new(move |_: &Seen, i| Answer {
        cut_at: (i == 0).then_some(100_000),
        ..Answer::new(200, stored.clone())
    }));
    // The "registry": basic auth, blob GETs redirected to the storage host.
    let storage_host = storage.clone();
    let expected = format!("Basic {}", {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    });
    let (registry, registry_seen) = fake_server(Arc::new(move |req: &Seen, _| {
        if req.headers.get("authorization") != Some(&expected) {
            return Answer::new(401, "").header("WWW-Authenticate", r#"Basic realm="fake""#);
        }
        Answer::new(307, "").header(
            "Location",
            &format!("http://{storage_host}/bucket/blob?X-Signature=abc"),
        )
    }));
    let repo = repo_on(&client(), &format!("{registry}/team/app:v1"), basic());
    let got = collect(
        repo.fetch_blob(&digest, data.len() as u64, 0)
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(image::digest(&got), digest);

    let reg = registry_seen.lock().unwrap().clone();
    assert!(reg.iter().any(|r| r.headers.contains_key("authorization")));
    let st = storage_seen.lock().unwrap().clone();
    assert!(st.len() >= 2, "{st:?}");
    for r in &st {
        assert!(
            !r.headers.contains_key("authorization"),
            "credentials leaked to the storage host: {r:?}"
        );
        assert_eq!(r.path, "/bucket/blob?X-Signature=abc");
    }
    // The resume asked for the rest.
    assert_eq!(
        st[1].headers.get("range").map(String::as_str),
        Some("bytes=100000-")
    );
    assert!(st.iter().all(|r| r.method == "GET"));
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let (host, seen) = fake_server(Arc::new(|_: &Seen, i| {
        if i < 2 {
            Answer::new(
                503,
                r#"{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}"#,
            )
        } else {
            Answer::new(
                500,
                r#"{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}"#,
            )
        }
    }));
    let c = Client::new(ClientConfig {
        retries: 3,
        ..config()
    })
    .unwrap();
    let e = repo_on(&c, &format!("{host}/x/y:v1"), None)
        .resolve()
        .await
        .unwrap_err();
    assert_eq!(seen.lock().unwrap().len(), 3);
    match &e {
        Error::Http { status, message } => {
            assert_eq!(*status, 500);
            assert!(message.contains("disk on fire"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.is_retryable());
    one_line(&e);

    // A port nothing listens on: a transport error naming the URL.
    let port = berth_tests::registry::free_port();
    let e = repo_on(&c, &format!("127.0.0.1:{port}/x/y:v1"), None)
        .resolve()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Transport(_)), "{e:?}");
    assert!(one_line(&e).contains(&format!("127.0.0.1:{port}")), "{e}");
}

// ---------------------------------------------------------------------------------------
// Credentials (config.json). The environment is process-wide: these tests take a lock.

static ENV_LOCK: Mutex<()> = Mutex::new(());

struct Env {
    berth: tempfile::TempDir,
    docker: tempfile::TempDir,
    _guard: std::sync::MutexGuard<'static, ()>,
}

fn env() -> Env {
    let guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let berth = tempfile::tempdir().unwrap();
    let docker = tempfile::tempdir().unwrap();
    // Every test touching these variables holds ENV_LOCK.
    std::env::set_var("BERTH_CONFIG", berth.path().join("berth"));
    std::env::set_var("DOCKER_CONFIG", docker.path());
    Env {
        berth,
        docker,
        _guard: guard,
    }
}

#[test]
fn credentials_store_lookup_erase() {
    let env = env();
    let path = credentials::berth_config_path();
    assert_eq!(path, env.berth.path().join("berth/config.json"));
    assert_eq!(
        credentials::docker_config_path().unwrap(),
        env.docker.path().join("config.json")
    );
    assert!(credentials::lookup("localhost:5000").unwrap().is_none());

    credentials::store("localhost:5000", &Credentials::basic(USER, PASSWORD)).unwrap();
    credentials::store("docker.io", &Credentials::basic("hubuser", "hubpass")).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(file["auths"]["localhost:5000"]["auth"], "YmVydGg6czNjcmV0");
    assert!(file["auths"]["https://index.docker.io/v1/"]["auth"].is_string());

    let c = credentials::lookup("localhost:5000").unwrap().unwrap();
    assert_eq!((c.username.as_str(), c.password.as_str()), (USER, PASSWORD));
    let hub = credentials::lookup("docker.io").unwrap().unwrap();
    assert_eq!(hub.username, "hubuser");
    assert!(credentials::lookup("localhost:5001").unwrap().is_none());

    // Storing again replaces; erasing forgets, once.
    credentials::store("localhost:5000", &Credentials::basic(USER, "new")).unwrap();
    assert_eq!(
        credentials::lookup("localhost:5000")
            .unwrap()
            .unwrap()
            .password,
        "new"
    );
    assert!(credentials::erase("localhost:5000").unwrap());
    assert!(!credentials::erase("localhost:5000").unwrap());
    assert!(credentials::lookup("localhost:5000").unwrap().is_none());
    assert!(credentials::lookup("docker.io").unwrap().is_some());
}

#[test]
fn credentials_fall_back_to_docker_config_and_helpers() {
    let env = env();
    // A credential helper on PATH.
    let bin = tempfile::tempdir().unwrap();
    let helper = bin.path().join("docker-credential-berthtest");
    std::fs::write(
        &helper,
        "#!/bin/sh\nread server\ncase \"$server\" in\n  helped.example) echo '{\"ServerURL\":\"helped.example\",\"Username\":\"helper-user\",\"Secret\":\"helper-pass\"}' ;;\n  token.example) echo '{\"ServerURL\":\"token.example\",\"Username\":\"<token>\",\"Secret\":\"refresh-me\"}' ;;\n  *) echo 'credentials not found in native keychain'; exit 1 ;;\nesac\n",
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let old_path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin.path().to_path_buf()];
    paths.extend(std::env::split_paths(&old_path));
    // Under ENV_LOCK (see `env`).
    std::env::set_var("PATH", std::env::join_paths(paths).unwrap());

    std::fs::write(
        env.docker.path().join("config.json"),
        json!({
            "auths": {
                "https://index.docker.io/v1/": {"auth": "ZG9ja2VyOmh1Yg=="},
                "both.example": {"auth": "ZG9ja2VyOmh1Yg=="},
                "tok.example": {"identitytoken": "id-token"},
            },
            "credHelpers": {"helped.example": "berthtest", "token.example": "berthtest", "gone.example": "missinghelper"},
        })
        .to_string(),
    )
    .unwrap();
    let hub = credentials::lookup("docker.io").unwrap().unwrap();
    assert_eq!(
        (hub.username.as_str(), hub.password.as_str()),
        ("docker", "hub")
    );
    let hub = credentials::lookup("index.docker.io").unwrap().unwrap();
    assert_eq!(hub.username, "docker");
    let t = credentials::lookup("tok.example").unwrap().unwrap();
    assert_eq!(t.identity_token, "id-token");
    let h = credentials::lookup("helped.example").unwrap().unwrap();
    assert_eq!(
        (h.username.as_str(), h.password.as_str()),
        ("helper-user", "helper-pass")
    );
    let t = credentials::lookup("token.example").unwrap().unwrap();
    assert_eq!(t.identity_token, "refresh-me");
    let e = credentials::lookup("gone.example").unwrap_err();
    assert!(
        one_line(&e).contains("docker-credential-missinghelper"),
        "{e}"
    );

    // berth's own file wins over Docker's.
    credentials::store("both.example", &Credentials::basic("berth-user", "x")).unwrap();
    assert_eq!(
        credentials::lookup("both.example")
            .unwrap()
            .unwrap()
            .username,
        "berth-user"
    );
    // A credsStore answers for every registry; "not found" falls through to auths.
    std::fs::write(
        env.docker.path().join("config.json"),
        json!({"credsStore": "berthtest", "auths": {"plain.example": {"auth": "ZG9ja2VyOmh1Yg=="}}})
            .to_string(),
    )
    .unwrap();
    assert_eq!(
        credentials::lookup("helped.example")
            .unwrap()
            .unwrap()
            .username,
        "helper-user"
    );
    assert_eq!(
        credentials::lookup("plain.example")
            .unwrap()
            .unwrap()
            .username,
        "docker"
    );
    std::env::set_var("PATH", old_path);
}

#[tokio::test]
async fn uploads_follow_relative_locations() {
    let (host, seen) = fake_server(Arc::new(|req: &Seen, _| {
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/v2/x/y/blobs/uploads/") => {
                Answer::new(202, "").header("Location", "/v2/x/y/blobs/uploads/abc?_state=one")
            }
            // Relative to the upload URL, as some registries answer.
            ("PATCH", p) if p.starts_with("/v2/x/y/blobs/uploads/abc?_state=one") => {
                Answer::new(202, "").header("Location", "abc?_state=two")
            }
            ("PUT", p) if p.starts_with("/v2/x/y/blobs/uploads/abc?_state=two&digest=") => {
                Answer::new(201, "")
            }
            _ => Answer::new(
                400,
                r#"{"errors":[{"code":"UNSUPPORTED","message":"unexpected"}]}"#,
            ),
        }
    }));
    let repo = repo_on(&client(), &format!("{host}/x/y:v1"), None);
    let data = random_bytes(9 << 20, 11);
    let digest = image::digest(&data);
    repo.push_blob(&digest, data.len() as u64, stream_of(&data))
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    let methods: Vec<&str> = seen.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["POST", "PATCH", "PUT"]);
    assert_eq!(
        seen[1].headers.get("content-range").map(String::as_str),
        Some(format!("0-{}", data.len() - 1).as_str())
    );
    assert_eq!(
        seen[2].path,
        format!(
            "/v2/x/y/blobs/uploads/abc?_state=two&digest={}",
            digest.replace(':', "%3A")
        )
    );
}
