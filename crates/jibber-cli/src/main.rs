//! `jibber`: the one binary. `jibber serve` runs the server; the other subcommands are tools
//! around it.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use jibber_cli::client;
use jibber_server::{Settings, Sources};

mod migrate;

/// jemalloc, not glibc's malloc: the relay spent ~11 % of the server's CPU in glibc's malloc
/// and free (memory handed between the runtime and the storage threads), and jemalloc delivered
/// 9 % more messages per second with a smaller idle connection (9.2 against 9.8 KiB); mimalloc
/// was faster still but took 13.4 KiB per idle connection (BENCHMARKS.md, session 7).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "jibber",
    version,
    about = "Jibber: a self-hostable, end-to-end-encrypted messenger"
)]
struct Cli {
    /// A TOML settings file (flat `key = value`, keys as in `jibber config`).
    #[arg(long, global = true, env = "JIBBER_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded SQLite in the data directory unless configured otherwise).
    Serve(ServeArgs),
    /// Manage accounts.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Print every setting with its default, as a Markdown table.
    Config,
    /// Copy an embedded SQLite installation into PostgreSQL (docs/operations.md).
    MigrateData(migrate::MigrateArgs),
    /// Make secrets for a production configuration.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Create an account (password from JIBBER_PASSWORD or asked).
    Register(client::RegisterArgs),
    /// Send one encrypted message (password from JIBBER_PASSWORD or asked).
    Send(client::SendArgs),
    /// Print incoming messages as they arrive, decrypted (lines or JSON).
    Tail(client::TailArgs),
    /// Create the demo accounts (tini, alice, bob, carol) with encrypted conversations.
    Seed(client::SeedArgs),
    /// The terminal client: log in, chats, conversations, safety numbers.
    Chat(ChatArgs),
    /// The load generator: relay, ceiling, idle, storm (BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        command: jibber_cli::bench::BenchCommand,
    },
}

#[derive(Args)]
struct ChatArgs {
    /// The server's address.
    #[arg(long, env = "JIBBER_SERVER", default_value = "http://localhost:8080")]
    server: String,
    /// Pre-fill the username.
    #[arg(long, short = 'u', env = "JIBBER_USERNAME", default_value = "")]
    username: String,
    /// websocket or polling.
    #[arg(long, default_value = "websocket")]
    transport: jibber_client::sio::Transport,
    /// Where unsent messages are kept (default: $XDG_DATA_HOME/jibber or ~/.local/share/jibber).
    #[arg(long, env = "JIBBER_CLIENT_DIR")]
    client_dir: Option<PathBuf>,
}

/// The client's data directory by the XDG convention.
fn client_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .map(|d| d.join("jibber"))
}

#[derive(Args, Default)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on.
    #[arg(long)]
    port: Option<String>,
    /// Data directory.
    #[arg(long)]
    data_dir: Option<String>,
    /// Database URL.
    #[arg(long)]
    database_url: Option<String>,
    /// Run in production mode.
    #[arg(long)]
    production: bool,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// List the accounts (username, id, created, last seen).
    List {
        /// Data directory (as for `serve`).
        #[arg(long)]
        data_dir: Option<String>,
        /// Database URL (as for `serve`).
        #[arg(long)]
        database_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// A new OPAQUE server setup (base64url) for JIBBER_OPAQUE_SERVER_SETUP.
    OpaqueSetup,
    /// A new token signing secret for JIBBER_JWT_SECRET.
    JwtSecret,
}

fn flags(pairs: &[(&str, &Option<String>)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| ((*k).to_owned(), v.clone())))
        .collect()
}

fn load(config: Option<PathBuf>, flags: Vec<(String, String)>) -> anyhow::Result<Settings> {
    let mut sources = Sources::from_env(config);
    sources.flags = flags;
    Settings::load(&sources).map_err(|e| anyhow::anyhow!("{e}"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let mut f = flags(&[
                ("host", &args.host),
                ("port", &args.port),
                ("data_dir", &args.data_dir),
                ("database_url", &args.database_url),
            ]);
            if args.production {
                f.push(("mode".to_owned(), "production".to_owned()));
            }
            let settings = match load(cli.config, f) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("jibber: {e}");
                    std::process::exit(2);
                }
            };
            jibber_cli::runtime::server_runtime()?.block_on(serve(settings))
        }
        Command::Users {
            command:
                UsersCommand::List {
                    data_dir,
                    database_url,
                },
        } => {
            let settings = load(
                cli.config,
                flags(&[("data_dir", &data_dir), ("database_url", &database_url)]),
            )?;
            tokio::runtime::Runtime::new()?.block_on(list_users(settings))
        }
        Command::Config => {
            println!("| Setting | Environment variable | Default | Meaning |");
            println!("|---|---|---|---|");
            for s in jibber_server::config::SPECS {
                let default = if s.default.is_empty() {
                    "(empty)".to_owned()
                } else {
                    format!("`{}`", s.default)
                };
                println!(
                    "| `{}` | `JIBBER_{}` | {} | {} |",
                    s.key,
                    s.key.to_uppercase(),
                    default,
                    s.help
                );
            }
            Ok(())
        }
        Command::MigrateData(args) => {
            for (table, rows) in tokio::runtime::Runtime::new()?.block_on(migrate::run(args))? {
                println!("{table}: {rows} rows");
            }
            println!("done: every table copied and counted in one transaction");
            Ok(())
        }
        Command::Register(args) => run_client(client::register(args)),
        Command::Send(args) => run_client(client::send(args)),
        Command::Tail(args) => run_client(client::tail(args)),
        Command::Seed(args) => run_client(client::seed(args)),
        Command::Bench { command } => {
            tokio::runtime::Runtime::new()?.block_on(jibber_cli::bench::run(command))
        }
        Command::Chat(args) => {
            let setup = jibber_cli::tui::Setup {
                server: args.server,
                username: args.username,
                options: jibber_client::realtime::Options {
                    transport: args.transport,
                    ..Default::default()
                },
                data_dir: args.client_dir.or_else(client_dir),
                ksf: client::ksf,
            };
            tokio::runtime::Runtime::new()?.block_on(jibber_cli::tui::run_terminal(setup))
        }
        Command::Secrets { command } => {
            match command {
                SecretsCommand::OpaqueSetup => {
                    println!("{}", jibber_server::auth::opaque::new_server_setup())
                }
                SecretsCommand::JwtSecret => {
                    println!("{}", jibber_server::auth::tokens::new_jwt_secret())
                }
            }
            Ok(())
        }
    }
}

/// Runs a client command and exits with its code (see `client`).
fn run_client(work: impl std::future::Future<Output = client::Outcome>) -> anyhow::Result<()> {
    let outcome = tokio::runtime::Runtime::new()?.block_on(work);
    if let Err(f) = outcome {
        eprintln!("jibber: {}", f.message);
        std::process::exit(f.code);
    }
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    jibber_server::telemetry::init_logging(&settings);
    // Every connection is a file: a soft limit of 1,024 (the default of many distributions and
    // service managers) would cap the server near 1,000 clients whatever the host allows. The
    // hard limit is the deployment's choice (docs/operations.md, "Many connections on one host").
    let open_files = jibber_bench::setup::raise_file_limit();
    tracing::info!(open_files, "open-file limit");
    let addr = std::net::SocketAddr::new(settings.host, settings.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let app = jibber_server::App::build(settings).await?;
    print_addresses(local);
    tracing::info!(address = %local, database = app.state.store.backend(), "jibber is listening");
    app.serve(listener, jibber_server::shutdown_signal()).await
}

/// Prints where people can reach the server: locally, and on the network when bound widely.
fn print_addresses(local: std::net::SocketAddr) {
    let port = local.port();
    if local.ip().is_unspecified() {
        println!("Jibber is running:");
        println!("  local:   http://localhost:{port}/");
        match network_ip() {
            Some(ip) => println!("  network: http://{ip}:{port}/"),
            None => println!("  network: (no network address found)"),
        }
    } else {
        println!("Jibber is running at http://{local}/");
    }
}

/// The address this machine uses for outbound traffic (no packet is sent: UDP connect only
/// picks a route).
fn network_ip() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

async fn list_users(settings: Settings) -> anyhow::Result<()> {
    let store = jibber_server::open_store(&settings).await?;
    let mut offset = 0u64;
    let mut total = 0usize;
    println!(
        "{:<32}  {:<36}  {:<20}  LAST SEEN",
        "USERNAME", "ID", "CREATED"
    );
    loop {
        let page = store.list_users(500, offset).await?;
        if page.is_empty() {
            break;
        }
        for u in &page {
            let fmt = |t: time::OffsetDateTime| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            };
            println!(
                "{:<32}  {:<36}  {:<20}  {}",
                u.username,
                u.id,
                fmt(u.created_at),
                u.last_seen.map(fmt).unwrap_or_else(|| "never".to_owned())
            );
        }
        total += page.len();
        offset += page.len() as u64;
    }
    println!("{total} account(s)");
    store.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every subcommand (path from the top) with the command itself.
    fn commands(
        cmd: &clap::Command,
        path: Vec<String>,
        out: &mut Vec<(Vec<String>, clap::Command)>,
    ) {
        out.push((path.clone(), cmd.clone()));
        // (clap's generated `help` subcommand is its own business.)
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut p = path.clone();
            p.push(sub.get_name().to_owned());
            commands(sub, p, out);
        }
    }

    /// `--help` everywhere: clap's consistency checks pass, every subcommand and every argument
    /// says what it is for, and `--help` prints it at every level.
    #[test]
    fn every_command_and_argument_has_help() {
        Cli::command().debug_assert();
        let mut cli = Cli::command();
        cli.build();
        let mut all = Vec::new();
        commands(&cli, Vec::new(), &mut all);
        assert!(all.len() > 15, "the subcommands were found: {}", all.len());
        let mut missing = Vec::new();
        for (path, cmd) in &all {
            let name = format!("jibber {}", path.join(" "));
            if cmd.get_about().is_none() {
                missing.push(name.clone());
            }
            for arg in cmd.get_arguments() {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{name}: {}", arg.get_id()));
                }
            }
            let mut argv = vec!["jibber".to_owned()];
            argv.extend(path.iter().cloned());
            argv.push("--help".to_owned());
            let shown = Cli::command()
                .try_get_matches_from(&argv)
                .map(|_| ())
                .expect_err("--help stops with the help text");
            assert_eq!(shown.kind(), clap::error::ErrorKind::DisplayHelp, "{name}");
            let text = shown.to_string();
            assert!(text.contains("Usage:"), "{name}: {text}");
            if let Some(about) = cmd.get_about() {
                assert!(text.contains(&about.to_string()), "{name}: {text}");
            }
        }
        assert!(missing.is_empty(), "without help text: {missing:#?}");
    }
}
