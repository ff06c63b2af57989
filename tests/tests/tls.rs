//! Remote access: TCP requires mutual TLS, or an explicit, loud opt-out.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_proto::engine::v1::system_client::SystemClient;
use berth_proto::engine::v1::{InfoRequest, VersionRequest};
use berth_rpc::connect::ClientTls;
use berth_rpc::Address;
use berth_tests::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    dir: &Path,
    name: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &CertifiedIssuer<'static, KeyPair>,
) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).unwrap();
    std::fs::write(dir.join(format!("{name}-cert.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
}

/// A CA with a server and a client certificate, and a client certificate from another CA.
fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let good = ca("berth test CA");
    std::fs::write(dir.path().join("ca.pem"), good.pem()).unwrap();
    leaf(
        dir.path(),
        "server",
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &good,
    );
    leaf(
        dir.path(),
        "client",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
        &good,
    );
    let rogue = ca("some other CA");
    leaf(
        dir.path(),
        "rogue",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
        &rogue,
    );
    Pki { dir }
}

async fn version_over(addr: &Address, tls: &ClientTls) -> Result<(), String> {
    let channel = berth_rpc::connect::connect(addr, Some(tls))
        .await
        .map_err(|e| e.to_string())?;
    SystemClient::new(channel)
        .version(VersionRequest {})
        .await
        .map(|_| ())
        .map_err(|s| s.to_string())
}

#[tokio::test]
async fn tcp_with_mutual_tls_needs_a_client_certificate_from_the_ca() {
    let pki = pki();
    let port = free_port();
    let listen = format!("tcp://127.0.0.1:{port}");
    let p = |n: &str| pki.path(n).to_str().unwrap().to_string();
    let mut engine = Engine::spawn(&[
        "--listen",
        &listen,
        "--tlscacert",
        &p("ca.pem"),
        "--tlscert",
        &p("server-cert.pem"),
        "--tlskey",
        &p("server-key.pem"),
    ]);
    let addr = Address::parse(&listen).unwrap();
    let good = ClientTls {
        ca: Some(pki.path("ca.pem")),
        cert: Some(pki.path("client-cert.pem")),
        key: Some(pki.path("client-key.pem")),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while version_over(&addr, &good).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "engine never answered over mTLS; log:\n{}",
            engine.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let no_cert = ClientTls {
        ca: Some(pki.path("ca.pem")),
        ..Default::default()
    };
    assert!(version_over(&addr, &no_cert).await.is_err());
    let rogue = ClientTls {
        ca: Some(pki.path("ca.pem")),
        cert: Some(pki.path("rogue-cert.pem")),
        key: Some(pki.path("rogue-key.pem")),
    };
    assert!(version_over(&addr, &rogue).await.is_err());
    // Plain text to a TLS port gets nowhere either.
    assert!(version_over(&addr, &ClientTls::default()).await.is_err());

    // berthctl speaks it too.
    let out = std::process::Command::new(berth_tests::bin("berthctl"))
        .args(["-H", &listen, "--tlscacert", &p("ca.pem")])
        .args([
            "--tlscert",
            &p("client-cert.pem"),
            "--tlskey",
            &p("client-key.pem"),
        ])
        .arg("info")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    engine.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(engine.wait_exit(Duration::from_secs(20)).await.success());
}

#[test]
fn tcp_without_tls_is_refused() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let out = berth_tests::engine_command()
        .arg("--state")
        .arg(dir.path())
        .args(["--listen", &format!("tcp://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--insecure-tcp") && err.contains("--tlscacert"),
        "{err}"
    );
    // Nothing was started: no socket, no pid file.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn partial_tls_flags_are_refused() {
    let out = berth_tests::engine_command()
        .args(["--listen", "tcp://127.0.0.1:1", "--tlscert", "/x.pem"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tlskey"));
}

#[tokio::test]
async fn insecure_tcp_works_with_a_warning() {
    let port = free_port();
    let listen = format!("tcp://127.0.0.1:{port}");
    let engine = Engine::spawn(&["--listen", &listen, "--insecure-tcp"]);
    let addr = Address::parse(&listen).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let channel = loop {
        if let Ok(c) = berth_rpc::connect::connect(&addr, None).await {
            break c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            engine.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let info = SystemClient::new(channel)
        .info(InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        info.warnings.iter().any(|w| w.contains("without TLS")),
        "{info:?}"
    );
    assert!(engine.log_text().contains("without TLS"));
}
