//! A real registry for the tests: Debian's `docker-registry` (distribution v2.8) on
//! 127.0.0.1, anonymous, with htpasswd basic auth, or with token auth backed by a small
//! token issuer running in the test process; and [`CuttingProxy`], a TCP proxy that cuts
//! or stalls responses to test resume and stall deadlines.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::json;

/// The registry binary the tests run.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
/// User of the basic and token registries.
pub const USER: &str = "berth";
/// Its password.
pub const PASSWORD: &str = "s3cret";
/// A refresh token (Docker's identity token) the token issuer accepts for its user.
pub const REFRESH_TOKEN: &str = "berth-refresh-token";
/// `service` of the token registry.
pub const TOKEN_SERVICE: &str = "berth-test-registry";
const TOKEN_ISSUER: &str = "berth-test-issuer";

/// True when `docker-registry` is installed. Without it the test is skipped — unless `CI`
/// is set, where it is a failure (deploy/test.sh installs it).
pub fn need_registry() -> bool {
    if Path::new(REGISTRY_BIN).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{REGISTRY_BIN} is missing and CI is set: apt-get install docker-registry"
    );
    eprintln!("skipped: needs {REGISTRY_BIN} (apt-get install docker-registry)");
    false
}

/// A free TCP port on 127.0.0.1 (free when asked; the registry binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// The TLS setup of [`Registry::start_tls`] (PEM).
pub struct RegistryTls {
    /// Server certificate (chain).
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca_pem: Option<String>,
}

/// How the registry authenticates.
enum Auth<'a> {
    None,
    Basic(&'a str, &'a str),
    Token(&'a str, &'a str),
}

/// A running `docker-registry serve` with its storage in a temporary directory.
pub struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    storage: PathBuf,
    /// The token issuer of a token-auth registry.
    pub issuer: Option<TokenIssuer>,
}

impl Registry {
    /// An anonymous registry (pull and push without credentials).
    pub async fn start() -> Registry {
        Registry::launch(Auth::None, None, None).await
    }

    /// A registry with htpasswd basic auth for `user` / `password` (the tests here use
    /// [`USER`] / [`PASSWORD`]).
    pub async fn start_basic(user: &str, password: &str) -> Registry {
        Registry::launch(Auth::Basic(user, password), None, None).await
    }

    /// A registry with token auth; its realm is a [`TokenIssuer`] in this process that
    /// grants `user` / `password` (or [`REFRESH_TOKEN`]) everything asked, and anonymous
    /// clients pull only.
    pub async fn start_token(user: &str, password: &str) -> Registry {
        Registry::launch(Auth::Token(user, password), None, None).await
    }

    /// An anonymous registry serving HTTPS with `tls`, on the storage of `shared` when
    /// given (push there over plain HTTP, read here over TLS).
    pub async fn start_tls(tls: &RegistryTls, shared: Option<&Registry>) -> Registry {
        Registry::launch(Auth::None, Some(tls), shared.map(|r| r.storage.clone())).await
    }

    async fn launch(
        auth: Auth<'_>,
        tls: Option<&RegistryTls>,
        storage: Option<PathBuf>,
    ) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry")
            .tempdir()
            .expect("registry temp dir");
        let storage = storage.unwrap_or_else(|| dir.path().join("storage"));
        std::fs::create_dir_all(&storage).unwrap();
        let tls_section = match tls {
            None => String::new(),
            Some(t) => {
                let cert = dir.path().join("server.crt");
                let key = dir.path().join("server.key");
                std::fs::write(&cert, &t.cert_pem).unwrap();
                std::fs::write(&key, &t.key_pem).unwrap();
                let mut section = format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    cert.display(),
                    key.display()
                );
                if let Some(ca) = &t.client_ca_pem {
                    let path = dir.path().join("client-ca.crt");
                    std::fs::write(&path, ca).unwrap();
                    section.push_str(&format!("    clientcas:\n      - {}\n", path.display()));
                }
                section
            }
        };
        let mut issuer = None;
        let auth_section = match auth {
            Auth::None => String::new(),
            Auth::Basic(user, password) => {
                let hash = bcrypt::hash(password, 4).expect("bcrypt");
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
            Auth::Token(user, password) => {
                let t = TokenIssuer::start(user, password);
                let bundle = dir.path().join("token-issuer.crt");
                std::fs::write(&bundle, &t.cert_pem).unwrap();
                let section = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                    t.realm(),
                    bundle.display()
                );
                issuer = Some(t);
                section
            }
        };
        let mut last_log = String::new();
        // The port is free when picked; another process may take it before the registry
        // binds it, so try a few.
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\n\
                     log:\n  level: info\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: 127.0.0.1:{port}\n  secret: berth-test-secret\n\
                     {tls_section}\
                     {auth_section}",
                    storage.display()
                ),
            )
            .unwrap();
            let log_path = dir.path().join("registry.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn docker-registry");
            if wait_ready(&mut child, port, Duration::from_secs(20)).await {
                return Registry {
                    child,
                    port,
                    dir,
                    storage,
                    issuer,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("docker-registry did not start; log:\n{last_log}");
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The storage root (`rootdirectory`).
    pub fn storage_dir(&self) -> PathBuf {
        self.storage.clone()
    }

    /// Where the registry keeps blob (or manifest) `digest`.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The registry's log so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

/// Polls `GET /v2/` until the registry answers (any status) or `timeout` passes.
async fn wait_ready(child: &mut Child, port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let host = format!("127.0.0.1:{port}");
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if http_status(&host, "GET", "/v2/").is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status code of `method path` on `host`, over plain HTTP (`None`: no answer).
pub fn http_status(host: &str, method: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A request the token issuer received.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// Scopes asked for.
    pub scopes: Vec<String>,
    /// The user it authenticated ("" for anonymous).
    pub user: String,
    /// Whether it granted a token.
    pub granted: bool,
}

/// A token server for registry token auth: signs ES256 JWTs with a self-signed
/// certificate (sent in the `x5c` header) that the registry trusts as `rootcertbundle`.
pub struct TokenIssuer {
    port: u16,
    cert_pem: String,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    stop: Arc<AtomicBool>,
}

struct Signer {
    key: ring::signature::EcdsaKeyPair,
    cert_der: Vec<u8>,
    /// The user it knows, and its password.
    user: String,
    password: String,
}

impl TokenIssuer {
    /// Starts the issuer on a free port of 127.0.0.1, knowing `user` / `password`.
    pub fn start(user: &str, password: &str) -> TokenIssuer {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["berth-token-issuer".to_string()]).unwrap();
        let cert = params.self_signed(&key).expect("self-signed cert");
        let rng = ring::rand::SystemRandom::new();
        let signer = Arc::new(Signer {
            key: ring::signature::EcdsaKeyPair::from_pkcs8(
                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &key.serialize_der(),
                &rng,
            )
            .expect("ring key"),
            cert_der: cert.der().to_vec(),
            user: user.to_string(),
            password: password.to_string(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token issuer");
        let port = listener.local_addr().unwrap().port();
        let requests: Arc<Mutex<Vec<TokenRequest>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        {
            let requests = requests.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let signer = signer.clone();
                    let requests = requests.clone();
                    std::thread::spawn(move || {
                        let _ = serve_token(conn, &signer, &requests);
                    });
                }
            });
        }
        TokenIssuer {
            port,
            cert_pem: cert.pem(),
            requests,
            stop,
        }
    }

    /// The realm URL.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads one HTTP request: (method, target, headers lower-cased, body).
#[allow(clippy::type_complexity)]
fn read_request(
    conn: &TcpStream,
) -> std::io::Result<(String, String, Vec<(String, String)>, Vec<u8>)> {
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok((method, target, headers, body))
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(h, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn serve_token(
    mut conn: TcpStream,
    signer: &Signer,
    requests: &Mutex<Vec<TokenRequest>>,
) -> std::io::Result<()> {
    let (method, target, headers, body) = read_request(&conn)?;
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut params = form_pairs(query);
    if method == "POST" {
        params.extend(form_pairs(&String::from_utf8_lossy(&body)));
    }
    let get = |name: &str| -> Vec<String> {
        params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let scopes: Vec<String> = get("scope")
        .iter()
        .flat_map(|s| s.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    // Who is asking?
    let basic = headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .and_then(|(_, v)| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|d| String::from_utf8(d).ok());
    let user = match (method.as_str(), basic) {
        ("POST", _) => {
            let refresh = get("refresh_token");
            if get("grant_type").first().map(String::as_str) == Some("refresh_token")
                && refresh.first().map(String::as_str) == Some(REFRESH_TOKEN)
            {
                Some(signer.user.clone())
            } else {
                None
            }
        }
        (_, Some(pair)) => {
            (pair == format!("{}:{}", signer.user, signer.password)).then(|| signer.user.clone())
        }
        (_, None) => Some(String::new()),
    };
    let Some(user) = user else {
        requests.lock().unwrap().push(TokenRequest {
            method,
            scopes,
            user: String::new(),
            granted: false,
        });
        let body = r#"{"details":"incorrect username or password"}"#;
        write!(
            conn,
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return Ok(());
    };
    // Grant what was asked to the user, pull only to anonymous clients.
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| {
            let (kind, rest) = s.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            let actions: BTreeSet<&str> = actions
                .split(',')
                .filter(|a| (!user.is_empty() && user == signer.user) || *a == "pull")
                .collect();
            Some(json!({"type": kind, "name": name, "actions": actions}))
        })
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({
        "typ": "JWT",
        "alg": "ES256",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(&signer.cert_der)],
    });
    let claims = json!({
        "iss": TOKEN_ISSUER,
        "sub": user,
        "aud": get("service").first().cloned().unwrap_or_default(),
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now - 10,
        "jti": format!("{now}-{}", requests.lock().unwrap().len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = signer
        .key
        .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
        .map_err(|_| std::io::Error::other("signing failed"))?;
    let token = format!("{signing_input}.{}", b64url(sig.as_ref()));
    requests.lock().unwrap().push(TokenRequest {
        method: method.clone(),
        scopes,
        user,
        granted: true,
    });
    // OAuth2 answers (POST) use access_token; Docker's GET answers use token.
    let body = if method == "POST" {
        json!({"access_token": token, "expires_in": 300})
    } else {
        json!({"token": token, "expires_in": 300})
    }
    .to_string();
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

/// What a [`CuttingProxy`] does to responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward everything.
    Pass,
    /// Close the first connection whose response bytes pass this count (once; later
    /// connections pass).
    CutOnce(u64),
    /// Stop sending once a connection's response bytes pass this count, and send nothing
    /// on any connection after that (a registry that hangs).
    Stall(u64),
}

/// A TCP proxy on 127.0.0.1 in front of a registry that cuts or stalls responses.
pub struct CuttingProxy {
    port: u16,
    state: Arc<ProxyState>,
}

struct ProxyState {
    upstream: String,
    mode: Mutex<ProxyMode>,
    cut_done: AtomicBool,
    stalled: AtomicBool,
    cuts: AtomicUsize,
    connections: AtomicUsize,
    stop: AtomicBool,
    sockets: Mutex<Vec<TcpStream>>,
}

impl CuttingProxy {
    /// A proxy to `upstream` (`host:port`) in `mode`.
    pub fn start(upstream: &str, mode: ProxyMode) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState {
            upstream: upstream.to_string(),
            mode: Mutex::new(mode),
            cut_done: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            cuts: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            sockets: Mutex::default(),
        });
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || proxy_connection(client, &st));
            }
        });
        CuttingProxy { port, state }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Changes the mode for what comes next (resets the one-time cut and the stall).
    pub fn set_mode(&self, mode: ProxyMode) {
        *self.state.mode.lock().unwrap() = mode;
        self.state.cut_done.store(false, Ordering::SeqCst);
        self.state.stalled.store(false, Ordering::SeqCst);
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> usize {
        self.state.cuts.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        for s in self.state.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn proxy_connection(client: TcpStream, st: &Arc<ProxyState>) {
    st.connections.fetch_add(1, Ordering::SeqCst);
    let Ok(upstream) = TcpStream::connect(&st.upstream) else {
        return;
    };
    {
        let mut socks = st.sockets.lock().unwrap();
        for s in [&client, &upstream] {
            if let Ok(c) = s.try_clone() {
                socks.push(c);
            }
        }
    }
    let client_closed = Arc::new(AtomicBool::new(false));
    // Client → upstream, verbatim.
    {
        let (mut from, mut to) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
        let closed = client_closed.clone();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            closed.store(true, Ordering::SeqCst);
            let _ = to.shutdown(Shutdown::Write);
        });
    }
    // Upstream → client, counting.
    let (mut from, mut to) = (upstream, client);
    let mut sent: u64 = 0;
    let mut buf = vec![0u8; 64 << 10];
    let stall_forever = |st: &ProxyState| {
        st.stalled.store(true, Ordering::SeqCst);
        while !st.stop.load(Ordering::SeqCst) && !client_closed.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    if matches!(*st.mode.lock().unwrap(), ProxyMode::Stall(_)) && st.stalled.load(Ordering::SeqCst)
    {
        stall_forever(st);
        let _ = to.shutdown(Shutdown::Both);
        return;
    }
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mode = *st.mode.lock().unwrap();
        let limit = match mode {
            ProxyMode::CutOnce(at) if !st.cut_done.load(Ordering::SeqCst) => Some(at),
            ProxyMode::Stall(at) => Some(at),
            _ => None,
        };
        match limit {
            Some(at) if sent + n as u64 > at => {
                let part = at.saturating_sub(sent) as usize;
                let _ = to.write_all(&buf[..part]);
                let _ = to.flush();
                if let ProxyMode::Stall(_) = mode {
                    stall_forever(st);
                } else {
                    st.cut_done.store(true, Ordering::SeqCst);
                    st.cuts.fetch_add(1, Ordering::SeqCst);
                }
                let _ = to.shutdown(Shutdown::Both);
                let _ = from.shutdown(Shutdown::Both);
                return;
            }
            _ => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                sent += n as u64;
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
