//! The engine starts, supervises and stops its embedded services.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use berth_proto::engine::v1::system_client::SystemClient;
use berth_proto::engine::v1::InfoRequest;
use berth_rpc::Address;
use berth_tests::{alive, health, wait_until, Engine};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tonic_health::pb::health_check_response::ServingStatus;

const SERVICES: [&str; 2] = ["snapshotter", "builder"];

#[tokio::test]
async fn all_three_services_are_healthy() {
    let engine = Engine::start(&[]).await;
    for name in SERVICES {
        let addr = Address::Unix(engine.state.path().join(format!("{name}.sock")));
        assert_eq!(
            health(&addr, "").await,
            Some(ServingStatus::Serving),
            "{name}"
        );
    }
    // A status per service, not only the server as a whole.
    assert_eq!(
        health(&engine.address(), "berth.engine.v1.System").await,
        Some(ServingStatus::Serving)
    );
    let info = SystemClient::new(engine.channel().await)
        .info(InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.services.len(), 2);
    for s in &info.services {
        assert_eq!(s.health, "SERVING", "{s:?}");
        assert!(s.embedded && s.pid > 0, "{s:?}");
    }
    assert!(matches!(info.cgroup_version.as_str(), "1" | "2"));
    assert_eq!(info.storage_driver, "overlayfs");
    assert_eq!(info.root_dir, engine.root.path().display().to_string());
}

#[tokio::test]
async fn sockets_and_directories_have_restrictive_modes() {
    let engine = Engine::start(&[]).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for name in ["engine", "snapshotter", "builder"] {
        let sock = engine.state.path().join(format!("{name}.sock"));
        assert_eq!(mode(&sock), 0o660, "{name}.sock");
    }
    assert_eq!(mode(&engine.root.path().join("metadata")), 0o700);
}

#[tokio::test]
async fn a_killed_snapshotter_is_restarted() {
    let engine = Engine::start(&[]).await;
    let old = engine.service_pid("snapshotter").expect("snapshotter pid");
    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    wait_until("a new snapshotter", Duration::from_secs(15), || {
        engine
            .service_pid("snapshotter")
            .is_some_and(|p| p != old && alive(p))
    });
    let addr = Address::Unix(engine.state.path().join("snapshotter.sock"));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while health(&addr, "").await != Some(ServingStatus::Serving) {
        assert!(
            std::time::Instant::now() < deadline,
            "snapshotter not healthy again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let info = SystemClient::new(engine.channel().await)
        .info(InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let snap = info
        .services
        .iter()
        .find(|s| s.name == "snapshotter")
        .unwrap();
    assert_eq!(snap.health, "SERVING");
    assert!(snap.restarts >= 1, "{snap:?}");
    assert!(engine.log_text().contains("service died"));
}

#[tokio::test]
async fn sigterm_stops_services_and_removes_sockets() {
    let mut engine = Engine::start(&[]).await;
    let pids: Vec<i32> = SERVICES
        .iter()
        .map(|s| engine.service_pid(s).unwrap())
        .collect();
    engine.signal(Signal::SIGTERM);
    let status = engine.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "engine exit status {status}");
    for pid in pids {
        assert!(!alive(pid), "service {pid} outlived the engine");
    }
    let left: Vec<_> = std::fs::read_dir(engine.state.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sock") || n.ends_with(".pid"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test]
async fn sigkill_leaves_no_orphan_services() {
    let mut engine = Engine::start(&[]).await;
    let pids: Vec<i32> = SERVICES
        .iter()
        .map(|s| engine.service_pid(s).unwrap())
        .collect();
    engine.signal(Signal::SIGKILL);
    engine.wait_exit(Duration::from_secs(5)).await;
    for pid in pids {
        wait_until(
            &format!("service {pid} to exit"),
            Duration::from_secs(10),
            || !alive(pid),
        );
    }
    // The next engine on the same directories starts cleanly over the stale socket.
    let restarted = Engine::start_in(engine, &[]).await;
    assert_eq!(
        health(&restarted.address(), "").await,
        Some(ServingStatus::Serving)
    );
}

#[tokio::test]
async fn a_second_engine_on_the_same_state_refuses_to_start() {
    let engine = Engine::start(&[]).await;
    let out = engine.command(&[]).output().unwrap();
    assert!(!out.status.success());
    let log = engine.log_text();
    assert!(
        log.contains("already running"),
        "expected a clear refusal in the log:\n{log}"
    );
    assert!(log.contains(&format!("pid {}", engine.pid())), "{log}");
    // The first one is untouched.
    assert_eq!(
        health(&engine.address(), "").await,
        Some(ServingStatus::Serving)
    );
}

#[tokio::test]
async fn a_stale_socket_is_replaced() {
    let mut engine = Engine::spawn(&["--version"]);
    engine.wait_exit(Duration::from_secs(5)).await;
    // Left by a crashed engine: a socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(engine.socket()).unwrap());
    let restarted = Engine::start_in(engine, &[]).await;
    assert_eq!(
        health(&restarted.address(), "").await,
        Some(ServingStatus::Serving)
    );
}
