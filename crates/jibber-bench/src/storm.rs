//! Reconnect storm: every client drops at once and comes back; how long until all are
//! connected again and caught up (each walks `GET /sync` from its cursor).

use std::time::Instant;

use futures_util::{StreamExt, stream};
use jibber_client::sio::Transport;
use serde::Serialize;

use crate::setup::{self, Party, Target};

#[derive(Debug, Clone)]
pub struct Config {
    pub clients: usize,
    pub users: usize,
    pub transport: Transport,
    pub per_address: usize,
    pub concurrency: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            clients: 1000,
            users: 1000,
            transport: Transport::WebSocket,
            per_address: 20_000,
            concurrency: 256,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub clients: usize,
    pub connected_before: usize,
    pub reconnected: usize,
    pub caught_up: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    /// From the drop until the last client was connected and caught up.
    pub seconds: f64,
}

impl Report {
    pub fn table(&self) -> String {
        format!(
            "storm → {}: {} clients dropped at once; {} reconnected and {} caught up in {:.2} s ({} failed{})",
            self.target,
            self.connected_before,
            self.reconnected,
            self.caught_up,
            self.seconds,
            self.failed,
            self.first_error
                .as_ref()
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default()
        )
    }
}

/// Walks the change feed to its end, as a client does after a reconnect.
async fn catch_up(target: &Target, party: &Party) -> anyhow::Result<()> {
    let Target::Server { base, .. } = target else {
        return Ok(());
    };
    let token = party.auth["token"].as_str().unwrap_or_default();
    let mut cursor = 0i64;
    loop {
        let page = setup::reqwest_get(base, &format!("/api/v1/sync?since={cursor}"), token).await?;
        cursor = page["data"]["nextCursor"].as_i64().unwrap_or(cursor);
        if page["data"]["hasMore"] != serde_json::Value::Bool(true) {
            return Ok(());
        }
    }
}

pub async fn run(target: &Target, cfg: &Config) -> anyhow::Result<Report> {
    setup::raise_file_limit();
    let prefix = format!("s{}x", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let users = setup::users(target, cfg.users.clamp(1, cfg.clients.max(1)), &prefix).await?;
    let (open, _) = setup::open_many(
        target,
        &users,
        cfg.clients,
        cfg.transport,
        cfg.per_address,
        cfg.concurrency,
    )
    .await;
    let connected_before = open.len();
    // Drop everyone at once.
    let started = Instant::now();
    drop(open);
    let results: Vec<anyhow::Result<_>> = stream::iter(0..connected_before)
        .map(|i| {
            let party = &users[i % users.len()];
            async move {
                let (socket, events) = setup::connect(
                    target,
                    party,
                    cfg.transport,
                    setup::local_ip(i, cfg.per_address),
                )
                .await?;
                catch_up(target, party).await?;
                Ok::<_, anyhow::Error>((socket, events))
            }
        })
        .buffer_unordered(cfg.concurrency.max(1))
        .collect()
        .await;
    // Everyone is back (the sockets stay open until the figures are taken).
    let seconds = started.elapsed().as_secs_f64();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let first_error = results
        .iter()
        .find_map(|r| r.as_ref().err().map(|e| format!("{e:#}")));
    Ok(Report {
        target: target.base().to_owned(),
        clients: cfg.clients,
        connected_before,
        reconnected: ok,
        caught_up: ok,
        failed: results.len() - ok,
        first_error,
        seconds,
    })
}
