//! The real npm client `@serenity-kit/opaque` against the real server (tests/node).

use std::path::PathBuf;
use std::process::Stdio;

fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/node")
}

/// Runs one node test file against a server started with `settings`; `env` goes to node.
async fn run_node(file: &str, settings: &[(&str, &str)], env: &[(&str, &str)]) {
    let dir = node_dir();
    assert!(
        dir.join("node_modules/@serenity-kit/opaque").exists()
            && dir.join("node_modules/socket.io-client").exists(),
        "the npm packages of tests/node are missing: run `npm ci` in {} (the README's test command does)",
        dir.display()
    );
    let app = crate::helpers::spawn_app_with(settings).await;
    let mut cmd = tokio::process::Command::new("node");
    cmd.args(["--test", "--test-reporter=tap", file])
        .current_dir(&dir)
        .env("JIBBER_URL", &app.base)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(280), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{file} did not finish within 280 s"))
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{file} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("# fail 0"), "{stdout}");
    assert!(!stdout.contains("# pass 0"), "no node test ran:\n{stdout}");
    app.stop().await;
}

#[tokio::test]
async fn serenity_kit_opaque_registers_and_logs_in() {
    run_node("opaque.test.mjs", &[], &[]).await;
}

/// The official `socket.io-client`, over WebSocket only and over long-polling only.
#[tokio::test]
async fn official_socket_io_client_over_both_transports() {
    run_node(
        "realtime.test.mjs",
        &[("access_token_ttl", "4s"), ("typing_timeout", "2s")],
        &[
            ("JIBBER_TEST_TYPING_TIMEOUT_MS", "2000"),
            ("JIBBER_TEST_EVENT_TIMEOUT_MS", "15000"),
        ],
    )
    .await;
}
