//! Configuration file and flags, and running the services externally.

use std::process::{Command, Stdio};
use std::time::Duration;

use berth_proto::engine::v1::system_client::SystemClient;
use berth_proto::engine::v1::InfoRequest;
use berth_rpc::Address;
use berth_tests::{bin, health, Engine};
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test]
async fn flags_override_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    // The file names a state dir the flags override, and JSON logs.
    std::fs::write(
        &cfg,
        format!(
            "state = \"{}/ignored\"\nlog_format = \"json\"\n[engine]\nevent_retention = 50\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let engine = Engine::start(&["--config", cfg.to_str().unwrap()]).await;
    assert!(!dir.path().join("ignored").exists());
    // JSON logs reach the embedded services too.
    let log = engine.log_text();
    let lines: Vec<_> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v.get("level").is_some(), "{l}");
    }
}

#[test]
fn bad_config_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, want) in [
        ("typo.toml", "[engine]\nlisten_on = []\n", "listen_on"),
        ("broken.toml", "root = \n", "config file"),
        ("section.toml", "[enigne]\n", "enigne"),
    ] {
        let cfg = dir.path().join(name);
        std::fs::write(&cfg, text).unwrap();
        let out = Command::new(bin("berth-engine"))
            .args(["--state", dir.path().to_str().unwrap(), "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{name}: {err}");
    }
    let out = Command::new(bin("berth-engine"))
        .args(["--config", "/nonexistent/berth.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn the_engine_uses_services_run_by_something_else() {
    let dir = tempfile::tempdir().unwrap();
    let (root, state) = (dir.path().join("root"), dir.path().join("state"));
    let mut services = Vec::new();
    for name in ["snapshotter", "builder"] {
        let child = Command::new(bin(&format!("berth-{name}")))
            .args(["--config", "/dev/null", "--root"])
            .arg(&root)
            .arg("--state")
            .arg(&state)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        services.push(child);
    }
    for name in ["snapshotter", "builder"] {
        let addr = Address::Unix(state.join(format!("{name}.sock")));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while health(&addr, "").await != Some(ServingStatus::Serving) {
            assert!(std::time::Instant::now() < deadline, "{name} not serving");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let snap = format!("unix://{}/snapshotter.sock", state.display());
    let build = format!("unix://{}/builder.sock", state.display());
    let mut engine = Engine::start(&["--snapshotter-addr", &snap, "--builder-addr", &build]).await;
    engine.others = services;
    let info = SystemClient::new(engine.channel().await)
        .info(InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    for s in &info.services {
        assert!(!s.embedded, "{s:?}");
        assert_eq!(s.health, "SERVING", "{s:?}");
    }
    assert_eq!(info.services[0].address, snap);
}

#[test]
fn a_missing_service_binary_fails_the_start_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = berth_tests::engine_command()
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--state")
        .arg(dir.path().join("state"))
        .args(["--snapshotter-bin", "/nonexistent/berth-snapshotter"])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/berth-snapshotter"), "{err}");
}
