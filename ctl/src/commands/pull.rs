//! `pull` / `image pull`: the engine pulls (through the snapshotter); berthctl sends the
//! credentials it has for the registry and shows the progress as Docker does.

use berth_proto::engine::v1::{images_pull_response, ImagesPullRequest, ImagesPullResult};
use berth_registry_client::Reference;

use crate::cli::{Global, PullArgs};
use crate::commands::images::client;
use crate::commands::login::registry_auth;
use crate::commands::progress::{Direction, Progress};
use crate::commands::transfer::platform;
use crate::connection::{call_error, Unreachable};

/// True when the reference as typed names a tag or a digest ("busybox:1", "app@sha256:…";
/// not "localhost:5000/app").
pub fn names_version(typed: &str) -> bool {
    typed.contains('@') || typed.rsplit('/').next().is_some_and(|l| l.contains(':'))
}

/// `what: message` for a failed pull or push; an engine that cannot be reached is said as
/// it is.
pub fn failed(what: String, e: anyhow::Error) -> anyhow::Error {
    if e.is::<Unreachable>() {
        return e;
    }
    anyhow::anyhow!("{what}: {e}")
}

/// Docker's "latest: Pulling from library/busybox".
fn pulling_from(r: &Reference) -> String {
    let version = r.digest().or(r.tag()).unwrap_or("latest");
    format!("{version}: Pulling from {}", r.path())
}

/// Docker's closing status line.
fn status_line(result: &ImagesPullResult, shown: &str) -> String {
    if result.up_to_date {
        format!("Status: Image is up to date for {shown}")
    } else {
        format!("Status: Downloaded newer image for {shown}")
    }
}

/// `pull` / `image pull`
pub async fn run(global: &Global, args: &PullArgs) -> anyhow::Result<()> {
    pull(global, args)
        .await
        .map_err(|e| failed(format!("pull {}", args.name), e))
}

async fn pull(global: &Global, args: &PullArgs) -> anyhow::Result<()> {
    let progress = Progress::new(Direction::Pull, args.quiet);
    if !names_version(&args.name) {
        progress.line("Using default tag: latest");
    }
    let full = pull_with(
        global,
        &args.name,
        args.platform.as_deref(),
        args.all_platforms,
        progress,
    )
    .await?;
    println!("{full}");
    Ok(())
}

/// Pulls `name` through the engine, showing Docker's progress lines on `progress`;
/// returns the full reference pulled.
pub async fn pull_with(
    global: &Global,
    name: &str,
    platform_wanted: Option<&str>,
    all_platforms: bool,
    mut progress: Progress,
) -> anyhow::Result<String> {
    use images_pull_response::Msg;
    let reference = Reference::parse(name)?;
    let req = ImagesPullRequest {
        reference: reference.to_string(),
        platform: platform_wanted.map(platform).transpose()?,
        all_platforms,
        registry_auth: registry_auth(reference.domain()),
    };
    let mut stream = client(global)
        .await?
        .pull(req)
        .await
        .map_err(|s| call_error(global, s))?
        .into_inner();
    let mut started = false;
    let mut result = None;
    loop {
        let msg = match stream.message().await {
            Ok(Some(m)) => m.msg,
            Ok(None) => break,
            Err(s) => {
                progress.finish();
                return Err(call_error(global, s));
            }
        };
        match msg {
            Some(Msg::Progress(p)) => {
                if !started && !p.digest.is_empty() {
                    progress.line(&pulling_from(&reference));
                    started = true;
                }
                progress.update(&p);
            }
            Some(Msg::Result(r)) => result = Some(r),
            None => {}
        }
    }
    progress.finish();
    let Some(result) = result else {
        anyhow::bail!("the engine ended the pull without a result");
    };
    let full = if result.reference.is_empty() {
        reference.to_string()
    } else {
        result.reference.clone()
    };
    let shown = Reference::parse(&full)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| full.clone());
    if !started {
        progress.line(&pulling_from(&reference));
    }
    progress.line(&format!("Digest: {}", result.digest));
    progress.line(&status_line(&result, &shown));
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_versions_are_recognised() {
        assert!(names_version("busybox:1.36"));
        assert!(names_version("localhost:5000/app:v1"));
        assert!(names_version("busybox@sha256:abc"));
        assert!(!names_version("localhost:5000/app"));
        assert!(!names_version("busybox"));
    }

    #[test]
    fn lines_read_as_in_docker() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(pulling_from(&r), "latest: Pulling from library/busybox");
        let r = Reference::parse("localhost:5000/team/app:1").unwrap();
        assert_eq!(pulling_from(&r), "1: Pulling from team/app");
        let mut result = ImagesPullResult::default();
        assert_eq!(
            status_line(&result, "busybox:latest"),
            "Status: Downloaded newer image for busybox:latest"
        );
        result.up_to_date = true;
        assert_eq!(
            status_line(&result, "busybox:latest"),
            "Status: Image is up to date for busybox:latest"
        );
        let e = failed("pull x".into(), anyhow::anyhow!("manifest unknown"));
        assert_eq!(e.to_string(), "pull x: manifest unknown");
        let e = failed("pull x".into(), Unreachable("cannot connect".into()).into());
        assert_eq!(e.to_string(), "cannot connect");
    }
}
