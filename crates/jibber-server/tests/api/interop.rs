//! The real npm client `@serenity-kit/opaque` against the real server (tests/node).

use std::path::PathBuf;
use std::process::Stdio;

use crate::helpers::spawn_app;

fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/node")
}

#[tokio::test]
async fn serenity_kit_opaque_registers_and_logs_in() {
    let dir = node_dir();
    assert!(
        dir.join("node_modules/@serenity-kit/opaque").exists(),
        "the npm packages of tests/node are missing: run `npm ci` in {} (the README's test command does)",
        dir.display()
    );
    let app = spawn_app().await;
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::process::Command::new("node")
            .args(["--test", "opaque.test.mjs"])
            .current_dir(&dir)
            .env("JIBBER_URL", &app.base)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output(),
    )
    .await
    .expect("node finishes within 2 minutes")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node tests failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("# fail 0"), "{stdout}");
    assert!(!stdout.contains("# pass 0"), "no node test ran:\n{stdout}");
    app.stop().await;
}
