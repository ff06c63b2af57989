//! berthctl as a person at a terminal runs it.

use std::process::Command;

use berth_tests::{bin, Engine};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_unreachable_engine_is_one_clear_line_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let host = format!("unix://{}/engine.sock", dir.path().display());
    for args in [vec!["info"], vec!["system", "events"], vec!["version"]] {
        let out = Command::new(bin("berthctl"))
            .args(["-H", &host])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(&host) && err.contains("berth-engine"), "{err}");
        assert!(!err.contains("transport error"), "{err}");
    }
}

#[test]
fn berth_host_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let host = format!("unix://{}/other.sock", dir.path().display());
    let out = Command::new(bin("berthctl"))
        .env("BERTH_HOST", &host)
        .arg("info")
        .output()
        .unwrap();
    assert!(stderr(&out).contains(&host), "{}", stderr(&out));
}

#[test]
fn a_malformed_host_is_refused_clearly() {
    let out = Command::new(bin("berthctl"))
        .args(["-H", "ftp://x", "info"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("ftp://x"), "{}", stderr(&out));
}

#[tokio::test]
async fn info_and_version_in_text_and_json() {
    let engine = Engine::start(&[]).await;
    let out = engine.ctl(&["info"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Storage Driver: overlayfs"), "{text}");
    assert!(text.contains("snapshotter: SERVING"), "{text}");

    let out = engine.ctl(&["system", "info", "--format", "json"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["Driver"], "overlayfs");
    assert_eq!(info["Services"].as_array().unwrap().len(), 2);

    let out = engine.ctl(&["version", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Server"]["Snapshotter"]["Name"], "berth-snapshotter");
    assert_eq!(v["Client"]["ApiVersion"], "v1");
}

#[tokio::test]
async fn system_events_replays_and_filters() {
    let engine = Engine::start(&[]).await;
    let out = engine.ctl(&[
        "system",
        "events",
        "--since",
        "0",
        "--until",
        "1s",
        "--filter",
        "type=service",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let events: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.len() >= 4, "{events:?}");
    assert!(events.iter().all(|e| e["type"] == "service"));
    let out = engine.ctl(&["system", "events", "--filter", "bogus"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("key=value"), "{}", stderr(&out));
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(bin("berthctl"))
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let script = stdout(&out);
        assert!(
            script.contains("berthctl") && script.contains("events"),
            "{shell}"
        );
    }
}
