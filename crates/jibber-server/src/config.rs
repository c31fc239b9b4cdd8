//! Settings, layered: built-in defaults, then an optional TOML file, then `JIBBER_*`
//! environment variables, then command-line flags. Every setting is listed once in [`SPECS`]
//! (which also feeds the README's table via `jibber config`); loading checks all of them and
//! reports every bad one in a single error.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// One setting: its key (file and flag name), default and meaning. The environment variable
/// is `JIBBER_` and the key in upper case.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub key: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

/// Every setting Jibber reads.
pub const SPECS: &[Spec] = &[
    Spec {
        key: "mode",
        default: "development",
        help: "`development` or `production`. Production refuses to start without explicit secrets and CORS origins, and never shows internal error details.",
    },
    Spec {
        key: "host",
        default: "0.0.0.0",
        help: "Address to listen on.",
    },
    Spec {
        key: "port",
        default: "8080",
        help: "Port to listen on (0 picks a free one).",
    },
    Spec {
        key: "data_dir",
        default: "./jibber-data",
        help: "Where the embedded database and generated secrets live.",
    },
    Spec {
        key: "database_url",
        default: "",
        help: "Database URL: `sqlite://<path>` (embedded) or `postgres://<user>:<password>@<host>/<database>` (shared by several nodes); empty means `sqlite://<data_dir>/jibber.db`.",
    },
    Spec {
        key: "database_max_connections",
        default: "10",
        help: "PostgreSQL only: connections each node's pool opens at most. Nodes × this, plus other clients, must stay below the server's `max_connections` (docs/operations.md).",
    },
    Spec {
        key: "database_acquire_timeout",
        default: "5s",
        help: "PostgreSQL only: how long a request waits for a pooled connection (including connecting) before it is answered 503 SERVICE_UNAVAILABLE.",
    },
    Spec {
        key: "database_statement_timeout",
        default: "10s",
        help: "PostgreSQL only: the server cancels a statement that runs longer (the request gets 503 SERVICE_UNAVAILABLE); below `request_timeout`, or `0` to disable. Migrations run without it.",
    },
    Spec {
        key: "database_idle_timeout",
        default: "10m",
        help: "PostgreSQL only: an idle pooled connection is closed after this long (`0`: kept).",
    },
    Spec {
        key: "database_max_lifetime",
        default: "30m",
        help: "PostgreSQL only: a pooled connection is replaced after this long, which spreads connections again after a failover (`0`: never).",
    },
    Spec {
        key: "redis_url",
        default: "",
        help: "Redis for several nodes (`redis://[:password@]host[:port][/db]`, Redis 7 or newer, no cluster mode): events, presence and rate limits are shared through it. Empty: a single node, no Redis needed.",
    },
    Spec {
        key: "redis_prefix",
        default: "jibber",
        help: "Prefix of every Redis key and channel, so that several installations (or tests) can share one Redis.",
    },
    Spec {
        key: "node_id",
        default: "",
        help: "This node's name in the cluster (letters, digits, `-`, `_`). Empty: a new random id at every start.",
    },
    Spec {
        key: "presence_ttl",
        default: "15s",
        help: "A node that has not renewed its heartbeat in Redis for this long is dead: its users go offline on the other nodes.",
    },
    Spec {
        key: "sqlite_synchronous",
        default: "full",
        help: "`full` (a commit survives power loss) or `normal` (faster; the last commits may be lost on power loss, never on a crash of the process).",
    },
    Spec {
        key: "sqlite_commit_interval",
        default: "1ms",
        help: "The least time between the starts of two SQLite commits (0 to 100ms; 0: the next commit starts as soon as the last is on disk). Sends arriving meanwhile share the next commit: fewer disk writes and flushes and less CPU at moderate rates, for up to this much more latency (plus the timer's 1 ms resolution).",
    },
    Spec {
        key: "jwt_secret",
        default: "",
        help: "Secret that signs access tokens (at least 32 characters). Empty in development: generated and kept in the data directory.",
    },
    Spec {
        key: "opaque_server_setup",
        default: "",
        help: "OPAQUE server setup, base64url (from `jibber secrets opaque-setup` or `@serenity-kit/opaque`'s `server.createSetup()`). Empty in development: generated and kept in the data directory.",
    },
    Spec {
        key: "cors_origins",
        default: "",
        help: "Comma-separated origins allowed to call the API from a browser. Empty: same origin only.",
    },
    Spec {
        key: "access_token_ttl",
        default: "15m",
        help: "Lifetime of an access token.",
    },
    Spec {
        key: "refresh_token_ttl",
        default: "30d",
        help: "Lifetime of a refresh token (each use rotates it).",
    },
    Spec {
        key: "login_timeout",
        default: "60s",
        help: "How long a started OPAQUE login waits for its finish.",
    },
    Spec {
        key: "max_body_bytes",
        default: "262144",
        help: "Largest accepted request body; larger gets 413 PAYLOAD_TOO_LARGE.",
    },
    Spec {
        key: "max_message_bytes",
        default: "65536",
        help: "Largest accepted message ciphertext (decoded).",
    },
    Spec {
        key: "auth_rate_per_ip",
        default: "30",
        help: "Login and registration attempts per minute from one IP address.",
    },
    Spec {
        key: "auth_rate_per_username",
        default: "10",
        help: "Login and registration attempts per minute for one username.",
    },
    Spec {
        key: "socket_ping_interval",
        default: "25s",
        help: "Socket.IO ping interval.",
    },
    Spec {
        key: "socket_ping_timeout",
        default: "60s",
        help: "Socket.IO ping timeout: a client silent this long after a ping is disconnected; a connection that accepts no bytes this long is cut.",
    },
    Spec {
        key: "socket_max_payload",
        default: "1048576",
        help: "Largest Socket.IO packet accepted, in bytes (larger closes the connection); messages are also bound by `max_message_bytes`.",
    },
    Spec {
        key: "socket_send_queue",
        default: "128",
        help: "Packets queued per socket before emits to it fail (a slow consumer); it is then told to resync from the database.",
    },
    Spec {
        key: "socket_ws_read_buffer",
        default: "1024",
        help: "Read buffer of each WebSocket connection, in bytes (larger frames are read in several steps). Smaller saves memory per idle connection: 4096 costs 3 KiB more per connection than 1024 (BENCHMARKS.md).",
    },
    Spec {
        key: "socket_events_per_second",
        default: "20",
        help: "Socket events per second per user and event name (bursts of twice that); beyond it the event is answered RATE_LIMITED.",
    },
    Spec {
        key: "typing_timeout",
        default: "5s",
        help: "A typing indicator not refreshed within this time stops by itself.",
    },
    Spec {
        key: "away_after",
        default: "90s",
        help: "A user whose devices send `heartbeat` events is away (peers get userAway) after this long without one, and back (userBack) with the next; 0 turns it off. Devices that never send a heartbeat are not affected.",
    },
    Spec {
        key: "trust_proxy",
        default: "false",
        help: "Take the client address from `X-Forwarded-For` (only behind a proxy you run).",
    },
    Spec {
        key: "cookie_secure",
        default: "auto",
        help: "Mark the refresh cookie `Secure`: `auto` (when the request came over TLS per `X-Forwarded-Proto`, or in production), `always`, `never`.",
    },
    Spec {
        key: "request_timeout",
        default: "30s",
        help: "Longest time a REST request may take; also the time a connection has to send a whole request head (an idle or dripping connection is closed).",
    },
    Spec {
        key: "shutdown_timeout",
        default: "10s",
        help: "On SIGTERM/SIGINT, how long in-flight work may take before exit.",
    },
    Spec {
        key: "log_format",
        default: "auto",
        help: "`auto` (readable on a terminal, JSON otherwise), `json` or `pretty`.",
    },
    Spec {
        key: "log_level",
        default: "info",
        help: "Log filter (`RUST_LOG` syntax), e.g. `info` or `jibber_server=debug`.",
    },
];

/// Development or production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieSecure {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
}

/// The validated settings of one server. `Debug` hides the secrets and the database password.
#[derive(Clone)]
pub struct Settings {
    pub mode: Mode,
    pub host: IpAddr,
    pub port: u16,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub sqlite_full_sync: bool,
    pub sqlite_commit_interval: Duration,
    /// The PostgreSQL pool (unused on SQLite); [`Settings::pg_config`] applies them.
    pub database_max_connections: u32,
    pub database_acquire_timeout: Duration,
    /// Zero: no statement timeout.
    pub database_statement_timeout: Duration,
    pub database_idle_timeout: Option<Duration>,
    pub database_max_lifetime: Option<Duration>,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub node_id: String,
    pub presence_ttl: Duration,
    pub jwt_secret: Option<SecretString>,
    pub opaque_server_setup: Option<SecretString>,
    pub cors_origins: Vec<String>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub login_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_message_bytes: usize,
    pub auth_rate_per_ip: u32,
    pub auth_rate_per_username: u32,
    pub socket_ping_interval: Duration,
    pub socket_ping_timeout: Duration,
    pub socket_max_payload: u64,
    pub socket_send_queue: usize,
    pub socket_ws_read_buffer: usize,
    pub socket_events_per_second: u32,
    pub typing_timeout: Duration,
    /// Heartbeat silence after which a heartbeating user is away (zero: never).
    pub away_after: Duration,
    pub trust_proxy: bool,
    pub cookie_secure: CookieSecure,
    pub request_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    pub log_level: String,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("mode", &self.mode)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &jibber_store_postgres::redact_url(&self.database_url),
            )
            .field(
                "redis_url",
                &self
                    .redis_url
                    .as_deref()
                    .map(jibber_store_postgres::redact_url),
            )
            .field("node_id", &self.node_id)
            .field("cors_origins", &self.cors_origins)
            .finish_non_exhaustive()
    }
}

/// Every problem found while loading settings, reported at once.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<String>);

/// Where the raw values come from, in increasing precedence.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// A TOML file (flat `key = value`), if any.
    pub file: Option<PathBuf>,
    /// Environment variables (all of them; only `JIBBER_*` are read).
    pub env: Vec<(String, String)>,
    /// Command-line overrides, by key.
    pub flags: Vec<(String, String)>,
}

impl Sources {
    /// The process environment and an optional file.
    pub fn from_env(file: Option<PathBuf>) -> Self {
        Sources {
            file,
            env: std::env::vars().collect(),
            flags: Vec::new(),
        }
    }
}

fn spec(key: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.key == key)
}

/// Parses `90`, `90s`, `15m`, `2h`, `30d`, `250ms`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => return Some(Duration::from_millis(n)),
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// `JIBBER_*` variables that belong to the other parts of the product, not to the server: the
/// client commands (`JIBBER_SERVER`, `JIBBER_USERNAME`, `JIBBER_PASSWORD`, ...), the web
/// client's build (`JIBBER_WEB_REQUIRED`, `JIBBER_NPM`), the tests, benchmarks and scripts. They
/// are skipped, so a shell set up for the client (or CI) can still run `jibber serve`; any other
/// unknown `JIBBER_*` name is still refused as a likely typo.
fn is_other_tool_variable(key: &str) -> bool {
    const NAMES: [&str; 10] = [
        "config",
        "server",
        "username",
        "password",
        "client_dir",
        "seed_password",
        "web_required",
        "npm",
        "bin",
        "venv",
    ];
    const PREFIXES: [&str; 4] = ["test_", "bench_", "crash_", "fuzz_"];
    NAMES.contains(&key) || PREFIXES.iter().any(|p| key.starts_with(p))
}

fn toml_to_string(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(a) => a.iter().map(toml_to_string).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

impl Settings {
    /// Loads and validates settings from `sources`.
    pub fn load(sources: &Sources) -> Result<Settings, ConfigError> {
        let mut problems = Vec::new();
        let mut raw: BTreeMap<&'static str, (String, String)> = SPECS
            .iter()
            .map(|s| (s.key, (s.default.to_owned(), "default".to_owned())))
            .collect();

        if let Some(path) = &sources.file {
            match std::fs::read_to_string(path) {
                Ok(text) => match text.parse::<toml::Table>() {
                    Ok(table) => {
                        for (k, v) in table {
                            match spec(&k) {
                                Some(s) => {
                                    raw.insert(
                                        s.key,
                                        (toml_to_string(&v), format!("{}", path.display())),
                                    );
                                }
                                None => problems
                                    .push(format!("{}: unknown setting `{k}`", path.display())),
                            }
                        }
                    }
                    Err(e) => problems.push(format!("{}: not valid TOML: {e}", path.display())),
                },
                Err(e) => problems.push(format!("{}: cannot read: {e}", path.display())),
            }
        }
        for (name, value) in &sources.env {
            let Some(key) = name.strip_prefix("JIBBER_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            if is_other_tool_variable(&key) {
                continue;
            }
            match spec(&key) {
                Some(s) => {
                    raw.insert(s.key, (value.clone(), name.clone()));
                }
                None => problems.push(format!("{name}: unknown setting")),
            }
        }
        for (key, value) in &sources.flags {
            match spec(key) {
                Some(s) => {
                    raw.insert(
                        s.key,
                        (value.clone(), format!("--{}", key.replace('_', "-"))),
                    );
                }
                None => problems.push(format!("--{key}: unknown setting")),
            }
        }

        let mut p = Parser {
            raw: &raw,
            problems,
        };
        let mode = p.parse(
            "mode",
            |v| match v {
                "development" | "dev" => Some(Mode::Development),
                "production" | "prod" => Some(Mode::Production),
                _ => None,
            },
            "`development` or `production`",
        );
        let host = p.parse(
            "host",
            |v| v.parse::<IpAddr>().ok(),
            "an IP address such as 0.0.0.0 or ::",
        );
        let port = p.parse("port", |v| v.parse::<u16>().ok(), "a port number 0-65535");
        let data_dir = p.parse(
            "data_dir",
            |v| (!v.is_empty()).then(|| PathBuf::from(v)),
            "a directory path",
        );
        let database_url = p.parse(
            "database_url",
            |v| {
                (v.is_empty()
                    || v.starts_with("sqlite:")
                    || v.starts_with("postgres://")
                    || v.starts_with("postgresql://"))
                .then(|| v.to_owned())
            },
            "empty, a `sqlite://` URL or a `postgres://` URL",
        );
        let sqlite_full_sync = p.parse(
            "sqlite_synchronous",
            |v| match v {
                "full" => Some(true),
                "normal" => Some(false),
                _ => None,
            },
            "`full` or `normal`",
        );
        let sqlite_commit_interval = p.parse(
            "sqlite_commit_interval",
            |v| parse_duration(v).filter(|d| *d <= Duration::from_millis(100)),
            "a duration from 0 to 100ms, such as 1ms",
        );
        let database_max_connections = p.parse(
            "database_max_connections",
            |v| v.parse::<u32>().ok().filter(|n| (1..=10_000).contains(n)),
            "a number of connections from 1 to 10000",
        );
        let database_acquire_timeout = p.parse(
            "database_acquire_timeout",
            |v| parse_duration(v).filter(|d| !d.is_zero()),
            "a positive duration such as 500ms or 5s",
        );
        let optional = |p: &mut Parser, k| {
            p.parse(
                k,
                |v| parse_duration(v).map(|d| (!d.is_zero()).then_some(d)),
                "a duration such as 10s or 30m, or 0 to disable",
            )
        };
        let database_statement_timeout =
            optional(&mut p, "database_statement_timeout").map(Option::unwrap_or_default);
        let database_idle_timeout = optional(&mut p, "database_idle_timeout");
        let database_max_lifetime = optional(&mut p, "database_max_lifetime");
        let redis_url = p.parse(
            "redis_url",
            |v| {
                if v.is_empty() {
                    return Some(None);
                }
                (v.starts_with("redis://") && redis::Client::open(v).is_ok())
                    .then(|| Some(v.to_owned()))
            },
            "empty or a `redis://` URL",
        );
        let name = |v: &str| {
            v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        let redis_prefix = p.parse(
            "redis_prefix",
            |v| (!v.is_empty() && name(v)).then(|| v.to_owned()),
            "1 to 64 letters, digits, `-` or `_`",
        );
        let node_id = p.parse(
            "node_id",
            |v| {
                if v.is_empty() {
                    return Some(uuid::Uuid::new_v4().simple().to_string());
                }
                name(v).then(|| v.to_owned())
            },
            "empty or up to 64 letters, digits, `-` or `_`",
        );
        let jwt_secret = p.parse(
            "jwt_secret",
            |v| {
                (v.is_empty() || v.len() >= 32)
                    .then(|| (!v.is_empty()).then(|| SecretString::from(v.to_owned())))
            },
            "at least 32 characters",
        );
        let opaque_server_setup = p.parse(
            "opaque_server_setup",
            |v| {
                if v.is_empty() {
                    return Some(None);
                }
                crate::auth::opaque::parse_server_setup(v)
                    .ok()
                    .map(|_| Some(SecretString::from(v.to_owned())))
            },
            "a base64url OPAQUE server setup (128 bytes)",
        );
        let cors_origins = p.parse(
            "cors_origins",
            |v| {
                let list: Vec<String> = v
                    .split(',')
                    .map(|s| s.trim().trim_end_matches('/').to_owned())
                    .filter(|s| !s.is_empty())
                    .collect();
                list.iter()
                    .all(|o| {
                        (o.starts_with("http://") || o.starts_with("https://"))
                            && axum::http::HeaderValue::from_str(o).is_ok()
                    })
                    .then_some(list)
            },
            "comma-separated origins such as https://chat.example.com",
        );
        let dur = |p: &mut Parser, k| {
            p.parse(
                k,
                |v| parse_duration(v).filter(|d| !d.is_zero()),
                "a positive duration such as 90s, 15m, 2h or 30d",
            )
        };
        let access_token_ttl = dur(&mut p, "access_token_ttl");
        let refresh_token_ttl = dur(&mut p, "refresh_token_ttl");
        let login_timeout = dur(&mut p, "login_timeout");
        let request_timeout = dur(&mut p, "request_timeout");
        let shutdown_timeout = dur(&mut p, "shutdown_timeout");
        let size = |p: &mut Parser, k| {
            p.parse(
                k,
                |v| v.parse::<usize>().ok().filter(|n| *n >= 1024),
                "a number of bytes, at least 1024",
            )
        };
        let max_body_bytes = size(&mut p, "max_body_bytes");
        let max_message_bytes = size(&mut p, "max_message_bytes");
        let rate = |p: &mut Parser, k| {
            p.parse(
                k,
                |v| v.parse::<u32>().ok().filter(|n| *n >= 1),
                "a whole number, at least 1",
            )
        };
        let auth_rate_per_ip = rate(&mut p, "auth_rate_per_ip");
        let auth_rate_per_username = rate(&mut p, "auth_rate_per_username");
        let socket_ping_interval = dur(&mut p, "socket_ping_interval");
        let socket_ping_timeout = dur(&mut p, "socket_ping_timeout");
        let typing_timeout = dur(&mut p, "typing_timeout");
        let away_after = p.parse(
            "away_after",
            parse_duration,
            "a duration such as 90s or 2m, or 0 for never",
        );
        let presence_ttl = dur(&mut p, "presence_ttl").filter(|d| {
            d.as_millis() >= 1000 || {
                p.problems
                    .push("presence_ttl: must be at least 1s".to_owned());
                false
            }
        });
        let socket_max_payload = p.parse(
            "socket_max_payload",
            |v| v.parse::<u64>().ok().filter(|n| *n >= 1024),
            "a number of bytes, at least 1024",
        );
        let socket_send_queue = p.parse(
            "socket_send_queue",
            |v| v.parse::<usize>().ok().filter(|n| (1..=65_536).contains(n)),
            "a number of packets from 1 to 65536",
        );
        let socket_ws_read_buffer = p.parse(
            "socket_ws_read_buffer",
            |v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| (256..=1 << 20).contains(n))
            },
            "a number of bytes from 256 to 1048576",
        );
        let socket_events_per_second = rate(&mut p, "socket_events_per_second");
        let trust_proxy = p.parse("trust_proxy", parse_bool, "true or false");
        let cookie_secure = p.parse(
            "cookie_secure",
            |v| match v {
                "auto" => Some(CookieSecure::Auto),
                "always" | "true" => Some(CookieSecure::Always),
                "never" | "false" => Some(CookieSecure::Never),
                _ => None,
            },
            "`auto`, `always` or `never`",
        );
        let log_format = p.parse(
            "log_format",
            |v| match v {
                "auto" => Some(LogFormat::Auto),
                "json" => Some(LogFormat::Json),
                "pretty" | "text" => Some(LogFormat::Pretty),
                _ => None,
            },
            "`auto`, `json` or `pretty`",
        );
        let log_level = p.parse(
            "log_level",
            |v| {
                tracing_subscriber::EnvFilter::try_new(v)
                    .ok()
                    .map(|_| v.to_owned())
            },
            "a log filter such as `info` or `jibber_server=debug`",
        );

        let mut problems = p.problems;
        if let (Some(Mode::Production), Some(max_body), Some(max_msg)) =
            (mode, max_body_bytes, max_message_bytes)
        {
            let _ = (max_body, max_msg);
            if matches!(jwt_secret, Some(None)) {
                problems.push(
                    "jwt_secret: production mode needs an explicit secret (JIBBER_JWT_SECRET)"
                        .to_owned(),
                );
            }
            if matches!(opaque_server_setup, Some(None)) {
                problems.push(
                    "opaque_server_setup: production mode needs an explicit setup (JIBBER_OPAQUE_SERVER_SETUP; `jibber secrets opaque-setup` makes one)"
                        .to_owned(),
                );
            }
            if matches!(&cors_origins, Some(o) if o.is_empty()) {
                problems.push("cors_origins: production mode needs the allowed browser origins (JIBBER_CORS_ORIGINS)".to_owned());
            }
        }
        if let (Some(body), Some(msg)) = (max_body_bytes, max_message_bytes)
            && msg * 4 / 3 + 4096 > body
        {
            problems.push(format!(
                "max_message_bytes: {msg} does not fit in max_body_bytes {body} once base64-encoded"
            ));
        }
        // Only PostgreSQL has a statement timeout (SQLite statements are not cancelled).
        let on_postgres = database_url
            .as_deref()
            .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
        if let (Some(statement), Some(request)) = (database_statement_timeout, request_timeout)
            && on_postgres
            && !statement.is_zero()
            && statement >= request
        {
            problems.push(format!(
                "database_statement_timeout: {statement:?} is not below request_timeout {request:?} (a cancelled statement must end before the request does)"
            ));
        }
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        let data_dir = data_dir.expect("checked");
        let database_url = database_url.expect("checked");
        let database_url = if database_url.is_empty() {
            format!("sqlite://{}", data_dir.join("jibber.db").display())
        } else {
            database_url
        };
        Ok(Settings {
            mode: mode.expect("checked"),
            host: host.expect("checked"),
            port: port.expect("checked"),
            data_dir,
            database_url,
            sqlite_full_sync: sqlite_full_sync.expect("checked"),
            sqlite_commit_interval: sqlite_commit_interval.expect("checked"),
            database_max_connections: database_max_connections.expect("checked"),
            database_acquire_timeout: database_acquire_timeout.expect("checked"),
            database_statement_timeout: database_statement_timeout.expect("checked"),
            database_idle_timeout: database_idle_timeout.expect("checked"),
            database_max_lifetime: database_max_lifetime.expect("checked"),
            redis_url: redis_url.expect("checked"),
            redis_prefix: redis_prefix.expect("checked"),
            node_id: node_id.expect("checked"),
            presence_ttl: presence_ttl.expect("checked"),
            jwt_secret: jwt_secret.expect("checked"),
            opaque_server_setup: opaque_server_setup.expect("checked"),
            cors_origins: cors_origins.expect("checked"),
            access_token_ttl: access_token_ttl.expect("checked"),
            refresh_token_ttl: refresh_token_ttl.expect("checked"),
            login_timeout: login_timeout.expect("checked"),
            max_body_bytes: max_body_bytes.expect("checked"),
            max_message_bytes: max_message_bytes.expect("checked"),
            auth_rate_per_ip: auth_rate_per_ip.expect("checked"),
            auth_rate_per_username: auth_rate_per_username.expect("checked"),
            socket_ping_interval: socket_ping_interval.expect("checked"),
            socket_ping_timeout: socket_ping_timeout.expect("checked"),
            socket_max_payload: socket_max_payload.expect("checked"),
            socket_send_queue: socket_send_queue.expect("checked"),
            socket_ws_read_buffer: socket_ws_read_buffer.expect("checked"),
            socket_events_per_second: socket_events_per_second.expect("checked"),
            typing_timeout: typing_timeout.expect("checked"),
            away_after: away_after.expect("checked"),
            trust_proxy: trust_proxy.expect("checked"),
            cookie_secure: cookie_secure.expect("checked"),
            request_timeout: request_timeout.expect("checked"),
            shutdown_timeout: shutdown_timeout.expect("checked"),
            log_format: log_format.expect("checked"),
            log_level: log_level.expect("checked"),
        })
    }

    /// Defaults only, for a server in a given data directory (tests, tools).
    pub fn for_data_dir(dir: &Path) -> Settings {
        let sources = Sources {
            flags: vec![("data_dir".to_owned(), dir.display().to_string())],
            ..Sources::default()
        };
        Settings::load(&sources).expect("the defaults are valid")
    }

    /// The PostgreSQL connection and pool settings.
    pub fn pg_config(&self) -> jibber_store_postgres::PgConfig {
        let mut config = jibber_store_postgres::PgConfig::new(self.database_url.clone());
        config.max_connections = self.database_max_connections;
        config.acquire_timeout = self.database_acquire_timeout;
        config.statement_timeout = self.database_statement_timeout;
        config.idle_timeout = self.database_idle_timeout;
        config.max_lifetime = self.database_max_lifetime;
        config
    }

    pub fn is_production(&self) -> bool {
        self.mode == Mode::Production
    }

    /// The JWT secret, if one was configured explicitly.
    pub fn explicit_jwt_secret(&self) -> Option<&str> {
        self.jwt_secret.as_ref().map(|s| s.expose_secret())
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

struct Parser<'a> {
    raw: &'a BTreeMap<&'static str, (String, String)>,
    problems: Vec<String>,
}

impl Parser<'_> {
    fn parse<T>(
        &mut self,
        key: &'static str,
        f: impl FnOnce(&str) -> Option<T>,
        expected: &str,
    ) -> Option<T> {
        let (value, origin) = self.raw.get(key).expect("every key has a default");
        let out = f(value.trim());
        if out.is_none() {
            // Never echo a secret's value back.
            let shown = if key.contains("secret") || key.contains("setup") {
                "<hidden>".to_owned()
            } else if key.ends_with("_url") {
                format!("{:?}", jibber_store_postgres::redact_url(value))
            } else {
                format!("{value:?}")
            };
            self.problems
                .push(format!("{key} (from {origin}): {shown} is not {expected}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load(&Sources {
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Sources::default()
        })
    }

    #[test]
    fn defaults_are_valid() {
        let s = load(&[]).expect("defaults");
        assert_eq!(s.port, 8080);
        assert_eq!(s.host.to_string(), "0.0.0.0");
        assert_eq!(s.access_token_ttl, Duration::from_secs(900));
        assert!(s.database_url.starts_with("sqlite://"));
        assert_eq!(s.mode, Mode::Development);
    }

    #[test]
    fn every_bad_setting_is_named_at_once() {
        let err = load(&[
            ("JIBBER_PORT", "70000"),
            ("JIBBER_ACCESS_TOKEN_TTL", "soon"),
            ("JIBBER_HOST", "localhost:80"),
            ("JIBBER_NOPE", "1"),
            ("PATH", "/usr/bin"),
        ])
        .expect_err("invalid");
        let text = err.to_string();
        for needle in [
            "port (from JIBBER_PORT)",
            "access_token_ttl",
            "host (from JIBBER_HOST)",
            "JIBBER_NOPE",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        assert_eq!(err.0.len(), 4, "{text}");
    }

    #[test]
    fn the_clients_and_builds_variables_do_not_stop_the_server() {
        let s = load(&[
            ("JIBBER_SERVER", "http://example.org"),
            ("JIBBER_PASSWORD", "secret"),
            ("JIBBER_USERNAME", "tini"),
            ("JIBBER_WEB_REQUIRED", "1"),
            ("JIBBER_TEST_POSTGRES_URL", "postgres://x@y/z"),
            ("JIBBER_PORT", "9000"),
        ])
        .expect("valid");
        assert_eq!(s.port, 9000);
        // A typo of a real setting is still refused.
        let err = load(&[("JIBBER_PROT", "9000")]).expect_err("typo");
        assert!(err.to_string().contains("JIBBER_PROT"), "{err}");
    }

    #[test]
    fn production_requires_secrets_and_origins() {
        let err = load(&[("JIBBER_MODE", "production")]).expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("jwt_secret"), "{text}");
        assert!(text.contains("opaque_server_setup"), "{text}");
        assert!(text.contains("cors_origins"), "{text}");
    }

    #[test]
    fn database_urls_name_the_backend() {
        for url in [
            "postgres://jibber@db/jibber",
            "postgresql://jibber@db/jibber",
            "sqlite:///var/lib/jibber/jibber.db",
        ] {
            let s = load(&[("JIBBER_DATABASE_URL", url)]).expect("valid");
            assert_eq!(s.database_url, url);
        }
        let err = load(&[("JIBBER_DATABASE_URL", "mysql://jibber:hunter2@db/jibber")])
            .expect_err("unsupported");
        let text = err.to_string();
        assert!(text.contains("database_url"), "{text}");
        assert!(
            !text.contains("hunter2"),
            "the password is not echoed: {text}"
        );
    }

    #[test]
    fn debug_hides_the_database_password() {
        let s = load(&[(
            "JIBBER_DATABASE_URL",
            "postgres://jibber:hunter2secret@db.internal/jibber",
        )])
        .expect("valid");
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2secret"), "{shown}");
        assert!(shown.contains("db.internal"), "{shown}");
    }

    #[test]
    fn secrets_are_never_echoed() {
        let err = load(&[("JIBBER_JWT_SECRET", "short-secret-value")]).expect_err("too short");
        assert!(!err.to_string().contains("short-secret-value"));
    }

    #[test]
    fn later_sources_win() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("jibber.toml");
        std::fs::write(&file, "port = 9000\nhost = \"127.0.0.1\"\ncors_origins = [\"https://a.example\", \"https://b.example\"]\n")
            .expect("write");
        let s = Settings::load(&Sources {
            file: Some(file),
            env: vec![("JIBBER_PORT".into(), "9001".into())],
            flags: vec![("port".into(), "9002".into())],
        })
        .expect("valid");
        assert_eq!(s.port, 9002);
        assert_eq!(s.host.to_string(), "127.0.0.1");
        assert_eq!(
            s.cors_origins,
            vec!["https://a.example", "https://b.example"]
        );
    }

    #[test]
    fn the_sqlite_commit_interval_is_configurable_within_bounds() {
        let s = load(&[]).expect("valid");
        assert_eq!(
            s.sqlite_commit_interval,
            jibber_store_sqlite::DEFAULT_COMMIT_INTERVAL
        );
        let off = load(&[("JIBBER_SQLITE_COMMIT_INTERVAL", "0")]).expect("valid");
        assert!(off.sqlite_commit_interval.is_zero());
        let s = load(&[("JIBBER_SQLITE_COMMIT_INTERVAL", "5ms")]).expect("valid");
        assert_eq!(s.sqlite_commit_interval, Duration::from_millis(5));
        for bad in ["1s", "soon", "-1ms"] {
            let err = load(&[("JIBBER_SQLITE_COMMIT_INTERVAL", bad)]).expect_err(bad);
            assert!(
                err.to_string()
                    .contains("sqlite_commit_interval (from JIBBER_SQLITE_COMMIT_INTERVAL)"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_postgres_pool_is_configurable() {
        // The defaults are PgConfig's.
        let s = load(&[("JIBBER_DATABASE_URL", "postgres://jibber@db/jibber")]).expect("valid");
        let (config, built_in) = (s.pg_config(), jibber_store_postgres::PgConfig::new("x"));
        assert_eq!(config.url, "postgres://jibber@db/jibber");
        assert_eq!(config.max_connections, built_in.max_connections);
        assert_eq!(config.acquire_timeout, built_in.acquire_timeout);
        assert_eq!(config.statement_timeout, built_in.statement_timeout);
        assert_eq!(config.idle_timeout, built_in.idle_timeout);
        assert_eq!(config.max_lifetime, built_in.max_lifetime);

        let s = load(&[
            ("JIBBER_DATABASE_URL", "postgres://jibber@db/jibber"),
            ("JIBBER_DATABASE_MAX_CONNECTIONS", "3"),
            ("JIBBER_DATABASE_ACQUIRE_TIMEOUT", "250ms"),
            ("JIBBER_DATABASE_STATEMENT_TIMEOUT", "2s"),
            ("JIBBER_DATABASE_IDLE_TIMEOUT", "0"),
            ("JIBBER_DATABASE_MAX_LIFETIME", "1h"),
        ])
        .expect("valid");
        let config = s.pg_config();
        assert_eq!(config.max_connections, 3);
        assert_eq!(config.acquire_timeout, Duration::from_millis(250));
        assert_eq!(config.statement_timeout, Duration::from_secs(2));
        assert_eq!(config.idle_timeout, None);
        assert_eq!(config.max_lifetime, Some(Duration::from_secs(3600)));
        let off = load(&[("JIBBER_DATABASE_STATEMENT_TIMEOUT", "0")]).expect("valid");
        assert!(off.pg_config().statement_timeout.is_zero());

        let err = load(&[
            ("JIBBER_DATABASE_MAX_CONNECTIONS", "0"),
            ("JIBBER_DATABASE_ACQUIRE_TIMEOUT", "0"),
            ("JIBBER_DATABASE_IDLE_TIMEOUT", "soon"),
        ])
        .expect_err("invalid");
        let text = err.to_string();
        for needle in [
            "database_max_connections (from JIBBER_DATABASE_MAX_CONNECTIONS)",
            "database_acquire_timeout (from JIBBER_DATABASE_ACQUIRE_TIMEOUT)",
            "database_idle_timeout (from JIBBER_DATABASE_IDLE_TIMEOUT)",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        assert_eq!(err.0.len(), 3, "{text}");
        let err = load(&[
            ("JIBBER_DATABASE_URL", "postgres://db/jibber"),
            ("JIBBER_DATABASE_STATEMENT_TIMEOUT", "30s"),
            ("JIBBER_REQUEST_TIMEOUT", "30s"),
        ])
        .expect_err("a statement may not outlive its request");
        assert!(
            err.to_string().contains("database_statement_timeout"),
            "{err}"
        );
        // SQLite has no statement timeout: a short request timeout is fine there.
        load(&[("JIBBER_REQUEST_TIMEOUT", "1s")]).expect("SQLite with a 1-s request timeout");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(
            parse_duration("30d"),
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1y"), None);
        assert_eq!(parse_duration(""), None);
    }
}
