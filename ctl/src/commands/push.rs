//! `push` / `image push`: the engine pushes (through the snapshotter); berthctl sends the
//! credentials it has for the registry and shows the progress as Docker does.

use berth_proto::engine::v1::{images_push_response, ImagesPushRequest, ImagesPushResult};
use berth_registry_client::Reference;

use crate::cli::{Global, PushArgs};
use crate::commands::images::client;
use crate::commands::login::registry_auth;
use crate::commands::progress::{Direction, Progress};
use crate::commands::pull::{failed, names_version};
use crate::commands::transfer::platform;
use crate::connection::call_error;

/// Docker's "latest: digest: sha256:… size: 1234".
fn pushed_line(result: &ImagesPushResult) -> String {
    let tag = Reference::parse(&result.reference)
        .ok()
        .and_then(|r| r.tag().map(String::from))
        .unwrap_or_else(|| "latest".into());
    format!("{tag}: digest: {} size: {}", result.digest, result.size)
}

/// `push` / `image push`
pub async fn run(global: &Global, args: &PushArgs) -> anyhow::Result<()> {
    push(global, args)
        .await
        .map_err(|e| failed(format!("push {}", args.name), e))
}

async fn push(global: &Global, args: &PushArgs) -> anyhow::Result<()> {
    use images_push_response::Msg;
    let reference = Reference::parse(&args.name)?;
    let req = ImagesPushRequest {
        // With --all-tags the name goes as typed: the engine refuses a tag there.
        reference: if args.all_tags {
            args.name.clone()
        } else {
            reference.to_string()
        },
        all_tags: args.all_tags,
        platform: args.platform.as_deref().map(platform).transpose()?,
        registry_auth: registry_auth(reference.domain()),
    };
    let mut progress = Progress::new(Direction::Push, args.quiet);
    if !args.all_tags && !names_version(&args.name) {
        progress.line("Using default tag: latest");
    }
    let mut stream = client(global)
        .await?
        .push(req)
        .await
        .map_err(|s| call_error(global, s))?
        .into_inner();
    progress.line(&format!(
        "The push refers to repository [{}]",
        reference.repository()
    ));
    let mut pushed = 0;
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
            Some(Msg::Progress(p)) => progress.update(&p),
            Some(Msg::Result(r)) => {
                progress.finish();
                progress.line(&pushed_line(&r));
                if args.quiet {
                    println!("{}", r.reference);
                }
                pushed += 1;
            }
            None => {}
        }
    }
    progress.finish();
    if pushed == 0 {
        anyhow::bail!("the engine ended the push without a result");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_read_as_in_docker() {
        let r = ImagesPushResult {
            reference: "localhost:5000/app:1".into(),
            digest: "sha256:abc".into(),
            size: 527,
        };
        assert_eq!(pushed_line(&r), "1: digest: sha256:abc size: 527");
    }
}
