//! `jibber bench`: the load generator's command line (the work is in `jibber-bench`).

use std::time::Duration;

use clap::{Args, Subcommand};
use jibber_bench::setup::{Spawned, Target, spawn_server};
use jibber_bench::{ceiling, idle, relay, soak, storm};
use jibber_client::sio::Transport;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Pairs of users relay messages through the server: throughput, latency, correctness.
    Relay {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        relay: RelayArgs,
        /// Also run the same load against the in-process bare socketioxide relay, and report
        /// the ratio.
        #[arg(long)]
        ceiling: bool,
    },
    /// The relay against a bare socketioxide relay in this process (no auth, no storage).
    Ceiling {
        #[command(flatten)]
        relay: RelayArgs,
        /// Pin the relay's thread to these CPUs (`taskset -c` syntax), e.g. 0.
        #[arg(long)]
        cpus: Option<String>,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Many authenticated idle connections: server memory per connection.
    Idle {
        #[command(flatten)]
        server: ServerArgs,
        /// Idle connections to open.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Accounts the connections log in as (spread evenly).
        #[arg(long, default_value_t = 100)]
        users: usize,
        /// Connections per local source address (127.0.0.x).
        #[arg(long, default_value_t = 20_000)]
        per_address: usize,
        /// Seconds to wait after the last connection before measuring memory.
        #[arg(long, default_value_t = 5)]
        settle_seconds: u64,
    },
    /// Every client drops at once and reconnects: time until all are back and caught up.
    Storm {
        #[command(flatten)]
        server: ServerArgs,
        /// Clients that drop and reconnect together.
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Accounts the clients log in as (spread evenly).
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// Connections per local source address (127.0.0.x).
        #[arg(long, default_value_t = 20_000)]
        per_address: usize,
    },
    /// The leak soak: steady relay load for a long time while the server's memory is sampled;
    /// it must stay flat after the warm-up (exit code 1 when it grows or a message is lost).
    Soak {
        #[command(flatten)]
        server: ServerArgs,
        /// Sender and receiver pairs.
        #[arg(long, default_value_t = 50)]
        pairs: usize,
        /// Offered messages per second over all senders.
        #[arg(long, default_value_t = 500)]
        rate: u64,
        /// Length of the run, in minutes.
        #[arg(long, default_value_t = 30.0)]
        minutes: f64,
        /// Minutes at the start left out of the flatness check.
        #[arg(long, default_value_t = 5.0)]
        warmup_minutes: f64,
        /// Seconds between two samples of the server's memory.
        #[arg(long, default_value_t = 10.0)]
        sample_seconds: f64,
        /// Ciphertext bytes per message.
        #[arg(long, default_value_t = 100)]
        size: usize,
    },
}

/// Which server, and how the report is printed.
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// A running server (it must allow the load: raise JIBBER_SOCKET_EVENTS_PER_SECOND and the
    /// auth rate limits, and JIBBER_ACCESS_TOKEN_TTL above the run's length).
    #[arg(long, conflicts_with = "spawn")]
    pub server: Option<String>,
    /// The running server's process id (for CPU and memory figures).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Start `jibber serve` for the run (fresh data directory, limits raised).
    #[arg(long)]
    pub spawn: bool,
    /// Pin the spawned server to these CPUs (`taskset -c`), e.g. 0; with `--ceiling`, the
    /// in-process bare relay's thread too, so that both get the same cores.
    #[arg(long)]
    pub server_cpus: Option<String>,
    /// Extra settings for the spawned server, e.g. JIBBER_SQLITE_SYNCHRONOUS=normal.
    #[arg(long = "server-env", value_parser = parse_env)]
    pub server_env: Vec<(String, String)>,
    /// websocket or polling.
    #[arg(long, default_value = "websocket")]
    pub transport: Transport,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

#[derive(Args, Debug, Clone)]
pub struct RelayArgs {
    /// Sender and receiver pairs (each pair shares a chat).
    #[arg(long, default_value_t = 50)]
    pub pairs: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before the measurement starts.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Sends in flight per sender (closed loop).
    #[arg(long, default_value_t = 8)]
    pub window: usize,
    /// Offered messages per second over all senders (open loop). The senders' schedules are
    /// spread evenly, so the sends arrive one at a time at this rate.
    #[arg(long)]
    pub rate: Option<u64>,
    /// With `--rate`: start every sender's schedule at the same instant, so that the sends arrive
    /// in bursts of one per pair (how `--rate` worked up to session 11; for comparisons).
    #[arg(long, requires = "rate")]
    pub in_phase: bool,
    /// Ciphertext bytes per message.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
}

impl RelayArgs {
    fn config(&self, transport: Transport) -> relay::Config {
        relay::Config {
            pairs: self.pairs,
            duration: Duration::from_secs_f64(self.duration),
            warmup: Duration::from_secs_f64(self.warmup),
            window: self.window.max(1),
            rate: self.rate,
            in_phase: self.in_phase,
            size: self.size,
            transport,
            ..relay::Config::default()
        }
    }
}

/// The target, and the spawned server to keep alive while it runs.
async fn target(args: &ServerArgs) -> anyhow::Result<(Target, Option<Spawned>)> {
    if args.spawn {
        let exe = std::env::current_exe()?;
        let s = spawn_server(&exe, args.server_cpus.as_deref(), &args.server_env).await?;
        let t = Target::Server {
            base: s.base.clone(),
            pid: Some(s.pid),
        };
        return Ok((t, Some(s)));
    }
    let base = args
        .server
        .clone()
        .unwrap_or_else(|| "http://localhost:8080".to_owned());
    Ok((
        Target::Server {
            base,
            pid: args.server_pid,
        },
        None,
    ))
}

fn print<T: serde::Serialize>(json: bool, report: &T, table: String) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!("{table}");
    }
    Ok(())
}

async fn run_ceiling(cfg: &relay::Config, cpus: Option<&str>) -> anyhow::Result<relay::Report> {
    let c = ceiling::start(cpus)?;
    let target = Target::Ceiling {
        base: c.base.clone(),
    };
    relay::run(&target, cfg).await
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Relay {
            server,
            relay: r,
            ceiling,
        } => {
            let (target, _spawned) = target(&server).await?;
            let cfg = r.config(server.transport);
            let mut report = relay::run(&target, &cfg).await?;
            let ceiling_report = if ceiling {
                let c = run_ceiling(&cfg, server.server_cpus.as_deref()).await?;
                if c.delivered_per_second > 0.0 {
                    report.ratio_to_ceiling =
                        Some(report.delivered_per_second / c.delivered_per_second);
                }
                Some(c)
            } else {
                None
            };
            if server.json {
                let all = serde_json::json!({ "relay": report, "ceiling": ceiling_report });
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                println!("{}", report.table());
                if let Some(c) = ceiling_report {
                    println!("\n{}", c.table());
                }
            }
            if !report.is_correct() {
                anyhow::bail!("the relay lost, doubled or reordered messages (see the totals)");
            }
            Ok(())
        }
        BenchCommand::Ceiling {
            relay: r,
            cpus,
            json,
        } => {
            let report = run_ceiling(&r.config(Transport::WebSocket), cpus.as_deref()).await?;
            print(json, &report, report.table())
        }
        BenchCommand::Idle {
            server,
            connections,
            users,
            per_address,
            settle_seconds,
        } => {
            let (target, _spawned) = target(&server).await?;
            let cfg = idle::Config {
                connections,
                users,
                transport: server.transport,
                per_address,
                settle: Duration::from_secs(settle_seconds),
                ..idle::Config::default()
            };
            let report = idle::run(&target, &cfg).await?;
            print(server.json, &report, report.table())
        }
        BenchCommand::Storm {
            server,
            clients,
            users,
            per_address,
        } => {
            let (target, _spawned) = target(&server).await?;
            let cfg = storm::Config {
                clients,
                users,
                transport: server.transport,
                per_address,
                ..storm::Config::default()
            };
            let report = storm::run(&target, &cfg).await?;
            print(server.json, &report, report.table())
        }
        BenchCommand::Soak {
            server,
            pairs,
            rate,
            minutes,
            warmup_minutes,
            sample_seconds,
            size,
        } => {
            let (target, _spawned) = target(&server).await?;
            let cfg = soak::Config {
                relay: relay::Config {
                    pairs,
                    duration: Duration::from_secs_f64(minutes * 60.0),
                    warmup: Duration::from_secs(2),
                    rate: Some(rate),
                    size,
                    transport: server.transport,
                    ..relay::Config::default()
                },
                warmup: Duration::from_secs_f64(warmup_minutes * 60.0),
                sample_every: Duration::from_secs_f64(sample_seconds.max(0.1)),
            };
            let report = soak::run(&target, &cfg).await?;
            print(server.json, &report, report.table())?;
            if !report.relay.is_correct() {
                anyhow::bail!("the relay lost, doubled or reordered messages (see the totals)");
            }
            match report.memory {
                Some(m) if m.flat => Ok(()),
                Some(m) => anyhow::bail!(
                    "server memory grew by {:.2} % after the warm-up",
                    m.fitted_growth_percent
                ),
                None => anyhow::bail!("too few samples after the warm-up to judge memory"),
            }
        }
    }
}
