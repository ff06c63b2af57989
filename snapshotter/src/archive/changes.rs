//! `--change` instructions of `import` (CMD, ENTRYPOINT, ENV, …) applied to an image
//! configuration, with Dockerfile syntax: JSON (exec) form or shell form.

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

const ALLOWED: [&str; 10] = [
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "ONBUILD",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn bad(change: &str, why: &str) -> Error {
    Error::InvalidArgument(format!("invalid change {change:?}: {why}"))
}

/// `["a","b"]` → exec form; anything else → `/bin/sh -c <text>`.
fn command(change: &str, args: &str) -> Result<Value> {
    let trimmed = args.trim();
    if trimmed.starts_with('[') {
        let v: Vec<String> = serde_json::from_str(trimmed)
            .map_err(|_| bad(change, "a JSON array of strings was expected"))?;
        return Ok(json!(v));
    }
    if trimmed.is_empty() {
        return Err(bad(change, "missing command"));
    }
    Ok(json!(["/bin/sh", "-c", trimmed]))
}

/// `k=v k2="v 2"` or the legacy `k v` form.
fn pairs(change: &str, args: &str) -> Result<Vec<(String, String)>> {
    let args = args.trim();
    if !args.contains('=') {
        let (k, v) = args
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad(change, "expected KEY=VALUE"))?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    let mut chars = args.chars().peekable();
    while chars.peek().is_some() {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        let mut quote = None;
        while let Some(&c) = chars.peek() {
            chars.next();
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, c) if c.is_whitespace() => break,
                (_, '\\') => {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                }
                (_, c) => value.push(c),
            }
        }
        if quote.is_some() {
            return Err(bad(change, "unterminated quote"));
        }
        out.push((key, value));
    }
    Ok(out)
}

fn object<'a>(config: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = config.entry(key.to_string()).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut().expect("just made an object")
}

/// Applies `changes` to the `config` section of an image configuration.
pub fn apply(config: &mut Map<String, Value>, changes: &[String]) -> Result<()> {
    for change in changes {
        let change_t = change.trim();
        let (word, args) = change_t
            .split_once(char::is_whitespace)
            .unwrap_or((change_t, ""));
        let word = word.to_ascii_uppercase();
        if !ALLOWED.contains(&word.as_str()) {
            return Err(bad(
                change,
                &format!(
                    "{word} is not allowed here; use one of {}",
                    ALLOWED.join(", ")
                ),
            ));
        }
        let args = args.trim();
        match word.as_str() {
            "CMD" => {
                config.insert("Cmd".into(), command(change, args)?);
            }
            "ENTRYPOINT" => {
                config.insert("Entrypoint".into(), command(change, args)?);
            }
            "ENV" => {
                let env = config.entry("Env").or_insert_with(|| json!([]));
                let list = env
                    .as_array_mut()
                    .ok_or_else(|| bad(change, "Env is not a list"))?;
                for (k, v) in pairs(change, args)? {
                    list.retain(|e| {
                        e.as_str().and_then(|s| s.split_once('=')).map(|(ek, _)| ek)
                            != Some(k.as_str())
                    });
                    list.push(json!(format!("{k}={v}")));
                }
            }
            "LABEL" => {
                let labels = object(config, "Labels");
                for (k, v) in pairs(change, args)? {
                    labels.insert(k, json!(v));
                }
            }
            "EXPOSE" => {
                let ports = object(config, "ExposedPorts");
                for p in args.split_whitespace() {
                    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                    if num.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
                        return Err(bad(change, &format!("invalid port {p:?}")));
                    }
                    ports.insert(format!("{num}/{proto}"), json!({}));
                }
            }
            "VOLUME" => {
                let list: Vec<String> = if args.starts_with('[') {
                    serde_json::from_str(args).map_err(|_| bad(change, "invalid JSON array"))?
                } else {
                    args.split_whitespace().map(String::from).collect()
                };
                let vols = object(config, "Volumes");
                for v in list {
                    vols.insert(v, json!({}));
                }
            }
            "WORKDIR" | "USER" | "STOPSIGNAL" => {
                if args.is_empty() {
                    return Err(bad(change, "missing value"));
                }
                let key = match word.as_str() {
                    "WORKDIR" => "WorkingDir",
                    "USER" => "User",
                    _ => "StopSignal",
                };
                config.insert(key.into(), json!(args));
            }
            _ => {
                let list = config.entry("OnBuild").or_insert_with(|| json!([]));
                if let Some(l) = list.as_array_mut() {
                    l.push(json!(args));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_docker_changes() {
        let mut c = Map::new();
        apply(
            &mut c,
            &[
                r#"CMD ["/bin/sh","-c","echo hi"]"#.into(),
                "ENTRYPOINT /init".into(),
                "ENV A=1 B=\"two words\"".into(),
                "env A 3".into(),
                "WORKDIR /app".into(),
                "EXPOSE 80 53/udp".into(),
                "LABEL x=y".into(),
                "USER 1000:1000".into(),
            ],
        )
        .unwrap();
        assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/init"]));
        assert_eq!(c["Env"], json!(["B=two words", "A=3"]));
        assert_eq!(c["WorkingDir"], json!("/app"));
        assert!(c["ExposedPorts"].get("53/udp").is_some());
        assert_eq!(c["Labels"]["x"], json!("y"));
    }

    #[test]
    fn refuses_bad_changes() {
        for bad in [
            "RUN rm -rf /",
            "CMD [\"unterminated\"",
            "EXPOSE http",
            "WORKDIR",
            "ENV A=\"x",
        ] {
            assert!(apply(&mut Map::new(), &[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
