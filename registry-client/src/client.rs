//! The client: configuration, per-host HTTP clients (one TLS setup and connection pool per
//! registry host), endpoint selection (origin, mirrors, http for insecure hosts) and the
//! request loop every operation goes through (auth challenge, retries with backoff,
//! redirects, response deadline).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, LOCATION, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode};
use rustls::pki_types::CertificateDer;
use url::Url;

use crate::auth::{self, AuthScheme, TokenCache, TokenKey, TokenResponse};
use crate::error::{Error, Result};
use crate::reference::{Reference, DEFAULT_DOMAIN};
use crate::repository::Repository;

/// Docker Hub's API host (`docker.io` is its name in references).
pub const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";
/// Redirects followed per request.
const MAX_REDIRECTS: usize = 10;

/// How the client reaches registries.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host[:port]` (or a CIDR such as `10.0.0.0/8`) allowed plain HTTP and unverified TLS,
    /// besides `localhost`, `127.0.0.0/8` and `::1`, which always are.
    pub insecure_registries: Vec<String>,
    /// Registry host (`docker.io`, `ghcr.io`, `host:port`) → mirror base URLs
    /// (`https://m.example:5000`), tried in order for pulls, then the origin.
    pub mirrors: HashMap<String, Vec<String>>,
    /// Docker's `certs.d` layout: `<dir>/<host[:port]>/*.crt` are extra roots,
    /// `<name>.cert` + `<name>.key` a client identity.
    pub certs_dir: Option<PathBuf>,
    /// No bytes for this long: retry, then fail with [`Error::Stalled`].
    pub stall_timeout: Duration,
    /// Attempts per request on 5xx, connection errors and stalls (exponential backoff).
    pub retries: u32,
    /// `User-Agent` of every request.
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            insecure_registries: Vec::new(),
            mirrors: HashMap::new(),
            certs_dir: None,
            stall_timeout: Duration::from_secs(30),
            retries: 5,
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// Credentials for one registry.
#[derive(Clone, Default)]
pub struct Credentials {
    /// User name (basic auth, or the token server's basic auth).
    pub username: String,
    /// Password.
    pub password: String,
    /// OAuth2 refresh token (Docker's `identitytoken`), exchanged with a POST to the realm.
    pub identity_token: String,
    /// A bearer token sent as is.
    pub registry_token: String,
}

impl Credentials {
    /// Username and password.
    pub fn basic(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.to_string(),
            password: password.to_string(),
            ..Default::default()
        }
    }

    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.username.is_empty()
            && self.password.is_empty()
            && self.identity_token.is_empty()
            && self.registry_token.is_empty()
    }
}

impl std::fmt::Debug for Credentials {
    /// Secrets are redacted: credentials end up in logs through `Debug` too easily.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |s: &str| if s.is_empty() { "" } else { "<redacted>" };
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &redact(&self.password))
            .field("identity_token", &redact(&self.identity_token))
            .field("registry_token", &redact(&self.registry_token))
            .finish()
    }
}

/// An OCI distribution client. Cheap to clone; clones share the per-host connection pools,
/// the token cache and what was learnt about each registry's auth.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    mirrors: HashMap<String, Vec<Url>>,
    http: Mutex<HashMap<(String, bool), reqwest::Client>>,
    roots: OnceLock<Vec<CertificateDer<'static>>>,
    tokens: TokenCache,
    /// Auth scheme learnt per endpoint.
    schemes: Mutex<HashMap<String, AuthScheme>>,
    /// Base URL chosen for insecure non-loopback hosts (https, else http).
    bases: Mutex<HashMap<String, Url>>,
}

/// Where requests for a repository go: the origin registry or one mirror.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `scheme://host[:port][/prefix]`.
    pub(crate) base: Url,
    /// `host[:port]` of `base`.
    pub(crate) host: String,
    /// The registry as users name it (`docker.io`, not `registry-1.docker.io`).
    pub(crate) name: String,
    /// TLS without verification.
    pub(crate) insecure: bool,
    /// A mirror: anonymous, never pushed to.
    pub(crate) mirror: bool,
    /// Insecure remote host: try https, fall back to http.
    pub(crate) probe_http: bool,
}

impl Endpoint {
    fn key(&self) -> String {
        format!("{}{}", self.host, self.base.path().trim_end_matches('/'))
    }
}

/// The access a request needs, for bearer token scopes.
#[derive(Debug, Clone)]
pub(crate) enum Scope {
    /// `/v2/` (login).
    None,
    /// `repository:<path>:pull`.
    Pull,
    /// `repository:<path>:pull,push`.
    Push,
    /// `pull,push` on the repository and `pull` on the mount source.
    Mount(String),
}

impl Scope {
    fn scopes(&self, path: &str) -> Vec<String> {
        match self {
            Scope::None => Vec::new(),
            Scope::Pull => vec![format!("repository:{path}:pull")],
            Scope::Push => vec![format!("repository:{path}:pull,push")],
            Scope::Mount(from) => vec![
                format!("repository:{path}:pull,push"),
                format!("repository:{from}:pull"),
            ],
        }
    }
}

/// One HTTP request an operation makes.
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
    pub(crate) scope: Scope,
    /// Deadline for the response head.
    pub(crate) timeout: Duration,
    /// Follow 3xx `Location`s (GET and HEAD).
    pub(crate) follow: bool,
    /// Retry 5xx and connection errors (off for requests that are not idempotent).
    pub(crate) retry: bool,
}

impl Call {
    pub(crate) fn new(method: Method, url: Url, scope: Scope, timeout: Duration) -> Call {
        let follow = method == Method::GET || method == Method::HEAD;
        Call {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            scope,
            timeout,
            follow,
            retry: true,
        }
    }

    pub(crate) fn header(mut self, name: reqwest::header::HeaderName, value: &str) -> Call {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub(crate) fn body(mut self, body: Bytes) -> Call {
        self.body = Some(body);
        self
    }
}

/// Splits `host[:port]` (IPv6 in brackets) into host and port.
pub(crate) fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((h, after)) = rest.split_once(']') {
            return (h, after.strip_prefix(':'));
        }
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (authority, None),
    }
}

/// True for `localhost`, `127.0.0.0/8` and `::1` (with or without port).
pub fn is_loopback(authority: &str) -> bool {
    let (host, _) = split_host_port(authority);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `ip` inside `cidr` (`10.0.0.0/8`, `fd00::/8`).
fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<IpAddr>(), len.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl Client {
    /// A client with `config`. Mirror URLs are checked here; nothing is contacted yet.
    pub fn new(config: ClientConfig) -> Result<Client> {
        let mut mirrors = HashMap::new();
        for (host, urls) in &config.mirrors {
            let mut parsed = Vec::new();
            for u in urls {
                let url = Url::parse(u)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "mirror {u:?} of {host}: expected a URL such as https://mirror.example:5000"
                        ))
                    })?;
                parsed.push(url);
            }
            mirrors.insert(host.clone(), parsed);
        }
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                mirrors,
                http: Mutex::default(),
                roots: OnceLock::new(),
                tokens: TokenCache::default(),
                schemes: Mutex::default(),
                bases: Mutex::default(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// A handle on `reference`'s repository. `insecure` treats its registry as listed in
    /// `insecure_registries`. Credentials go to the origin registry only, never to mirrors.
    pub fn repository(
        &self,
        reference: &Reference,
        credentials: Option<Credentials>,
        insecure: bool,
    ) -> Result<Repository> {
        let domain = reference.domain();
        let api_host = if domain == DEFAULT_DOMAIN {
            DOCKER_HUB_REGISTRY
        } else {
            domain
        };
        let loopback = is_loopback(api_host);
        let insecure = insecure || loopback || self.is_insecure(api_host);
        let scheme = if loopback { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{api_host}/")).map_err(|e| {
            Error::Config(format!("registry {api_host:?} is not a valid host: {e}"))
        })?;
        let origin = Endpoint {
            host: authority(&base),
            name: domain.to_string(),
            base,
            insecure,
            mirror: false,
            probe_http: insecure && !loopback,
        };
        let mut mirrors = Vec::new();
        let keys = [domain, api_host];
        for url in keys
            .iter()
            .filter_map(|k| self.inner.mirrors.get(*k))
            .flatten()
        {
            let host = authority(url);
            let mut base = url.clone();
            if !base.path().ends_with('/') {
                base.set_path(&format!("{}/", base.path()));
            }
            mirrors.push(Endpoint {
                insecure: is_loopback(&host) || self.is_insecure(&host),
                name: format!("mirror {url}"),
                host,
                base,
                mirror: true,
                probe_http: false,
            });
        }
        Ok(Repository::new(
            self.clone(),
            reference.clone(),
            credentials.filter(|c| !c.is_empty()),
            origin,
            mirrors,
        ))
    }

    /// True when `authority` is listed as insecure (exactly, by host for any port, or by CIDR).
    pub fn is_insecure(&self, authority: &str) -> bool {
        let (host, _) = split_host_port(authority);
        let ip = host.parse::<IpAddr>().ok();
        self.inner.config.insecure_registries.iter().any(|entry| {
            let e = entry
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/');
            e.eq_ignore_ascii_case(authority)
                || e.eq_ignore_ascii_case(host)
                || ip.is_some_and(|ip| in_cidr(ip, e))
        })
    }

    /// The HTTP client (TLS setup + connection pool) for `host`.
    fn http(&self, host: &str, insecure: bool) -> Result<reqwest::Client> {
        let key = (host.to_string(), insecure);
        if let Some(c) = self
            .inner
            .http
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(c.clone());
        }
        let roots = self.inner.roots.get_or_init(crate::tls::system_roots);
        let cfg = &self.inner.config;
        let tls = crate::tls::client_config(roots, cfg.certs_dir.as_deref(), host, insecure)?;
        let client = reqwest::Client::builder()
            .user_agent(cfg.user_agent.clone())
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(tls)
            .connect_timeout(cfg.stall_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::Config(format!("HTTP client for {host}: {}", chain(&e))))?;
        self.inner
            .http
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, client.clone());
        Ok(client)
    }

    /// The HTTP client for an arbitrary URL (token realms, redirect targets).
    fn http_for(&self, url: &Url) -> Result<reqwest::Client> {
        let host = authority(url);
        let insecure = is_loopback(&host) || self.is_insecure(&host);
        self.http(&host, insecure)
    }

    /// The base URL of `ep`: for insecure remote hosts, https when it answers, else http
    /// when that answers (decided once per host, as Docker does; nothing is remembered
    /// while neither answers).
    pub(crate) async fn base(&self, ep: &Endpoint) -> Url {
        if !ep.probe_http {
            return ep.base.clone();
        }
        if let Some(b) = self
            .inner
            .bases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ep.host)
        {
            return b.clone();
        }
        let mut http = ep.base.clone();
        let _ = http.set_scheme("http");
        let mut chosen = None;
        for candidate in [&ep.base, &http] {
            let probe = async {
                let client = self.http(&ep.host, true).ok()?;
                let url = candidate.join("v2/").ok()?;
                client.get(url).send().await.ok()
            };
            if let Ok(Some(_)) = tokio::time::timeout(self.inner.config.stall_timeout, probe).await
            {
                chosen = Some(candidate.clone());
                break;
            }
        }
        let Some(chosen) = chosen else {
            return ep.base.clone();
        };
        if chosen.scheme() == "http" {
            tracing::info!(registry = %ep.host, "insecure registry does not speak TLS: using http");
        }
        self.inner
            .bases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ep.host.clone(), chosen.clone());
        chosen
    }

    fn scheme_of(&self, ep: &Endpoint) -> AuthScheme {
        self.inner
            .schemes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ep.key())
            .cloned()
            .unwrap_or(AuthScheme::Anonymous)
    }

    fn token_key(
        &self,
        ep: &Endpoint,
        realm: &str,
        service: &str,
        scopes: &[String],
        creds: Option<&Credentials>,
    ) -> TokenKey {
        TokenKey {
            host: ep.key(),
            realm: realm.to_string(),
            service: service.to_string(),
            scope: scopes.join(" "),
            // Tokens are per credentials, not per user name: a wrong password must not
            // find the token a right one got. Keyed by a hash, not the secrets.
            user: creds
                .map(|c| {
                    crate::manifest::sha256_digest(
                        format!("{}\0{}\0{}", c.username, c.password, c.identity_token).as_bytes(),
                    )
                })
                .unwrap_or_default(),
        }
    }

    /// The `Authorization` value for a request to `ep` needing `scope`, if any.
    async fn authorization(
        &self,
        ep: &Endpoint,
        path: &str,
        creds: Option<&Credentials>,
        scope: &Scope,
    ) -> Result<Option<String>> {
        let creds = if ep.mirror { None } else { creds };
        if let Some(c) = creds.filter(|c| !c.registry_token.is_empty()) {
            return Ok(Some(format!("Bearer {}", c.registry_token)));
        }
        match self.scheme_of(ep) {
            AuthScheme::Anonymous => Ok(None),
            AuthScheme::Basic => Ok(creds
                .filter(|c| !c.username.is_empty())
                .map(|c| auth::basic_header(&c.username, &c.password))),
            AuthScheme::Bearer { realm, service } => {
                let scopes = scope.scopes(path);
                let key = self.token_key(ep, &realm, &service, &scopes, creds);
                if let Some(t) = self.inner.tokens.get(&key) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let token = self
                    .fetch_token(ep, &realm, &service, &scopes, creds)
                    .await?;
                let value = format!("Bearer {}", token.bearer().unwrap_or_default());
                self.inner.tokens.put(
                    key,
                    token.bearer().unwrap_or_default().to_string(),
                    token.lifetime(),
                );
                Ok(Some(value))
            }
        }
    }

    /// Asks the token server for a bearer token.
    async fn fetch_token(
        &self,
        ep: &Endpoint,
        realm: &str,
        service: &str,
        scopes: &[String],
        creds: Option<&Credentials>,
    ) -> Result<TokenResponse> {
        let mut url = Url::parse(realm).map_err(|e| {
            Error::Unauthorized(format!(
                "{} sent an unusable token realm {realm:?}: {e}",
                ep.name
            ))
        })?;
        let timeout = self.inner.config.stall_timeout;
        let refresh = creds.filter(|c| !c.identity_token.is_empty());
        let call = if let Some(c) = refresh {
            // OAuth2 refresh-token grant, as Docker does with identity tokens.
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", &c.identity_token)
                .append_pair("client_id", "berth");
            if !service.is_empty() {
                form.append_pair("service", service);
            }
            if !scopes.is_empty() {
                form.append_pair("scope", &scopes.join(" "));
            }
            Call::new(Method::POST, url, Scope::None, timeout)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(Bytes::from(form.finish()))
        } else {
            {
                let mut q = url.query_pairs_mut();
                if !service.is_empty() {
                    q.append_pair("service", service);
                }
                for s in scopes {
                    q.append_pair("scope", s);
                }
                if let Some(c) = creds.filter(|c| !c.username.is_empty()) {
                    q.append_pair("account", &c.username);
                }
            }
            let mut call = Call::new(Method::GET, url, Scope::None, timeout);
            if let Some(c) = creds.filter(|c| !c.username.is_empty()) {
                call = call.header(AUTHORIZATION, &auth::basic_header(&c.username, &c.password));
            }
            call
        };
        let realm_display = call.url.to_string();
        let resp = self.send_retrying(None, &call, None).await?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let msg = error_message(resp).await;
            return Err(Error::Unauthorized(match creds {
                Some(_) => format!(
                    "wrong username or password for {} (token server: {msg})",
                    ep.name
                ),
                None => format!(
                    "{}: the token server refused anonymous access ({msg}); log in with `berthctl login {}`",
                    ep.name, ep.name
                ),
            }));
        }
        if !status.is_success() {
            let msg = error_message(resp).await;
            return Err(Error::Http {
                status: status.as_u16(),
                message: format!("token server {realm}: {msg}"),
            });
        }
        let body = read_capped(resp, 1 << 20, timeout, &realm_display).await?;
        let token: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            Error::Unauthorized(format!(
                "{}: the token server {realm} sent an invalid answer: {e}",
                ep.name
            ))
        })?;
        if token.bearer().is_none() {
            return Err(Error::Unauthorized(format!(
                "{}: the token server {realm} sent no token",
                ep.name
            )));
        }
        tracing::debug!(registry = %ep.host, scope = %scopes.join(" "), "got a bearer token");
        Ok(token)
    }

    /// Sends `call` to `ep` with auth: anonymous (or the known scheme) first; on 401, learn
    /// the challenge, get fresh credentials and try once more. Other answers are returned
    /// as they are for the caller to interpret.
    pub(crate) async fn execute(
        &self,
        ep: &Endpoint,
        path: &str,
        creds: Option<&Credentials>,
        call: &Call,
    ) -> Result<Response> {
        let creds = if ep.mirror { None } else { creds };
        let mut refreshed = false;
        loop {
            let authz = self.authorization(ep, path, creds, &call.scope).await?;
            let resp = self.send_retrying(Some(ep), call, authz.as_deref()).await?;
            if resp.status() != StatusCode::UNAUTHORIZED || refreshed {
                return Ok(resp);
            }
            let challenges: Vec<_> = resp
                .headers()
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(auth::parse_challenges)
                .collect();
            let Some(scheme) = AuthScheme::from_challenges(&challenges) else {
                return Ok(resp);
            };
            let has_user = creds.is_some_and(|c| !c.username.is_empty());
            if scheme == AuthScheme::Basic && !has_user {
                self.set_scheme(ep, scheme);
                return Ok(resp);
            }
            if let AuthScheme::Bearer { realm, service } = &scheme {
                let key = self.token_key(ep, realm, service, &call.scope.scopes(path), creds);
                self.inner.tokens.remove(&key);
            }
            tracing::debug!(registry = %ep.host, ?scheme, "auth challenge");
            self.set_scheme(ep, scheme);
            refreshed = true;
        }
    }

    fn set_scheme(&self, ep: &Endpoint, scheme: AuthScheme) {
        self.inner
            .schemes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ep.key(), scheme);
    }

    /// Sends with retries on connection errors, stalls, 5xx and 429 (when `call.retry`).
    pub(crate) async fn send_retrying(
        &self,
        ep: Option<&Endpoint>,
        call: &Call,
        authz: Option<&str>,
    ) -> Result<Response> {
        let attempts = if call.retry {
            self.inner.config.retries.max(1)
        } else {
            1
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send_once(ep, call, authz).await {
                Ok(resp) if retryable_status(resp.status()) && attempt < attempts => {
                    let wait = retry_after(&resp);
                    tracing::warn!(url = %call.url, status = resp.status().as_u16(), attempt, "registry error, retrying");
                    backoff(attempt, wait).await;
                }
                Err(e) if e.is_retryable() && attempt < attempts => {
                    tracing::warn!(url = %call.url, error = %e, attempt, "request failed, retrying");
                    backoff(attempt, None).await;
                }
                other => return other,
            }
        }
    }

    /// One request, following redirects (dropping `Authorization` on another host).
    async fn send_once(
        &self,
        ep: Option<&Endpoint>,
        call: &Call,
        authz: Option<&str>,
    ) -> Result<Response> {
        let mut url = call.url.clone();
        let mut method = call.method.clone();
        let mut body = call.body.clone();
        let origin = authority(&call.url);
        for _ in 0..=MAX_REDIRECTS {
            let same_host = authority(&url) == origin;
            let client = match ep {
                Some(ep) if same_host => self.http(&ep.host, ep.insecure)?,
                _ => self.http_for(&url)?,
            };
            let mut req = client
                .request(method.clone(), url.clone())
                .headers(call.headers.clone());
            if let (Some(a), true) = (authz, same_host) {
                req = req.header(AUTHORIZATION, a);
            }
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            let resp = match tokio::time::timeout(call.timeout, req.send()).await {
                Err(_) => {
                    return Err(Error::Stalled(format!(
                        "no answer from {url} within {}s",
                        call.timeout.as_secs_f32()
                    )))
                }
                Ok(Err(e)) => return Err(transport_error("cannot reach", &url, &e)),
                Ok(Ok(r)) => r,
            };
            if !(call.follow && resp.status().is_redirection()) {
                return Ok(resp);
            }
            let Some(next) = resp
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
            else {
                return Ok(resp);
            };
            tracing::debug!(from = %url, to = %next, "following redirect");
            if resp.status() == StatusCode::SEE_OTHER && method != Method::HEAD {
                method = Method::GET;
                body = None;
            }
            url = next;
        }
        Err(Error::Transport(format!(
            "too many redirects from {}",
            call.url
        )))
    }
}

/// `host[:port]` of a URL (default ports omitted, IPv6 in brackets).
pub(crate) fn authority(url: &Url) -> String {
    let host = match url.host() {
        Some(url::Host::Ipv6(a)) => format!("[{a}]"),
        Some(h) => h.to_string(),
        None => String::new(),
    };
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

fn retryable_status(s: StatusCode) -> bool {
    s.is_server_error() && s != StatusCode::NOT_IMPLEMENTED
        || s == StatusCode::TOO_MANY_REQUESTS
        || s == StatusCode::REQUEST_TIMEOUT
}

fn retry_after(resp: &Response) -> Option<Duration> {
    resp.headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Waits before attempt `attempt + 1`: 200 ms doubling, at most 10 s, with some jitter.
pub(crate) async fn backoff(attempt: u32, hint: Option<Duration>) {
    let base = Duration::from_millis(200) * 2u32.pow(attempt.saturating_sub(1).min(6));
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 1000)
        .unwrap_or(0);
    let wait = hint.unwrap_or(base + base * jitter / 4000);
    tokio::time::sleep(wait.min(Duration::from_secs(10))).await;
}

/// The causes of an error, outermost first, as one line.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_str = s.to_string();
        if !parts.iter().any(|p| p.contains(&s_str)) {
            parts.push(s_str);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// A reqwest error as [`Error::Transport`] (or [`Error::Stalled`] for timeouts), naming
/// the URL and hinting at certs.d / insecure for certificate errors.
pub(crate) fn transport_error(doing: &str, url: &Url, e: &reqwest::Error) -> Error {
    if e.is_timeout() {
        return Error::Stalled(format!("no data from {url} in time"));
    }
    // reqwest's own message repeats the URL; keep the causes.
    let mut causes = Vec::new();
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        let text = s.to_string();
        // hyper-util's "client error (Connect)" says nothing its cause does not.
        if !text.starts_with("client error (") && !causes.iter().any(|c: &String| c.contains(&text))
        {
            causes.push(text);
        }
        cur = s.source();
    }
    let detail = if causes.is_empty() {
        e.to_string()
    } else {
        causes.join(": ")
    };
    let hint = if detail.contains("certificate") || detail.contains("UnknownIssuer") {
        format!(
            " (trust the registry's CA in certs.d/{}/ca.crt, or list it in insecure_registries)",
            authority(url)
        )
    } else {
        String::new()
    };
    Error::Transport(format!("{doing} {url}: {detail}{hint}"))
}

/// The registry's error message from a failed response: the `errors[].message` (and
/// code) of its JSON body, else the status text.
pub(crate) async fn error_message(resp: Response) -> String {
    let status = resp.status();
    let body = read_capped(resp, 64 << 10, Duration::from_secs(5), "")
        .await
        .unwrap_or_default();
    message_from_body(status, &body)
}

pub(crate) fn message_from_body(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<ErrorItem>,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        details: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body) {
        let msgs: Vec<String> = e
            .errors
            .iter()
            .map(|i| {
                if i.message.is_empty() {
                    i.code.to_ascii_lowercase().replace('_', " ")
                } else {
                    i.message.clone()
                }
            })
            .filter(|m| !m.is_empty())
            .collect();
        if !msgs.is_empty() {
            return msgs.join("; ");
        }
        if let Some(m) = e.details.or(e.error).filter(|m| !m.is_empty()) {
            return m;
        }
    }
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    if !line.is_empty() && line.len() <= 200 && !line.starts_with('<') {
        return line.to_string();
    }
    status
        .canonical_reason()
        .unwrap_or("unexpected answer")
        .to_ascii_lowercase()
}

/// Reads a whole (small) body, failing when it exceeds `cap` or stalls.
pub(crate) async fn read_capped(
    resp: Response,
    cap: u64,
    stall: Duration,
    what: &str,
) -> Result<Bytes> {
    use futures::StreamExt as _;
    if let Some(len) = content_length(&resp) {
        if len > cap {
            return Err(Error::TooLarge(format!(
                "{what} is {len} bytes, more than the {cap} accepted"
            )));
        }
    }
    let url = resp.url().clone();
    let mut stream = resp.bytes_stream();
    let mut buf = bytes::BytesMut::new();
    loop {
        match tokio::time::timeout(stall, stream.next()).await {
            Err(_) => {
                return Err(Error::Stalled(format!(
                    "no data from {url} for {}s",
                    stall.as_secs_f32()
                )))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(transport_error("reading from", &url, &e)),
            Ok(Some(Ok(chunk))) => {
                if buf.len() as u64 + chunk.len() as u64 > cap {
                    return Err(Error::TooLarge(format!(
                        "{what} is more than the {cap} bytes accepted"
                    )));
                }
                buf.extend_from_slice(&chunk);
            }
        }
    }
    Ok(buf.freeze())
}

/// The `Content-Length` header (also for HEAD, where the body is empty).
pub(crate) fn content_length(resp: &Response) -> Option<u64> {
    resp.headers()
        .get(reqwest::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_loopback() {
        assert_eq!(
            split_host_port("localhost:5000"),
            ("localhost", Some("5000"))
        );
        assert_eq!(split_host_port("[::1]:5000"), ("::1", Some("5000")));
        assert_eq!(split_host_port("[::1]"), ("::1", None));
        assert_eq!(split_host_port("ghcr.io"), ("ghcr.io", None));
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:5000",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "ghcr.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "128.0.0.1",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn insecure_registries_match_host_port_and_cidr() {
        let c = Client::new(ClientConfig {
            insecure_registries: vec![
                "reg.example:5000".into(),
                "plain.example".into(),
                "10.1.0.0/16".into(),
                "http://old.example/".into(),
            ],
            ..Default::default()
        })
        .unwrap();
        assert!(c.is_insecure("reg.example:5000"));
        assert!(!c.is_insecure("reg.example:5001"));
        assert!(c.is_insecure("plain.example:443"));
        assert!(c.is_insecure("10.1.2.3:5000"));
        assert!(!c.is_insecure("10.2.0.1"));
        assert!(c.is_insecure("old.example"));
        assert!(!c.is_insecure("ghcr.io"));
    }

    #[test]
    fn endpoints_for_references() {
        let mut mirrors = HashMap::new();
        mirrors.insert(
            "docker.io".to_string(),
            vec![
                "https://m1.example:5000".to_string(),
                "http://m2.example/prefix".to_string(),
            ],
        );
        let c = Client::new(ClientConfig {
            mirrors,
            insecure_registries: vec!["insecure.example".into()],
            ..Default::default()
        })
        .unwrap();
        let r = c
            .repository(&Reference::parse("busybox").unwrap(), None, false)
            .unwrap();
        assert_eq!(r.origin.base.as_str(), "https://registry-1.docker.io/");
        assert!(!r.origin.insecure);
        let m: Vec<_> = r.mirrors.iter().map(|e| e.base.as_str()).collect();
        assert_eq!(m, ["https://m1.example:5000/", "http://m2.example/prefix/"]);
        assert_eq!(
            r.url(&r.mirrors[1], "manifests/latest").as_str(),
            "http://m2.example/prefix/v2/library/busybox/manifests/latest"
        );
        let r = c
            .repository(
                &Reference::parse("localhost:5000/a/b:v1").unwrap(),
                None,
                false,
            )
            .unwrap();
        assert_eq!(
            r.url(&r.origin, "blobs/uploads/").as_str(),
            "http://localhost:5000/v2/a/b/blobs/uploads/"
        );
        assert!(r.origin.insecure && !r.origin.probe_http && r.mirrors.is_empty());
        let r = c
            .repository(&Reference::parse("[::1]:5000/app").unwrap(), None, false)
            .unwrap();
        assert_eq!(
            r.url(&r.origin, "tags/list").as_str(),
            "http://[::1]:5000/v2/app/tags/list"
        );
        let r = c
            .repository(
                &Reference::parse("insecure.example/app").unwrap(),
                None,
                false,
            )
            .unwrap();
        assert!(r.origin.insecure && r.origin.probe_http);
        assert_eq!(r.origin.base.scheme(), "https");
        let r = c
            .repository(&Reference::parse("ghcr.io/o/app").unwrap(), None, true)
            .unwrap();
        assert!(r.origin.insecure && r.origin.probe_http);
        assert!(Client::new(ClientConfig {
            mirrors: [("docker.io".to_string(), vec!["not a url".to_string()])].into(),
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn scopes() {
        assert!(Scope::None.scopes("a/b").is_empty());
        assert_eq!(Scope::Pull.scopes("a/b"), ["repository:a/b:pull"]);
        assert_eq!(Scope::Push.scopes("a/b"), ["repository:a/b:pull,push"]);
        assert_eq!(
            Scope::Mount("c/d".into()).scopes("a/b"),
            ["repository:a/b:pull,push", "repository:c/d:pull"]
        );
    }

    #[test]
    fn registry_error_messages() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        assert_eq!(
            message_from_body(StatusCode::NOT_FOUND, body),
            "manifest unknown"
        );
        let body = br#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#;
        assert_eq!(
            message_from_body(StatusCode::NOT_FOUND, body),
            "blob unknown"
        );
        assert_eq!(
            message_from_body(
                StatusCode::UNAUTHORIZED,
                br#"{"details":"incorrect username or password"}"#
            ),
            "incorrect username or password"
        );
        assert_eq!(
            message_from_body(StatusCode::BAD_GATEWAY, b"<html>oops</html>"),
            "bad gateway"
        );
        assert_eq!(message_from_body(StatusCode::NOT_FOUND, b""), "not found");
    }

    /// A plain HTTP server answering 200 to whatever arrives (TLS handshakes included).
    fn plain_http_server() -> u16 {
        use std::io::{Read as _, Write as _};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        port
    }

    #[tokio::test]
    async fn insecure_hosts_fall_back_to_http_once() {
        let c = Client::new(ClientConfig::default()).unwrap();
        let port = plain_http_server();
        let ep = Endpoint {
            base: Url::parse(&format!("https://127.0.0.1:{port}/")).unwrap(),
            host: format!("127.0.0.1:{port}"),
            name: format!("127.0.0.1:{port}"),
            insecure: true,
            mirror: false,
            probe_http: true,
        };
        assert_eq!(c.base(&ep).await.scheme(), "http");
        assert_eq!(c.base(&ep).await.scheme(), "http");

        // Nothing listening: nothing decided, https stays.
        let dead = free_port();
        let ep = Endpoint {
            base: Url::parse(&format!("https://127.0.0.1:{dead}/")).unwrap(),
            host: format!("127.0.0.1:{dead}"),
            ..ep
        };
        assert_eq!(c.base(&ep).await.scheme(), "https");
        assert!(c.inner.bases.lock().unwrap().get(&ep.host).is_none());
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn credentials_debug_redacts() {
        let c = Credentials::basic("berth", "s3cret");
        let d = format!("{c:?}");
        assert!(d.contains("berth") && !d.contains("s3cret"), "{d}");
    }
}
