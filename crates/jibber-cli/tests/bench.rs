//! The load generator's smoke runs (correctness only, never speed): a 10-second relay against a
//! spawned server delivers every acknowledged message once and in order; the ceiling, idle and
//! storm modes run and count what they should.

mod common;
#[allow(dead_code)] // Only the fresh schema is used here.
#[path = "../../jibber-store-postgres/tests/common/mod.rs"]
mod pg;

use common::jibber;
use serde_json::Value;

fn bench(args: &[&str]) -> Value {
    bench_with_log(args).0
}

/// The report, and what the run (the spawned server included) wrote to stderr.
fn bench_with_log(args: &[&str]) -> (Value, String) {
    let out = jibber()
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .expect("run jibber bench");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "jibber bench {args:?} failed: {log}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    (
        serde_json::from_slice(&out.stdout).expect("json report"),
        log,
    )
}

fn int(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The relay's report says every message was sent, acknowledged and delivered exactly once, in
/// order, with latencies recorded.
fn every_message_once_in_order(report: &Value) {
    let r = &report["relay"];
    assert!(int(&r["acked"]) > 0, "{report:#}");
    assert_eq!(int(&r["errors"]), 0, "{report:#}");
    assert_eq!(int(&r["lost"]), 0, "{report:#}");
    assert_eq!(int(&r["duplicates"]), 0, "{report:#}");
    assert_eq!(int(&r["out_of_order"]), 0, "{report:#}");
    assert_eq!(int(&r["delivered"]), int(&r["acked"]), "{report:#}");
    assert_eq!(int(&r["sent"]), int(&r["acked"]), "{report:#}");
    assert!(int(&r["send_to_receive"]["count"]) > 0, "{report:#}");
}

#[test]
fn relay_smoke_run_delivers_every_acknowledged_message_once_in_order() {
    let report = bench(&[
        "relay",
        "--spawn",
        "--pairs",
        "10",
        "--duration",
        "10",
        "--warmup",
        "1",
        // Pins the spawned server and the in-process ceiling's thread (both to CPU 0).
        "--server-cpus",
        "0",
        "--ceiling",
    ]);
    let r = &report["relay"];
    every_message_once_in_order(&report);
    assert!(r["server_rss_bytes"].as_u64().is_some(), "{report:#}");
    let c = &report["ceiling"];
    assert!(int(&c["delivered"]) > 0, "{report:#}");
    assert!(r["ratio_to_ceiling"].as_f64().is_some(), "{report:#}");
}

/// The relay on PostgreSQL (a fresh schema): sends and receipts of many chats meet in group
/// commits of a fixed number of statements (`jibber-store-postgres`, `send_batch_set` and
/// `delivery_batch`). Every message arrives once and in order, and no batch failed: a failed
/// batch is written again one write at a time, which would hide a deadlock between send and
/// receipt batches (their first version had one) from the report, but not from the log.
#[test]
fn relay_smoke_run_on_postgres_delivers_every_message_and_no_batch_fails() {
    let url = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(pg::fresh_url());
    let env = format!("JIBBER_DATABASE_URL={url}");
    let (report, log) = bench_with_log(&[
        "relay",
        "--spawn",
        "--pairs",
        "30",
        "--duration",
        "5",
        "--warmup",
        "1",
        "--server-env",
        &env,
    ]);
    every_message_once_in_order(&report);
    assert!(
        !log.contains("a batch failed"),
        "a group commit failed and was written again one by one:\n{log}"
    );
}

/// The open loop: senders on interleaved schedules at a fixed offered rate, against a server on
/// one CPU (so it runs the current-thread scheduler, `jibber_cli::runtime`).
#[test]
fn open_loop_smoke_run_delivers_every_acknowledged_message_once_in_order() {
    let report = bench(&[
        "relay",
        "--spawn",
        "--pairs",
        "10",
        "--duration",
        "5",
        "--warmup",
        "1",
        "--rate",
        "500",
        "--server-cpus",
        "0",
    ]);
    let r = &report["relay"];
    assert_eq!(r["offered_rate"].as_u64(), Some(500), "{report:#}");
    assert_eq!(r["in_phase"].as_bool(), Some(false), "{report:#}");
    every_message_once_in_order(&report);
}

#[test]
fn idle_and_storm_smoke_runs_count_every_connection() {
    let idle = bench(&[
        "idle",
        "--spawn",
        "--connections",
        "60",
        "--users",
        "6",
        "--settle-seconds",
        "1",
    ]);
    assert_eq!(int(&idle["opened"]), 60, "{idle:#}");
    assert_eq!(int(&idle["failed"]), 0, "{idle:#}");
    assert!(int(&idle["server_rss_after"]) > 0, "{idle:#}");
    let storm = bench(&["storm", "--spawn", "--clients", "60", "--users", "20"]);
    assert_eq!(int(&storm["connected_before"]), 60, "{storm:#}");
    assert_eq!(int(&storm["reconnected"]), 60, "{storm:#}");
    assert_eq!(int(&storm["failed"]), 0, "{storm:#}");
}
