//! What a run needs: a server (given, spawned, or the in-process ceiling), accounts, chats and
//! connected sockets.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{StreamExt, stream};
use jibber_client::sio::{Inbound, Socket, Transport};
use jibber_proto::B64;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use uuid::Uuid;

/// Setup steps run this many at a time.
const SETUP_CONCURRENCY: usize = 16;

/// What the load goes to.
#[derive(Debug, Clone)]
pub enum Target {
    /// A Jibber server (or anything implementing API.md); `pid` enables CPU and RSS figures.
    Server { base: String, pid: Option<u32> },
    /// The bare socketioxide relay of [`crate::ceiling`]: no accounts, `auth` names the user.
    Ceiling { base: String },
}

impl Target {
    pub fn base(&self) -> &str {
        match self {
            Target::Server { base, .. } | Target::Ceiling { base } => base,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match self {
            Target::Server { pid, .. } => *pid,
            Target::Ceiling { .. } => Some(std::process::id()),
        }
    }
}

/// A `jibber serve` started for the run, with the limits a benchmark needs raised; killed on
/// drop.
pub struct Spawned {
    pub child: tokio::process::Child,
    pub base: String,
    pub pid: u32,
    _dir: tempfile_dir::Dir,
}

/// A temporary data directory (removed on drop).
mod tempfile_dir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The settings a spawned server runs with: the per-user event limit and the auth limits out
/// of the way (one load generator is many users on one address), and access tokens that
/// outlive the run (the load generator's raw sockets do not refresh in band, so at expiry the
/// server would end them: a 30-minute soak stopped at 15).
pub const SPAWN_ENV: [(&str, &str); 5] = [
    ("JIBBER_SOCKET_EVENTS_PER_SECOND", "1000000"),
    ("JIBBER_AUTH_RATE_PER_IP", "1000000"),
    ("JIBBER_AUTH_RATE_PER_USERNAME", "1000000"),
    ("JIBBER_ACCESS_TOKEN_TTL", "24h"),
    ("RUST_LOG", "warn"),
];

/// Starts `exe serve` on 127.0.0.1 with a fresh data directory. `cpus` pins it with `taskset`
/// (e.g. "0"); `env` adds settings (e.g. `JIBBER_SQLITE_SYNCHRONOUS=normal`).
pub async fn spawn_server(
    exe: &std::path::Path,
    cpus: Option<&str>,
    env: &[(String, String)],
) -> anyhow::Result<Spawned> {
    let dir = std::env::temp_dir().join(format!("jibber-bench-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir)?;
    let mut cmd = match cpus {
        Some(c) => {
            let mut t = tokio::process::Command::new("taskset");
            t.args(["-c", c]).arg(exe);
            t
        }
        None => tokio::process::Command::new(exe),
    };
    cmd.args(["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir"])
        .arg(&dir)
        .envs(SPAWN_ENV)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("starting jibber serve")?;
    let pid = child.id().context("server pid")?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.trim().strip_prefix("Jibber is running at ") {
                return Ok(rest.trim_end_matches('/').to_owned());
            }
        }
        bail!("jibber serve exited before printing its address")
    })
    .await
    .context("jibber serve did not start within 30 s")??;
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Spawned {
        child,
        base,
        pid,
        _dir: tempfile_dir::Dir(dir),
    })
}

/// One user as a benchmark client sees it.
#[derive(Debug, Clone)]
pub struct Party {
    pub id: Uuid,
    /// The Socket.IO handshake `auth` object.
    pub auth: serde_json::Value,
    pub id_key: B64,
    pub signing_key: B64,
}

/// Two users and their chat; `sender` sends, `receiver` receives.
#[derive(Debug, Clone)]
pub struct Pair {
    pub chat: Uuid,
    pub sender: Party,
    pub receiver: Party,
}

/// `n` users with sessions (registered through real OPAQUE with the cheap test KSF: key
/// stretching runs on the client and is not what is measured).
pub async fn users(target: &Target, n: usize, prefix: &str) -> anyhow::Result<Vec<Party>> {
    if let Target::Ceiling { .. } = target {
        return Ok((0..n)
            .map(|_| {
                let id = Uuid::now_v7();
                Party {
                    id,
                    auth: json!({ "user": id }),
                    id_key: B64(vec![1; 32]),
                    signing_key: B64(vec![2; 32]),
                }
            })
            .collect());
    }
    let base = target.base().to_owned();
    let results: Vec<anyhow::Result<Party>> = stream::iter(0..n)
        .map(|i| {
            let base = base.clone();
            let name = format!("{prefix}{i}");
            async move {
                let ksf = jibber_crypto::test_ksf();
                let password = format!("bench-{name}");
                jibber_client::register(&base, &name, &password, &ksf)
                    .await
                    .with_context(|| format!("registering {name}"))?;
                let session = jibber_client::login(&base, &name, &password, &ksf)
                    .await
                    .with_context(|| format!("logging in {name}"))?;
                let token = session.access_token().await?;
                let me = session.user();
                Ok(Party {
                    id: me.id,
                    auth: json!({ "token": token }),
                    id_key: me.public_id_key.clone(),
                    signing_key: me.public_signing_key.clone(),
                })
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// `n` pairs, each with its chat.
pub async fn pairs(target: &Target, n: usize, prefix: &str) -> anyhow::Result<Vec<Pair>> {
    let parties = users(target, 2 * n, prefix).await?;
    let mut out = Vec::with_capacity(n);
    let mut it = parties.into_iter();
    while let (Some(sender), Some(receiver)) = (it.next(), it.next()) {
        let chat = match target {
            Target::Ceiling { .. } => Uuid::now_v7(),
            Target::Server { base, .. } => open_chat(base, &sender, receiver.id).await?,
        };
        out.push(Pair {
            chat,
            sender,
            receiver,
        });
    }
    Ok(out)
}

async fn open_chat(base: &str, sender: &Party, receiver: Uuid) -> anyhow::Result<Uuid> {
    let token = sender.auth["token"].as_str().unwrap_or_default();
    let res = reqwest_post(base, "/api/v1/chats", token, &json!({ "userId": receiver })).await?;
    let id = res["data"]["id"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .with_context(|| format!("no chat id in {res}"))?;
    Ok(id)
}

/// A POST with a bearer token, answering the JSON body.
pub async fn reqwest_post(
    base: &str,
    path: &str,
    token: &str,
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let res = http()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await?;
    let status = res.status();
    let json: serde_json::Value = res.json().await?;
    if !status.is_success() {
        bail!("POST {path}: HTTP {status}: {json}");
    }
    Ok(json)
}

/// A GET with a bearer token, answering the JSON body.
pub async fn reqwest_get(base: &str, path: &str, token: &str) -> anyhow::Result<serde_json::Value> {
    let res = http()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await?;
    let status = res.status();
    let json: serde_json::Value = res.json().await?;
    if !status.is_success() {
        bail!("GET {path}: HTTP {status}: {json}");
    }
    Ok(json)
}

fn http() -> &'static reqwest::Client {
    static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    HTTP.get_or_init(reqwest::Client::new)
}

/// Local addresses 127.0.0.1, 127.0.0.2, … for spreading connections (each local address has
/// its own ephemeral port range).
pub fn local_ip(i: usize, per_address: usize) -> Option<IpAddr> {
    let n = (i / per_address.max(1)) as u32 + 1;
    (n < 255 * 255).then(|| IpAddr::from([127, 0, (n / 255) as u8, (n % 255) as u8 + 1]))
}

/// Connects one socket for `party`.
pub async fn connect(
    target: &Target,
    party: &Party,
    transport: Transport,
    local: Option<IpAddr>,
) -> anyhow::Result<(Socket, mpsc::Receiver<Inbound>)> {
    Socket::connect_from(
        target.base(),
        transport,
        &party.auth,
        Duration::from_secs(30),
        local,
    )
    .await
    .with_context(|| format!("connecting {}", party.id))
}

/// Raises this process's open-file limit to its hard limit; returns the new soft limit.
pub fn raise_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024),
    }
}

/// Opens `n` connections for `users` (round robin), `concurrency` handshakes at a time, spread
/// over local addresses (`per_address` connections each). Returns the open ones and the errors.
pub async fn open_many(
    target: &Target,
    users: &[Party],
    n: usize,
    transport: Transport,
    per_address: usize,
    concurrency: usize,
) -> (Vec<(Socket, mpsc::Receiver<Inbound>)>, Vec<String>) {
    let results: Vec<anyhow::Result<(Socket, mpsc::Receiver<Inbound>)>> = stream::iter(0..n)
        .map(|i| {
            let party = &users[i % users.len()];
            connect(target, party, transport, local_ip(i, per_address))
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut open = Vec::with_capacity(n);
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(s) => open.push(s),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    (open, errors)
}
