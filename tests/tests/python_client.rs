//! The API from outside Rust: a Python grpcio client (stubs generated from proto/ during
//! the test) calls the engine over its unix socket.

use std::process::Command;

use berth_tests::Engine;

#[tokio::test]
async fn a_python_client_calls_version_and_health() {
    let Some(python) = std::env::var_os("BERTH_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "BERTH_PYTHON is unset under CI: deploy/test.sh makes the venv and sets it"
        );
        eprintln!("skipped: BERTH_PYTHON is unset (deploy/test.sh sets it)");
        return;
    };
    let engine = Engine::start(&[]).await;
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(python)
        .arg(repo.join("tests/python/client_test.py"))
        .arg("--socket")
        .arg(engine.socket())
        .arg("--proto-dir")
        .arg(repo.join("proto"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("0 failed"), "{stdout}");
}
