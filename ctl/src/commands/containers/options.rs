//! `create`/`run` flags → `ContainersCreateRequest`, read as Docker reads them.

use std::collections::HashMap;
use std::path::Path;

use berth_proto::engine::v1::{
    ContainerConfig, ContainersCreateRequest, LogConfig, PullPolicy, RestartPolicy,
    RestartPolicyName, StringList, Ulimit,
};

use crate::cli::{ContainerOptions, PullWhen};

/// A size as Docker's `RAMInBytes` reads it: a number with an optional binary unit
/// (b, k, m, g, t, p; "kb", "MiB" and friends too).
pub fn parse_size(s: &str) -> anyhow::Result<i64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid size: {s:?}"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches("ib").trim_end_matches('b');
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => anyhow::bail!("invalid size: {s:?}"),
    };
    let v = n * mult;
    if !v.is_finite() || v > i64::MAX as f64 {
        anyhow::bail!("invalid size: {s:?}");
    }
    Ok(v as i64)
}

/// `-e KEY` takes the value from this shell, as Docker does; unset stays "KEY" (which
/// removes it from the image's environment).
pub fn env_entry(e: &str) -> String {
    if e.contains('=') {
        return e.to_string();
    }
    match std::env::var(e) {
        Ok(v) => format!("{e}={v}"),
        Err(_) => e.to_string(),
    }
}

/// Lines of an `--env-file`: KEY=VALUE or KEY, comments and blank lines skipped.
pub fn read_env_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("open {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (k, _) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() || k.contains(char::is_whitespace) {
            anyhow::bail!(
                "invalid environment variable in {}: {line:?}",
                path.display()
            );
        }
        out.push(env_entry(l));
    }
    Ok(out)
}

/// `--ulimit name=soft[:hard]`.
pub fn parse_ulimit(s: &str) -> anyhow::Result<Ulimit> {
    let (name, limits) = s
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("invalid ulimit argument: {s}"))?;
    let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
    let n = |v: &str| -> anyhow::Result<i64> {
        v.trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid ulimit value {v:?} in {s}"))
    };
    Ok(Ulimit {
        name: name.trim().to_string(),
        soft: n(soft)?,
        hard: n(hard)?,
    })
}

/// `--restart POLICY[:MAX]`, with Docker's wording for what it refuses.
fn restart_policy(s: Option<&str>, rm: bool) -> anyhow::Result<Option<RestartPolicy>> {
    let Some(s) = s else { return Ok(None) };
    let (name, max) = match s.split_once(':') {
        Some((n, m)) => {
            let max: i64 = m.parse().map_err(|_| {
                anyhow::anyhow!(
                    "invalid restart policy format: maximum retry count must be an integer"
                )
            })?;
            let max = u32::try_from(max)
                .map_err(|_| anyhow::anyhow!("maximum retry count cannot be negative"))?;
            (n, max)
        }
        None => (s, 0),
    };
    let name = match name {
        "" | "no" => RestartPolicyName::No,
        "always" => RestartPolicyName::Always,
        "unless-stopped" => RestartPolicyName::UnlessStopped,
        "on-failure" => RestartPolicyName::OnFailure,
        _ => anyhow::bail!("invalid restart policy '{name}'"),
    };
    if rm && name != RestartPolicyName::No {
        anyhow::bail!("conflicting options: cannot specify both --restart and --rm");
    }
    Ok(Some(RestartPolicy {
        name: name as i32,
        maximum_retry_count: max,
    }))
}

fn log_config(driver: Option<&str>, opts: &[String]) -> anyhow::Result<Option<LogConfig>> {
    if driver.is_none() && opts.is_empty() {
        return Ok(None);
    }
    let mut c = LogConfig {
        driver: driver.unwrap_or_default().to_string(),
        ..Default::default()
    };
    for o in opts {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("invalid log option {o:?}: expected key=value"))?;
        match k {
            "max-size" => c.max_size_bytes = if v == "-1" { -1 } else { parse_size(v)? },
            "max-file" => {
                c.max_files = v
                    .parse()
                    .map_err(|_| anyhow::anyhow!("invalid max-file {v:?}"))?
            }
            _ => anyhow::bail!("unknown log option {k:?} (berth knows max-size and max-file)"),
        }
    }
    Ok(Some(c))
}

/// `--security-opt` as docker sends it: a `seccomp=FILE` option carries the profile's
/// JSON instead of the path (the engine reads no client path), compacted; "unconfined"
/// and "builtin" are names, not files.
pub fn security_opts(opts: &[String]) -> anyhow::Result<Vec<String>> {
    opts.iter()
        .map(|o| {
            let Some((key, value)) = o.split_once('=').or_else(|| o.split_once(':')) else {
                return Ok(o.clone());
            };
            if key != "seccomp" || matches!(value, "unconfined" | "builtin") {
                return Ok(o.clone());
            }
            let text = std::fs::read_to_string(value)
                .map_err(|e| anyhow::anyhow!("opening seccomp profile ({value}) failed: {e}"))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("seccomp profile ({value}) is not valid JSON: {e}"))?;
            Ok(format!("seccomp={json}"))
        })
        .collect()
}

/// Builds the Create request.
pub fn request(o: &ContainerOptions) -> anyhow::Result<ContainersCreateRequest> {
    let image = o.args[0].clone();
    let cmd = o.args[1..].to_vec();
    let mut env = Vec::new();
    for f in &o.env_file {
        env.extend(read_env_file(f)?);
    }
    env.extend(o.env.iter().map(|e| env_entry(e)));
    let labels: HashMap<String, String> = o
        .labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect();
    let memory = o
        .memory
        .as_deref()
        .map(parse_size)
        .transpose()?
        .unwrap_or(0);
    let memory_swap = match o.memory_swap.as_deref() {
        None => 0,
        Some("-1") => -1,
        Some(s) => parse_size(s)?,
    };
    let nano_cpus = match o.cpus {
        Some(c) if !(c.is_finite() && c >= 0.0) => anyhow::bail!("invalid --cpus {c}"),
        Some(c) => (c * 1e9).round() as i64,
        None => 0,
    };
    let config = ContainerConfig {
        image,
        cmd,
        entrypoint: o.entrypoint.as_ref().map(|e| StringList {
            values: if e.is_empty() {
                vec![]
            } else {
                vec![e.clone()]
            },
        }),
        env,
        working_dir: o.workdir.clone().unwrap_or_default(),
        user: o.user.clone().unwrap_or_default(),
        group_add: o.group_add.clone(),
        hostname: o.hostname.clone().unwrap_or_default(),
        tty: o.tty,
        open_stdin: o.interactive,
        // As Docker, an attached stdin (`-i`) closes the container's when it ends.
        stdin_once: o.interactive,
        labels,
        stop_signal: o.stop_signal.clone().unwrap_or_default(),
        stop_timeout: o.stop_timeout,
        memory,
        memory_swap,
        nano_cpus,
        cpu_shares: o.cpu_shares.unwrap_or(0),
        cpuset_cpus: o.cpuset_cpus.clone().unwrap_or_default(),
        pids_limit: o.pids_limit,
        ulimits: o
            .ulimits
            .iter()
            .map(|u| parse_ulimit(u))
            .collect::<anyhow::Result<_>>()?,
        read_only: o.read_only,
        privileged: o.privileged,
        cap_add: o.cap_add.clone(),
        cap_drop: o.cap_drop.clone(),
        security_opt: security_opts(&o.security_opt)?,
        auto_remove: o.rm,
        restart_policy: restart_policy(o.restart.as_deref(), o.rm)?,
        network_mode: o.network.clone().unwrap_or_default(),
        dns: o.dns.clone(),
        dns_search: o.dns_search.clone(),
        extra_hosts: o.add_host.clone(),
        log_config: log_config(o.log_driver.as_deref(), &o.log_opts)?,
        ..Default::default()
    };
    Ok(ContainersCreateRequest {
        name: o.name.clone().unwrap_or_default(),
        config: Some(config),
        pull: match o.pull {
            PullWhen::Missing => PullPolicy::Missing,
            PullWhen::Always => PullPolicy::Always,
            PullWhen::Never => PullPolicy::Never,
        } as i32,
        platform: o
            .platform
            .as_deref()
            .map(crate::commands::transfer::platform)
            .transpose()?,
        registry_auth: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn seccomp_profiles_travel_inline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.json");
        std::fs::write(&file, "{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\"\n}\n").unwrap();
        let opts = vec![
            format!("seccomp={}", file.display()),
            "seccomp=unconfined".to_string(),
            "no-new-privileges".to_string(),
        ];
        assert_eq!(
            security_opts(&opts).unwrap(),
            [
                r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#,
                "seccomp=unconfined",
                "no-new-privileges"
            ]
        );
        std::fs::write(&file, "{ nope").unwrap();
        let err = security_opts(&opts[..1]).unwrap_err().to_string();
        assert!(err.contains("not valid JSON"), "{err}");
        let err = security_opts(&["seccomp=/nonexistent.json".to_string()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent.json"), "{err}");
    }

    #[test]
    fn sizes_are_binary() {
        assert_eq!(parse_size("32m").unwrap(), 32 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("64MB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert!(parse_size("12x").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn ulimits_parse() {
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nofile", 1024, 2048));
        let u = parse_ulimit("core=-1").unwrap();
        assert_eq!((u.soft, u.hard), (-1, -1));
        assert!(parse_ulimit("nofile").is_err());
    }

    #[test]
    fn run_flags_become_the_request() {
        let cli = crate::cli::Cli::try_parse_from([
            "berthctl",
            "run",
            "--rm",
            "-e",
            "A=1",
            "-w",
            "/tmp",
            "-u",
            "1000",
            "--name",
            "x",
            "-m",
            "32m",
            "--cpus",
            "0.5",
            "--entrypoint",
            "",
            "--pids-limit",
            "-1",
            "busybox",
            "sh",
            "-c",
            "exit 3",
        ])
        .unwrap();
        let crate::cli::Command::Run(r) = cli.command else {
            panic!("not run")
        };
        let req = request(&r.options).unwrap();
        let c = req.config.unwrap();
        assert_eq!(c.image, "busybox");
        assert_eq!(c.cmd, ["sh", "-c", "exit 3"]);
        assert_eq!(c.env, ["A=1"]);
        assert_eq!((c.working_dir.as_str(), c.user.as_str()), ("/tmp", "1000"));
        assert_eq!(c.memory, 32 << 20);
        assert_eq!(c.nano_cpus, 500_000_000);
        assert_eq!(c.entrypoint.unwrap().values, Vec::<String>::new());
        assert_eq!(c.pids_limit, Some(-1));
        assert!(c.auto_remove);
        assert_eq!(req.name, "x");
    }

    #[test]
    fn flags_after_the_image_belong_to_the_command() {
        let cli =
            crate::cli::Cli::try_parse_from(["berthctl", "run", "-d", "img", "ls", "-d", "/"])
                .unwrap();
        let crate::cli::Command::Run(r) = cli.command else {
            panic!("not run")
        };
        assert!(r.detach);
        assert_eq!(r.options.args, ["img", "ls", "-d", "/"]);
    }

    #[test]
    fn env_files_read_like_docker() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("env");
        std::fs::write(&p, "# comment\n\nA=1\nB=two words\n").unwrap();
        assert_eq!(read_env_file(&p).unwrap(), ["A=1", "B=two words"]);
        std::fs::write(&p, "BAD KEY=1\n").unwrap();
        assert!(read_env_file(&p).is_err());
    }
}
