//! The client commands as scripts use them, against a real `jibber serve`: `seed` (twice),
//! `tail` (JSON and plain lines) and `send`, `register`, and the exit codes.

mod common;

use std::process::{Output, Stdio};
use std::time::Duration;

use common::{Server, jibber, lines, wait_line};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn run(args: &[&str], base: &str, password: &str) -> Output {
    jibber()
        .args(args)
        .env("JIBBER_SERVER", base)
        .env("JIBBER_PASSWORD", password)
        .stdin(Stdio::null())
        .output()
        .expect("run jibber")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn seed_twice_then_tail_and_send_with_trustworthy_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::spawn(dir.path(), &[]);
    let base = server.base();

    let first = run(&["seed"], &base, "");
    assert!(first.status.success(), "{}", text(&first.stderr));
    let out = text(&first.stdout);
    assert!(out.contains("seeded 4 accounts"), "{out}");
    assert!(out.contains("(11 new messages)"), "{out}");
    // Safe to run twice: nothing is doubled.
    let again = run(&["seed"], &base, "");
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stdout).contains("(0 new messages)"),
        "{}",
        text(&again.stdout)
    );

    // tini's history decrypts: the three chats with alice, bob and carol.
    let history = run(
        &[
            "tail",
            "-u",
            "tini",
            "--from-start",
            "--json",
            "--count",
            "9",
            "--timeout",
            "30",
        ],
        &base,
        "password123",
    );
    assert!(history.status.success(), "{}", text(&history.stderr));
    let shown: Vec<Value> = text(&history.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(shown.len(), 9);
    assert!(
        shown.iter().all(|m| m["decrypted"] == Value::Bool(true)),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|m| m["text"] == "Lunch tomorrow at noon?" && m["from"] == "bob")
    );
    // Without --json: one plain line per message, `from: text`, the same nine.
    let plain = run(
        &[
            "tail",
            "-u",
            "tini",
            "--from-start",
            "--count",
            "9",
            "--timeout",
            "30",
        ],
        &base,
        "password123",
    );
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    let mut printed: Vec<String> = text(&plain.stdout).lines().map(str::to_owned).collect();
    let mut expected: Vec<String> = shown
        .iter()
        .map(|m| {
            let field = |k: &str| m[k].as_str().expect("a string").to_owned();
            format!("{}: {}", field("from"), field("text"))
        })
        .collect();
    printed.sort();
    expected.sort();
    assert_eq!(printed, expected);
    assert!(printed.contains(&"bob: Lunch tomorrow at noon?".to_owned()));

    // Bob tails; alice sends; bob's tail prints the message and exits after one.
    let mut tail = jibber()
        .args([
            "tail",
            "-u",
            "bob",
            "--json",
            "--count",
            "1",
            "--timeout",
            "60",
        ])
        .env("JIBBER_SERVER", &base)
        .env("JIBBER_PASSWORD", "password123")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tail");
    let tail_out = lines(tail.stdout.take().expect("stdout"));
    let tail_err = lines(tail.stderr.take().expect("stderr"));
    let mut seen = Vec::new();
    wait_line(&tail_err, &mut seen, WAIT, |l| {
        (l == "online").then_some(())
    });
    let sent = run(
        &["send", "-u", "alice", "--json", "bob", "hello", "bob"],
        &base,
        "password123",
    );
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    let ack: Value = serde_json::from_slice(&sent.stdout).expect("ack json");
    assert_eq!(ack["to"], "bob");
    let mut got = Vec::new();
    let line: Value = wait_line(&tail_out, &mut got, WAIT, |l| serde_json::from_str(l).ok());
    assert_eq!(line["text"], "hello bob");
    assert_eq!(line["from"], "alice");
    assert_eq!(line["messageId"], ack["messageId"]);
    assert_eq!(line["sequenceNumber"], ack["sequenceNumber"]);
    let status = tail.wait().expect("tail exits");
    assert!(status.success(), "{status:?}");

    // Exit codes: wrong password 4, unknown receiver 5, taken username 5, bad usage 2,
    // unreachable server 3, tail timeout 6.
    let code = |o: Output| o.status.code();
    assert_eq!(
        code(run(&["send", "-u", "alice", "bob", "x"], &base, "wrong")),
        Some(4)
    );
    assert_eq!(
        code(run(
            &["send", "-u", "alice", "nobody", "x"],
            &base,
            "password123"
        )),
        Some(5)
    );
    assert_eq!(
        code(run(&["register", "-u", "alice"], &base, "password123")),
        Some(5)
    );
    assert_eq!(
        code(run(&["send", "-u", "alice"], &base, "password123")),
        Some(2)
    );
    assert_eq!(
        code(run(
            &["send", "-u", "alice", "bob", "x"],
            "http://127.0.0.1:9",
            "password123"
        )),
        Some(3)
    );
    assert_eq!(
        code(run(
            &["tail", "-u", "carol", "--count", "1", "--timeout", "1"],
            &base,
            "password123"
        )),
        Some(6)
    );
    // A new account works at once.
    let reg = run(
        &["register", "-u", "dave", "--display-name", "Dave"],
        &base,
        "pw-dave-123",
    );
    assert!(reg.status.success(), "{}", text(&reg.stderr));
    assert!(
        text(&reg.stdout).starts_with("registered dave "),
        "{}",
        text(&reg.stdout)
    );
    let hi = run(
        &["send", "-u", "dave", "tini", "hi", "tini"],
        &base,
        "pw-dave-123",
    );
    assert!(hi.status.success(), "{}", text(&hi.stderr));
}
