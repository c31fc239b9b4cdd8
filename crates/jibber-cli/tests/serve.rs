//! `jibber serve` as a newcomer runs it: the real binary in an empty directory.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Server, jibber};

#[test]
fn serve_in_an_empty_directory_answers_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::spawn(dir.path(), &[]);
    let port = server.port;
    let network = server
        .stdout
        .recv_timeout(Duration::from_secs(5))
        .expect("network line");
    assert!(network.trim().starts_with("network:"), "{network}");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let status = rt.block_on(async {
        let res = reqwest::get(format!("http://127.0.0.1:{port}/api/v1/health"))
            .await
            .expect("health");
        let status = res.status();
        let body: serde_json::Value = res.json().await.expect("json");
        assert_eq!(
            body["data"]["database"]["ok"],
            serde_json::json!(true),
            "{body}"
        );
        status
    });
    assert_eq!(status.as_u16(), 200);
    // The data directory was created with its database and private secrets.
    assert!(dir.path().join("jibber-data/jibber.db").exists());
    assert!(dir.path().join("jibber-data/secrets/jwt_secret").exists());

    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let exit = server.wait_exit(Duration::from_secs(10));
    assert!(exit.success(), "exit status {exit:?}");
}

/// Started under a low soft limit of open files (many distributions and services start with
/// 1,024), the server raises it to the hard limit, so that it can hold as many connections as
/// the host allows without a wrapper script.
#[test]
fn serve_raises_its_open_file_limit_to_the_hard_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sh = Command::new("sh");
    sh.args([
        "-c",
        "ulimit -Sn 256 && exec \"$0\" serve --port 0",
        env!("CARGO_BIN_EXE_jibber"),
    ]);
    let server = Server::start(sh, dir.path(), &[]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id()))
        .expect("/proc/PID/limits");
    let files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("the open-file limit");
    let numbers: Vec<&str> = files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers.len(), 2, "{files}");
    assert_ne!(numbers[0], "256", "the soft limit stayed low: {files}");
    assert_eq!(
        numbers[0], numbers[1],
        "soft limit below the hard one: {files}"
    );
}

#[test]
fn an_invalid_setting_stops_start_up_naming_every_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = jibber()
        .args(["serve"])
        .current_dir(dir.path())
        .env("JIBBER_PORT", "http")
        .env("JIBBER_ACCESS_TOKEN_TTL", "forever")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port (from JIBBER_PORT)"), "{err}");
    assert!(
        err.contains("access_token_ttl (from JIBBER_ACCESS_TOKEN_TTL)"),
        "{err}"
    );
    assert!(
        !dir.path().join("jibber-data").exists(),
        "nothing is created before the settings are valid"
    );
}

#[test]
fn production_mode_refuses_to_start_without_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = jibber()
        .args(["serve", "--production"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in ["jwt_secret", "opaque_server_setup", "cors_origins"] {
        assert!(err.contains(key), "{key} not named in: {err}");
    }
}

#[test]
fn users_list_shows_accounts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = jibber()
        .args(["users", "list"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 account(s)"));
    // Add two accounts to the same database, then list again.
    let settings = jibber_server::Settings::for_data_dir(&dir.path().join("jibber-data"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = jibber_server::open_store(&settings).await.expect("open");
        for name in ["Zed", "amy"] {
            jibber_store::testsuite::user(&*store, name).await;
        }
        store.close().await;
    });
    let out = jibber()
        .args(["users", "list"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 account(s)"), "{text}");
    let amy = text.find("amy").expect("amy listed");
    let zed = text.find("Zed").expect("Zed listed");
    assert!(amy < zed, "sorted by username: {text}");
}
