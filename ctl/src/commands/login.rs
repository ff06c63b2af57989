//! `login` and `logout`, and the credentials berthctl sends with `pull` and `push`.
//!
//! As with Docker's X-Registry-Auth, credentials live on the client side: berthctl looks them
//! up (berth's config.json, ~/.docker/config.json, credential helpers) and sends them with each
//! request; the engine keeps none. `login` has the engine check them against the registry
//! (so the check is made from where the pulls are made), then stores them.

use std::io::{BufRead, IsTerminal, Read, Write};

use anyhow::Context as _;
use berth_proto::engine::v1::{ImagesLoginRequest, ImagesLoginResponse};
use berth_proto::types::v1::RegistryAuth;
use berth_registry_client::credentials;
use berth_registry_client::Credentials;

use crate::cli::{Global, LoginArgs, LogoutArgs};
use crate::commands::images::client;
use crate::commands::pull::failed;
use crate::connection::call_error;
use crate::connection::Unreachable;

/// The registry `login` and `logout` use without a SERVER.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// The registry host a SERVER argument names: "https://registry.example.com/v2/" →
/// "registry.example.com"; Docker Hub's other names → "docker.io".
pub fn server_host(server: Option<&str>) -> String {
    let s = server.map(str::trim).unwrap_or_default();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or_default();
    match host {
        "" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DEFAULT_REGISTRY.to_string()
        }
        h => h.to_string(),
    }
}

fn to_auth(host: &str, c: Credentials) -> RegistryAuth {
    RegistryAuth {
        server_address: host.to_string(),
        username: c.username,
        password: c.password,
        identity_token: c.identity_token,
        registry_token: c.registry_token,
    }
}

/// The credentials stored for `host`, to send with a pull or push; `None` for anonymous
/// access. Credentials that cannot be read are reported and left out.
pub fn registry_auth(host: &str) -> Option<RegistryAuth> {
    match credentials::lookup(host) {
        Ok(found) => found.map(|c| to_auth(host, c)),
        Err(e) => {
            eprintln!(
                "berthctl: warning: cannot read the credentials for {host}: {e}; going on without"
            );
            None
        }
    }
}

/// Has the engine check `auth` against its registry.
async fn check(global: &Global, auth: RegistryAuth) -> anyhow::Result<ImagesLoginResponse> {
    Ok(client(global)
        .await?
        .login(ImagesLoginRequest {
            registry_auth: Some(auth),
        })
        .await
        .map_err(|s| call_error(global, s))?
        .into_inner())
}

/// Reads one line from the terminal on standard input, without the line end.
fn read_line(prompt: &str) -> anyhow::Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Reads a password from the terminal on standard input with echo off.
fn read_password(prompt: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("read the terminal settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turn echo off")?;
    let line = read_line(prompt);
    let restored = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    let line = line?;
    restored.context("turn echo back on")?;
    Ok(line)
}

/// The password from standard input (`--password-stdin`), without the final line end.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("read the password from STDIN")?;
    let s = s.strip_suffix('\n').unwrap_or(&s);
    Ok(s.strip_suffix('\r').unwrap_or(s).to_string())
}

/// `login`
pub async fn login(global: &Global, args: &LoginArgs) -> anyhow::Result<()> {
    let host = server_host(args.server.as_deref());
    if args.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    if args.password_stdin && args.username.is_none() {
        anyhow::bail!("Must provide --username with --password-stdin");
    }
    let interactive = args.username.is_none() || (args.password.is_none() && !args.password_stdin);
    // Nothing given: the stored credentials, while they still work.
    let stored = credentials::lookup(&host).ok().flatten();
    if args.username.is_none() && args.password.is_none() && !args.password_stdin {
        if let Some(c) = stored.clone() {
            println!("Authenticating with existing credentials...");
            match check(global, to_auth(&host, c)).await {
                Ok(_) => {
                    println!("Login Succeeded");
                    return Ok(());
                }
                Err(e) if e.is::<Unreachable>() => return Err(e),
                Err(e) => eprintln!("Login did not succeed, error: {e}"),
            }
        }
    }
    if interactive && !std::io::stdin().is_terminal() {
        anyhow::bail!("Cannot perform an interactive login from a non TTY device");
    }
    let username = match &args.username {
        Some(u) => u.trim().to_string(),
        None => {
            let previous = stored.map(|c| c.username).filter(|u| !u.is_empty());
            let prompt = match &previous {
                Some(p) => format!("Username ({p}): "),
                None => "Username: ".to_string(),
            };
            let typed = read_line(&prompt)?.trim().to_string();
            match (typed.is_empty(), previous) {
                (true, Some(p)) => p,
                _ => typed,
            }
        }
    };
    if username.is_empty() {
        anyhow::bail!("Username is required");
    }
    let password = match &args.password {
        Some(p) => p.clone(),
        None if args.password_stdin => password_from_stdin()?,
        None => read_password("Password: ")?,
    };
    if password.is_empty() {
        anyhow::bail!("Password is required");
    }
    let auth = RegistryAuth {
        server_address: host.clone(),
        username: username.clone(),
        password: password.clone(),
        ..Default::default()
    };
    let resp = check(global, auth)
        .await
        .map_err(|e| failed(format!("login {host}"), e))?;
    // A refresh token the registry issued is kept instead of the password, as Docker does.
    let creds = Credentials {
        username,
        password: if resp.identity_token.is_empty() {
            password
        } else {
            String::new()
        },
        identity_token: resp.identity_token,
        registry_token: String::new(),
    };
    credentials::store(&host, &creds)
        .map_err(|e| anyhow::anyhow!("login {host}: cannot store the credentials: {e}"))?;
    println!("Login Succeeded");
    Ok(())
}

/// `logout`
pub fn logout(args: &LogoutArgs) -> anyhow::Result<()> {
    let host = server_host(args.server.as_deref());
    match credentials::erase(&host) {
        Ok(true) => println!("Removing login credentials for {host}"),
        Ok(false) => println!("Not logged in to {host}"),
        Err(e) => anyhow::bail!("logout {host}: {e}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_named_by_host() {
        assert_eq!(server_host(None), "docker.io");
        assert_eq!(
            server_host(Some("https://index.docker.io/v1/")),
            "docker.io"
        );
        assert_eq!(
            server_host(Some("http://localhost:5000/v2/")),
            "localhost:5000"
        );
        assert_eq!(server_host(Some("ghcr.io")), "ghcr.io");
        assert_eq!(server_host(Some(" 127.0.0.1:5000 ")), "127.0.0.1:5000");
    }
}
