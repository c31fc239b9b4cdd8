//! The web client's own test suites, run from cargo so that `./scripts/test` and CI run them:
//! Vitest (the crypto against the shared vectors, the store, the cache) and the end-to-end suite
//! in Debian's Chromium against this very binary (web/e2e/).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web")
}

/// Runs a command in web/ with a time limit; panics with its output when it fails.
fn run(program: &str, args: &[&str], env: &[(&str, &str)], limit: Duration) -> String {
    let dir = web_dir();
    assert!(
        dir.join("node_modules/vitest").exists()
            && dir.join("node_modules/playwright-core").exists(),
        "the npm packages of web/ are missing: run `npm ci` in {} (./scripts/test does)",
        dir.display()
    );
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(&dir)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let out = rt
        .block_on(async { tokio::time::timeout(limit, cmd.output()).await })
        .unwrap_or_else(|_| panic!("`{program} {}` ran over {limit:?}", args.join(" ")))
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`{program} {}` failed:\n{stdout}\n{stderr}",
        args.join(" ")
    );
    stdout
}

#[test]
fn web_unit_tests_with_vitest() {
    let out = run(
        "npx",
        &["--no-install", "vitest", "run", "--reporter=verbose"],
        &[("CI", "true")],
        Duration::from_secs(240),
    );
    assert!(
        out.contains("Test Files") && out.contains("passed"),
        "{out}"
    );
}

#[test]
fn web_end_to_end_in_chromium() {
    let chromium =
        std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: `apt-get install -y chromium` (.ci/run does)"
    );
    let out = run(
        "node",
        &[
            "--test",
            "--test-concurrency=1",
            "--test-reporter=tap",
            "e2e/",
        ],
        &[
            ("JIBBER_BIN", env!("CARGO_BIN_EXE_jibber")),
            ("CHROMIUM_PATH", &chromium),
        ],
        Duration::from_secs(420),
    );
    assert!(out.contains("# fail 0"), "{out}");
    assert!(!out.contains("# pass 0"), "no e2e test ran:\n{out}");
    println!("{out}");
}
