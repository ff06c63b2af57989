//! TLS for registry connections: rustls (ring) with the system roots, extra roots and a
//! client identity from Docker's `certs.d/<host[:port]>/` layout, or no verification at
//! all for registries configured as insecure.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::{Error, Result};

/// The system's trusted roots (loaded once per client).
pub(crate) fn system_roots() -> Vec<CertificateDer<'static>> {
    let result = rustls_native_certs::load_native_certs();
    for e in &result.errors {
        tracing::warn!(error = %e, "could not load some system CA certificates");
    }
    if result.certs.is_empty() {
        tracing::warn!("no system CA certificates found: only certs.d roots will be trusted");
    }
    result.certs
}

fn config_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("{}: {e}", path.display()))
}

/// Files of `dir` ending in `ext`, sorted (a missing directory has none).
fn files_with(dir: &Path, ext: &str) -> Result<Vec<std::path::PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(config_error(dir, e)),
    };
    let mut out: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    Ok(out)
}

/// The rustls configuration for connections to `host` (`host[:port]`).
pub(crate) fn client_config(
    roots: &[CertificateDer<'static>],
    certs_dir: Option<&Path>,
    host: &str,
    insecure: bool,
) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS setup: {e}")))?;
    let host_dir = certs_dir.map(|d| d.join(host));
    let builder = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let mut store = RootCertStore::empty();
        store.add_parsable_certificates(roots.iter().cloned());
        if let Some(dir) = &host_dir {
            for ca in files_with(dir, "crt")? {
                let certs = CertificateDer::pem_file_iter(&ca)
                    .map_err(|e| config_error(&ca, e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| config_error(&ca, e))?;
                for c in certs {
                    store.add(c).map_err(|e| config_error(&ca, e))?;
                }
                tracing::debug!(host, file = %ca.display(), "trusting extra CA");
            }
        }
        builder.with_root_certificates(store)
    };
    // A client identity: `<name>.cert` with its `<name>.key`, as Docker looks for them.
    let mut identity = None;
    if let Some(dir) = &host_dir {
        if let Some(cert) = files_with(dir, "cert")?.into_iter().next() {
            let key = cert.with_extension("key");
            if !key.exists() {
                return Err(Error::Config(format!(
                    "{} has no matching key {}",
                    cert.display(),
                    key.display()
                )));
            }
            let chain = CertificateDer::pem_file_iter(&cert)
                .map_err(|e| config_error(&cert, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| config_error(&cert, e))?;
            let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| config_error(&key, e))?;
            identity = Some((chain, key));
        }
    }
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| Error::Config(format!("client certificate for {host}: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts any server certificate (still checking handshake signatures), for registries
/// the configuration marks insecure.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair,
    };

    fn ca() -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    /// (cert PEM, key PEM).
    fn leaf(
        ca: &CertifiedIssuer<'static, KeyPair>,
        sans: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.extended_key_usages = vec![usage];
        (
            params.signed_by(&key, ca).unwrap().pem(),
            key.serialize_pem(),
        )
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn server(cert: &str, key: &str, client_ca: Option<&str>) -> Arc<rustls::ServerConfig> {
        let chain: Vec<_> = CertificateDer::pem_slice_iter(cert.as_bytes())
            .map(|c| c.unwrap())
            .collect();
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                    roots.add(c.unwrap()).unwrap();
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        Arc::new(builder.with_single_cert(chain, key).unwrap())
    }

    /// Runs a TLS handshake in memory.
    fn handshake(
        client: rustls::ClientConfig,
        server: Arc<rustls::ServerConfig>,
        name: &str,
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(name.to_string()).unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name)?;
        let mut s = rustls::ServerConnection::new(server)?;
        for _ in 0..20 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                s.read_tls(&mut buf.as_slice()).unwrap();
                s.process_new_packets()?;
            }
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                c.read_tls(&mut buf.as_slice()).unwrap();
                c.process_new_packets()?;
            }
            if !c.is_handshaking() && !s.is_handshaking() {
                // The server checks the client's certificate on its last flight.
                let mut buf = Vec::new();
                while c.wants_write() {
                    c.write_tls(&mut buf).unwrap();
                }
                if !buf.is_empty() {
                    s.read_tls(&mut buf.as_slice()).unwrap();
                    s.process_new_packets()?;
                }
                return Ok(());
            }
        }
        panic!("the handshake did not finish");
    }

    const HOST: &str = "registry.example:5000";

    #[test]
    fn certs_d_roots_are_trusted_and_others_are_not() {
        let ca = ca();
        let (cert, key) = leaf(
            &ca,
            &["registry.example"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let srv = server(&cert, &key, None);
        let dir = tempfile::tempdir().unwrap();

        // No roots at all: refused.
        let cfg = client_config(&[], Some(dir.path()), HOST, false).unwrap();
        let e = handshake(cfg, srv.clone(), "registry.example").unwrap_err();
        assert!(e.to_string().contains("UnknownIssuer"), "{e}");

        // The CA in certs.d/<host:port>/ca.crt: trusted, for the right name only.
        std::fs::create_dir_all(dir.path().join(HOST)).unwrap();
        std::fs::write(dir.path().join(HOST).join("ca.crt"), ca.pem()).unwrap();
        let cfg = client_config(&[], Some(dir.path()), HOST, false).unwrap();
        handshake(cfg.clone(), srv.clone(), "registry.example").unwrap();
        assert!(handshake(cfg, srv.clone(), "other.example").is_err());
        // Another host's directory does not count.
        let cfg = client_config(&[], Some(dir.path()), "registry.example:5001", false).unwrap();
        assert!(handshake(cfg, srv.clone(), "registry.example").is_err());

        // Insecure: anything goes.
        let cfg = client_config(&[], None, HOST, true).unwrap();
        handshake(cfg, srv, "other.example").unwrap();
    }

    #[test]
    fn client_identity_from_certs_d() {
        let ca = ca();
        let (cert, key) = leaf(
            &ca,
            &["registry.example"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let srv = server(&cert, &key, Some(&ca.pem()));
        let dir = tempfile::tempdir().unwrap();
        let host_dir = dir.path().join(HOST);
        std::fs::create_dir_all(&host_dir).unwrap();
        std::fs::write(host_dir.join("ca.crt"), ca.pem()).unwrap();

        let cfg = client_config(&[], Some(dir.path()), HOST, false).unwrap();
        assert!(handshake(cfg, srv.clone(), "registry.example").is_err());

        let (ccert, ckey) = leaf(&ca, &[], ExtendedKeyUsagePurpose::ClientAuth);
        std::fs::write(host_dir.join("client.cert"), ccert).unwrap();
        // A certificate without its key is a configuration error.
        let e = client_config(&[], Some(dir.path()), HOST, false).unwrap_err();
        assert!(e.to_string().contains("client.key"), "{e}");
        std::fs::write(host_dir.join("client.key"), ckey).unwrap();
        let cfg = client_config(&[], Some(dir.path()), HOST, false).unwrap();
        handshake(cfg, srv, "registry.example").unwrap();

        // A broken CA file is reported with its path.
        std::fs::write(
            host_dir.join("bad.crt"),
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = client_config(&[], Some(dir.path()), HOST, false).unwrap_err();
        assert!(e.to_string().contains("bad.crt"), "{e}");
    }
}
