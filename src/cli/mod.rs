//! The command line: `serve` (the default) and the admin/query commands, which run on the same
//! code paths as the API — against the data dir directly, or against the running hub that holds it
//!
//! This file parses the arguments and decides where a command runs (`Target`); the commands
//! live by group: `events` (events, ingest), `admin` (verify, migrate, tokens), `integrations`
//! (integrations, connectors), `keys` (the hub's own keys), `channels` (notification channels),
//! `jobs` (exports, reports).

mod admin;
mod alerts;
mod channels;
mod events;
mod insight;
mod integrations;
mod jobs;
mod keys;
mod remote;
mod retention;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Overrides, Secret, Settings};
use crate::server::{self, ServeError};
use crate::store::{Store, StoreError};

#[derive(Parser, Debug)]
#[command(name = "trailhub", version, about = "Self-hosted audit-log hub", long_about = None)]
pub struct Cli {
    /// TOML config file (listen, data_dir, max_body_bytes, cache_mb, min_free_mb, poll_workers,
    /// header_timeout_secs, body_timeout_secs, max_connections, webhook_max_body_bytes,
    /// webhook_concurrency, shutdown_drain_secs, auth_failure_limit, auth_failure_window_secs,
    /// master_key_file, signing_key_file, log_origin, checkpoint_every_events,
    /// checkpoint_interval_secs, checkpoint_publish_dir, checkpoint_publish_url,
    /// checkpoint_publish_log; sections [retention], [archive], [enrichment] city_mmdb and
    /// asn_mmdb)
    #[arg(long, global = true, env = "TRAILHUB_CONFIG")]
    config: Option<PathBuf>,
    /// Address to serve on, or of the running hub to talk to [default: 127.0.0.1:7410]
    #[arg(long, global = true, env = "TRAILHUB_LISTEN")]
    listen: Option<String>,
    /// Data directory [default: ./trailhub-data]
    #[arg(long, global = true, env = "TRAILHUB_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the hub (the default command)
    Serve,
    /// Show events from the timeline, newest first
    Events(Box<events::EventsArgs>),
    /// Store the events of an NDJSON file (or a JSON array) in the `custom` integration
    Ingest(events::IngestArgs),
    /// Check the log: hash chain, Merkle tree, signed checkpoints, and (--against) checkpoints kept elsewhere
    Verify(verify::VerifyArgs),
    /// Convert a data dir written by an earlier store format (resumable; the hub must be stopped)
    Migrate,
    /// Manage API tokens
    Tokens {
        #[command(subcommand)]
        command: admin::TokensCommand,
    },
    /// Manage integrations (the vendor APIs the hub polls)
    Integrations {
        #[command(subcommand)]
        command: integrations::IntegrationsCommand,
    },
    /// Inspect, check and replay connector definitions
    Connectors {
        #[command(subcommand)]
        command: integrations::ConnectorsCommand,
    },
    /// Rotate the hub's own keys (the hub must be stopped)
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// The retention policy: what is kept how long, and purging what expired
    Retention {
        #[command(subcommand)]
        command: retention::RetentionCommand,
    },
    /// Legal holds: what must not be purged
    Holds {
        #[command(subcommand)]
        command: retention::HoldsCommand,
    },
    /// Archived segments of purged events, and restoring them
    Archive {
        #[command(subcommand)]
        command: retention::ArchiveCommand,
    },
    /// Bytes stored and archived, events and oldest event per category, next purge
    Storage {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Alert rules (a filter, a condition, a schedule, channels) and their firings
    Alerts {
        #[command(subcommand)]
        command: alerts::AlertsCommand,
    },
    /// Notification channels (webhook, Slack, email) that alerts and reports deliver through
    Channels {
        #[command(subcommand)]
        command: channels::ChannelsCommand,
    },
    /// Export jobs: a range and filter written to a file in the background, then downloaded
    Exports {
        #[command(subcommand)]
        command: jobs::ExportsCommand,
    },
    /// Reports (user access, data changes, security events, ...) as CSV and PDF, and their schedules
    Reports {
        #[command(subcommand)]
        command: jobs::ReportsCommand,
    },
    /// The dashboard: events today, this week and this month, top actors and actions, high
    /// priority events, integrations in error (the running hub)
    Summary(insight::SummaryArgs),
    /// One actor's activity: totals, integrations, actions, logins, sessions, browsers,
    /// countries, recent events (the running hub)
    Actor(insight::ActorArgs),
}

#[derive(Args, Debug, Default)]
struct ServeArgs {
    /// The master key file that seals credentials, best outside the data dir [default: <data_dir>/master.key]
    #[arg(long, global = true, env = "TRAILHUB_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// The key that signs checkpoints, best outside the data dir (whoever can write the data dir
    /// should not also be able to sign) [default: <data_dir>/signing.key]
    #[arg(long, global = true, env = "TRAILHUB_SIGNING_KEY_FILE")]
    signing_key_file: Option<PathBuf>,
    /// The log's name: the origin line of its checkpoints and the signing key's name, e.g.
    /// example.com/trailhub [default: the key file's, or trailhub/<hash of the public key>]
    #[arg(long, global = true, env = "TRAILHUB_LOG_ORIGIN")]
    log_origin: Option<String>,
    /// Sign a checkpoint after at most this many new events [default: 10000]
    #[arg(long, global = true, env = "TRAILHUB_CHECKPOINT_EVERY_EVENTS")]
    checkpoint_every_events: Option<u64>,
    /// Sign a checkpoint at least this often while events arrive, seconds [default: 60]
    #[arg(long, global = true, env = "TRAILHUB_CHECKPOINT_INTERVAL_SECS")]
    checkpoint_interval_secs: Option<u64>,
    /// Write each signed checkpoint to this directory, best one the hub's host cannot rewrite
    #[arg(long, global = true, env = "TRAILHUB_CHECKPOINT_PUBLISH_DIR")]
    checkpoint_publish_dir: Option<PathBuf>,
    /// POST each newest signed checkpoint to this http(s) URL (a witness, another machine)
    #[arg(
        long,
        global = true,
        env = "TRAILHUB_CHECKPOINT_PUBLISH_URL",
        hide_env_values = true
    )]
    checkpoint_publish_url: Option<Secret>,
    /// Log each signed checkpoint at info, for log shipping [default: true]
    #[arg(long, global = true, env = "TRAILHUB_CHECKPOINT_PUBLISH_LOG")]
    checkpoint_publish_log: Option<bool>,
    /// Bootstrap admin token; without it one is minted on first start and saved to <data_dir>/admin.token
    #[arg(
        long,
        global = true,
        env = "TRAILHUB_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<Secret>,
    /// Largest accepted request body, bytes [default: 16777216]
    #[arg(long, global = true, env = "TRAILHUB_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// sled page cache, MiB [default: 64]
    #[arg(long, global = true, env = "TRAILHUB_CACHE_MB")]
    cache_mb: Option<u64>,
    /// Refuse writes (507) while the data dir's disk has less free space, MiB [default: 256]
    #[arg(long, global = true, env = "TRAILHUB_MIN_FREE_MB")]
    min_free_mb: Option<u64>,
    /// Poll cycles running at once [default: 4]
    #[arg(long, global = true, env = "TRAILHUB_POLL_WORKERS")]
    poll_workers: Option<usize>,
    /// Seconds a client has to send a request's headers, counted from when the hub waits for
    /// it (so also the keep-alive idle timeout) [default: 10]
    #[arg(long, global = true, env = "TRAILHUB_HEADER_TIMEOUT_SECS")]
    header_timeout_secs: Option<u64>,
    /// Seconds a client has to send a request's body [default: 60]
    #[arg(long, global = true, env = "TRAILHUB_BODY_TIMEOUT_SECS")]
    body_timeout_secs: Option<u64>,
    /// HTTP connections served at once; more are answered 503 [default: 1024]
    #[arg(long, global = true, env = "TRAILHUB_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Largest webhook delivery, bytes, unless the connector sets its own [default: 1048576]
    #[arg(long, global = true, env = "TRAILHUB_WEBHOOK_MAX_BODY_BYTES")]
    webhook_max_body_bytes: Option<usize>,
    /// Webhook deliveries read and verified at once; more are answered 503 [default: 64]
    #[arg(long, global = true, env = "TRAILHUB_WEBHOOK_CONCURRENCY")]
    webhook_concurrency: Option<usize>,
    /// At shutdown, seconds /readyz answers 503 before the server stops (for load balancers) [default: 0]
    #[arg(long, global = true, env = "TRAILHUB_SHUTDOWN_DRAIN_SECS")]
    shutdown_drain_secs: Option<u64>,
    /// Wrong API tokens one client address may present per window before it gets 429; 0 turns
    /// the limit off [default: 10]
    #[arg(long, global = true, env = "TRAILHUB_AUTH_FAILURE_LIMIT")]
    auth_failure_limit: Option<u32>,
    /// The window of --auth-failure-limit, seconds [default: 60]
    #[arg(long, global = true, env = "TRAILHUB_AUTH_FAILURE_WINDOW_SECS")]
    auth_failure_window_secs: Option<u64>,
    /// Events that may wait for the store's writer before writes answer 503 [default: 32768]
    #[arg(long, global = true, env = "TRAILHUB_MAX_QUEUED_EVENTS")]
    max_queued_events: Option<usize>,
    /// Events per sealed index segment (tests lower it to seal often) [default: 65536]
    #[arg(long, global = true, env = "TRAILHUB_SEAL_EVENTS", hide = true)]
    seal_events: Option<usize>,
    /// Pause export and report jobs this long after every 1,000 events (tests that kill a hub
    /// mid-job slow them down with it)
    #[arg(long, global = true, env = "TRAILHUB_JOBS_TEST_PAUSE_MS", hide = true)]
    jobs_test_pause_ms: Option<u64>,
}

#[derive(Args, Debug, Clone)]
struct RemoteArgs {
    /// Talk to this running hub (e.g. http://127.0.0.1:7410) instead of opening the data dir
    #[arg(long, env = "TRAILHUB_URL")]
    hub: Option<String>,
    /// API token for --hub [default: TRAILHUB_ADMIN_TOKEN, else <data_dir>/admin.token]
    #[arg(long, env = "TRAILHUB_TOKEN", hide_env_values = true)]
    token: Option<Secret>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum OutputFormat {
    Table,
    Json,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, None | Some(Command::Serve));
    init_tracing(if serving { "info" } else { "warn" });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRAILHUB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn resolve_settings(cli: &Cli) -> anyhow::Result<Settings> {
    let serve = &cli.serve;
    Ok(Settings::resolve(Overrides {
        config: cli.config.clone(),
        listen: cli.listen.clone(),
        data_dir: cli.data_dir.clone(),
        admin_token: serve.admin_token.clone(),
        max_body_bytes: serve.max_body_bytes,
        cache_mb: serve.cache_mb,
        min_free_mb: serve.min_free_mb,
        max_queued_events: serve.max_queued_events,
        master_key: std::env::var("TRAILHUB_MASTER_KEY").ok().map(Secret::new),
        master_key_file: serve.master_key_file.clone(),
        poll_workers: serve.poll_workers,
        header_timeout_secs: serve.header_timeout_secs,
        body_timeout_secs: serve.body_timeout_secs,
        max_connections: serve.max_connections,
        webhook_max_body_bytes: serve.webhook_max_body_bytes,
        webhook_concurrency: serve.webhook_concurrency,
        shutdown_drain_secs: serve.shutdown_drain_secs,
        auth_failure_limit: serve.auth_failure_limit,
        auth_failure_window_secs: serve.auth_failure_window_secs,
        signing_key_file: serve.signing_key_file.clone(),
        log_origin: serve.log_origin.clone(),
        checkpoint_every_events: serve.checkpoint_every_events,
        checkpoint_interval_secs: serve.checkpoint_interval_secs,
        checkpoint_publish_dir: serve.checkpoint_publish_dir.clone(),
        checkpoint_publish_url: serve.checkpoint_publish_url.clone(),
        checkpoint_publish_log: serve.checkpoint_publish_log,
        jobs_test_pause_ms: serve.jobs_test_pause_ms,
    })?)
}

fn settings(cli: &Cli) -> anyhow::Result<Settings> {
    let mut s = resolve_settings(cli)?;
    if let Some(n) = cli.serve.seal_events {
        s.seal_events = n.clamp(1, crate::store::tail::SEAL_EVENTS);
    }
    Ok(s)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        None | Some(Command::Serve) => serve(settings(&cli)?).await,
        Some(Command::Events(args)) => events::events(&settings(&cli)?, args).await,
        Some(Command::Ingest(args)) => events::ingest(&settings(&cli)?, args).await,
        Some(Command::Verify(args)) => verify::verify(&settings(&cli)?, args).await,
        Some(Command::Migrate) => admin::migrate(&settings(&cli)?),
        Some(Command::Tokens { command }) => admin::tokens(&settings(&cli)?, command).await,
        Some(Command::Integrations { command }) => {
            integrations::integrations(&settings(&cli)?, command).await
        }
        Some(Command::Connectors { command }) => integrations::connectors(command),
        Some(Command::Keys { command }) => keys::keys(&settings(&cli)?, command).await,
        Some(Command::Retention { command }) => {
            retention::retention(&settings(&cli)?, command).await
        }
        Some(Command::Holds { command }) => retention::holds(&settings(&cli)?, command).await,
        Some(Command::Archive { command }) => retention::archive(&settings(&cli)?, command).await,
        Some(Command::Storage { remote }) => retention::storage(&settings(&cli)?, remote).await,
        Some(Command::Alerts { command }) => alerts::alerts(&settings(&cli)?, command).await,
        Some(Command::Channels { command }) => channels::channels(&settings(&cli)?, command).await,
        Some(Command::Exports { command }) => jobs::exports(&settings(&cli)?, command).await,
        Some(Command::Reports { command }) => jobs::reports(&settings(&cli)?, command).await,
        Some(Command::Summary(args)) => insight::summary(&settings(&cli)?, args).await,
        Some(Command::Actor(args)) => insight::actor(&settings(&cli)?, args).await,
    }
}

async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    let hub = server::start(settings.clone()).await?;
    if let Some(token) = &hub.minted_admin_token {
        println!(
            "admin token (shown once, saved to {}): {}",
            settings.admin_token_path().display(),
            token.expose()
        );
    }
    println!(
        "trailhub {} listening on {}",
        env!("CARGO_PKG_VERSION"),
        hub.url()
    );
    wait_for_signal().await;
    tracing::info!("shutting down: finishing requests in flight and flushing the store");
    hub.stop().await?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Where a command's work happens.
enum Target {
    Local(Store),
    Remote(remote::Client),
}

/// The data dir if it is free; the hub holding it otherwise (or the one `--hub` names).
fn target(settings: &Settings, remote: &RemoteArgs) -> anyhow::Result<Target> {
    if let Some(url) = &remote.hub {
        return Ok(Target::Remote(remote::Client::new(
            url,
            token_for(settings, remote)?,
        )?));
    }
    if !settings.store_path().exists() {
        anyhow::bail!(
            "no hub data in {} (start one with `trailhub serve`, or pass --data-dir or --hub)",
            settings.data_dir.display()
        );
    }
    match server::open_store(settings) {
        Ok(store) => Ok(Target::Local(store)),
        Err(ServeError::Store(_, StoreError::Locked(_))) => {
            let url = format!("http://{}", settings.listen);
            eprintln!(
                "note: {} is held by a running hub; asking it at {url}",
                settings.data_dir.display()
            );
            Ok(Target::Remote(remote::Client::new(
                &url,
                token_for(settings, remote)?,
            )?))
        }
        Err(e) => Err(e.into()),
    }
}

/// The running hub (the data dir's, or the one `--hub` names) for work only it can do; `why`
/// says what makes it needed ("its outbox sends").
async fn hub_client(
    settings: &Settings,
    remote: &RemoteArgs,
    why: &str,
) -> anyhow::Result<remote::Client> {
    match target(settings, remote)? {
        Target::Remote(client) => Ok(client),
        Target::Local(store) => {
            close(store)?;
            anyhow::bail!(
                "this needs the running hub ({why}): start `trailhub serve`, or pass --hub"
            )
        }
    }
}

/// A JSON answer, pretty-printed, as the command's output.
fn print_json(v: &serde_json::Value) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(ExitCode::SUCCESS)
}

fn token_for(settings: &Settings, remote: &RemoteArgs) -> anyhow::Result<String> {
    if let Some(t) = remote
        .token
        .as_ref()
        .map(|t| t.expose().to_string())
        .or_else(|| std::env::var("TRAILHUB_ADMIN_TOKEN").ok())
        .filter(|t| !t.is_empty())
    {
        return Ok(t);
    }
    let path = settings.admin_token_path();
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(t.trim().to_string()),
        Err(_) => anyhow::bail!(
            "no API token: pass --token or set TRAILHUB_TOKEN (could not read {})",
            path.display()
        ),
    }
}

fn close(store: Store) -> anyhow::Result<()> {
    store.shutdown()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_arguments_do_not_debug_print_secrets() {
        let planted = "planted-secret-value-0123456789";
        let credential = format!("token={planted}");
        let publish_url = format!("https://witness.example/add?key={planted}");
        let parsed = [
            vec!["trailhub", "--admin-token", planted, "serve"],
            vec!["trailhub", "--checkpoint-publish-url", &publish_url],
            vec![
                "trailhub", "events", "--hub", "http://h", "--token", planted,
            ],
            vec![
                "trailhub",
                "integrations",
                "add",
                "--name",
                "a",
                "--connector",
                "okta",
                "--credential",
                &credential,
            ],
            vec![
                "trailhub",
                "channels",
                "add",
                "--name",
                "a",
                "--kind",
                "email",
                "--password",
                planted,
            ],
            vec![
                "trailhub",
                "channels",
                "add",
                "--name",
                "a",
                "--kind",
                "webhook",
                "--url",
                &publish_url,
                "--secret",
                planted,
            ],
        ];
        for args in parsed {
            let cli = Cli::try_parse_from(&args).expect("parses");
            let shown = format!("{cli:?}");
            assert!(!shown.contains(planted), "{shown}");
        }
    }
}
