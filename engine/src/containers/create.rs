//! Create: resolve (and pull) the image, prepare the container's writable snapshot on the
//! image's top layer, write the OCI bundle, store the record. Nothing runs yet.
//!
//! The bundle is written twice: to `<state>/containers/<id>/` where the shim runs it, and
//! to `<root>/containers/<id>/bundle/`, from which a start after a reboot (which empties
//! the state directory) rebuilds the first. Each is written in a temporary directory and
//! renamed into place; any failure removes the snapshot and both directories.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use berth_proto::engine::v1::{
    ContainerState, ContainerStatus, ContainersCreateRequest, ContainersCreateResponse,
    ImagesPullRequest, PullPolicy,
};
use berth_proto::images::v1 as snap;
use berth_proto::images::v1::images_client::ImagesClient;
use berth_proto::snapshots::v1::{PrepareRequest, RemoveRequest};
use berth_proto::types::v1::{Mount, Platform, RegistryAuth};
use berth_registry_client::Reference;
use tonic::Code;

use super::bundle::{self, Plan};
use super::names;
use super::options;
use super::record::{self, Record};
use super::user;
use super::Manager;
use crate::error::{Error, Result};
use crate::images::config::{self as image_config, Config};

/// The persistent copy of the bundle, under the container's root directory.
pub const BUNDLE_COPY: &str = "bundle";
/// The files of a bundle besides the rootfs directory.
pub const BUNDLE_FILES: [&str; 4] = ["config.json", "hostname", "hosts", "resolv.conf"];
/// Name of the container's log file (json-lines), under its root directory.
pub const LOG_FILE: &str = "container.log";

fn snapshotter(status: tonic::Status) -> Error {
    Error::downstream("snapshotter", status)
}

/// The reference as Docker shows it in messages ("busybox:latest").
fn shown(reference: &str) -> String {
    if reference.starts_with("sha256:") {
        return reference.to_string();
    }
    Reference::parse(reference)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| reference.to_string())
}

/// Options this slice of berth does not implement are refused, never ignored.
fn refuse_unsupported(c: &berth_proto::engine::v1::ContainerConfig) -> Result<()> {
    let no = |what: &str| {
        Err(Error::InvalidArgument(format!(
            "{what} is not supported yet"
        )))
    };
    if !c.mounts.is_empty() {
        return no("mounting volumes, bind mounts and tmpfs (-v, --mount, --tmpfs)");
    }
    if !c.ports.is_empty() || c.publish_all_ports {
        return no("publishing ports (-p, -P)");
    }
    super::restart_policy::validate(c.restart_policy.as_ref(), c.auto_remove)?;
    if let Some(l) = &c.log_config {
        if !matches!(l.driver.as_str(), "" | "json-file" | "none") {
            return Err(Error::InvalidArgument(format!(
                "log driver {:?} is not supported (use json-file or none)",
                l.driver
            )));
        }
    }
    Ok(())
}

/// The snapshotter's description of the image, pulled first as `policy` says.
async fn image(
    m: &Manager,
    reference: &str,
    policy: PullPolicy,
    platform: Option<Platform>,
    auth: Option<RegistryAuth>,
) -> Result<snap::InspectResponse> {
    let pull = || async {
        let req = ImagesPullRequest {
            reference: reference.to_string(),
            platform: platform.clone(),
            all_platforms: false,
            registry_auth: auth.clone(),
        };
        crate::images::pull_for_create(m.ctx.clone(), req)
            .await
            .map_err(|s| Error::downstream("registry", s))
    };
    let inspect = || async {
        ImagesClient::new(m.ctx.snapshotter.channel.clone())
            .max_decoding_message_size(crate::images::MAX_MESSAGE)
            .inspect(snap::InspectRequest {
                name: reference.to_string(),
                platform: platform.clone(),
            })
            .await
    };
    if policy == PullPolicy::Always {
        pull().await?;
    }
    match inspect().await {
        Ok(r) => Ok(r.into_inner()),
        Err(s) if s.code() == Code::NotFound && s.message().contains("platform") => {
            Err(snapshotter(s))
        }
        Err(s)
            if s.code() == Code::NotFound
                && matches!(policy, PullPolicy::Missing | PullPolicy::Unspecified)
                && !reference.starts_with("sha256:") =>
        {
            tracing::info!(image = %reference, "image not found locally: pulling it");
            pull().await?;
            inspect().await.map(|r| r.into_inner()).map_err(snapshotter)
        }
        Err(s) if s.code() == Code::NotFound => Err(Error::NotFound(format!(
            "No such image: {}",
            shown(reference)
        ))),
        Err(s) => Err(snapshotter(s)),
    }
}

/// A free generated name.
fn pick_name(m: &Manager) -> Result<String> {
    for retry in 0..16 {
        let n = names::random_name(retry / 4)?;
        if !m.store.name_taken(&n)? {
            return Ok(n);
        }
    }
    Err(Error::FailedPrecondition(
        "could not generate a free container name; give one with --name".into(),
    ))
}

/// Removes the container's snapshot (gone already counts as removed).
pub async fn remove_snapshot(m: &Manager, id: &str) -> Result<()> {
    match m
        .snapshots()
        .remove(RemoveRequest {
            key: id.to_string(),
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::NotFound => Ok(()),
        Err(s) => Err(snapshotter(s)),
    }
}

/// Writes the bundle into a temporary sibling of `dir`, then renames it into place.
fn write_atomically(dir: &Path, f: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    // Root only: config.json carries the environment, which may hold secrets.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
    let r = f(&tmp).and_then(|()| {
        std::fs::rename(&tmp, dir)
            .map_err(|e| Error::io(format!("rename {} to {}", tmp.display(), dir.display()), e))
    });
    if r.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    r
}

/// `Containers.Create`
pub async fn create(
    m: &Arc<Manager>,
    req: ContainersCreateRequest,
) -> Result<ContainersCreateResponse> {
    let opts = req
        .config
        .clone()
        .ok_or_else(|| Error::InvalidArgument("no container configuration given".into()))?;
    if opts.image.is_empty() {
        return Err(Error::InvalidArgument("no image given".into()));
    }
    refuse_unsupported(&opts)?;
    let wanted = req.name.strip_prefix('/').unwrap_or(&req.name).to_string();
    if !wanted.is_empty() {
        if !names::valid_name(&wanted) {
            return Err(Error::InvalidArgument(format!(
                "Invalid container name ({wanted}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        if m.store.name_taken(&wanted)? {
            return Err(record::name_conflict(&wanted));
        }
    }
    let info = image(
        m,
        &opts.image,
        req.pull(),
        req.platform.clone(),
        req.registry_auth.clone(),
    )
    .await?;
    let image_id = image_config::image_id(&info);
    let config = Config::parse(&info.config_json, &image_id);
    let id = names::new_id()?;
    let wanted_empty = wanted.is_empty();
    let name = if wanted_empty { pick_name(m)? } else { wanted };
    let merged = options::merge(&opts, config.parsed.config.as_ref(), &id)?;
    let platform = Platform {
        os: config.parsed.os.clone().unwrap_or_default(),
        architecture: config.parsed.architecture.clone().unwrap_or_default(),
        variant: config.parsed.variant.clone().unwrap_or_default(),
        ..Default::default()
    };

    let mounts = m
        .snapshots()
        .prepare(PrepareRequest {
            key: id.clone(),
            parent: info.chain_id.clone(),
            labels: [("berth.container.name".to_string(), name.clone())].into(),
        })
        .await
        .map_err(snapshotter)?
        .into_inner()
        .mounts;
    let base = Record {
        id: id.clone(),
        name,
        created: Some(SystemTime::now().into()),
        image: opts.image.clone(),
        image_id,
        config: Some(merged.config),
        state: Some(ContainerState {
            status: ContainerStatus::Created as i32,
            ..Default::default()
        }),
        path: merged.argv[0].clone(),
        args: merged.argv[1..].to_vec(),
        chain_id: info.chain_id.clone(),
        platform: Some(platform),
        ..Default::default()
    };
    match finish(m, base, mounts, wanted_empty).await {
        Ok(resp) => Ok(resp),
        Err(e) => {
            let _ = std::fs::remove_dir_all(m.state_dir(&id));
            let _ = std::fs::remove_dir_all(m.root_dir(&id));
            if let Err(re) = remove_snapshot(m, &id).await {
                tracing::warn!(container = %id, error = %re, "removing the snapshot of a failed create");
            }
            Err(e)
        }
    }
}

/// The part of create that must be undone on failure.
async fn finish(
    m: &Arc<Manager>,
    mut rec: Record,
    mounts: Vec<Mount>,
    generated_name: bool,
) -> Result<ContainersCreateResponse> {
    let config = rec.config().clone();
    let layers = user::layer_dirs(&mounts);
    let (u, groups) = (config.user.clone(), config.group_add.clone());
    let resolved = tokio::task::spawn_blocking(move || user::resolve(&u, &groups, &layers))
        .await
        .map_err(|e| Error::io("resolve the user", std::io::Error::other(e)))??;
    let mut argv = vec![rec.path.clone()];
    argv.extend(rec.args.iter().cloned());
    let built = bundle::build(&Plan {
        id: &rec.id,
        config: &config,
        argv: &argv,
        user: &resolved,
        host: &m.host,
    })?;
    rec.uid = resolved.uid;
    rec.gid = resolved.gid;
    let log_none = config
        .log_config
        .as_ref()
        .is_some_and(|l| l.driver == "none");
    if !log_none {
        rec.log_path = m.root_dir(&rec.id).join(LOG_FILE).display().to_string();
    }
    let (state_dir, root_dir) = (m.state_dir(&rec.id), m.root_dir(&rec.id));
    let c = config.clone();
    let warnings = built.warnings.clone();
    tokio::task::spawn_blocking(move || {
        write_atomically(&root_dir, |tmp| {
            let copy = tmp.join(BUNDLE_COPY);
            std::fs::create_dir(&copy)
                .map_err(|e| Error::io(format!("create {}", copy.display()), e))?;
            // The log exists from the start, so that a client can follow it before the
            // container runs (`run` does) and keep reading after `--rm` removed it.
            if !log_none {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o640)
                    .open(tmp.join(LOG_FILE))
                    .map_err(|e| Error::io("create the log file", e))?;
            }
            bundle::write(&copy, &built, &c)
        })?;
        write_atomically(&state_dir, |tmp| bundle::write(tmp, &built, &c))
    })
    .await
    .map_err(|e| Error::io("write the bundle", std::io::Error::other(e)))??;
    // A generated name was free when picked; a concurrent create may have taken it since.
    let mut tries = 0;
    loop {
        match m.store.insert(&rec) {
            Err(Error::AlreadyExists(_)) if generated_name && tries < 8 => {
                tries += 1;
                rec.name = pick_name(m)?;
            }
            r => break r?,
        }
    }
    m.persist();
    for w in &warnings {
        tracing::warn!(container = %rec.id, "{w}");
    }
    m.publish("create", &rec, []);
    tracing::info!(container = %rec.id, name = %rec.name, image = %rec.image, "container created");
    Ok(ContainersCreateResponse {
        id: rec.id,
        name: rec.name,
        warnings,
    })
}
