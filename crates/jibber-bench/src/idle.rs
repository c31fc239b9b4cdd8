//! Idle connections: how much server memory one authenticated, idle connection costs.

use std::time::{Duration, Instant};

use anyhow::bail;
use jibber_client::sio::Transport;
use serde::Serialize;

use crate::proc;
use crate::setup::{self, Target};

#[derive(Debug, Clone)]
pub struct Config {
    pub connections: usize,
    /// Accounts the connections belong to (devices per account = connections / users).
    pub users: usize,
    pub transport: Transport,
    /// Connections per local address (127.0.0.x).
    pub per_address: usize,
    /// Handshakes in flight.
    pub concurrency: usize,
    /// Wait after the last connection before reading the server's memory.
    pub settle: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            connections: 1000,
            users: 100,
            transport: Transport::WebSocket,
            per_address: 20_000,
            concurrency: 64,
            settle: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub requested: usize,
    pub opened: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub seconds_to_open: f64,
    pub client_file_limit: u64,
    pub server_rss_before: u64,
    pub server_rss_after: u64,
    pub bytes_per_connection: f64,
}

impl Report {
    pub fn table(&self) -> String {
        format!(
            "idle → {}: {} of {} connections open in {:.1} s ({} failed{}); client file limit {}\n\
             server RSS {:.1} MiB → {:.1} MiB: {:.1} KiB per connection",
            self.target,
            self.opened,
            self.requested,
            self.seconds_to_open,
            self.failed,
            self.first_error
                .as_ref()
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default(),
            self.client_file_limit,
            self.server_rss_before as f64 / 1048576.0,
            self.server_rss_after as f64 / 1048576.0,
            self.bytes_per_connection / 1024.0
        )
    }
}

pub async fn run(target: &Target, cfg: &Config) -> anyhow::Result<Report> {
    let Some(pid) = target.pid() else {
        bail!("idle needs the server's pid (--server-pid, or --spawn)");
    };
    let limit = setup::raise_file_limit();
    let prefix = format!("i{}x", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let users = setup::users(target, cfg.users.clamp(1, cfg.connections.max(1)), &prefix).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = proc::rss(pid).unwrap_or(0);
    let started = Instant::now();
    let (open, errors) = setup::open_many(
        target,
        &users,
        cfg.connections,
        cfg.transport,
        cfg.per_address,
        cfg.concurrency,
    )
    .await;
    let seconds_to_open = started.elapsed().as_secs_f64();
    tokio::time::sleep(cfg.settle).await;
    let after = proc::rss(pid).unwrap_or(0);
    let opened = open.len();
    for (socket, _) in &open {
        socket.close().await;
    }
    Ok(Report {
        target: target.base().to_owned(),
        requested: cfg.connections,
        opened,
        failed: errors.len(),
        first_error: errors.first().cloned(),
        seconds_to_open,
        client_file_limit: limit,
        server_rss_before: before,
        server_rss_after: after,
        bytes_per_connection: if opened == 0 {
            0.0
        } else {
            after.saturating_sub(before) as f64 / opened as f64
        },
    })
}
