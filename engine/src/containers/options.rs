//! Create options merged with the image's configuration, by Docker's rules: the effective
//! configuration a container runs with and Inspect shows.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use berth_proto::engine::v1::{ContainerConfig, StringList};

use crate::error::{Error, Result};
use crate::images::config::RunConfig;

/// What the container runs, after merging.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// The effective configuration.
    pub config: ContainerConfig,
    /// Entrypoint + cmd.
    pub argv: Vec<String>,
}

/// Applies Docker's environment rules: "NAME=VALUE" replaces or appends, "NAME" alone
/// removes.
pub fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let key = |e: &str| e.split_once('=').map(|(k, _)| k).unwrap_or(e).to_string();
    let mut out: Vec<String> = base.to_vec();
    for e in overrides {
        let k = key(e);
        if e.contains('=') {
            match out.iter_mut().find(|x| key(x) == k) {
                Some(slot) => *slot = e.clone(),
                None => out.push(e.clone()),
            }
        } else {
            out.retain(|x| key(x) != k);
        }
    }
    out
}

/// True when `env` sets `name`.
pub fn has_env(env: &[String], name: &str) -> bool {
    env.iter()
        .any(|e| e.split_once('=').is_some_and(|(k, _)| k == name))
}

/// A working directory cleaned lexically ("/a/./b/../c" → "/a/c"); relative paths are
/// refused as Docker refuses them.
pub fn clean_workdir(dir: &str) -> Result<String> {
    if !dir.starts_with('/') {
        return Err(Error::InvalidArgument(format!(
            "the working directory '{dir}' is invalid, it needs to be an absolute path"
        )));
    }
    let mut out = PathBuf::from("/");
    for c in Path::new(dir).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out.to_string_lossy().into_owned())
}

/// Merges the create options with the image's run configuration.
///
/// - Entrypoint: the option when set (even empty: no entrypoint), else the image's. Setting
///   it drops the image's CMD.
/// - Cmd: the option when not empty, else the image's (unless the entrypoint was set).
/// - Env: the image's, then the options' (see [`merge_env`]).
/// - Working dir, user, stop signal: the option, else the image's.
/// - Labels: the image's, overridden by the options'.
/// - Hostname: the option, else the first 12 characters of `id`.
pub fn merge(opts: &ContainerConfig, image: Option<&RunConfig>, id: &str) -> Result<Merged> {
    let empty = RunConfig::default();
    let image = image.unwrap_or(&empty);
    let mut config = opts.clone();
    let (entrypoint, cmd) = match &opts.entrypoint {
        Some(e) => (e.values.clone(), opts.cmd.clone()),
        None => {
            let cmd = if opts.cmd.is_empty() {
                image.cmd.clone().unwrap_or_default()
            } else {
                opts.cmd.clone()
            };
            (image.entrypoint.clone().unwrap_or_default(), cmd)
        }
    };
    let argv: Vec<String> = entrypoint.iter().chain(&cmd).cloned().collect();
    if argv.is_empty() {
        return Err(Error::InvalidArgument(
            "no command specified: the image has no CMD or ENTRYPOINT; give one".into(),
        ));
    }
    if argv[0].is_empty() {
        return Err(Error::InvalidArgument(
            "the command is an empty string".into(),
        ));
    }
    config.entrypoint = Some(StringList { values: entrypoint });
    config.cmd = cmd;
    config.env = merge_env(image.env.as_deref().unwrap_or_default(), &opts.env);
    for e in &config.env {
        if e.starts_with('=') || e.contains('\0') {
            return Err(Error::InvalidArgument(format!(
                "invalid environment variable: {e:?}"
            )));
        }
    }
    let workdir = if opts.working_dir.is_empty() {
        image.working_dir.clone().unwrap_or_default()
    } else {
        opts.working_dir.clone()
    };
    config.working_dir = if workdir.is_empty() {
        String::new()
    } else {
        clean_workdir(&workdir)?
    };
    if config.user.is_empty() {
        config.user = image.user.clone().unwrap_or_default();
    }
    if config.stop_signal.is_empty() {
        config.stop_signal = image.stop_signal.clone().unwrap_or_default();
    }
    if !config.stop_signal.is_empty() {
        // Refuse a bad signal at create, not at the first stop.
        super::signal::parse(&config.stop_signal)?;
    }
    let mut labels: HashMap<String, String> = image.labels.clone().unwrap_or_default();
    labels.extend(opts.labels.clone());
    config.labels = labels;
    if config.hostname.is_empty() {
        config.hostname = id[..id.len().min(12)].to_string();
    }
    if config.hostname.len() > 64 || !config.hostname.bytes().all(hostname_byte) {
        return Err(Error::InvalidArgument(format!(
            "invalid hostname {:?}: letters, digits, '-' and '.', at most 64",
            config.hostname
        )));
    }
    Ok(Merged { config, argv })
}

fn hostname_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> RunConfig {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        RunConfig {
            entrypoint: entrypoint.map(v),
            cmd: cmd.map(v),
            env: Some(vec!["PATH=/bin".into(), "A=1".into(), "B=2".into()]),
            working_dir: Some("/srv".into()),
            user: Some("nobody".into()),
            labels: Some([("x".to_string(), "image".to_string())].into()),
            ..Default::default()
        }
    }

    fn opts(cmd: &[&str], entrypoint: Option<&[&str]>) -> ContainerConfig {
        ContainerConfig {
            image: "img".into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            entrypoint: entrypoint.map(|e| StringList {
                values: e.iter().map(|s| s.to_string()).collect(),
            }),
            ..Default::default()
        }
    }

    const ID: &str = "0123456789abcdef0123";

    #[test]
    fn docker_entrypoint_and_cmd_rules() {
        let img = image(Some(&["/bin/busybox"]), Some(&["sh"]));
        let m = merge(&opts(&[], None), Some(&img), ID).unwrap();
        assert_eq!(m.argv, ["/bin/busybox", "sh"]);
        let m = merge(&opts(&["echo", "hi"], None), Some(&img), ID).unwrap();
        assert_eq!(m.argv, ["/bin/busybox", "echo", "hi"]);
        // --entrypoint drops the image's CMD.
        let m = merge(&opts(&[], Some(&["/bin/sh"])), Some(&img), ID).unwrap();
        assert_eq!(m.argv, ["/bin/sh"]);
        // --entrypoint "" with a command: only the command.
        let m = merge(&opts(&["/bin/true"], Some(&[])), Some(&img), ID).unwrap();
        assert_eq!(m.argv, ["/bin/true"]);
        let err = merge(&opts(&[], Some(&[])), Some(&img), ID).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(merge(&opts(&[], None), None, ID).is_err());
    }

    #[test]
    fn env_workdir_user_labels_hostname() {
        let img = image(None, Some(&["sh"]));
        let mut o = opts(&[], None);
        o.env = vec!["A=override".into(), "B".into(), "C=3".into()];
        o.labels = [("y".to_string(), "opt".to_string())].into();
        let m = merge(&o, Some(&img), ID).unwrap();
        assert_eq!(m.config.env, ["PATH=/bin", "A=override", "C=3"]);
        assert_eq!(m.config.working_dir, "/srv");
        assert_eq!(m.config.user, "nobody");
        assert_eq!(m.config.hostname, "0123456789ab");
        assert_eq!(m.config.labels.len(), 2);
        o.working_dir = "/a/./b/../c/".into();
        o.user = "1000:1000".into();
        o.hostname = "box".into();
        let m = merge(&o, Some(&img), ID).unwrap();
        assert_eq!(m.config.working_dir, "/a/c");
        assert_eq!(m.config.user, "1000:1000");
        assert_eq!(m.config.hostname, "box");
        o.working_dir = "rel".into();
        assert!(merge(&o, Some(&img), ID).is_err());
        o.working_dir = String::new();
        o.hostname = "bad name".into();
        assert!(merge(&o, Some(&img), ID).is_err());
    }

    #[test]
    fn a_bad_stop_signal_is_refused_at_create() {
        let img = image(None, Some(&["sh"]));
        let mut o = opts(&[], None);
        o.stop_signal = "SIGNOPE".into();
        assert!(merge(&o, Some(&img), ID).is_err());
    }
}
